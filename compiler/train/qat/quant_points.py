"""Where quantization-aware training fake-quantizes: the quantized graph (tcc.quant.intgraph.qgraph's QGraph of the FP32
ONNX under the calibration table) read as one more interpreter of the integer op table, one method per kind.

Every tensor that the integer graph holds as codes is fake-quantized at its own parameters (scale, zero point, code
range narrowed by a folded activation) where the PyTorch model computes it; a weighted kind's weight is fake-quantized
per output channel at the table's scales after the BatchNorm that follows it is folded in (as tcc.passes folds it),
and its bias at the accumulator's scale (s_in * s_w). Everything else a kind does in integers (the fixed-point
multipliers, TFLite's ADD at 2^20 finer resolution, lookup tables computed in float64) rounds at most once more
inside a code step, so the fake-quantized forward equals the integer reference's dequantized values up to one step
on ties (tests/train/test_qat.py measures how many). The constants of a channel scale, an added constant or a
broadcast train in float and are quantized by the build as usual (`float_constants` names them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...intops import QAT, Interpreter
from ...quant.intgraph.match import IntGraph
from ...quant.intgraph.qtypes import QGraph, QNode, QParams
from ...quant.table.file import CalibrationTable
from ...quant.table.quantizer import qrange
from .fake_quant import rounding_of


@dataclass(frozen=True)
class WeightQuant:
    """A weighted node's weight codes: clamp(round(w / scale), lo, hi) per output channel; its bias at acc_scale."""

    scale: np.ndarray  # float32, one per output channel
    lo: int
    hi: int
    acc_scale: np.ndarray | None  # float32 s_in * s_w per output channel, None where the layer has no bias
    out_scale: float  # its output's step (a float output's calibrated step): the unit its bias trains in


@dataclass
class QatPlan:
    input: str
    input_q: QParams | None
    input_rounding: str
    rounding: str  # the requantization's (fake_quant's name for it)
    activations: dict[str, QParams] = field(default_factory=dict)  # tensor -> its parameters
    weighted: dict[str, WeightQuant] = field(default_factory=dict)  # node (the spec's conv / linear) -> weight
    float_constants: list[str] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)  # tensors that share one scale (the table's groups)
    fixed: set[str] = field(default_factory=set)  # tensors whose scale the target fixes (never learned)
    # tensors that only move their input's codes at the same parameters (a reshape inside a linear layer over tokens):
    # quantized where their input is, so the PyTorch model need not compute them as values of their own
    moves: dict[str, str] = field(default_factory=dict)


class QatPlanner(Interpreter):
    """QGraph -> QatPlan: one method per kind of the integer op table, as every other interpreter."""

    lowering = QAT

    def __init__(self, qgraph: QGraph, graph: IntGraph, table: CalibrationTable):
        self.weight_bits = {
            n.name: table.tensors[n.weight].get("bits", 8)
            for n in graph.nodes
            if n.weight and table.tensors.get(n.weight, {}).get("kind") == "weight"
        }
        self.output_scales, self.rules = qgraph.output_scales, qgraph.rules
        self.plan = QatPlan(
            qgraph.input,
            qgraph.input_q,
            rounding_of(qgraph.input_rounding),
            rounding_of(qgraph.rules.rounding),
            groups=[list(g) for g in table.groups],
        )

    @classmethod
    def of(cls, qgraph: QGraph, graph: IntGraph, table: CalibrationTable) -> QatPlan:
        planner = cls(qgraph, graph, table)
        for node in qgraph.nodes:
            planner.run_node(node)
        return planner.plan

    def outputs(self, n: QNode) -> None:
        """The node's quantized outputs, fake-quantized where the model computes them."""
        for name, q in zip(n.outputs, n.qout):
            if q is not None:
                self.plan.activations[name] = q

    def weighted(self, n: QNode) -> None:
        lo, hi = qrange(self.weight_bits.get(n.name, 8), True)  # as the quantizer's weight codes
        acc = None if n.bias is None else np.asarray(n.acc_scale, np.float32)
        out = n.qout[0].scale if n.qout[0] is not None else self.output_scales[n.outputs[0]]
        self.plan.weighted[n.name] = WeightQuant(np.asarray(n.weight_scale, np.float32), lo, hi, acc, float(out))
        self.outputs(n)

    def move(self, n: QNode) -> None:
        if len(n.inputs) == 1 and len(n.outputs) == 1 and n.qin and n.qin[0] == n.qout[0]:
            self.plan.moves[n.outputs[0]] = n.inputs[0]
        self.outputs(n)

    def lookup(self, n: QNode) -> None:
        if self.rules.fixed_outputs:  # TFLite: LOGISTIC's output at 1/256 (the table's entry is the rules')
            self.plan.fixed.update(n.outputs)
        self.outputs(n)

    def softmax(self, n: QNode) -> None:
        if any(op == "Softmax" for op, _, _ in self.rules.fixed_outputs):  # TFLite: SOFTMAX's output at 1/256
            self.plan.fixed.update(n.outputs)
        self.outputs(n)

    def float_constant(self, n: QNode) -> None:
        self.plan.float_constants.append(n.name)
        self.outputs(n)

    conv = gemm = pooled_conv = conv_transpose = (
        weighted  # a pooled conv's window sums are exact: nothing to fake-quantize
    )
    channel_scale = add_constant = broadcast = float_constant
    add = mul = clamp = max_pool = avg_pool = global_avg_pool = global_max_pool = outputs
    reshape = transpose = resize_nearest = pad = move
    concat = split = slice = matmul = resize_bilinear = outputs
    float_island = outputs  # its inputs arrive as codes; the outputs an integer node reads are quantized again
