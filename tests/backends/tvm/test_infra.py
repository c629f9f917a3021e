"""TVM backend infrastructure: target registry, runtimes + tcc-run, host and ARM (qemu) execution.

Skips (with the reason) when apache-tvm, onnxruntime, a cross toolchain or qemu is missing;
tools/setup_arm.sh installs them.  The ARM runtimes are cached outside the repository
(~/.cache/tcc); if the toolchains are installed but a runtime is not cached yet, the first test
that needs it builds it (arm-a7: several minutes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tcc import targets as tg
from tcc.backends.tvm import compile as tvm_compile
from tcc.backends.tvm import runner as tvm_run
from tcc.backends.tvm import runtime as rt
from tcc.backends.tvm import tensor_file
from tcc.backends.tvm.measure.instruction_mix import instruction_mix
from tcc.errors import BuildError, TccError
from tests.helpers.onnx_util import make_model, session
from tests.helpers.tvm_util import needs_tvm, ready_runtime, skip_unless_tools

ARM_TARGETS = ["arm-a7", "aarch64"]


# ----------------------------------------------------------------------------- no TVM needed


def test_registry_names_and_aliases():
    assert {"host", "arm-a7", "aarch64", "arm-a53"} <= set(tg.known_platforms())
    assert tg.get_platform("arm-a53") is tg.get_platform("aarch64")
    a7 = tg.get_platform("arm-a7")
    d = a7.tvm_target_dict()
    assert d["mtriple"] == "armv7a-linux-gnueabihf" and d["mfloat-abi"] == "hard" and d["fast-math"] is True
    assert "+neon" in d["mattr"]
    assert a7.cxx == "arm-linux-gnueabihf-g++" and a7.qemu[0] == "qemu-arm"
    assert a7.runtime_cache_key("0.27.0.post1") == "tvm-runtime-0.27.0.post1-armv7"
    d["mattr"].append("+x")  # a copy: the registry stays untouched
    assert "+x" not in a7.tvm_target["mattr"]


def test_aarch64_dotprod_target_runs_its_sdot_under_a_qemu_cpu_that_has_it():
    """The boards' Cortex-A55 (ARMv8.2 with the int8 dot product): its own target and aliases, the runtime of
    aarch64, and a qemu CPU that executes sdot (qemu 7.2 has no cortex-a55 model)."""
    a55 = tg.get_platform("aarch64-dotprod")
    assert tg.get_platform("arm-a55") is tg.get_platform("ax650-a55") is tg.get_platform("ax620e-a55") is a55
    assert "+dotprod" in a55.tvm_target["mattr"] and a55.tvm_target["mcpu"] == "cortex-a55"
    assert a55.runtime_cache_key("0") == tg.get_platform("aarch64").runtime_cache_key("0")
    assert a55.qemu[a55.qemu.index("-cpu") + 1] in ("cortex-a76", "max")


@pytest.mark.parametrize("target, runs", [("aarch64", False), ("aarch64-dotprod", True)])
def test_each_aarch64_class_runs_under_its_own_core(tmp_path, target, runs):
    """A self-check runs on the class's own core: an ARMv8.2 dot product (sdot) in a program for the v8.0 class dies
    under its qemu prefix (-cpu cortex-a53: SIGILL), so a stray v8.2 instruction in a v8.0 build cannot pass; the
    dot-product class's core executes it."""
    import subprocess

    platform = tg.get_platform(target)
    if rt.missing_tools(target, build=False, run=True):
        pytest.skip(f"{target}: cross compiler or qemu missing")
    src = tmp_path / "sdot.c"
    src.write_text(
        "#include <arm_neon.h>\n"
        "int main(void) {\n"
        "  int8x16_t a = vdupq_n_s8(2), b = vdupq_n_s8(3);\n"
        "  int32x4_t acc = vdotq_s32(vdupq_n_s32(0), a, b);\n"
        "  return vgetq_lane_s32(acc, 0) == 24 ? 0 : 1;\n"
        "}\n"
    )
    exe = tmp_path / "sdot"
    subprocess.run(
        [platform.cxx, "-x", "c", "-O1", "-march=armv8.2-a+dotprod", "-static", str(src), "-o", str(exe)], check=True
    )
    done = subprocess.run([*platform.qemu, str(exe)], capture_output=True, timeout=60)
    if runs:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode in (-4, 132), (done.returncode, done.stderr)  # SIGILL: the core has no sdot


def test_unknown_target_lists_known_ones():
    with pytest.raises(tg.UnknownTargetError) as e:
        tg.get_platform("arm-a9")
    msg = str(e.value)
    assert "arm-a9" in msg and "arm-a7" in msg and "aarch64" in msg and "host" in msg


def test_tensor_file_roundtrip(tmp_path):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    b = np.array([[-128, 5, 127]], dtype=np.int8)
    p = tmp_path / "t.bin"
    p.write_bytes(tensor_file.tensor_file_bytes(a) + tensor_file.tensor_file_bytes(b))
    ra, rb = tensor_file.read_tensor_file(p)
    assert ra.dtype == np.float32 and ra.shape == (2, 3, 4) and np.array_equal(ra, a)
    assert rb.dtype == np.int8 and np.array_equal(rb, b)
    assert p.read_bytes()[:4] == b"TCCT" and len(tensor_file.tensor_file_bytes(a)) == 24 + 3 * 8 + a.nbytes
    p.write_bytes(b"junk")
    with pytest.raises(ValueError):
        tensor_file.read_tensor_file(p)


def test_runtime_and_tensor_files_import_neither_tvm_nor_numpy():
    """tools/setup_arm.sh runs `python -m tcc.backends.tvm.runtime` before TVM (and maybe numpy) is installed;
    the compile / tune / run modules import TVM only where they use it."""
    code = (
        "import sys\n"
        "import tcc.backends.tvm.runtime, tcc.backends.tvm.tensor_file\n"
        "assert 'tvm' not in sys.modules and 'numpy' not in sys.modules, 'numpy/tvm imported'\n"
        "import tcc.backends.tvm.compile, tcc.backends.tvm.tune, tcc.backends.tvm.runner\n"
        "import tcc.backends.tvm.measure.instruction_mix\n"
        "assert 'tvm' not in sys.modules, 'tvm imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_errors_are_tcc_errors():
    assert issubclass(rt.ToolchainMissing, BuildError) and rt.ToolchainMissing("x").exit_code == 2
    assert issubclass(rt.RuntimeBuildError, BuildError) and rt.RuntimeBuildError("x").exit_code == 2
    assert issubclass(rt.RunError, TccError) and not issubclass(rt.RunError, BuildError)
    assert rt.RunError("x").exit_code == 1  # the module failed at run time


# ----------------------------------------------------------------------------- TVM needed

try:
    import tvm
    from tvm import relax
except ImportError:  # pragma: no cover - depends on the environment: needs_tvm skips the tests that use them
    pass


def _tiny_model():
    """conv3x3(3->8)+bias -> relu -> global average pool -> flatten -> gemm(8->4)."""
    from onnx import helper

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(8) * 0.1).astype(np.float32)
    fw = (rng.standard_normal((4, 8)) * 0.3).astype(np.float32)
    fb = (rng.standard_normal(4) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1, name="fc"),
    ]
    return make_model(
        nodes,
        {"x": [1, 3, 32, 32]},
        {"y": [1, 4]},
        {"w": w, "b": b, "fw": fw, "fb": fb},
        name="tiny",
        opset=17,
        ir_version=8,
        check=True,
    )


@pytest.fixture(scope="module")
def tiny():
    model = _tiny_model()
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    sess = session(model, threads=1)
    ref = sess.run(None, {"x": x})[0]
    return {"model": model, "x": x, "ref": ref, "sess": sess}


@pytest.fixture(scope="module")
def built(tiny, tmp_path_factory):
    """Compiled .so per target (lazily, once per module)."""
    out = tmp_path_factory.mktemp("tvm_infra")
    cache: dict[str, object] = {}

    def get(target: str):
        if target not in cache:
            skip_unless_tools(target, build=False, run=False)
            t0 = time.perf_counter()
            path = tvm_compile.compile_onnx(tiny["model"], target, out / f"tiny-{target}.so")
            print(f"\n[tvm_infra] compile {target}: {time.perf_counter() - t0:.1f} s")
            cache[target] = path
        return cache[target]

    return get


@needs_tvm
def test_host_python_vm_matches_ort(tiny, built):
    so = built("host")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(so)), tvm.cpu())
    y = vm["main"](tvm.runtime.tensor(tiny["x"])).numpy()
    np.testing.assert_allclose(y, tiny["ref"], rtol=1e-5, atol=1e-5)


@needs_tvm
def test_host_runner_matches_ort(tiny, built):
    ready_runtime("host")
    so = built("host")
    outs, tvm_ms = tvm_run.run_module(so, "host", tiny["x"], threads=1, repeat=50)
    assert len(outs) == 1 and outs[0].shape == (1, 4) and outs[0].dtype == np.float32
    np.testing.assert_allclose(outs[0], tiny["ref"], rtol=1e-5, atol=1e-5)
    # latency report (not asserted: the machine is shared)
    ts = []
    for _ in range(50):
        t0 = time.perf_counter()
        tiny["sess"].run(None, {"x": tiny["x"]})
        ts.append((time.perf_counter() - t0) * 1e3)
    print(
        f"\n[tvm_infra] host latency tiny model, 1 thread: tcc-run {tvm_ms:.3f} ms, "
        f"onnxruntime {float(np.median(ts)):.3f} ms (median of 50)"
    )


@needs_tvm
def test_runner_rejects_bad_input(tiny, built, tmp_path):
    ready_runtime("host")
    so = built("host")
    cmd = rt.runner_command("host")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\0" * 10)
    proc = subprocess.run(
        [*cmd, str(so), str(bad), str(tmp_path / "o.bin")], check=False, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "--shape" in proc.stderr
    # the same data raw, with --shape, is accepted; --raw-output writes data only
    raw = tmp_path / "raw.bin"
    raw.write_bytes(tiny["x"].tobytes())
    out = tmp_path / "o.bin"
    proc = subprocess.run(
        [*cmd, "--shape", "1,3,32,32", "--raw-output", str(so), str(raw), str(out)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.frombuffer(out.read_bytes(), "<f4").reshape(1, 4), tiny["ref"], rtol=1e-5, atol=1e-5)


@needs_tvm
@pytest.mark.parametrize("target", ARM_TARGETS)
def test_arm_under_qemu_matches_host(tiny, built, target):
    ready_runtime(target)
    host_so = built("host")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(host_so)), tvm.cpu())
    host_y = vm["main"](tvm.runtime.tensor(tiny["x"])).numpy()
    t0 = time.perf_counter()
    y = tvm_run.run_under_qemu(built(target), target, tiny["x"])
    print(f"\n[tvm_infra] {target} under qemu: {time.perf_counter() - t0:.2f} s")
    assert isinstance(y, np.ndarray) and y.shape == host_y.shape
    np.testing.assert_allclose(y, host_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, tiny["ref"], rtol=1e-5, atol=1e-5)


@needs_tvm
@pytest.mark.parametrize("target", ARM_TARGETS)
def test_arm_code_is_vectorised(built, target):
    skip_unless_tools(target, build=False, run=False)
    mix = instruction_mix(built(target), target)
    top = ", ".join(f"{k} {v}" for k, v in list(mix["simd_by_full_mnemonic"].items())[:16])
    print(f"\n[tvm_infra] {target}: {mix['simd']} SIMD of {mix['total']} instructions; {top}")
    assert mix["simd"] > 0
    ops = set(mix["simd_by_mnemonic"])
    if target == "arm-a7":
        assert ops & {"vld1", "vldmia"}, ops  # vector loads
        assert ops & {"vmla", "vfma", "vmul", "vadd"}, ops  # vector float arithmetic
        assert any(m.endswith(".f32") for m in mix["simd_by_full_mnemonic"]), mix["simd_by_full_mnemonic"]
    else:
        assert ops & {"fmla", "fmul", "fadd"}, ops


def test_missing_cross_compiler_is_named(monkeypatch):
    monkeypatch.setattr(rt, "find_command", lambda cmd: None if cmd.startswith("arm-linux") else "/bin/true")
    with pytest.raises(rt.ToolchainMissing) as e:
        rt.require_tools("arm-a7", build=False, run=False)
    assert "g++-arm-linux-gnueabihf" in str(e.value) and "tcc setup" in str(e.value)


@needs_tvm
def test_runtime_cache_layout():
    """After setup the cache holds lib/ + bin/tcc-run + stamp per architecture (skips if not built)."""
    built_any = False
    for t in ("host", *ARM_TARGETS):
        d = rt.runtime_dir(t)
        stamp = rt.read_stamp(t)
        if stamp is None:
            continue
        built_any = True
        assert (d / "bin" / "tcc-run").is_file()
        assert (d / "lib" / "libtvm_runtime.so").is_file() and (d / "lib" / "libtvm_ffi.so").is_file()
        assert stamp["tvm_version"] == rt.tvm_versions()[0]
        assert str(d).startswith(str(rt.cache_root())) and not str(d).startswith(str(rt.REPO_ROOT))
    if not built_any:
        pytest.skip("no runtime cached yet (tools/setup_arm.sh)")


@needs_tvm
def test_support_headers_selftest(tmp_path):
    """tcc's own TVM support headers (serializer byte layout, base64, fp16) on the host."""
    skip_unless_tools("host", build=False, run=False)
    import tvm_ffi

    ffi = os.path.dirname(tvm_ffi.__file__)
    src = rt.RUNTIME_SRC
    exe = tmp_path / "selftest"
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-O1",
            f"-I{src / 'support' / 'include'}",
            f"-I{src / 'support' / 'src'}",
            f"-I{ffi}/include",
            f"-I{ffi}/3rdparty/dlpack/include",
            str(src / "tests" / "support_selftest.cc"),
            f"-L{ffi}/lib",
            "-ltvm_ffi",
            f"-Wl,-rpath,{ffi}/lib",
            "-o",
            str(exe),
        ],
        check=True,
    )
    proc = subprocess.run([str(exe)], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@needs_tvm
def test_numpy_constant_folding_equals_relax_fold_constant():
    """fold_numpy_constants turns transposes, reshapes and NaN guards of constants into the constants Relax's
    FoldConstant computes (by compiling a kernel each), and leaves the rest of the graph alone."""
    w = np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5)
    w[0, 1, 2, 3] = np.nan
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([2, 4, 5, 3], "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            c = relax.const(w)
            t = bb.emit(relax.op.permute_dims(c, [0, 2, 3, 1]))
            r = bb.emit(relax.op.reshape(c, (6, 20)))
            nan = bb.emit(relax.op.isnan(c))
            g = bb.emit(relax.op.where(nan, relax.const(np.float32(-1)), c))
            bound = bb.emit(
                relax.op.where(
                    relax.op.isnan(relax.const(np.float32(6))), relax.const(np.float32(0)), relax.const(np.float32(6))
                )
            )  # a Clip bound's guard: a scalar stays 0-d
            s = bb.emit(relax.op.add(x, t))  # not constant: stays a call
            out = bb.emit_output(relax.Tuple([t, r, g, s]))
        bb.emit_func_output(out)
    mod = bb.get()

    def constants(m):
        values, calls = {}, []
        for block in m["main"].body.blocks:
            for binding in block.bindings:
                v = binding.value
                if isinstance(v, tvm.ir.GenericConst):
                    values[binding.var.name] = v.value.numpy()
                elif isinstance(v, relax.Call):
                    calls.append(v.op.name)
        return values, calls

    ours, calls = constants(tvm_compile.fold_numpy_constants()(mod))
    theirs, _ = constants(relax.transform.FoldConstant()(mod))
    assert calls == ["relax.add"]
    assert set(ours) >= {t.name, r.name, g.name, bound.name} and set(ours) >= set(theirs)
    np.testing.assert_array_equal(ours[t.name], np.transpose(w, (0, 2, 3, 1)))
    for name, value in theirs.items():
        assert ours[name].dtype == value.dtype and ours[name].shape == value.shape, name
        np.testing.assert_array_equal(ours[name], value)  # NaN-aware
    assert ours[r.name].shape == (6, 20) and np.isnan(ours[r.name]).sum() == 1 and (ours[g.name] == -1).sum() == 1
    assert ours[bound.name].shape == () and ours[bound.name] == 6
