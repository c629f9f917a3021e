"""Activation widths in a table (tcc.quant.intgraph.widths): widening 8-bit tensors to 16 bits, scale groups whole,
against a W8A16 calibration of the same statistics."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tcc.errors import CalibrationError
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.match import plan, quantized_form
from tcc.quant.intgraph.reference import run_reference
from tcc.quant.intgraph.widths import group_members, widened
from tcc.quant.report.quality import run_ort
from tcc.quant.table.file import load_table
from tests.helpers.quant_models import tiny_data, wide_fan_in_model


@pytest.fixture(scope="module")
def tables(model, data):
    """kl tables of tiny_cnn under the tvm rules at 8 and at 16 bits, and its integer graph."""
    t8 = calibrate_onnx(model, data, method="kl", target="tvm", progress=False)
    t16 = calibrate_onnx(model, data, method="kl", target="tvm", progress=False, activation_bits=16)
    return t8, t16, plan(quantized_form(model, "tvm"), rules="tvm")


def _acts(table):
    return [k for k, e in table.tensors.items() if e["kind"] == "activation"]


def test_widening_a_tensor_widens_its_scale_group_and_nothing_else(tables):
    """The concat's inputs and output share one scale: widening one member widens all, on one 16-bit grid over the
    group's widest range seen; every other entry stays as it was, and the table given is not changed."""
    t8, _, graph = tables
    group = group_members(t8, "pw")
    assert {"pool", "pw", "cat"} <= set(group)
    before = {k: dict(e) for k, e in t8.tensors.items()}
    w = widened(t8, graph, {"pw"})
    assert {k: dict(e) for k, e in t8.tensors.items()} == before  # a copy
    amax = max(max(abs(t8.tensors[m]["min"]), abs(t8.tensors[m]["max"])) for m in group)
    for m in group:
        e = w.tensors[m]
        assert (e["bits"], e["signed"], e["zero_point"], e["widened"]) == (16, True, 0, True)
        assert e["scale"] == pytest.approx(amax / 32767, rel=1e-6)
    assert {k: e for k, e in w.tensors.items() if k not in group} == {k: e for k, e in before.items() if k not in group}
    assert widened(t8, graph, set()) is t8


def test_every_activation_widened_is_the_w8a16_calibration(tables, tmp_path):
    """Widening every activation of the 8-bit kl table gives the grids a 16-bit calibration of the same data
    chooses (minmax over the same statistics, groups, the accumulators' headroom), and the table stays valid."""
    t8, t16, graph = tables
    w = widened(t8, graph, set(_acts(t8)))
    for name in _acts(t16):
        got, want = w.tensors[name], t16.tensors[name]
        assert (got["bits"], got["signed"], got["zero_point"]) == (want["bits"], want["signed"], want["zero_point"])
        assert got["scale"] == pytest.approx(want["scale"], rel=1e-6), name
    assert load_table(w.save(tmp_path / "wide.json")).tensors == w.tensors  # the schema takes it


def test_a_widened_group_is_closer_to_fp32(model, tables):
    """The integer reference's dequantized concat output against FP32's: with its scale group widened the error is
    the 8-bit rounding of the tensors upstream only (the input's, the depthwise conv's), well below the 8-bit
    table's."""
    t8, _, graph = tables
    x = np.random.default_rng(3).standard_normal((4, 3, 16, 16)).astype(np.float32)
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output[0].name = "cat"  # ONNX Runtime runs the graph up to the concat
    want = run_ort(exposed, x)
    errors = {}
    for bits, table in ((8, t8), (16, widened(t8, graph, {"pw"}))):
        _, codes = run_reference(model, table, x, return_all=True)
        e = table.tensors["cat"]
        got = (codes["cat"].q.astype(np.float64) - e["zero_point"]) * e["scale"]
        errors[bits] = float(np.sqrt(np.mean((got - want) ** 2)))
    assert errors[16] < 0.5 * errors[8], errors


def test_a_tensor_no_wide_grid_fits_stays_8_bit():
    """A reader summing 74,000 products overflows int32 on any grid of 9 to 16 bits: widening its input keeps the
    8-bit entries (no refusal), and the other tensors asked for are still widened. A W8A16 calibration of the
    same model is refused, naming the layer."""
    model = wide_fan_in_model()
    x = tiny_data(8, size=34)
    t8 = calibrate_onnx(model, x, method="minmax", target="tvm", progress=False)
    graph = plan(quantized_form(model, "tvm"), rules="tvm")
    w = widened(t8, graph, {"input", "c1", "r2"})
    assert w.tensors["c1"] == t8.tensors["c1"]
    assert w.tensors["input"]["widened"] and w.tensors["r2"]["widened"]
    assert widened(t8, graph, {"c1"}) == t8
    with pytest.raises(CalibrationError, match="layer 'big'.*accumulator can overflow"):
        calibrate_onnx(model, x, method="minmax", target="tvm", progress=False, activation_bits=16)
