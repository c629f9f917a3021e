"""`tcc build --precision int8 | dynamic` on the ORT backend: calibration table or on-the-fly calibration, the
self-check against the integer reference, determinism, and the user mistakes (exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tcc.build import TOLERANCES, build, build_settings
from tcc.bundle import read_manifest
from tcc.cli.main import main
from tests.helpers import REPO
from tests.helpers.cli import build_from_table, calibrate, int8_build_argv, tcc
from tests.helpers.onnx_util import optimized_ops

DDSNET = REPO / "spec" / "ddsnet.yaml"
# DDSNet's structure (dense blocks of depthwise-separable layers, pre-activation transitions, concat sharing)
# at a size a test can afford
SMALL = {"block_config": [1, 2, 1, 1], "growth": 8, "stem_ch": 16, "num_classes": 4}
SMALL_ARGS = [
    "--set",
    "block_config=[1, 2, 1, 1]",
    "--set",
    "growth=8",
    "--set",
    "stem_ch=16",
    "--set",
    "num_classes=4",
]
SMALL_SPEC = [DDSNET, *SMALL_ARGS]  # the spec and its overrides, as a command line starts


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Smooth random images (blurred noise, per-sample brightness) in the spec's normalised input range."""
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(3)
    x = rng.standard_normal((24, 3, 224, 224)).astype(np.float32)
    x = uniform_filter(x, size=(1, 1, 9, 9)) * 3 + rng.uniform(-1, 1, (24, 1, 1, 1)).astype(np.float32)
    path = tmp_path_factory.mktemp("calib") / "calib.npy"
    np.save(path, x.astype(np.float32))
    return path


def _build(out, **kw):
    kw.setdefault("overrides", SMALL)
    return build(DDSNET, build_settings("ort", **kw), out)


def test_int8_build_from_data(tmp_path, data):
    r = _build(tmp_path / "b", precision="int8", data=data, calibration={"method": "kl", "calib_size": 16})
    m = r.manifest
    assert m["precision"] == "int8" and m["quantization"]["from"] == "data"
    assert m["quantization"]["calibration_samples"] == 16 and m["quantization"]["rules"] == "ort"
    assert m["quantization"]["activation_bits"] == {"8": m["quantization"]["quantized_tensors"]}
    assert "activation_method" not in m["quantization"]
    check = m["self_check"]
    assert check["result"]["passed"] and check["inputs"]["source"] == "calibration data"
    per_op = check["result"]["per_op"]
    assert per_op["max_lsb"] <= TOLERANCES["int8"]["lsb_tolerance"] and per_op["ops_checked"] >= 30
    assert check["vs_fp32"]["cosine"] > 0.99  # calibration samples: INT8 close to FP32
    model = onnx.load(str(tmp_path / "b" / "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert weights, "int8 conv weights"
    table = json.loads((tmp_path / "b" / "calibration.json").read_text())
    assert "timing_s" not in table and table["target"] == "ort"
    assert "calibration.json" in m["files"]


def test_int8_build_is_deterministic_and_equals_table_build(tmp_path, data):
    """Two --data builds are byte-identical; a build from the table `tcc calibrate` wrote gives the same model."""
    opts = {"method": "kl", "calib_size": 16}
    _build(tmp_path / "a", precision="int8", data=data, calibration=opts)
    _build(tmp_path / "b", precision="int8", data=data, calibration=opts)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    table = tmp_path / "calib.json"
    assert calibrate(SMALL_SPEC, data, table, "--calib-size", "16", "--method", "kl", "--target", "ort") == 0
    assert build_from_table(SMALL_SPEC, "ort", table, tmp_path / "c") == 0
    assert (tmp_path / "c" / "model.onnx").read_bytes() == (tmp_path / "a" / "model.onnx").read_bytes()
    m = read_manifest(tmp_path / "c")
    assert m["quantization"]["from"] == "table" and m["self_check"]["inputs"]["distribution"] == "standard normal"
    assert main(["predict", "--artifact", str(tmp_path / "c"), "--input", str(_one(data, tmp_path)), "--json"]) == 0


def _one(data: Path, tmp_path: Path) -> Path:
    p = tmp_path / "one.npy"
    np.save(p, np.load(data)[:1])
    return p


def test_dynamic_build(tmp_path):
    r = _build(tmp_path / "d", precision="dynamic")
    assert r.manifest["self_check"]["result"]["passed"]
    ops = {n.op_type for n in onnx.load(str(tmp_path / "d" / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "ConvInteger"} <= ops


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--precision", "int8"], "needs a calibration table"),
        (["--precision", "fp32", "--calib", "x.json"], "apply to --precision int8 only"),
        (["--precision", "int8", "--calib", "missing.json"], "no such calibration table"),
    ],
)
def test_int8_user_mistakes(tmp_path, capsys, argv, message):
    out = tmp_path / "o"
    assert main(["build", str(DDSNET), *SMALL_ARGS, "--target", "ort", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".*tcc*"))


def test_table_for_other_weights_or_target_is_refused(tmp_path, capsys, data):
    table = tmp_path / "calib.json"
    assert calibrate(SMALL_SPEC, data, table, "--calib-size", "8", "--method", "kl", "--target", "tvm") == 0
    capsys.readouterr()
    out = tmp_path / "o"
    # rules of another target
    assert build_from_table(SMALL_SPEC, "ort", table, out) == 2
    assert "calibrated for target rules 'tvm'" in capsys.readouterr().err
    # another model (a different spec parameter gives another spec graph)
    assert build_from_table(SMALL_SPEC, "ort", table, out, "--set", "growth=4") == 2
    err = capsys.readouterr().err
    assert "recalibrate" in err and "Traceback" not in err
    assert not out.exists()


SOFTMAX_SPEC = """kind: model
name: with_softmax
input: {shape: [3, 32, 32]}
layers:
  - {op: conv2d, out: 8, kernel: 3, padding: 1}
  - {op: relu}
  - {op: global_avgpool}
  - {op: flatten}
  - {op: linear, out: 4}
  - {id: probs, op: softmax}
"""


def _softmax_model(tmp_path: Path, data: np.ndarray | None = None) -> tuple[Path, Path]:
    """SOFTMAX_SPEC written to TMP/m.yaml and its data (default: 8 seeded normal images) to TMP/d.npy."""
    spec, path = tmp_path / "m.yaml", tmp_path / "d.npy"
    spec.write_text(SOFTMAX_SPEC)
    np.save(path, np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32) if data is None else data)
    return spec, path


@pytest.mark.parametrize("command", ["build", "calibrate"])
def test_model_without_integer_form_is_refused_before_any_work(tmp_path, capsys, command):
    """An op with no integer form under a target's rules (softmax: tcc's integer softmax is its TVM kernels'), for a
    target whose rules keep no float ops (ax620: Pulsar v1 has no per-layer precision; elsewhere it is a float
    island, tests/quant/test_placement.py): exit 2 in seconds, the node and op named, no calibration, nothing
    written."""
    import time

    spec, data = _softmax_model(tmp_path, np.zeros((4, 3, 32, 32), np.float32))
    out = tmp_path / "out"
    argv = (
        ["build", str(spec), "--target", "ax620", "--precision", "int8", "--data", str(data), "-o", str(out)]
        if command == "build"
        else ["calibrate", str(spec), "--target", "ax620", "--data", str(data), "-o", str(out)]
    )
    t0 = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "node 'probs' (op Softmax): the ax620 rules have no integer softmax" in err, err
    assert "ax620 rules keep no float ops" in err, err
    assert "Traceback" not in err
    assert "calibrating" not in err and time.perf_counter() - t0 < 30
    assert not out.exists() and not list(tmp_path.glob(".*tcc*"))


@pytest.mark.parametrize("target", ["host", "tflite-int"])
def test_calibrate_reports_an_integer_softmax(tmp_path, capsys, target):
    """`tcc calibrate` under rules whose softmax is integer (tcc's on TVM, LiteRT's on tflite-int): its quality
    report runs the table's QDQ form on ONNX Runtime, the softmax there as float between its Q / DQ pairs."""
    spec, data = _softmax_model(tmp_path)
    out = tmp_path / "t.json"
    assert (
        main(["calibrate", str(spec), "--target", target, "--data", str(data), "--method", "kl", "-o", str(out)]) == 0
    )
    assert "tcc QDQ, ORT float fake-quant" in capsys.readouterr().out
    assert json.loads(out.read_text())["target"] == ("tvm" if target == "host" else target)


def test_tflite_int_builds_softmax_as_int8_softmax(tmp_path):
    """`--target tflite-int` (int8 builtins only): the softmax head is LiteRT's int8 SOFTMAX (output at 1/256, zero
    point -128), no float island, the model bit-exact with the integer reference on LiteRT's reference kernels."""
    pytest.importorskip("ai_edge_litert")
    from tcc.backends.tflite.model import schema

    spec, data = _softmax_model(tmp_path)
    out = tmp_path / "out"
    assert (
        main(
            [
                "build",
                str(spec),
                "--target",
                "tflite-int",
                "--precision",
                "int8",
                "--data",
                str(data),
                "--method",
                "kl",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    m = read_manifest(out)
    assert m["quantization"]["integer_ops"]["softmax"] == 1 and not m["quantization"].get("float_islands")
    assert m["self_check"]["result"]["bit_exact"]
    s = schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAsModel((out / "model.tflite").read_bytes(), 0))
    codes = {getattr(s.BuiltinOperator, k): k for k in dir(s.BuiltinOperator) if not k.startswith("_")}
    ops = [codes[model.operatorCodes[o.opcodeIndex].builtinCode] for o in model.subgraphs[0].operators]
    assert "SOFTMAX" in ops and "DEQUANTIZE" not in ops[:-1]
    softmax = model.subgraphs[0].operators[ops.index("SOFTMAX")]
    y = model.subgraphs[0].tensors[softmax.outputs[0]]
    assert (list(y.quantization.scale), list(y.quantization.zeroPoint)) == ([1 / 256], [-128])


def test_opset_11_int8_is_opset_11_in_the_file(tmp_path, data):
    """Per-channel weights below opset 13: ONNX Runtime's contrib DequantizeLinear (com.microsoft, per-axis), which
    it fuses into QLinearConv all the same; the standard domain stays at the requested opset."""
    r = _build(tmp_path / "b", precision="int8", opset=11, data=data, calibration={"method": "kl", "calib_size": 8})
    assert r.manifest["opset"] == 11 and r.manifest["self_check"]["result"]["passed"]
    model = onnx.load(str(tmp_path / "b" / "model.onnx"))
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets[""] == 11 and opsets["com.microsoft"] == 1
    assert {
        n.domain
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute)
    } == {"com.microsoft"}
    onnx.checker.check_model(model, full_check=True)
    fused = set(optimized_ops(tmp_path / "b" / "model.onnx", tmp_path / "optimized.onnx"))
    assert "QLinearConv" in fused and "Conv" not in fused


def test_int8_bundle_is_byte_identical_across_processes(tmp_path, data):
    """The same `tcc build --precision int8 --data` in two processes (different hash seeds: set iteration order
    differs) gives byte-identical bundles, calibration.json and manifest.json included."""
    import os
    import subprocess
    import sys

    outs, calibration = [], ["--calib-size", "8", "--method", "kl"]
    for seed in ("3", "4"):
        out = tmp_path / f"b{seed}"
        subprocess.run(
            [sys.executable, "-m", "tcc", *int8_build_argv(SMALL_SPEC, "ort", out, "--data", data, *calibration)],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        outs.append(out)
    files = sorted(p.name for p in outs[0].iterdir())
    assert "calibration.json" in files and files == sorted(p.name for p in outs[1].iterdir())
    for f in files:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f


def test_w8a16_host_build_from_data(tmp_path, data):
    """`tcc build --target host --data ... --activation-bits 16`: int16 activations calibrated, lowered and
    self-checked bit-exact against the integer reference; the manifest says the width and the range method."""
    pytest.importorskip("tvm")
    w8a16 = ["--data", data, "--calib-size", "8", "--activation-bits", "16"]
    assert tcc(*int8_build_argv(SMALL_SPEC, "host", tmp_path / "h", *w8a16)) == 0
    q = read_manifest(tmp_path / "h")["quantization"]
    assert q["rules"] == "tvm" and q["activation_bits"] == {"16": q["quantized_tensors"]}
    assert q["activation_method"] == "minmax"
    table = json.loads((tmp_path / "h" / "calibration.json").read_text())
    assert {e["bits"] for e in table["tensors"].values() if e["kind"] == "activation"} == {16}
    assert build_from_table(SMALL_SPEC, "ort", tmp_path / "h" / "calibration.json", tmp_path / "o") == 2
    assert not (tmp_path / "o").exists()


def test_activation_bits_against_a_table_of_another_width_is_refused(tmp_path, data, capsys):
    """The width is the calibration's: --activation-bits 16 with an 8-bit table is an error (exit 2, nothing
    written), not a silent W8A8 build; a target that runs 16-bit tables only says to recalibrate at 16 bits."""
    table = tmp_path / "t8.json"
    assert calibrate(SMALL_SPEC, data, table, "--calib-size", "8", "--method", "kl", "--target", "tflite") == 0
    capsys.readouterr()
    assert build_from_table(SMALL_SPEC, "tflite", table, tmp_path / "a", "--activation-bits", "16") == 2
    err = capsys.readouterr().err
    assert "activations are 8-bit, --activation-bits 16" in err and not (tmp_path / "a").exists(), err
    assert build_from_table(SMALL_SPEC, "tflite16-i32", table, tmp_path / "b") == 2
    err = capsys.readouterr().err
    assert "runs 16-bit activations only" in err and "recalibrate with --activation-bits 16" in err, err
    assert "8-bit codes" not in err and not (tmp_path / "b").exists()
