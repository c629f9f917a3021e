"""An add that writes a graph output runs in float under ONNX Runtime's rules (TargetRules.float_add_outputs): the QDQ
graph leaves graph outputs without a QuantizeLinear, so ORT adds the dequantized inputs in float, and the integer
reference must too. Requantized to the output's calibrated range, it clipped sums that ORT kept (MONAI's UNet: 12 LSB
apart, and its build failed its self-check)."""

from __future__ import annotations

import numpy as np

from tcc.frontend import lower_spec
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.reference import Reference
from tcc.quant.lower.qdq import to_qdq
from tcc.quant.report.quality import run_ort
from tcc.quant.table.rules import get_rules

# a residual unit's last add, the graph output (MONAI's UNet ends so)
SPEC = """kind: model
name: residual_out
input: {shape: [3, 8, 8]}
layers:
  - {id: conv, op: conv2d, out: 3, kernel: 3, padding: 1}
  - {id: sum, op: add, in: [conv, input]}
"""


def _setup(tmp_path, rules: str):
    spec = tmp_path / "residual_out.yaml"
    spec.write_text(SPEC)
    fp32 = lower_spec(spec, {}).onnx
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    # a clipping method on the calibration crops, judged on inputs twice as wide: sums past the output's range
    table = calibrate_onnx(fp32, calib, method="percentile", percentile=99.0, target=rules, progress=False)
    x = (2 * rng.standard_normal((8, 3, 8, 8))).astype(np.float32)
    graph = quantize_graph(plan(fp32, rules=get_rules(rules)), table, rules=get_rules(rules))
    return fp32, table, graph, x


def test_under_ort_rules_the_reference_adds_in_float_as_onnx_runtime_does(tmp_path):
    fp32, table, graph, x = _setup(tmp_path, "ort")
    (add,) = [n for n in graph.nodes if n.kind == "add"]
    assert add.qout == (None,) and add.add is None
    ref = Reference().run(graph, x)
    ort = run_ort(to_qdq(fp32, table), x)
    out = table.tensors[graph.outputs[0]]
    reach = max(255 - out["zero_point"], out["zero_point"]) * out["scale"]
    assert np.abs(ref).max() > reach + 4 * out["scale"]  # sums the output's calibrated range would have clipped
    # ORT's conv codes may differ from the reference's by one step (it requantizes in float), nothing else
    step = table.tensors["conv"]["scale"]
    assert np.abs(ref - ort).max() <= 1.01 * step, (np.abs(ref - ort).max(), step)


def test_under_tvm_rules_the_add_stays_integer_and_clamps_to_its_output(tmp_path):
    fp32, table, graph, x = _setup(tmp_path, "tvm")
    (add,) = [n for n in graph.nodes if n.kind == "add"]
    assert add.qout[0] is not None and add.add is not None
    ref = Reference().run(graph, x)
    out = add.qout[0]
    assert np.abs(ref).max() <= max(abs(out.lo - out.zp), abs(out.hi - out.zp)) * out.scale + 1e-6
