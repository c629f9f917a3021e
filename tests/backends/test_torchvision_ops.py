"""Every backend takes the ops of the torchvision families: tests/specs/torchvision_ops.yaml (every one of them, at
3x9x11) built and self-checked (the build's own gate) FP32 on ONNX Runtime (fp32 at opsets 11 to 21, fp16), TVM
host (the Relax ONNX frontend on each ONNX form: decomposed, LayerNormalization, Gelu), TFLite (fp32, fp16,
dynamic), and arm-a7 / aarch64 under qemu; INT8 on ort (every op within 1 LSB of the integer reference), host
(bit-exact) and tflite (bit-exact on LiteRT's reference kernels; the ops its int8 kernels cannot take are refused by
name, and dropped for the build), the layer norms (no integer form) as float islands; refused before calibration,
naming the node, where the rules keep no float ops; the AX op checker's per-chip verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from tcc.backends.ax.ops import check_model
from tcc.build import build, build_settings
from tcc.cli.main import main
from tcc.frontend import lower_spec
from tcc.quant.intgraph.match import UnsupportedOps, plan
from tests.helpers import REPO

SPEC = REPO / "tests" / "specs" / "torchvision_ops.yaml"
CALIB = {"method": "minmax", "calib_size": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("calib") / "calib.npy"
    np.save(path, np.random.default_rng(2).standard_normal((8, 3, 9, 11)).astype(np.float32) * 2)
    return path


def _passed(result) -> dict:
    check = result.manifest["self_check"]
    assert check["result"]["passed"], check
    return check


@pytest.mark.parametrize(
    "target, precision, opset",
    [
        ("ort", "fp32", 11),
        ("ort", "fp32", 13),
        ("ort", "fp32", 17),
        ("ort", "fp32", 21),
        ("ort", "fp16", 13),
        ("ort", "fp16", 21),
        ("tflite", "fp32", 13),
        ("tflite", "fp32", 21),
        ("tflite", "fp16", 17),
        ("tflite", "dynamic", 13),
        ("host", "fp32", 13),
        ("host", "fp32", 17),
        ("host", "fp32", 21),
    ],
)
def test_float_builds(tmp_path, target, precision, opset):
    _passed(build(SPEC, build_settings(target, precision=precision, opset=opset), tmp_path / "b"))


@pytest.mark.parametrize("target, opset", [("arm-a7", 13), ("aarch64", 17)])
def test_arm_builds_under_qemu(tmp_path, target, opset):
    """The kit's own runner under qemu, against PyTorch (the build's self-check)."""
    pytest.importorskip("tvm")
    result = build(SPEC, build_settings(target, opset=opset), tmp_path / "b")
    check = _passed(result)
    assert check["result"]["cosine"] > 0.9999


@pytest.mark.parametrize("target", ["ort", "host", "tflite"])
def test_int8_builds(tmp_path, data, target):
    """Every new op in its integer form; the two layer norms (no integer form) as float islands, recorded in the
    manifest with their reason."""
    overrides = {"tflite_int8": True} if target == "tflite" else {}
    result = build(
        SPEC,
        build_settings(target, precision="int8", data=data, calibration=CALIB, overrides=overrides),
        tmp_path / "b",
    )
    check = _passed(result)
    q = result.manifest["quantization"]
    kinds = q["integer_ops"]
    assert kinds["channel_scale"] == 3 and kinds["global_max_pool"] == 1  # pr, ls, pr1 (layer_scale: folded)
    assert kinds["lookup"] == (3 if target == "tflite" else 5)  # 2 GELUs, leaky ReLU (+ hard-sigmoid, ELU)
    assert [(i["node"], i["kind"], i["reason"]) for i in q["float_islands"]] == [
        ("block.norm", "layernorm", "required"),
        ("ln_f", "layernorm", "required"),
    ]
    if target == "ort":
        assert check["result"]["per_op"]["max_lsb"] <= 1.0
    else:
        assert check["result"]["bit_exact"]
    assert check["vs_fp32"]["cosine"] > 0.99


def test_int8_refuses_layernorm_where_the_rules_keep_no_float_ops(tmp_path, data, capsys):
    """No integer form for a layer norm and no float fallback under Pulsar v1's rules (its documented config has
    no per-layer precision): refused right after lowering, naming each layer norm, nothing calibrated or written."""
    with pytest.raises(UnsupportedOps) as e:
        plan(lower_spec(SPEC).onnx, rules="ax620")
    text = str(e.value)
    assert "node 'block.norm' (op LayerNormalization): no integer form" in text and "node 'ln_f'" in text
    assert "the ax620 rules keep no float ops" in text
    out = tmp_path / "calib.json"
    rc = main(["calibrate", str(SPEC), "--target", "ax620", "--data", str(data), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "node 'block.norm'" in err and "Traceback" not in err and not out.exists()


def test_tflite_int8_names_the_ops_it_cannot_compute_exactly(tmp_path, data):
    with pytest.raises(UnsupportedOps) as e:
        build(SPEC, build_settings("tflite", precision="int8", data=data, calibration=CALIB), tmp_path / "b")
    text = str(e.value)
    assert "node 'hs' (op HardSigmoid)" in text and "node 'el' (op Elu): ELU with alpha 0.7" in text


def test_ax_op_lists():
    """Pulsar2 (AX620E, AX650) takes every op, PReLU's slope rewritten to its [1, C, 1, 1] exactly; Pulsar v1
    (AX620) has no Erf, Elu, Sqrt or LayerNormalization in its list: those nodes are named."""
    for opset, missing in (
        (13, {"g/erf", "block.norm/std", "el", "ln_f/std"}),
        (17, {"g/erf", "block.norm/normalize", "el", "ln_f"}),
    ):
        m = lower_spec(SPEC, opset=opset).onnx
        for chip in ("ax620e", "ax650"):
            result = check_model(m, chip)
            assert not result.unsupported, [f.line() for f in result.unsupported]
            assert {r["node"] for r in result.rewrites} == {"pr", "pr1"}
        result = check_model(m, "ax620")
        assert {f.node for f in result.unsupported} >= missing, [f.line() for f in result.unsupported]
