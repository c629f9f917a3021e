"""Asymmetric activation grids (tcc.quant.steps.asymmetric): under ONNX Runtime's rules a signed tensor's 255 steps
span its clipped range with the zero point where 0 falls, not [-T, T] around 128; a hard-swish output (never below
-0.375) gets about twice the resolution and the INT8 output comes closer to FP32 on inputs calibration never saw;
ORT's kernels compute it as the integer reference does; other rules keep their grids, and asking them for it is a
clean exit 2."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.collect.stats import per_sample_cosine
from tcc.quant.intgraph.reference import run_reference
from tcc.quant.lower.qdq import to_qdq
from tcc.quant.report.quality import run_ort
from tcc.quant.table.steps import Steps
from tests.helpers.onnx_util import make_model
from tests.helpers.quant_models import tiny_spec_and_data

FAST = {"cos_steps": 10, "cos_rounds": 1}


def _hard_swish_model_and_data():
    """Two 3 x 3 convs around a hard-swish (as timm's LCNet and MobileNetV3 have them), pooled into 4 logits; the
    convs' weights seeded, the input natural-looking (smooth, positive-biased) so that the outputs depend on it."""
    rng = np.random.default_rng(3)
    w1 = (rng.standard_normal((8, 3, 3, 3)) / 3).astype(np.float32)
    w2 = (rng.standard_normal((4, 8, 3, 3)) / 6).astype(np.float32)
    model = make_model(
        [
            helper.make_node("Conv", ["input", "w1", "b1"], ["c"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
            helper.make_node("HardSwish", ["c"], ["h"], name="act"),
            helper.make_node("Conv", ["h", "w2", "b2"], ["d"], name="conv2", kernel_shape=[3, 3], pads=[1] * 4),
            helper.make_node("GlobalAveragePool", ["d"], ["p"], name="pool"),
            helper.make_node("Flatten", ["p"], ["output"], name="flatten"),
        ],
        {"input": ["N", 3, 12, 12]},
        {"output": ["N", 4]},
        {"w1": w1, "b1": np.full(8, 0.5, np.float32), "w2": w2, "b2": np.zeros(4, np.float32)},
        name="m",
        opset=14,
        ir_version=8,
        check=True,
    )
    base = rng.standard_normal((48, 3, 3, 3)).astype(np.float32)
    x = np.repeat(np.repeat(base, 4, axis=2), 4, axis=3) + 0.3 * rng.standard_normal((48, 3, 12, 12))
    return model, x.astype(np.float32)


def test_a_hard_swish_output_gets_its_range_and_the_output_comes_closer():
    model, x = _hard_swish_model_and_data()
    calib, held_out = x[:32], x[32:]
    plain = calibrate_onnx(model, calib, method="minmax", target="ort", **FAST)
    table = calibrate_onnx(model, calib, method="minmax", target="ort", steps=Steps(asymmetric=True), **FAST)
    h0, h = plain.tensors["h"], table.tensors["h"]
    assert (h0["zero_point"], h0["signed"]) == (128, False)  # signed: u8 around 128, [-T, T]
    assert h["min"] == pytest.approx(-0.375, abs=0.01) and not h["symmetric"]
    assert h["scale"] == pytest.approx((h["max"] - h["min"]) / 255, rel=1e-6)  # 255 steps over [min, max]
    assert h["zero_point"] == round(-h["min"] / h["scale"]) and 0 < h["zero_point"] < 16
    assert h["scale"] < 0.55 * h0["scale"]  # about twice the resolution
    assert table.step("asymmetric")["enabled"] and "h" in table.step("asymmetric")["tensors"]
    assert [r for r in plain.steps if r["name"] == "asymmetric"] == [
        {"name": "asymmetric", "enabled": False, "tensors": []}
    ]
    fp32 = run_ort(model, held_out)
    q_plain, q = run_ort(to_qdq(model, plain), held_out), run_ort(to_qdq(model, table), held_out)
    np.testing.assert_array_equal(q, run_reference(model, table, held_out))  # ORT's kernels: the reference's codes
    gain = per_sample_cosine(fp32, q) - per_sample_cosine(fp32, q_plain)
    assert gain.mean() > 0 and (gain > 0).mean() > 0.5, gain  # closer on most held-out samples, and on average


def test_other_rules_keep_their_grids_and_refuse_the_switch(tmp_path, capsys):
    """The spec's `calibrate:` section speaks for every target: under the TVM rules asymmetric: true is no step at
    all (their kernels take zero point 0); the switch given for them is refused before any work."""
    from tcc.cli.main import main as cli

    model, x = _hard_swish_model_and_data()
    tvm = calibrate_onnx(model, x[:32], method="minmax", target="tvm", steps=Steps(asymmetric=True), **FAST)
    assert "asymmetric" not in [r["name"] for r in tvm.steps]
    assert tvm.tensors["h"]["zero_point"] == 0 and tvm.tensors["h"]["signed"]
    spec, data = tiny_spec_and_data(tmp_path, 8)
    out = tmp_path / "calib.json"
    args = ["calibrate", str(spec), "--data", str(data), "--no-compare", "-o", str(out), "--asymmetric"]
    assert cli([*args, "--target", "arm-a7"]) == 2
    err = capsys.readouterr().err
    assert "--asymmetric: --target arm-a7 (rules 'tvm') keep signed activations on symmetric grids" in err
    assert "for rules that take any u8 zero point: ort" in err and "Traceback" not in err and not out.exists()
    assert cli([*args, "--target", "ort"]) == 0
