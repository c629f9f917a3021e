"""The TVM tests' shared skips and runners: apache-tvm present (`needs_tvm`), a target's cross toolchain, qemu and
TVM runtime (`tcc setup` installs and builds them; an armv7 runtime build from source takes minutes, left to
it unless TCC_BUILD_RUNTIMES=1), and the INT8 checks against the integer reference. Importable without TVM: it is
imported where it is used."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from tcc import targets as tg
from tcc.backends.tvm import compile as tvm_compile
from tcc.backends.tvm import runner as tvm_run
from tcc.backends.tvm import runtime as rt

NO_TVM = (
    None if importlib.util.find_spec("tvm") is not None else "apache-tvm not installed (`tcc setup host` installs it)"
)
needs_tvm = pytest.mark.skipif(NO_TVM is not None, reason=NO_TVM or "")
IEEE = tvm_compile.CompileOptions(ieee=True)  # INT8 modules: float steps rounded as the reference rounds them


def x86_options(**passes: bool) -> tvm_compile.CompileOptions:
    """compile_module's default options with the x86 rewrites `passes` (tvm_compile.X86Passes' fields) set."""
    return tvm_compile.CompileOptions(x86=tvm_compile.X86Passes(**passes))


# a tiny model for the TVM builds (FP32 and INT8, host and ARM): conv + batchnorm + relu, a pool, a linear layer
TINY = """
kind: model
name: tiny
input:
  shape: [3, 32, 32]
  preprocess: {resize: [32, 32], mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
layers:
  - {id: conv1, op: conv2d, out: 8, kernel: 3, padding: 1}
  - {id: bn1, op: batchnorm}
  - {id: relu1, op: relu}
  - {id: gap, op: global_avgpool}
  - {id: flat, op: flatten}
  - {id: fc, op: linear, out: 3}
"""


def skip_unless_tools(target: str, *, build: bool = True, run: bool = True) -> None:
    """Skip unless the target's cross compiler (and with `run` its qemu, with `build` cmake) is on this machine."""
    missing = rt.missing_tools(target, build=build, run=run)
    if missing:
        pytest.skip(
            f"{target}: missing " + "; ".join(f"{c} ({h})" for c, h in missing) + f" - run `tcc setup {target}`"
        )


def _skip_if_left_to_setup(target: str) -> None:
    """Skip when the target's runtime is built from source and not built yet (unless TCC_BUILD_RUNTIMES=1)."""
    if (
        tg.get_platform(target).runtime == "source"
        and rt.runtime_state(target) == "stale"
        and os.environ.get("TCC_BUILD_RUNTIMES") != "1"
    ):
        pytest.skip(
            f"{target}: TVM runtime not built in {rt.runtime_dir(target)} - run `tcc setup {target}` "
            "(or set TCC_BUILD_RUNTIMES=1 to build it from the tests)"
        )


def require_runtime(target: str) -> None:
    """Skip unless a build for `target` can run here: its toolchain and qemu, and its TVM runtime built or (when
    quick: fetched, copied, tcc-run rebuilt) buildable by the build itself."""
    skip_unless_tools(target, build=False, run=True)
    _skip_if_left_to_setup(target)
    if rt.runtime_state(target) != "ok" and rt.missing_tools(target, build=True, run=True):
        pytest.skip(f"{target}: runtime out of date and cmake missing - run `tcc setup {target}`")


def ready_runtime(target: str) -> None:
    """require_runtime's conditions with cmake, then the runtime and tcc-run made ready here (rt.ensure_runtime)."""
    skip_unless_tools(target)
    _skip_if_left_to_setup(target)
    rt.ensure_runtime(target)


def skip_unless_runtime(target: str) -> None:
    """Skip unless the target's toolchain, qemu and an up-to-date TVM runtime are all there now (nothing built)."""
    skip_unless_tools(target)
    if rt.runtime_state(target) != "ok":
        pytest.skip(f"{target}: TVM runtime not built in {rt.runtime_dir(target)} - run `tcc setup {target}`")


def host_vm(mod):
    """A Relax module compiled for the host with tcc's pipelines, in the Relax VM."""
    import tvm
    from tvm import relax

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm.int8 import tir_pipeline

    target = tvm.target.Target(tvm_compile.resolve_tvm_target("host"))
    ex = tvm.compile(
        mod,
        target=target,
        relax_pipeline=tvm_compile._relax_pipeline(target, tvm_compile.CompileOptions()),
        tir_pipeline=tir_pipeline.for_kernels(target),
    )  # the TIR pipeline of tcc's builds
    return relax.VirtualMachine(ex, tvm.cpu())


def run_lowered(mod, target: str, x: np.ndarray, tmp_path) -> list:
    """A lowered Relax module compiled for `target` (IEEE float semantics) and run on x: its outputs."""
    so = tvm_compile.compile_module(mod, target, tmp_path / f"lowered-{target}.so", IEEE)
    return tvm_run.run_module(so, target, x)[0]


def host_outputs_with_and_without(model, x: np.ndarray, option: str, tmp_path) -> list:
    """An ONNX model compiled for the host with compile_module's `option` off, then on, each run on x: the two
    first outputs (what a graph rewrite's tests compare)."""
    inp = model.graph.input[0].name
    return [
        tvm_run.run_module(
            tvm_compile.compile_module(
                tvm_compile.import_onnx(model, {inp: list(x.shape)}),
                "host",
                tmp_path / f"{option}-{int(on)}.so",
                x86_options(**{option: on}),
            ),
            "host",
            x,
        )[0][0]
        for on in (False, True)
    ]


def check_all(outs, ref_out, ref_codes, names) -> int:
    """Output and every exposed tensor's codes equal to the reference; returns the number of elements compared."""
    outs = [o.numpy() if hasattr(o, "numpy") else o for o in outs]
    np.testing.assert_array_equal(outs[0], ref_out)
    assert outs[0].dtype == np.float32
    for name, got in zip(names, outs[1:]):
        np.testing.assert_array_equal(got, ref_codes[name].q, err_msg=name)
    return sum(o.size for o in outs)
