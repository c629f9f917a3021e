"""A float division's operands are never 8-bit codes (TargetRules.float_divisors): the nodes that make them, back to
the one that computes them, run in float beside the division's island, where the target's islands are generic."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from onnx import numpy_helper

from tcc.frontend import lower_spec
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.collect.stats import per_sample_cosine
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.reference import Reference
from tcc.quant.report.quality import run_ort
from tcc.quant.table.rules import get_rules

# EfficientViT's linear attention in small: a weighted sum divided by the sum of its weights plus an eps; the
# weights are sigmoids, many of them near zero, so the divisor is often far below one 8-bit step of its range
SPEC = """kind: model
name: normalized
input: {shape: [3, 8, 8]}
layers:
  - {id: logits, op: conv2d, out: 4, kernel: 1}
  - {id: gate, op: sigmoid}
  - {id: values, op: conv2d, out: 4, kernel: 1, in: input}
  - {id: weighted, op: mul, in: [gate, values]}
  - {id: eps, op: param, shape: [4, 8, 8]}
  - {id: total, op: add, in: [gate, eps]}
  - {id: mean, op: div, in: [weighted, total]}
"""


def _model(tmp_path):
    spec = tmp_path / "normalized.yaml"
    spec.write_text(SPEC)
    fp32 = lower_spec(spec, {}).onnx
    for t in fp32.graph.initializer:  # the eps of a sum's guard: 1e-6
        if t.name == "eps.weight":
            t.CopyFrom(numpy_helper.from_array(np.full(tuple(t.dims), 1e-6, np.float32), t.name))
            return fp32
    raise AssertionError("no eps.weight")


def test_the_operands_of_a_division_are_computed_in_float(tmp_path):
    fp32 = _model(tmp_path)
    islands = {r: {n.name: n.kind for n in plan(fp32, rules=r).islands} for r in ("ort", "tvm", "tflite")}
    for rules in ("ort", "tvm"):  # the gate's lookup, the dividend's product, the sum with its eps
        assert islands[rules] == {"gate": "lookup", "weighted": "mul", "total": "add", "mean": "div"}, islands[rules]
    assert set(islands["tflite"].values()) == {"div"}  # TFLite's islands are the float-only kinds' builtins
    # the eps itself stays an integer constant: an island of its own would have no batch to broadcast over
    assert all(n.integer for n in plan(fp32, rules="ort").nodes if n.kind == "broadcast")
    assert plan(fp32, rules="ort").placed == frozenset()  # the rule's, not the placement's


def test_a_division_of_float_operands_keeps_what_8_bit_codes_lose(tmp_path):
    """The integer reference of the same table with and without the rule (each calibrated and planned under its
    rules): 8-bit codes of the divisor round the smallest sums to 0, and the quotient is no number at all."""
    fp32 = _model(tmp_path)
    x = (np.random.default_rng(0).standard_normal((16, 3, 8, 8)) * 3).astype(np.float32)
    ref = run_ort(fp32, x)
    cosines = {}
    for on in (True, False):
        rules = replace(get_rules("ort"), float_divisors=on)
        table = calibrate_onnx(fp32, x, method="minmax", target=rules, progress=False)
        y = Reference().run(quantize_graph(plan(fp32, rules=rules), table, rules=rules), x)
        cosines[on] = float(per_sample_cosine(ref, y).mean())
    # measured: 0.99989 with the rule; without, NaN (0 / 0 where a sum and its eps round to code 0)
    assert cosines[True] > 0.9995 and not cosines[False] > cosines[True] - 0.001, cosines
