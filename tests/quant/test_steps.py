"""The post-training steps around the activation method (tcc.quant.table.steps): bias correction, cross-layer
equalization, weight rounding; recorded in the table, switchable, deterministic, and quantized the same way by the
integer reference and the QDQ lowering."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper, numpy_helper

from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.collect.stats import run_fp32
from tcc.quant.intgraph.layers import find_layers
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.reference import run_reference
from tcc.quant.lower.qdq import run, to_qdq
from tcc.quant.steps.bias_correction import layer_shift
from tcc.quant.steps.rounding import optimise
from tcc.quant.table.file import CalibrationTable
from tcc.quant.table.quantizer import fake_quant
from tcc.quant.table.steps import NONE, Steps, calibrated_parameters, equalized_model
from tcc.quant.table.weight_codes import decode, encode, weight_codes
from tests.helpers import REPO
from tests.helpers.onnx_util import make_model, tensors
from tests.helpers.quant_models import table_json, tiny_cnn, tiny_data, tiny_spec_and_data

FAST = {"cos_steps": 10, "cos_rounds": 1}


def _model(nodes, inits, c_in, c_out, size=4):
    return make_model(
        nodes,
        {"input": ["N", c_in, size, size]},
        {"output": ["N", c_out, size, size]},
        inits,
        name="m",
        ir_version=8,
        check=True,
    )


def _pointwise(w, b):
    """input -> 1x1 conv -> output."""
    return _model(
        [helper.make_node("Conv", ["input", "w", "b"], ["output"], name="pw", kernel_shape=[1, 1])],
        {"w": w, "b": b},
        w.shape[1],
        w.shape[0],
    )


def _table_doc(t):
    return json.dumps({k: v for k, v in table_json(t).items() if k != "timing_s"}, sort_keys=True)


# ------------------------------------------------------------------------------------------------ bias correction
def test_layer_shift_is_the_planted_mean_shift():
    """Weight codes that all land 0.3 steps above the weight, and an input whose quantized rows are offset per
    channel: the shift is exactly -(mean(A_q) . (s codes - w) + (mean(A_q) - mean(A)) . w) per output channel."""
    rng = np.random.default_rng(0)
    (layer,) = find_layers(_pointwise(np.ones((3, 4, 1, 1)), np.zeros(3)))
    s = np.array([0.01, 0.02, 0.05])
    codes = rng.integers(-100, 100, (3, 4, 1, 1))
    w = ((codes - 0.3) * s[:, None, None, None]).astype(np.float32)  # every code 0.3 steps above its weight
    rows = rng.uniform(0, 2, (500, 1, 4)).astype(np.float32)
    offset = np.array([0.1, -0.2, 0.0, 0.05], np.float32)
    q_rows = rows + offset
    got = layer_shift(layer, w, codes, s, rows, q_rows)
    w2, wq = w.reshape(3, 4).astype(np.float64), codes.reshape(3, 4) * s[:, None]
    expected = rows.astype(np.float64).mean(axis=(0, 1)) @ w2.T - q_rows.astype(np.float64).mean(axis=(0, 1)) @ wq.T
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert np.abs(expected).min() > 1e-3  # the planted shift is there to remove


def test_bias_correction_removes_a_planted_per_channel_shift():
    """A 1x1 conv whose weights all sit 0.45 steps below their code (nearest rounding moves every one up) on
    positive inputs: uncorrected, the quantized output's per-channel mean is off by many output steps; corrected,
    the mean over the calibration data (every row sampled) equals FP32's within float32 rounding."""
    rng = np.random.default_rng(3)
    c_in, c_out = 6, 4
    k = rng.integers(20, 100, (c_out, c_in)).astype(np.float64)
    k[:, 0] = 127  # the largest code is on the grid: the per-channel scale is exactly s
    s = np.array([0.004, 0.01, 0.002, 0.02])
    w = (np.where(k == 127, k, k - 0.45) * s[:, None]).reshape(c_out, c_in, 1, 1).astype(np.float32)
    model = _pointwise(w, rng.standard_normal(c_out) * 0.1)
    x = rng.uniform(0.5, 1.5, (16, c_in, 4, 4)).astype(np.float32)  # 256 rows: the sample holds every one

    def mean_error(table):
        """Per output channel: mean of (quantized input x quantized weight + the table's bias) - FP32 output."""
        inp = table.tensors["input"]
        xq = fake_quant(x, inp["scale"], 8, inp["signed"], zero_point=inp["zero_point"]).astype(np.float64)
        wq = weight_codes(table, "w", w) * table.weight_scale("w").astype(np.float64)[:, None, None, None]
        b = calibrated_parameters(model, table).get("b", numpy_helper.to_array(model.graph.initializer[1]))
        y_q = np.einsum("nchw,oc->nohw", xq, wq.reshape(c_out, c_in)) + b[None, :, None, None]
        y = run_fp32(model, x, ["output"])["output"]
        return (y_q - y).mean(axis=(0, 2, 3)), table.tensors["output"]["scale"]

    # kl: weight scales at max |w| (exactly s); the cosine search may move them and undo part of the plant
    before, step_out = mean_error(calibrate_onnx(model, x, method="kl", steps=NONE))
    assert np.abs(before).max() > 5 * step_out  # planted: several output steps
    table = calibrate_onnx(model, x, method="kl", steps=Steps(bias_correction=True))
    assert set(table.step("bias_correction")["layers"]) == {"pw"}
    after, _ = mean_error(table)
    np.testing.assert_allclose(after, 0.0, atol=1e-5 * np.abs(before).max())  # float32 bias storage


# -------------------------------------------------------------------------------------------------- equalization
def _separable(dw_gain):
    """input -> depthwise 3x3 + ReLU -> 1x1 conv -> output, depthwise channel i's weights times dw_gain[i]."""
    rng = np.random.default_rng(5)
    c = len(dw_gain)
    dw = rng.standard_normal((c, 1, 3, 3)) * np.asarray(dw_gain)[:, None, None, None]
    nodes = [
        helper.make_node(
            "Conv", ["input", "dw.w", "dw.b"], ["dw"], name="dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=c
        ),
        helper.make_node("Relu", ["dw"], ["dw.relu"], name="dw.relu"),
        helper.make_node("Conv", ["dw.relu", "pw.w", "pw.b"], ["output"], name="pw", kernel_shape=[1, 1]),
    ]
    return _model(
        nodes,
        {
            "dw.w": dw,
            "dw.b": rng.standard_normal(c) * 0.05,
            "pw.w": rng.standard_normal((5, c, 1, 1)) * 0.3,
            "pw.b": rng.standard_normal(5) * 0.05,
        },
        c,
        5,
        size=8,
    )


def _spread(r):
    return float(r.max() / r.min())


def test_equalization_keeps_the_function_and_narrows_the_channel_ranges():
    gains = [1.0, 30.0, 0.3, 4.0, 0.1, 12.0]
    model = _separable(gains)
    x = tiny_data(32, c=len(gains), size=8, seed=2)
    table = calibrate_onnx(model, x, steps=Steps(equalization=True), **FAST)
    (pair,) = table.step("equalization")["pairs"]
    assert pair["producer"] == "dw" and [c["layer"] for c in pair["consumers"]] == ["pw"]
    eq = equalized_model(model, table)
    before, after = run_fp32(model, x, ["output", "dw.relu"]), run_fp32(eq, x, ["output", "dw.relu"])
    # the same function: float32 products of rescaled weights, relative to the output's range
    np.testing.assert_allclose(after["output"], before["output"], rtol=0, atol=1e-5 * np.abs(before["output"]).max())

    def w_ranges(m):
        return (
            np.abs(numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "dw.w")))
            .reshape(len(gains), -1)
            .max(axis=1)
        )

    def act_ranges(v):
        return v.max(axis=(0, 2, 3))

    assert _spread(w_ranges(eq)) < _spread(w_ranges(model)) / 4  # the depthwise rows' ranges narrow
    assert _spread(act_ranges(after["dw.relu"])) < _spread(act_ranges(before["dw.relu"])) / 4  # so do its outputs


def test_equalization_refuses_relu6():
    """Clip(0, 6) does not commute with a factor per channel: no pair."""
    model = _separable([1.0, 20.0, 0.5])
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Clip"
    relu.input.extend(["lo", "hi"])
    model.graph.initializer.extend(tensors({"lo": np.float32(0), "hi": np.float32(6)}))
    table = calibrate_onnx(model, tiny_data(8, c=3, size=8), steps=Steps(equalization=True), **FAST)
    assert table.step("equalization")["pairs"] == []


# ------------------------------------------------------------------------------------------------------ rounding
def test_rounding_never_raises_the_layer_error_and_round_trips():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, (1, 300, 12))
    a_q = np.round(a * 20) / 20
    w = rng.standard_normal((1, 4, 12)).astype(np.float32)
    s = (np.abs(w).max(axis=2) / 127).astype(np.float32)
    codes, before, after = optimise(a, a_q, w, s, 8, False)
    assert after <= before
    assert np.abs(codes - w / s[..., None]).max() < 1  # each code is the floor or the ceiling of w / s
    stored = encode(codes[0], w[0], s[0], 0)
    np.testing.assert_array_equal(decode(stored, w[0], s[0], 0, 8, False), codes[0])


# ------------------------------------------------------------------------------------------ table and consumers
ALL = Steps(equalization=True, bias_correction=True, rounding=True, asymmetric=True)


@pytest.mark.parametrize(
    "steps", [NONE, Steps(equalization=True, bias_correction=True), ALL], ids=["none", "equalization+bias", "all"]
)
def test_steps_are_recorded_deterministic_and_shared_by_every_consumer(steps):
    """Each step is in the table (enabled or not); the same inputs give the same table; the integer reference and
    the QDQ model on ONNX Runtime (which reads the table's steps through tcc.quant.table.steps) give the same codes."""
    model, x, xe = tiny_cnn(), tiny_data(16), tiny_data(8, seed=9)
    table = calibrate_onnx(model, x, steps=steps, **FAST)
    assert [s["name"] for s in table.steps] == ["equalization", "asymmetric", "rounding", "bias_correction"]
    assert [s["enabled"] for s in table.steps] == [
        steps.equalization,
        steps.asymmetric,
        steps.rounding,
        steps.bias_correction,
    ]
    if steps.asymmetric:  # the signed tensors moved off zero point 128, and every consumer computes alike below
        moved = table.step("asymmetric")["tensors"]
        assert moved and all(table.tensors[n]["zero_point"] not in (0, 128) for n in moved)
    assert _table_doc(table) == _table_doc(calibrate_onnx(model, x, steps=steps, **FAST))
    np.testing.assert_array_equal(run_reference(model, table, xe), run(to_qdq(model, table), xe))
    if steps.rounding:
        assert table.step("rounding")["complete"]
    plan(model)  # the FP32 graph itself is untouched: the steps live in the table
    assert model == tiny_cnn()


def test_steps_improve_the_tiny_model():
    """End to end on held-out data, equalization and bias correction do not lose to none on the small test net."""
    model, x, xe = tiny_cnn(), tiny_data(32), tiny_data(16, seed=9)
    y = run_fp32(model, xe, ["output"])["output"]

    def err(steps):
        return float(np.abs(run_reference(model, calibrate_onnx(model, x, steps=steps, **FAST), xe) - y).mean())

    assert Steps() == NONE  # measured: no step helps every model and calibration set (steps.Steps)
    assert err(Steps(equalization=True, bias_correction=True)) <= err(NONE)


def test_calibrate_cli_switches_and_shows_the_steps(tmp_path, capsys):
    """`tcc calibrate --no-equalization --rounding` (bias correction left to the choice, which 8 samples are too
    few for: off), then `--equalization --bias-correction`: the table records the switches and the command prints
    one line per step; a budget with --no-rounding is a clean exit 2."""
    from tcc.cli.main import main as cli

    spec, data = tiny_spec_and_data(
        tmp_path,
        8,
        spec=(
            "kind: model\nname: tiny\ninput: {shape: [3, 16, 16]}\nlayers:\n"
            "  - {op: conv2d, out: 8, kernel: 3, padding: 1}\n  - {op: relu}\n"
            "  - {op: conv2d, out: 8, kernel: 3, padding: 1, groups: 8}\n  - {op: relu}\n"
            "  - {op: conv2d, out: 4, kernel: 1}\n"
            "  - {op: global_avgpool}\n  - {op: flatten}\n  - {op: linear, out: 3}\n"
        ),
    )
    out = tmp_path / "calib.json"
    args = ["calibrate", str(spec), "--data", str(data), "--cos-steps", "5", "--no-compare", "-o", str(out), "--force"]
    assert cli(args + ["--no-equalization", "--rounding"]) == 0
    printed = capsys.readouterr().out
    assert "step equalization: off" in printed and "step bias correction: off" in printed
    assert "step rounding: 4 weights rounded per layer" in printed
    doc = json.loads(out.read_text())
    assert [(s["name"], s["enabled"]) for s in doc["steps"]] == [
        ("equalization", False),
        ("asymmetric", False),  # left to the choice too: off with 8 samples
        ("rounding", True),
        ("bias_correction", False),
    ]
    assert cli(args + ["--equalization", "--bias-correction", "--no-rounding", "--asymmetric"]) == 0
    printed = capsys.readouterr().out
    moved = CalibrationTable(json.loads(out.read_text())).step("asymmetric")["tensors"]
    assert f"step asymmetric: {len(moved)} signed tensors on grids over their clipped range" in printed and moved
    pairs = CalibrationTable(json.loads(out.read_text())).step("equalization")["pairs"]
    assert f"step equalization: {len(pairs)} producer -> consumer pairs rescaled" in printed
    assert "step bias correction: 4 layers' biases corrected" in printed and "step rounding: off" in printed
    assert cli(args + ["--no-rounding", "--rounding-budget", "5"]) == 2
    assert "--rounding-budget needs --rounding" in capsys.readouterr().err


def test_the_spec_chooses_default_steps_and_switches_win(tmp_path, capsys):
    """A spec's `calibrate:` section sets the steps calibration runs unless a switch is given; an unknown key in it
    is a spec error at its file:line:column (exit 2). DDSNet's spec turns bias correction on (measured, README)."""
    from tcc.cli.main import main as cli
    from tcc.spec.loader import load_spec

    body = (
        "kind: model\nname: tiny\ninput: {shape: [3, 16, 16]}\nlayers:\n"
        "  - {op: conv2d, out: 8, kernel: 3, padding: 1}\n  - {op: relu}\n"
        "  - {op: conv2d, out: 4, kernel: 1}\n  - {op: global_avgpool}\n  - {op: flatten}\n"
        "  - {op: linear, out: 3}\n"
    )
    spec = tmp_path / "tiny.yaml"
    spec.write_text(body + "calibrate:\n  doc: measured\n  bias_correction: true\n")
    data = tmp_path / "calib.npy"
    np.save(data, np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32))
    out = tmp_path / "calib.json"
    args = ["calibrate", str(spec), "--data", str(data), "--cos-steps", "5", "--no-compare", "-o", str(out), "--force"]

    def enabled():
        return {s["name"]: s["enabled"] for s in json.loads(out.read_text())["steps"]}

    assert cli(args) == 0
    assert enabled() == {"equalization": False, "asymmetric": False, "rounding": False, "bias_correction": True}
    assert cli(args + ["--no-bias-correction", "--rounding"]) == 0
    assert enabled() == {"equalization": False, "asymmetric": False, "rounding": True, "bias_correction": False}
    capsys.readouterr()
    assert Steps.chosen(None).free == ("asymmetric", "bias_correction") and not Steps.chosen(None).equalization
    assert Steps.chosen({"rounding": True}, rounding=None).rounding
    assert not Steps.chosen({"rounding": True}, rounding=False, rounding_budget=3.0).rounding
    root = REPO
    assert load_spec(root / "spec" / "ddsnet.yaml").calibrate == {
        "method": "kl+cos",
        "bias_correction": True,
        "asymmetric": True,
    }

    before = out.read_bytes()
    spec.write_text(body + "calibrate:\n  bias_corection: true\n")
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert f"{spec}:12:3:" in err and "did you mean 'bias_correction'" in err and "Traceback" not in err
    assert out.read_bytes() == before  # nothing written by the failed run
