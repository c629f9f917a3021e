"""A node that writes a graph output and computes its codes is a float island under ONNX Runtime's rules
(TargetRules.float_graph_outputs): the QDQ graph leaves graph outputs without a QuantizeLinear, so no integer kernel
forms there and ORT computes the op in float on its dequantized inputs; the integer reference must too. Requantized
to the output's calibrated range, it clipped what ORT kept (MONAI's UNet, whose last residual add was 12 LSB apart:
its build failed its self-check). A conv's float output comes from its accumulator, and a node that only moves codes
needs neither."""

from __future__ import annotations

import numpy as np
import pytest

from tcc.frontend import lower_spec
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.reference import Reference
from tcc.quant.lower.qdq import to_qdq
from tcc.quant.report.quality import run_ort
from tcc.quant.table.rules import get_rules

HEAD = """kind: model
name: ends
input: {shape: [3, 8, 8]}
layers:
  - {id: conv, op: conv2d, out: 3, kernel: 3, padding: 1}
"""
# the last layer of each model, the graph output, and its integer kind: a residual add (MONAI's UNet ends so), a
# product, a lookup
ENDS = {
    "add": ("  - {id: last, op: add, in: [conv, input]}\n", "add"),
    "mul": ("  - {id: last, op: mul, in: [conv, input]}\n", "mul"),
    "hardswish": ("  - {id: last, op: hardswish}\n", "lookup"),
}
MOVES = "  - {id: last, op: maxpool, kernel: 2, stride: 2}\n"  # moves codes: stays integer


def _setup(tmp_path, last: str, rules: str):
    spec = tmp_path / "ends.yaml"
    spec.write_text(HEAD + last)
    fp32 = lower_spec(spec, {}).onnx
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    # a clipping method on the calibration inputs, run on inputs twice as wide: outputs past the output's range
    table = calibrate_onnx(fp32, calib, method="percentile", percentile=99.0, target=rules, progress=False)
    x = (2 * rng.standard_normal((8, 3, 8, 8))).astype(np.float32)
    graph = quantize_graph(plan(fp32, rules=get_rules(rules)), table, rules=get_rules(rules))
    return fp32, table, graph, x


def _last(graph):
    (last,) = [n for n in graph.nodes if graph.outputs[0] in n.outputs]
    return last


@pytest.mark.parametrize("kind", sorted(ENDS))
def test_under_ort_rules_a_computing_output_node_is_float_as_onnx_runtime_computes_it(tmp_path, kind):
    last, integer_kind = ENDS[kind]
    fp32, table, graph, x = _setup(tmp_path, last, "ort")
    assert not _last(graph).integer and _last(graph).kind == integer_kind
    ref = Reference().run(graph, x)
    ort = run_ort(to_qdq(fp32, table), x)
    out = table.tensors[graph.outputs[0]]
    reach = max(255 - out["zero_point"], out["zero_point"]) * out["scale"]
    assert np.abs(ref).max() > reach + 4 * out["scale"]  # what the output's calibrated range would have clipped
    # ORT's conv codes may differ from the reference's by one step (it requantizes in float), nothing else: at most
    # that step through the last op (times the other operand's reach for the product)
    step = table.tensors["conv"]["scale"] * (np.abs(x).max() if kind == "mul" else 1.0)
    assert np.abs(ref - ort).max() <= 1.01 * step, (np.abs(ref - ort).max(), step)


def test_under_ort_rules_a_node_that_moves_codes_stays_integer(tmp_path):
    _, _, graph, _ = _setup(tmp_path, MOVES, "ort")
    assert _last(graph).integer and _last(graph).kind == "max_pool"


def test_under_tvm_rules_the_add_stays_integer_and_clamps_to_its_output(tmp_path):
    _, _, graph, x = _setup(tmp_path, ENDS["add"][0], "tvm")
    add = _last(graph)
    assert add.integer and add.add is not None
    ref = Reference().run(graph, x)
    out = add.qout[0]
    assert np.abs(ref).max() <= max(abs(out.lo - out.zp), abs(out.hi - out.zp)) * out.scale + 1e-6
