"""Artifact bundles: determinism, atomicity (exceptions, SIGINT/SIGTERM, SIGKILL), --force, manifest contents,
self-check failures and bad input through the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tcc.build import TOLERANCES, build, build_settings
from tcc.bundle import MANIFEST, read_manifest, sha256_file
from tcc.cli.main import main
from tcc.errors import BuildError, OutputExists, SelfCheckError

TINY = """\
kind: model
name: tiny
params:
  num_classes: 3
input:
  shape: [3, 32, 32]
  preprocess: {resize: [32, 32], mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
labels: [a, b, c]
layers:
  - {id: conv1, op: conv2d, out: 8, kernel: 3, padding: 1}
  - {id: bn1, op: batchnorm}
  - {id: relu1, op: relu}
  - {id: pool, op: maxpool, kernel: 2}
  - id: res
    residual: true
    body:
      - {id: conv, op: conv2d, out: 8, kernel: 3, padding: 1}
      - {id: bn, op: batchnorm}
      - {id: relu, op: relu}
  - {id: gap, op: global_avgpool}
  - {id: flat, op: flatten}
  - {id: fc, op: linear, out: "${num_classes}"}
"""


@pytest.fixture()
def tiny(tmp_path) -> Path:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    return spec


def leftovers(parent: Path) -> list[str]:
    """Temp or backup directories a build may have left beside its output."""
    return sorted(p.name for p in parent.iterdir() if ".tcc-" in p.name)


def files_of(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------------- determinism
def test_two_builds_are_byte_identical(tiny, tmp_path):
    a = build(tiny, build_settings("ort"), tmp_path / "a").out
    b = build(tiny, build_settings("ort"), tmp_path / "b").out
    fa, fb = files_of(a), files_of(b)
    assert set(fa) == {"manifest.json", "model.onnx", "README.md"}
    assert fa == fb


def test_fp16_and_onnx_targets_are_deterministic(tiny, tmp_path):
    for target, precision in [("onnx", None), ("ort", "fp16")]:
        a = build(tiny, build_settings(target, precision=precision), tmp_path / f"{target}-a").out
        b = build(tiny, build_settings(target, precision=precision), tmp_path / f"{target}-b").out
        assert files_of(a) == files_of(b)


# ---------------------------------------------------------------------------------------------------- manifest
def test_manifest_contents(tiny, tmp_path):
    out = build(tiny, build_settings("ort", seed=3, overrides={"num_classes": 3}), tmp_path / "b").out
    m = json.loads((out / MANIFEST).read_text())
    assert m["format"] == "tcc-bundle/1"
    assert m["target"] == "ort" and m["backend"] == "ort" and m["precision"] == "fp32" and m["opset"] == 13
    assert m["model"]["name"] == "tiny" and m["model"]["spec"] == "tiny.yaml" and len(m["model"]["spec_hash"]) == 64
    assert m["model"]["params"] == {"num_classes": 3}
    assert m["inputs"] == [{"name": "input", "shape": ["N", 3, 32, 32], "dtype": "float32"}]
    assert m["outputs"] == [{"name": "output", "shape": ["N", 3], "dtype": "float32"}]
    assert m["preprocess"]["mean"] == [0.5, 0.5, 0.5] and m["preprocess"]["resize"] == [32, 32]
    assert m["labels"] == ["a", "b", "c"]
    assert m["weights"]["random_seed"] == 3 and "random weights" in m["weights"]["warning"]
    assert set(m["libraries"]) >= {"python", "numpy", "onnx", "onnxruntime", "torch"}
    assert m["tool"]["name"] == "tcc" and m["tool"]["version"]
    assert m["passes"]
    sc = m["self_check"]
    assert sc["tolerance"]["atol"] == 1e-5 and sc["tolerance"]["float32_error_factor"] == 4.0
    assert sc["result"]["passed"] is True and sc["result"]["max_abs"] <= 1e-5 and sc["result"]["cosine"] > 0.99999
    assert sc["inputs"]["seed"] == 0 and sc["inputs"]["batch"] == 2
    # every other file is hashed, and the hashes are right
    assert set(m["files"]) == {"model.onnx", "README.md"}
    for name, entry in m["files"].items():
        assert entry["sha256"] == sha256_file(out / name) and entry["bytes"] == (out / name).stat().st_size
    readme = (out / "README.md").read_text()
    assert "WARNING" in readme and "input" in readme and "0.25" in readme
    assert read_manifest(out) == m
    # the text never holds where it was built or when
    text = (out / MANIFEST).read_text() + readme
    assert str(tmp_path) not in text and str(tiny.parent) not in text


def test_manifest_records_real_weights(tiny, tmp_path):
    import torch

    from tcc import load_spec, to_torch
    from tcc.lower.to_torch import init_weights

    module = init_weights(to_torch(load_spec(tiny).graph), 7)
    ckpt = tmp_path / "w.pt"
    torch.save(module.state_dict(), ckpt)
    m = build(tiny, build_settings("ort", weights=ckpt), tmp_path / "b").manifest
    assert m["weights"]["sha256"] == sha256_file(ckpt) and m["weights"]["file"] == "w.pt"
    assert m["weights"]["import"] == "by_name" and "random_seed" not in m["weights"]
    assert m["self_check"]["result"]["passed"]


# ---------------------------------------------------------------------------------------------------- overwrite
def test_refuses_to_overwrite_then_force_replaces(tiny, tmp_path):
    out = build(tiny, build_settings("ort", seed=0), tmp_path / "b").out
    before = files_of(out)
    with pytest.raises(OutputExists, match="already exists; pass force=True"):
        build(tiny, build_settings("ort", seed=1), out)
    assert files_of(out) == before
    build(tiny, build_settings("ort", seed=1), out, force=True)
    assert json.loads((out / MANIFEST).read_text())["weights"]["random_seed"] == 1
    assert leftovers(tmp_path) == []


def test_force_never_deletes_a_non_bundle(tiny, tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(BuildError, match="not a tcc bundle"):
        build(tiny, build_settings("ort"), precious, force=True)
    assert (precious / "thesis.tex").read_text() == "years of work"


# ---------------------------------------------------------------------------------------------------- atomicity
def test_failure_midway_leaves_no_bundle(tiny, tmp_path, monkeypatch):
    from tcc.backends.ort.backend import OrtBackend

    def broken_emit(self, model, options, out_dir):
        (Path(out_dir) / "model.onnx").write_bytes(b"half a model")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(OrtBackend, "emit", broken_emit)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build(tiny, build_settings("ort"), tmp_path / "b")
    assert not (tmp_path / "b").exists()
    assert leftovers(tmp_path) == []


def test_failed_force_rebuild_keeps_the_old_bundle(tiny, tmp_path, monkeypatch):
    from tcc.backends.ort.backend import OrtBackend

    out = build(tiny, build_settings("ort"), tmp_path / "b").out
    before = files_of(out)
    monkeypatch.setattr(OrtBackend, "emit", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        build(tiny, build_settings("ort", seed=5), out, force=True)
    assert files_of(out) == before and leftovers(tmp_path) == []


_SLOW_BUILD = """
import pathlib, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if the test runner ignores it
from tcc.backends.ort.backend import OrtBackend
emit = OrtBackend.emit
def slow_emit(self, model, options, out_dir):
    files = emit(self, model, options, out_dir)
    ready = pathlib.Path({marker!r} + ".tmp")  # renamed when written: the test never reads it half-written
    ready.write_text(str(out_dir))
    ready.replace({marker!r})
    time.sleep(120)
    return files
OrtBackend.emit = slow_emit
from tcc.cli.main import main
sys.exit(main(["build", {spec!r}, "--target", "ort", "-o", {out!r}]))
"""


class SlowBuild:
    """A `tcc build` subprocess held inside emit (the artifact written, the bundle not): a build caught midway."""

    def __init__(self, spec: Path, workdir: Path):
        workdir.mkdir()
        self.workdir, self.out, self.marker = workdir, workdir / "b", workdir / "marker"
        code = _SLOW_BUILD.format(marker=str(self.marker), spec=str(spec), out=str(self.out))
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait_midway(self) -> Path:
        deadline = time.time() + 120
        while not self.marker.exists():
            if self.proc.poll() is not None or time.time() > deadline:
                self.proc.kill()
                pytest.fail(f"the build did not reach emit: {self.proc.communicate()[1].decode()[-2000:]}")
            time.sleep(0.05)
        return Path(self.marker.read_text())


@pytest.fixture(scope="module")
def slow_builds(tmp_path_factory):
    """Three builds started at once (a torch import each takes seconds), stopped by SIGTERM, SIGINT and SIGKILL."""
    root = tmp_path_factory.mktemp("signals")
    spec = root / "tiny.yaml"
    spec.write_text(TINY)
    builds = {sig: SlowBuild(spec, root / sig.name) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL)}
    yield spec, builds
    for b in builds.values():
        if b.proc.poll() is None:
            b.proc.kill()
            b.proc.communicate()


@pytest.mark.parametrize("sig, rc", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130)])
def test_signal_midway_leaves_no_bundle(slow_builds, sig, rc):
    _, builds = slow_builds
    b = builds[sig]
    tmp = b.wait_midway()
    assert tmp.is_dir() and (tmp / "model.onnx").is_file()  # midway: the artifact is written, the bundle is not
    b.proc.send_signal(sig)
    _, err = b.proc.communicate(timeout=60)
    assert b.proc.returncode == rc, err.decode()
    assert "Traceback" not in err.decode()
    assert not b.out.exists()
    assert leftovers(b.workdir) == []


def test_sigkill_leaves_a_temp_dir_that_the_next_build_removes(slow_builds):
    """SIGKILL cannot be caught: OUT is still absent, but the hidden temp dir stays until the next build into the
    same directory, which removes temp dirs whose process is gone."""
    spec, builds = slow_builds
    b = builds[signal.SIGKILL]
    b.wait_midway()
    b.proc.kill()
    b.proc.communicate(timeout=60)
    assert not b.out.exists()
    assert len(leftovers(b.workdir)) == 1
    build(spec, build_settings("ort"), b.out)
    assert b.out.is_dir() and leftovers(b.workdir) == []


# ---------------------------------------------------------------------------------------------------- self-check
def test_corrupted_weight_fails_the_self_check(tiny, tmp_path, monkeypatch):
    from onnx import numpy_helper

    from tcc.backends.ort.backend import OrtBackend

    emit = OrtBackend.emit

    def corrupt(self, model, options, out_dir):
        w = next(t for t in model.graph.initializer if t.name.startswith("conv1") and len(t.dims) == 4)
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) + np.float32(0.01), w.name))
        return emit(self, model, options, out_dir)

    monkeypatch.setattr(OrtBackend, "emit", corrupt)
    with pytest.raises(SelfCheckError) as e:
        build(tiny, build_settings("ort"), tmp_path / "b")
    msg = str(e.value)
    assert "self-check failed" in msg and "max_abs" in msg and "atol" in msg and "no bundle" in msg
    assert not (tmp_path / "b").exists() and leftovers(tmp_path) == []


def test_self_check_numbers_within_fp32_tolerance(tiny, tmp_path):
    """FP32: against the module in float64, within the scale-aware atol or k times PyTorch's own float32 error."""
    r = build(tiny, build_settings("onnx"), tmp_path / "b").manifest["self_check"]["result"]
    tol = TOLERANCES["fp32"]
    assert r["passed"] and r["max_abs_vs_float64"] <= r["bound"]
    assert r["bound"] == pytest.approx(
        max(tol["atol"] * max(1.0, r["output_scale"]), tol["float32_error_factor"] * r["pytorch_float32_error"]),
        rel=1e-3,
    )


# ---------------------------------------------------------------------------------------------------- CLI
def run_cli(args, capsys):
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_build_and_predict_artifact(tiny, tmp_path, capsys):
    out = tmp_path / "b"
    rc, stdout, err = run_cli(["build", tiny, "--target", "ort", "-o", out], capsys)
    assert rc == 0 and "self-check" in stdout and "WARNING" in err and "random weights" in err
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rc, a, _ = run_cli(["predict", "--artifact", out, "--input", tmp_path / "x.npy", "--json"], capsys)
    rc2, b, _ = run_cli(["predict", tiny, "--input", tmp_path / "x.npy", "--json"], capsys)
    assert rc == rc2 == 0
    a, b = json.loads(a), json.loads(b)
    assert a["class"] == b["class"] and a["label"] == b["label"]
    np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--target", "coreml"], "unknown target 'coreml'; known targets:"),
        (["--target", "onnx", "--precision", "int8"], "does not offer precision int8"),
        (["--target", "ort", "--precision", "int8"], "needs a calibration table (--calib"),
        (["--target", "onnx", "--precision", "fp16"], "does not offer precision fp16"),
        (["--target", "ort", "--opset", "5"], "opset 5"),
        (["--target", "ort", "--weights", "missing.pth"], "no such weights file"),
    ],
)
def test_cli_bad_build_input(tiny, tmp_path, capsys, args, needle):
    out = tmp_path / "b"
    rc, _, err = run_cli(["build", tiny, "-o", out, *args], capsys)
    assert rc == 2 and needle in err and "Traceback" not in err
    assert not out.exists() and leftovers(tmp_path) == []


def test_cli_weight_mismatch_names_the_node(tiny, tmp_path, capsys):
    import torch

    from tcc import load_spec, to_torch

    state = to_torch(load_spec(tiny, {"num_classes": 5}).graph).state_dict()
    torch.save(state, tmp_path / "w.pt")
    rc, _, err = run_cli(
        ["build", tiny, "--target", "ort", "-o", tmp_path / "b", "--weights", tmp_path / "w.pt"], capsys
    )
    assert rc == 2 and "'fc'" in err and "[3, 8]" in err and "[5, 8]" in err
    assert not (tmp_path / "b").exists() and leftovers(tmp_path) == []


def test_cli_predict_artifact_bad_input(tiny, tmp_path, capsys):
    out = build(tiny, build_settings("ort"), tmp_path / "b").out
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    rc, _, err = run_cli(["predict", "--artifact", out, "--image", bad], capsys)
    assert rc == 2 and "bad.png" in err and "cannot read image" in err
    rc, _, err = run_cli(["predict", "--artifact", tmp_path / "nope", "--image", bad], capsys)
    assert rc == 2 and "no such bundle" in err
    rc, _, err = run_cli(["predict", "--artifact", out, "--weights", "w.pt", "--image", bad], capsys)
    assert rc == 2 and "--weights" in err
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    rc, _, err = run_cli(["predict", "--artifact", out, "--input", tmp_path / "x.npy"], capsys)
    assert rc == 2 and "expected [N, 3, 32, 32]" in err
    with open(out / "model.onnx", "ab") as f:  # tampered artifact
        f.write(b"\0")
    rc, _, err = run_cli(["predict", "--artifact", out, "--input", tmp_path / "x.npy"], capsys)
    assert rc == 2 and "model.onnx" in err and "sha256" in err


def test_cli_refuses_existing_out(tiny, tmp_path, capsys):
    out = build(tiny, build_settings("ort"), tmp_path / "b").out
    rc, _, err = run_cli(["build", tiny, "--target", "ort", "-o", out], capsys)
    assert rc == 2 and "--force" in err
    rc, _, err = run_cli(["build", tiny, "--target", "ort", "-o", out, "--force", "--seed", "2"], capsys)
    assert rc == 0 and read_manifest(out)["weights"]["random_seed"] == 2
