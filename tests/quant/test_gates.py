"""Gates (tcc.quant.intgraph.match.IntGraph.gates): the output of a bounded lookup (sigmoid, hard-sigmoid, tanh; not
x * sigmoid(x)) is calibrated on its whole observed range, where KL clips a gate whose values sit far from zero (a
squeeze-excite's sigmoid scales whole channels: SemNASNet's INT8 cosine 0.886 -> 0.952 on the census's crops)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.collect.stats import collect_stats
from tcc.quant.intgraph.match import plan
from tcc.quant.scales.methods import threshold
from tests.helpers.onnx_util import make_model


def _squeeze_excite(gate_op: str = "Sigmoid"):
    """features -> global pool -> 1x1 conv -> gate -> features * gate (the channel gate of a squeeze-excite)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["f"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("GlobalAveragePool", ["f"], ["p"], name="pool"),
        helper.make_node("Conv", ["p", "we", "be"], ["e"], name="expand", kernel_shape=[1, 1]),
        helper.make_node(gate_op, ["e"], ["gate"], name="gate"),
        helper.make_node("Mul", ["f", "gate"], ["output"], name="scale"),
    ]
    inits = {
        "w": rng.standard_normal((8, 3, 1, 1)).astype(np.float32),
        "b": np.zeros(8, np.float32),
        "we": (0.3 * rng.standard_normal((8, 8, 1, 1))).astype(np.float32),
        "be": np.full(8, -1.3, np.float32),  # most gates near sigmoid(-1.3) = 0.21, a few far above
    }
    return make_model(nodes, {"input": ["N", 3, 8, 8]}, {"output": ["N", 8, 8, 8]}, inits, ir_version=8, check=True)


@pytest.mark.parametrize("gate_op", ["Sigmoid", "HardSigmoid", "Tanh"])
def test_a_gate_is_a_bounded_lookup(gate_op):
    assert plan(_squeeze_excite(gate_op)).gates() == {"gate"}


def test_x_times_its_own_sigmoid_is_no_gate():
    nodes = [
        helper.make_node("Sigmoid", ["input"], ["s"], name="s"),
        helper.make_node("Mul", ["input", "s"], ["output"], name="silu"),
    ]
    model = make_model(nodes, {"input": ["N", 3, 4, 4]}, {"output": ["N", 3, 4, 4]}, ir_version=8, check=True)
    assert plan(model).gates() == set()


def test_a_gate_keeps_its_whole_range_where_kl_would_clip_it():
    model, x = _squeeze_excite(), np.random.default_rng(1).standard_normal((32, 3, 8, 8)).astype(np.float32)
    h = collect_stats(model, x, tensors=["gate"]).activations["gate"]
    kl = threshold("kl", h.counts, h.width, amax=h.amax, num_levels=256).value
    assert kl < 0.9 * h.max  # the case: KL alone clips the gate
    table = calibrate_onnx(model, x, method="kl")
    entry = table.tensors["gate"]
    assert entry["threshold"] == pytest.approx(h.max, rel=1e-6) and not entry["signed"]
