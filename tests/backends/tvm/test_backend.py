"""The TVM backend (`tcc build --target host|arm-a7|aarch64`): FP32 bundles of the paper and baseline models against
PyTorch (the builder's gated self-check) and ONNX Runtime, ARM bundles run by their own kit under qemu against the
host build, bundle contents and determinism, and the user mistakes (unknown target, missing cross compiler, an op
TVM cannot lower, --tune for ARM, a failing compile leaves nothing behind), and MetaSchedule tuning (--tune on a tiny
net: database written, reused without tuning; the refusal when MetaSchedule cannot run here).

Skips cleanly without apache-tvm, without the cross toolchains / qemu, or without a cached runtime (like
test_infra.py; tools/setup_arm.sh installs and builds them). Slow parts are shared through module-scoped fixtures: one
host DDSNet bundle, one arm-a7 and one aarch64 DDSNet bundle.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper

from tcc import targets as tg
from tcc.backends import BACKENDS, TARGETS, EmitOptions, TvmOptions, get_backend, get_target
from tcc.backends.tvm import compile as tvm_compile
from tcc.backends.tvm import runtime as rt
from tcc.backends.tvm import tensor_file
from tcc.backends.tvm import tune as tvm_tune
from tcc.build import build, build_settings
from tcc.cli.main import main
from tcc.errors import BuildError
from tests.helpers import REPO
from tests.helpers.onnx_util import make_model, run
from tests.helpers.tvm_util import TINY, needs_tvm, require_runtime

# aarch64 repeats arm-a7's check on the other ISA (~2.5 min under qemu): slow, tools/slow_tests.sh. The ARM bundles
# are built at 96 x 96: qemu runs each module several times (the golden suite runs DDSNet at 224 under qemu)
ARM_SIDE = 96
ARM_TARGETS = ["arm-a7", pytest.param("aarch64", marks=pytest.mark.slow)]


def _build(spec, target, out, **kw):
    t0 = time.perf_counter()
    result = build(REPO / spec, build_settings(target, **kw), out)
    print(
        f"\n[tvm] build {spec} --target {target}: {time.perf_counter() - t0:.1f} s "
        f"({', '.join(f'{k} {v:.1f}' for k, v in result.seconds.items())})"
    )
    return result


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """build(spec, target) once per module."""
    root = tmp_path_factory.mktemp("tvm_bundles")
    cache: dict = {}

    def get(spec: str, target: str):
        key = (spec, target)
        if key not in cache:
            require_runtime(target)
            cross = tg.get_platform(target).is_cross
            kw = {"host_twin": True, "overrides": {"image_size": ARM_SIDE}} if cross else {}
            cache[key] = _build(spec, target, root / f"{Path(spec).stem}-{target}", **kw)
        return cache[key]

    return get


# ---------------------------------------------------------------------------------------------------- registry
def test_tvm_targets_come_from_the_target_registry():
    assert BACKENDS["tvm"] == "tcc.backends.tvm.backend:TvmBackend"
    for name, spec in tg.PLATFORMS.items():
        t = get_target(name)
        assert t.backend == "tvm" and t.precisions == ("fp32", "int8")
        assert spec.description in t.description  # described once, in compiler/targets.py
    assert {"host", "arm-a7", "aarch64", "arm-a53"} <= set(TARGETS)
    assert "alias of aarch64" in get_target("arm-a53").description


def test_unknown_target_lists_every_known_target(capsys):
    with pytest.raises(BuildError) as e:
        get_target("riscv")
    for name in ("onnx", "ort", "host", "arm-a7", "aarch64", "arm-a53"):
        assert f"\n  {name} " in str(e.value)
    assert main(["build", str(REPO / "spec/ddsnet.yaml"), "--target", "riscv", "-o", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert "unknown target 'riscv'" in err and "arm-a7" in err and "Traceback" not in err


@needs_tvm
def test_capabilities():
    caps = get_backend("tvm").capabilities
    assert caps.name == "tvm" and set(caps.targets) == set(tg.PLATFORMS)
    assert caps.precisions == ("fp32", "int8") and caps.int8_lowering == "tvm" and caps.int8_exact
    assert caps.runs_here


# ---------------------------------------------------------------------------------------------------- user mistakes
def _celu_model():
    """Conv -> Celu: Celu is a standard op (opset 12) that TVM's Relax ONNX frontend has no converter for."""
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "c.weight")
    nodes = [
        helper.make_node("Conv", ["input", "c.weight"], ["c"], name="stem.conv"),
        helper.make_node("Celu", ["c"], ["output"], name="head.act"),
    ]
    return make_model(nodes, {"input": ["N", 3, 8, 8]}, {"output": ["N", 4, 8, 8]}, [w], name="m", ir_version=7)


@needs_tvm
def test_an_op_tvm_cannot_lower_is_named():
    with pytest.raises(BuildError) as e:
        get_backend("tvm").check(_celu_model(), EmitOptions("host"))
    msg = str(e.value)
    assert "'head.act'" in msg and "Celu" in msg and "TVM" in msg and "stem.conv" not in msg


@needs_tvm
def test_missing_cross_compiler_names_the_package(monkeypatch, tmp_path):
    real = rt.find_command
    monkeypatch.setattr(rt, "find_command", lambda cmd: None if cmd.startswith("arm-linux-gnueabihf") else real(cmd))
    out = tmp_path / "b"
    with pytest.raises(BuildError) as e:
        build(REPO / "spec/ddsnet.yaml", build_settings("arm-a7"), out)
    assert "g++-arm-linux-gnueabihf" in str(e.value) and "apt-get install" in str(e.value)
    assert not out.exists() and not list(tmp_path.iterdir())


@needs_tvm
def test_missing_qemu_names_the_package(monkeypatch, tmp_path):
    real = rt.find_command
    monkeypatch.setattr(rt, "find_command", lambda cmd: None if cmd == "qemu-aarch64" else real(cmd))
    with pytest.raises(BuildError, match="qemu-user"):
        build(REPO / "spec/ddsnet.yaml", build_settings("aarch64"), tmp_path / "b")
    assert not list(tmp_path.iterdir())


@needs_tvm
def test_tune_is_rejected_for_arm(tmp_path, capsys):
    code = main(
        ["build", str(REPO / "spec/ddsnet.yaml"), "--target", "arm-a7", "--tune", "4", "-o", str(tmp_path / "b")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--tune is host-only" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


@needs_tvm
def test_failed_compile_leaves_no_bundle(monkeypatch, tmp_path):
    require_runtime("host")

    def broken(*a, **k):
        raise RuntimeError("InternalError: Check failed: simulated codegen failure")

    monkeypatch.setattr(tvm_compile, "compile_module", broken)
    out = tmp_path / "b"
    with pytest.raises(BuildError, match="TVM failed to compile the model for host: .*simulated codegen failure"):
        build(REPO / "spec/ddsnet.yaml", build_settings("host"), out)
    assert not list(tmp_path.iterdir())  # neither OUT nor a temp dir beside it


# ---------------------------------------------------------------------------------------------------- host FP32
# The builder gates every bundle on PyTorch (FP32: within 1e-5 of the output's scale of the float64 module, or 4x
# PyTorch's own float32 error); ONNX Runtime is recorded in the
# manifest and held to the same rule here (both are float32 with different summation orders).
@needs_tvm
@pytest.mark.parametrize("spec", ["spec/ddsnet.yaml"])  # FastNet, ResNet-18, MobileNetV2, EfficientNet-B0: tests/golden
def test_host_fp32_matches_pytorch_and_ort(bundles, spec):
    m = bundles(spec, "host").manifest
    assert m["backend"] == "tvm" and m["target"] == "host" and m["artifact"] == "model.so"
    r = m["self_check"]["result"]
    assert r["passed"] and r["max_abs"] <= 1e-5 + 1e-4 * r["output_scale"]
    ort_diff = m["target_checks"]["vs_onnxruntime"]["max_abs"]
    print(f"\n[tvm] {spec} host: vs PyTorch max abs {r['max_abs']}, vs ORT max abs {ort_diff}")
    assert ort_diff <= 1e-5 + 1e-4 * r["output_scale"]


@needs_tvm
def test_host_bundle_contents(bundles):
    result = bundles("spec/ddsnet.yaml", "host")
    out, m = result.out, result.manifest
    for f in (
        "model.so",
        "kit/bin/tcc-run",
        "kit/lib/libtvm_runtime.so",
        "kit/lib/libtvm_ffi.so",
        "kit/README.md",
        "kit/run.sh",
        "kit/kit.json",
        "README.md",
    ):
        assert f in m["files"] or f == "manifest.json", f
        assert (out / f).is_file()
    assert os.access(out / "kit/bin/tcc-run", os.X_OK) and os.access(out / "kit/run.sh", os.X_OK)
    assert json.loads((out / "kit/kit.json").read_text())["input_shape"] == [1, 3, 224, 224]
    mix = m["target_checks"]["instruction_mix"]
    assert mix["arch"] == "x86_64" and 0 < mix["simd"] < mix["instructions"]
    readme = (out / "README.md").read_text()
    assert "./bin/tcc-run ../model.so input.bin output.bin" in readme and "onnxruntime" not in readme
    assert "TCCT" in (out / "kit/README.md").read_text()


@needs_tvm
def test_kit_runs_on_its_own(bundles, tmp_path):
    """The kit as shipped: run.sh with a TCCT file gives the self-check's numbers (no Python, no TVM cache)."""
    import subprocess

    result = bundles("spec/ddsnet.yaml", "host")
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    tensor_file.write_tensor_file(tmp_path / "in.bin", x)
    proc = subprocess.run(
        [str(result.out / "kit/run.sh"), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    (y,) = tensor_file.read_tensor_file(tmp_path / "out.bin")
    backend = get_backend("tvm")
    np.testing.assert_array_equal(y, backend.run(backend.load(result.out), x))


@needs_tvm
def test_predict_artifact_host(bundles, tmp_path, capsys):
    result = bundles("spec/ddsnet.yaml", "host")
    x = np.random.default_rng(3).standard_normal((2, 3, 224, 224)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", "--artifact", str(result.out), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    got = np.array([r["logits"] for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])], np.float32)
    np.testing.assert_allclose(got, _ort_run(result.out, x), atol=1e-5, rtol=1e-4)


def _ort_run(bundle: Path, x: np.ndarray) -> np.ndarray:
    """ONNX Runtime on the bundle's own FP32 graph, rebuilt from the spec with the bundle's seed."""

    from tcc.frontend import Weights, lower_spec

    m = json.loads((bundle / "manifest.json").read_text())
    om = lower_spec(
        REPO / "spec" / m["model"]["spec"],
        {"image_size": x.shape[-1]},
        Weights(seed=m["weights"]["random_seed"]),
        opset=m["opset"],
        simplify=m["simplify"],
    ).onnx
    return run(om, x)


@needs_tvm
def test_two_builds_are_byte_identical(bundles, tmp_path):
    first = bundles("spec/ddsnet.yaml", "host")
    second = _build("spec/ddsnet.yaml", "host", tmp_path / "again")
    assert (first.out / "model.so").read_bytes() == (second.out / "model.so").read_bytes()
    assert (first.out / "manifest.json").read_bytes() == (second.out / "manifest.json").read_bytes()


# ---------------------------------------------------------------------------------------------------- ARM
@needs_tvm
@pytest.mark.parametrize("target", ARM_TARGETS)
def test_arm_bundle_under_qemu_matches_host(bundles, target, tmp_path, capsys):
    result = bundles("spec/ddsnet.yaml", target)
    m, out = result.manifest, result.out
    checks = m["target_checks"]
    arm = checks["arm_vs_host"]
    assert arm["passed"] and arm["max_abs"] <= 1e-5 and "kit/bin/tcc-run" in arm["description"]
    assert m["self_check"]["result"]["passed"]
    mix = checks["instruction_mix"]
    print(
        f"\n[tvm] ddsnet {target}: arm vs host max abs {arm['max_abs']}, {mix['simd_kind']} {mix['simd']} of "
        f"{mix['instructions']} instructions; top {mix['top_simd']}"
    )
    assert mix["arch"] == tg.get_platform(target).arch and mix["simd"] > 0
    # the kit is for the board: an ARM runner and ARM libraries
    machine = {"arm-a7": 40, "aarch64": 183}[target]  # ELF e_machine: EM_ARM, EM_AARCH64
    for f in ("kit/bin/tcc-run", "kit/lib/libtvm_runtime.so", "model.so"):
        head = (out / f).read_bytes()[:20]
        assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == machine, f
    assert "qemu" in (out / "kit/README.md").read_text()
    # tcc predict --artifact runs it here (under qemu), same numbers as the build's self-check run
    x = np.random.default_rng(0).standard_normal((1, 3, ARM_SIDE, ARM_SIDE)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", "--artifact", str(out), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    got = np.array(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["logits"], np.float32)
    np.testing.assert_allclose(got, _ort_run(out, x)[0], atol=1e-5, rtol=1e-4)


@needs_tvm
def test_arm_bundle_without_qemu_names_the_package(bundles, monkeypatch, tmp_path, capsys):
    out = bundles("spec/ddsnet.yaml", "arm-a7").out
    import tcc.backends.tvm.backend as tvm_backend

    monkeypatch.setattr(tvm_backend.shutil, "which", lambda cmd: None)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, ARM_SIDE, ARM_SIDE), np.float32))
    assert main(["predict", "--artifact", str(out), "--input", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert "qemu-arm" in err and "qemu-user" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------- INT8


@needs_tvm
def test_int8_arm_bundle_is_bit_exact_with_host_and_reference(write, tmp_path):
    """INT8 goes through backends/tvm/int8/lower.py and is compiled like FP32; the ARM module under qemu must equal the
    host build bit for bit, and both the integer reference (the builder's gated self-check for exact backends)."""
    if importlib.util.find_spec("tcc.backends.tvm.int8.lower") is None:
        pytest.skip("backends/tvm/int8/lower.py not there yet")
    require_runtime("arm-a7")
    from tcc.quant.table.quantizer import scale_for_threshold

    spec = write("tiny.yaml", TINY)
    # inputs within a few float32 ulps of the quantizer's ties x = (k + 1/2) * s, for the input scale s that
    # minmax calibration will pick (max |x| = 5.36 -> s = 5.36 / 127). Equation (8) rounds x / s exactly; code
    # built with the ARM target's fast-math multiplies by a NEON reciprocal estimate instead, which puts some of
    # these on the other side of the tie (measured on DDSNet: 1 input code in 150,000 off, 0.06 at the output):
    # fast-math must not reach INT8 modules
    rng = np.random.default_rng(0)
    x = np.clip(rng.standard_normal((8, 3, 32, 32)), -5, 5).astype(np.float32)
    s = float(scale_for_threshold(np.float32(5.36)))
    ties = ((rng.integers(-120, 120, x.shape) + 0.5) * s).astype(np.float32)
    ties = np.nextafter(ties, np.where(rng.random(x.shape) < 0.5, np.inf, -np.inf).astype(np.float32))
    for _ in range(2):  # 0 to 3 ulps away from the tie, either side
        step = rng.random(x.shape) < 0.5
        ties = np.where(step, np.nextafter(ties, np.float32(np.inf) * np.sign(ties)), ties)
    x = np.where(rng.random(x.shape) < 0.7, ties, x).astype(np.float32)
    x[0, 0, 0, 0] = 5.36
    np.save(tmp_path / "calib.npy", x)
    result = build(
        spec,
        build_settings(
            "arm-a7",
            precision="int8",
            data=tmp_path / "calib.npy",
            calibration={"method": "minmax", "calib_size": 8},
            host_twin=True,
        ),
        tmp_path / "b",
    )
    m = result.manifest
    table = json.loads((result.out / "calibration.json").read_text())
    assert table["tensors"]["input"]["scale"] == s
    assert m["precision"] == "int8" and m["self_check"]["result"]["bit_exact"]
    arm = m["target_checks"]["arm_vs_host"]
    assert arm["passed"] and arm["bit_exact"] and arm["required"] == "bit-exact"
    assert "vs_onnxruntime" not in m["target_checks"] and m["target_checks"]["instruction_mix"]["simd"] > 0


@needs_tvm
@pytest.mark.parametrize("target, instruction", [("aarch64-dotprod", "sdot"), ("aarch64", "sadalp")])
def test_int8_aarch64_bundle_runs_its_dot_kernel_bit_exact(write, tmp_path, target, instruction):
    """`tcc build --precision int8` for AArch64: the self-check under qemu (aarch64-dotprod: -cpu cortex-a76, which
    has sdot) equals the integer reference bit for bit, and the module holds its dot-product kernel's instruction
    (ARMv8.2 sdot; ARMv8.0 smull / smlal / sadalp)."""
    from tcc.backends.tvm.measure.instruction_mix import instruction_mix

    require_runtime(target)
    spec = write("tiny.yaml", TINY)
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32))
    result = build(
        spec,
        build_settings(
            target, precision="int8", data=tmp_path / "calib.npy", calibration={"method": "minmax", "calib_size": 8}
        ),
        tmp_path / "b",
    )
    m = result.manifest
    assert m["self_check"]["result"]["bit_exact"] and m["self_check"]["result"]["passed"]
    assert instruction in instruction_mix(result.out / "model.so", target)["simd_by_mnemonic"]


# ---------------------------------------------------------------------------------------------------- tuning
def _require_meta_schedule() -> None:
    require_runtime("host")
    problem = tvm_tune.meta_schedule_problem()
    if problem:  # e.g. apache-tvm-ffi 0.1.15.post2: save_json segfaults; tools/setup_arm.sh pins 0.1.14.post0
        pytest.skip(problem)


def _no_tuning(monkeypatch) -> list[int]:
    """Replace the tuning pass by one that only records its budget: a build must not tune (or tune only the rest)."""
    import tvm

    budgets: list[int] = []

    def spy(target, work_dir, trials):
        budgets.append(trials)
        return tvm.transform.module_pass(lambda mod, _ctx: mod, opt_level=0, name="NoTuning")

    monkeypatch.setattr(tvm_tune, "_meta_schedule_tune", spy)
    return budgets


@needs_tvm
@pytest.mark.slow  # ~2.5 min of tuning trials (tools/slow_tests.sh)
def test_tune_writes_and_reuses_the_database(write, tmp_path, monkeypatch):
    """--tune N --tune-log DIR on the host: MetaSchedule runs (a few trials on the tiny net's conv, its heaviest
    function), the JSON database + tcc-tune.json land in DIR, tcc's own schedule is recorded next to the tuned
    candidates, the tuned bundle passes the self-check; a second build with the same or a smaller budget applies
    the database without tuning and gives the same model.so, a larger budget tunes only the difference."""
    _require_meta_schedule()
    spec = write("tiny.yaml", TINY)
    db = tmp_path / "db"
    t0 = time.perf_counter()
    first = build(spec, build_settings("host", tune=2, tune_log=db), tmp_path / "b1")
    print(f"\n[tvm] tiny --tune 2: {time.perf_counter() - t0:.1f} s")
    m = first.manifest
    assert m["self_check"]["result"]["passed"]
    assert m["runtime"]["tuning"] == {"meta_schedule_trials": 2, "database": "--tune-log"}
    assert json.loads((db / "tcc-tune.json").read_text()) == {"trials": 2}
    workloads = (db / "database_workload.json").read_text().splitlines()
    records = [json.loads(line) for line in (db / "database_tuning_record.json").read_text().splitlines()]
    assert len(workloads) == 1  # the budget went to the heaviest function only (the conv)
    assert len(records) == 1 + 2  # tcc's schedule, measured, + the 2 trials
    assert all(rec[1] for _, rec in records)  # every record measured (run_secs), none failed to build
    before = {p.name: p.read_bytes() for p in db.glob("database_*.json")}

    budgets = _no_tuning(monkeypatch)
    for n in (2, 1):
        again = build(spec, build_settings("host", tune=n, tune_log=db), tmp_path / f"again{n}")
        assert (again.out / "model.so").read_bytes() == (first.out / "model.so").read_bytes()
    assert budgets == []  # neither build tuned
    assert {p.name: p.read_bytes() for p in db.glob("database_*.json")} == before
    build(spec, build_settings("host", tune=3, tune_log=db), tmp_path / "more")
    assert budgets == [1] and json.loads((db / "tcc-tune.json").read_text()) == {"trials": 3}


@needs_tvm
def test_tune_database_defaults_to_the_cache(monkeypatch, tmp_path):
    """Without --tune-log the database is kept per target + CPU + model in tcc's cache (tune/...)."""
    from tcc.backends.tvm.backend import TvmBackend

    monkeypatch.setattr(rt, "cache_root", lambda: tmp_path)
    model = _celu_model()
    work, trials = TvmBackend()._tuning(model, EmitOptions("host", backend=TvmOptions(tune=8)))
    assert Path(work).parent == tmp_path / "tune" and Path(work).name.startswith("host-") and trials == 8
    (Path(work) / "tcc-tune.json").write_text('{"trials": 8}')
    assert TvmBackend()._tuning(model, EmitOptions("host", backend=TvmOptions(tune=8))) == (work, 0)
    assert TvmBackend()._tuning(model, EmitOptions("host", backend=TvmOptions(tune=20))) == (work, 12)
    with pytest.raises(BuildError, match="no MetaSchedule database there"):
        TvmBackend()._tuning(model, EmitOptions("host", backend=TvmOptions(tune_log=str(tmp_path / "empty"))))


@needs_tvm
@pytest.mark.parametrize("flags", [["--tune", "4"], ["--tune-log", "DB"]])
def test_tune_fails_cleanly_when_meta_schedule_cannot_run(monkeypatch, tmp_path, capsys, flags):
    """When MetaSchedule cannot run here (apache-tvm-ffi 0.1.15.post2: tvm.ir.save_json segfaults; psutil or
    cloudpickle missing), --tune / --tune-log stop the build with the reason before any work (exit 2)."""
    monkeypatch.setattr(tvm_tune, "meta_schedule_problem", lambda: "MetaSchedule tuning is not usable (simulated)")
    out = tmp_path / "out"
    out.mkdir()
    flags = [str(out / "db") if f == "DB" else f for f in flags]
    code = main(["build", str(REPO / "spec/ddsnet.yaml"), "--target", "host", *flags, "-o", str(out / "b")])
    err = capsys.readouterr().err
    assert code == 2 and "--tune/--tune-log: MetaSchedule tuning is not usable (simulated)" in err
    assert "Build without them" in err and "Traceback" not in err
    assert not list(out.iterdir())
