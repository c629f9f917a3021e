"""tools/quality_compare.py, the INT8 comparison against ONNX Runtime's quantize_static (and NNCF when installed), on
one DDSNet checkpoint with ORT's quantizer only, on few crops (the full table: README's INT8 section)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import FIXTURES, load_tool
from tests.helpers.onnx_util import make_model


@pytest.mark.slow  # a rival-comparison tool (tools/), run with tools/slow_tests.sh; its checks run in CI's own tests
@pytest.mark.skipif(not (FIXTURES / "PCam_DDS_0.0064.pth").is_file(), reason="../shared/fixtures/ddsnet absent")
def test_compare_one_checkpoint_against_ort(tmp_path, capsys):
    out = tmp_path / "q.json"
    argv = [
        "--checkpoints",
        "PCam",
        "--tcc",
        "none,rounding",
        "--rivals",
        "MinMax",
        "--calib",
        "8",
        "--held-out",
        "4",
        "--cos-steps",
        "10",
        "-o",
        str(out),
    ]
    assert load_tool("quality_compare").main(argv) == 0
    doc = json.loads(out.read_text())
    pcam = doc["checkpoints"]["PCam"]
    assert (pcam["calibration_crops"], pcam["held_out_crops"]) == (8, 4)
    rows = pcam["results"]
    assert list(rows) == ["tcc none", "tcc rounding", "onnxruntime MinMax"]
    for r in rows.values():
        assert 0.9 < r["cos_mean"] <= 1.0 and r["cos_min"] <= r["cos_mean"] and r["top1"] in (0, 0.25, 0.5, 0.75, 1)
    printed = capsys.readouterr().out
    assert "| tcc rounding |" in printed and "| onnxruntime MinMax |" in printed
    # DDSNet's convs all run on integers on ORT, tcc's and ONNX Runtime's alike (only the head is a float output)
    for r in rows.values():
        done, convs = r["integer_convs"]
        assert convs > 10 and done >= convs - 1 and f"({done}/{convs} convs on integers)" in printed


def test_bad_names_are_refused(capsys):
    assert load_tool("quality_compare").main(["--checkpoints", "GC", "--rivals", "Histogram"]) == 2
    assert "unknown rival Histogram" in capsys.readouterr().err


def test_widen_activations_moves_activations_to_a_finer_int16_grid():
    """The '+a16' what-if: every activation Q/DQ pair becomes int16 over the same range (scale / 256), weights stay
    8-bit, and the model's output gets closer to float (here the error falls ~256x: one conv, activations only)."""
    import numpy as np
    from onnx import helper, numpy_helper

    from tcc.quant.lower.qdq import run

    rng = np.random.default_rng(0)
    w = rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8)
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.full(4, 0.01, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]),
    ]
    int8 = make_model(nodes, {"x": [1, 3, 8, 8]}, {"y": None}, inits)
    wide = load_tool("quality_compare").widen_activations(int8)
    assert max(o.version for o in wide.opset_import if o.domain in ("", "ai.onnx")) == 21
    init = {i.name: numpy_helper.to_array(i) for i in wide.graph.initializer}
    q, dq_x, dq_w = wide.graph.node[:3]
    assert q.input[1:] == dq_x.input[1:] and dq_w.input[1:] == ["ws", "wz"]  # the weights' DQ untouched
    assert init[q.input[2]].dtype == np.int16 and int(init[q.input[2]]) == 0  # u8 zero point 128 -> 0
    assert float(init[q.input[1]]) == np.float32(0.02 / 256)
    x = rng.uniform(-2.5, 2.5, (1, 3, 8, 8)).astype(np.float32)
    exact = make_model(nodes[2:], {"x": [1, 3, 8, 8]}, {"y": None}, inits[2:])
    exact.graph.node[1].input[0] = "x"
    ref = run(exact, x, optimize=False)
    err8, err16 = (float(np.abs(run(m, x, optimize=False) - ref).max()) for m in (int8, wide))
    assert err16 < err8 / 100


@pytest.mark.skipif(not (FIXTURES / "GC_DDS_0.0064.pth").is_file(), reason="../shared/fixtures/ddsnet absent")
@pytest.mark.parametrize("option", ["--rivals-python", "--nncf-python"])
def test_a_missing_rivals_interpreter_is_refused_before_any_work(tmp_path, capsys, option):
    out = tmp_path / "q.json"
    argv = ["--checkpoints", "GC", "--tcc", "none", "--rivals", "aimet-minmax", option, str(tmp_path / "nope")]
    assert load_tool("quality_compare").main([*argv, "-o", str(out)]) == 2
    assert "--rivals-python" in capsys.readouterr().err and not out.exists()
