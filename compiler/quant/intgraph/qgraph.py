"""The quantized graph: an IntGraph (tcc.quant.intgraph.match) + a calibration table -> every integer constant, computed
once.

    qgraph = quantize_graph(plan(fp32), table)     # raises CalibrationError naming the tensor for a bad table
    Reference().run(qgraph, x)                     # tcc.quant.intgraph.reference: numpy integers, the golden INT8 model
    RelaxLowering().lower(qgraph)                  # tcc.backends.tvm.int8.lower: the same constants as Relax ops

Here, and only here, scales become integers: weight codes, int32 bias codes at s_in * s_w, fixed-point multipliers
(q, shift) of every requantization, clamp bounds of folded activations, the 256-entry tables of lookup ops. Every
interpreter of a QGraph translates these constants; none recomputes them, so backends cannot drift apart.

Float islands (tcc.quant.table.placement) carry no integer constants: their QNode holds the parameters of their
quantized
inputs and outputs (None for a float tensor) and the island's FP32 ONNX sub-model (tcc.quant.intgraph.islands), which
every
interpreter runs with its own float lowering. `quantize_graph` plans the model again when the table's placement
differs from the graph's, so every caller gets the graph the table describes.

The table is checked against the model as it is read, before any of it is used: every tensor the integer graph
quantizes and every weight has an entry of the right kind; scales are finite and positive, zero points lie in the
code range, weight scales are one per output channel; and what the integer kernels must represent fits them
(requantization multipliers below 2^30, bias codes and the worst-case accumulator within int32). A failure is a
CalibrationError (exit 2) that names the tensor or layer.
"""

from __future__ import annotations

import math
from typing import NoReturn, cast

import numpy as np
from onnx import numpy_helper

from ...errors import CalibrationError
from ...intops import LOOKUP_FUNCTIONS, QUANTIZE, RESIZE_DENOMINATOR_MAX, Interpreter, gated
from ..table.file import CalibrationTable
from ..table.placement import float_nodes
from ..table.quantizer import qrange, quantize
from ..table.records import TensorEntry
from ..table.rules import ROUNDINGS, TargetRules, get_rules
from ..table.steps import calibrated_parameters, with_initializers
from ..table.weight_codes import rounded, weight_codes
from .fixed_point import INT32_MAX, quantize_multiplier
from .islands import island_model
from .match import INode, IntGraph
from .node_constants import (
    SOFTMAX_ONE,
    clamp_codes,
    clip_bounds,
    constant_codes,
    pad_geometry,
    pool_geometry,
    resize_sampling,
    slice_ranges,
    softmax_normalizer,
    softmax_table,
    tflite_logistic16,
    tflite_softmax_params,
    tflite_table,
    window_geometry,
)
from .qtypes import (
    ADD_LEFT_SHIFT,
    ADD_LEFT_SHIFT_16,
    AddParams,
    Multiplier,
    QGraph,
    QNode,
    QParams,
    Requant,
    accumulator_bound,
    window_sums,
)
from .reach import Reach

MAX_MULTIPLIER_SHIFT = 30  # q * 2^(shift - 31) with shift <= 30: the product acc * q shifted by at least 1
NARROWEST_WIDE_GRID = 9  # the calibration's accumulator headroom never takes a 16-bit tensor to 8 bits or fewer


# ---------------------------------------------------------------------------------------------------- the quantizer
def _finite_positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


class Quantizer(Interpreter):
    """IntGraph + table -> QGraph: one method per kind of the integer op table."""

    lowering = QUANTIZE

    def __init__(
        self, graph: IntGraph, table: CalibrationTable, rules: TargetRules, where: str, headroom: dict | None = None
    ):
        self.graph, self.table, self.rules, self.where = graph, table, rules, where
        self.headroom = headroom  # a dict: accumulators that can overflow are collected here, not refused
        self.inits = {t.name: t for t in graph.model.graph.initializer}
        self._params: dict[str, np.ndarray] | None = None  # what the table's steps changed (tcc.quant.table.steps)
        self.onnx_nodes = {x.name: x for x in graph.model.graph.node}
        self.outputs = set(graph.outputs)
        self.quantized = set(graph.quantized)
        self._q: dict[str, QParams] = {}
        self.reached: dict[
            str, tuple[int, int] | None
        ] = {}  # tensor -> the codes it can hold (tcc.quant.intgraph.reach)

    # ------------------------------------------------------------------------------------------ table entries
    def fail(self, message: str) -> NoReturn:
        raise CalibrationError(f"{self.where}: {message}; recalibrate with `tcc calibrate`")

    def entry(self, name: str, kind: str) -> TensorEntry:
        t = self.table.tensors.get(name)
        if t is None:
            self.fail(f"no entry for {kind} tensor {name!r}, which the INT8 graph quantizes")
        if not isinstance(t, dict) or t.get("kind") != kind:
            self.fail(
                f"tensor {name!r} is listed as {t.get('kind') if isinstance(t, dict) else t!r}, "
                f"the model needs it as {kind}"
            )
        return t

    def q(self, name: str) -> QParams:
        """The validated parameters of an activation tensor."""
        if name in self._q:
            return self._q[name]
        t = self.entry(name, "activation")
        scale, zp, bits, signed = t.get("scale"), t.get("zero_point"), t.get("bits"), t.get("signed")
        if not _finite_positive(scale) or not _finite_positive(float(np.float32(scale))):
            self.fail(f"tensor {name!r}: scale {scale!r} is not a finite positive float32 number")
        scale = float(np.float32(scale))  # every format stores scales as float32, and every kernel reads those
        if not isinstance(bits, int) or isinstance(bits, bool) or not self.rules.takes_activation_bits(bits):
            self.fail(
                f"tensor {name!r}: {bits!r}-bit activations are not supported under rules "
                f"{self.rules.name!r} ({' or '.join(map(str, self.rules.activation_bits))})"
            )
        if not isinstance(signed, bool):
            self.fail(f"tensor {name!r}: `signed` must be true or false, not {signed!r}")
        if bits > 8 and not signed:  # one wide type: int16 (its zero point anywhere in range)
            self.fail(f"tensor {name!r}: {bits}-bit activations are signed (int16); the table says unsigned")
        lo, hi = qrange(bits, signed)
        if not isinstance(zp, int) or isinstance(zp, bool) or not lo <= zp <= hi:
            self.fail(f"tensor {name!r}: zero point {zp!r} is outside its code range [{lo}, {hi}]")
        if bits > 8 and self.rules.wide.symmetric and zp != 0:
            self.fail(
                f"tensor {name!r}: zero point {zp}; rules {self.rules.name!r} take {bits}-bit activations at "
                "zero point 0 only (symmetric int16)"
            )
        self._q[name] = QParams(scale, int(zp), lo, hi)
        return self._q[name]

    def weight_codes(self, n: INode) -> tuple[np.ndarray, np.ndarray]:
        """(int codes, float32 per-channel scales) of a weighted node's weight."""
        assert n.weight is not None  # a weighted node has its weight
        t = self.entry(n.weight, "weight")
        channels = self.inits[n.weight].dims[n.w_axis]
        scale, bits = t.get("scale"), t.get("bits", 8)
        if not isinstance(scale, list) or len(scale) != channels:
            got = len(scale) if isinstance(scale, list) else scale
            self.fail(f"weight {n.weight!r} has {channels} output channels, the table {got!r} scales")
        bad = next((s for s in scale if not _finite_positive(s)), None)
        if bad is not None:
            self.fail(f"weight {n.weight!r}: scale {bad!r} is not a finite positive number")
        if not isinstance(bits, int) or isinstance(bits, bool) or bits not in range(2, 9):
            self.fail(f"weight {n.weight!r}: {bits!r}-bit weights are not supported (2..8)")
        if t.get("axis", n.w_axis) != n.w_axis:
            self.fail(f"weight {n.weight!r}: channel axis {t.get('axis')!r}, the model's is {n.w_axis}")
        sw = np.asarray(scale, np.float32)
        if not (np.isfinite(sw).all() and (sw > 0).all()):
            self.fail(f"weight {n.weight!r}: a scale is not representable in float32")
        w = self.array(n.weight)
        if not rounded(self.table, n.weight):
            return quantize(w, sw, bits, True, n.w_axis), sw
        try:
            return weight_codes(self.table, n.weight, w), sw
        except ValueError as e:  # a stored rounding that does not fit the weight (or is not base64)
            self.fail(f"weight {n.weight!r}: its stored rounding does not fit the weight ({e})")

    def calibrated(self) -> dict[str, np.ndarray]:
        """The initializers the table's steps change (tcc.quant.table.steps.calibrated_parameters), computed once."""
        if self._params is None:
            try:
                self._params = calibrated_parameters(self.graph.model, self.table)
            except CalibrationError as e:
                self.fail(str(e))
        return self._params

    def array(self, name: str) -> np.ndarray:
        """An initializer as the integer graph quantizes it: the table's calibrated value, else the model's."""
        params = self.calibrated()
        return params[name] if name in params else numpy_helper.to_array(self.inits[name])

    def multiplier(self, m, what: str, rounding: str | None = None) -> Multiplier:
        m = np.asarray(m, np.float64)
        if not (np.isfinite(m).all() and (m > 0).all()):
            self.fail(f"{what}: the requantization multiplier is not a finite positive number")
        q, shift = quantize_multiplier(m)
        if (shift > MAX_MULTIPLIER_SHIFT).any():
            self.fail(
                f"{what}: requantization multiplier {float(m.max()):.3g} is >= 2^{MAX_MULTIPLIER_SHIFT}, "
                "beyond the integer kernels (the scales are implausible)"
            )
        rounding = rounding or self.rules.rounding
        if rounding not in ROUNDINGS:
            self.fail(f"rules {self.rules.name!r}: unknown rounding {rounding!r}")
        if rounding == "tflite_int64" and ((shift >= 8) | (shift < -31)).any():  # TFLite's int64 overload's range
            self.fail(
                f"{what}: requantization multiplier {float(m.max()):.3g} / {float(m.min()):.3g} is outside "
                "[2^-32, 2^7), the range of TFLite's 16x8 requantization (the scales are implausible)"
            )
        return Multiplier(q, shift, rounding, real=m if rounding == "double_half_away" else None)

    def requant(
        self,
        m,
        out: QParams,
        what: str,
        activation: tuple[float | None, float | None] | None = None,
        rounding: str | None = None,
    ) -> Requant:
        lo, hi = out.lo, out.hi
        if activation is not None:
            lo, hi = clamp_codes(out, *activation, self.rules.input_rounding)
        return Requant(self.multiplier(m, what, rounding), out.zp, lo, hi, out)

    def rescale(self, qin: QParams, qout: QParams, what: str) -> Requant | None:
        """None when the codes can be copied (same scale in float32 and zero point), else a requantization."""
        if np.float32(qin.scale) == np.float32(qout.scale) and qin.zp == qout.zp:
            return None
        return self.requant(qin.scale / qout.scale, qout, what)

    def node(self, n: INode, **fields) -> QNode:
        qin = tuple(self.q(i) for i in n.inputs)
        qout = fields.pop("qout", None) or tuple(self.q(o) for o in n.outputs)
        return QNode(n.kind, n.name, n.inputs, n.outputs, qin, qout, **fields)

    # ------------------------------------------------------------------------------------------ one method per kind
    def _weighted(self, n: INode, attrs: dict, weight: np.ndarray, sw: np.ndarray, area: int = 1) -> QNode:
        """area: the window of a pooled conv, which multiplies its input's window sums (`window_sums`)."""
        x = self.q(n.inputs[0])
        # 16-bit input: the target's wide kernels (TFLite 16x8: int64 bias and accumulator, its own rounding; or int32
        # ones for CONV_2D / FULLY_CONNECTED, `tflite16-i32`)
        wide = self.rules.wide_for(n.kind, attrs, weight) if x.bits > 8 else None
        # (None, for a tensor kept float, reads as the whole code range, as accumulator_bound reads it)
        reached = self.reached.get(n.inputs[0]) or (x.lo, x.hi)
        if area > 1:
            x, reached = window_sums(x, area), (area * (reached[0] - x.zp), area * (reached[1] - x.zp))
        bias_bits, acc_bits = (wide.bias_bits, wide.accumulator_bits) if wide else (32, 32)
        s_acc = (np.float64(np.float32(x.scale)) * sw.astype(np.float64)).astype(np.float32)
        bias = None
        if n.bias:
            b = self.array(n.bias).astype(np.float64)
            codes = np.rint(b / s_acc.astype(np.float64))
            if not (np.isfinite(codes).all() and (np.abs(codes) < 2.0 ** (bias_bits - 1)).all()):
                self.fail(
                    f"layer {n.name!r}: bias {n.bias!r} at the accumulator scale (input {n.inputs[0]!r} x "
                    f"weight scales) does not fit int{bias_bits}: those scales are implausibly small"
                )
            bias = codes.astype(np.int64)
        # the accumulator must fit the kernels' (int32; TFLite's 16x8: int64, |acc| < 2^47) for every code the
        # input can hold (tcc.quant.intgraph.reach)
        per_channel = accumulator_bound(n.kind, weight, bias, x, reached)
        limit = INT32_MAX if acc_bits == 32 else (1 << (acc_bits - 1)) - 1
        acc_type = "int32" if acc_bits == 32 else f"int64 (|acc| < 2^{acc_bits - 1}: the target's kernels check it)"
        wide_input = wide is not None
        if per_channel.max(initial=0) > limit and wide_input and acc_bits == 32 and self.headroom is not None:
            # the bits the input's grid must lose: halving its codes halves the products and the bias codes
            bits = math.ceil(math.log2(per_channel.max() / INT32_MAX))
            self.headroom[n.inputs[0]] = max(bits, self.headroom.get(n.inputs[0], (0, ""))[0]), n.name
        elif per_channel.max(initial=0) > limit:
            worst = int(np.argmax(per_channel))
            why = (
                f"its input {n.inputs[0]!r} (codes {reached[0]:,}..{reached[1]:,}, zero point {x.zp}) times output "
                f"channel {worst}'s weight codes exceed {acc_type.split(' ')[0]} (a 16-bit calibration narrows such "
                f"an input's grid, down to {NARROWEST_WIDE_GRID} bits; past that: calibrate this model with 8-bit "
                "activations)"
                if wide_input
                else "the bias or weight scales are implausible"
            )
            self.fail(
                f"layer {n.name!r}: its {acc_type} accumulator can overflow (worst case "
                f"{int(per_channel.max()):,} > {limit:,}): {why}"
            )
        out = n.outputs[0]
        act = (n.activation.min, n.activation.max) if n.activation else None
        # a float graph output, or what float islands alone read (IntGraph.dequantized): from the accumulator
        if (out in self.outputs and self.rules.float_outputs) or out in self.graph.dequantized:
            return self.node(
                n,
                qout=(None,),
                attrs=attrs,
                weight=weight,
                weight_scale=sw,
                bias=bias,
                acc_scale=s_acc,
                float_clamp=act,
            )
        qo = self.q(out)
        # M = s_in s_w / s_out in float64 from the float32 scales (TFLite's PopulateConvolutionQuantizationParams)
        m = np.float64(x.scale) * sw.astype(np.float64) / np.float64(qo.scale)
        rounding = self.rules.gemm_rounding if n.kind == "gemm" else None
        if wide is not None and wide.rounding is not None:
            rounding = wide.gemm_rounding if n.kind == "gemm" and wide.gemm_rounding else wide.rounding
        rq = self.requant(m, qo, f"layer {n.name!r}", act, rounding)
        return self.node(n, attrs=attrs, weight=weight, weight_scale=sw, bias=bias, acc_scale=s_acc, requant=rq)

    def conv(self, n: INode) -> QNode:
        codes, sw = self.weight_codes(n)
        return self._weighted(n, _conv_attrs(n.attrs), codes, sw)

    def pooled_conv(self, n: INode) -> QNode:
        """The conv's constants on the window sums of its input (`window_sums`: scale s_in / area, exact), attrs
        "pool" the windows' geometry."""
        codes, sw = self.weight_codes(n)
        geo = window_geometry(n.attrs["pool"], self.graph.shapes[n.inputs[0]])
        return self._weighted(n, _conv_attrs(n.attrs) | {"pool": geo}, codes, sw, geo["kernel"][0] * geo["kernel"][1])

    def conv_transpose(self, n: INode) -> QNode:
        """The weight codes in ConvTranspose's own [C_in, C_out, k_h, k_w] layout (scales along axis 1), attrs
        output_padding beside the conv's."""
        codes, sw = self.weight_codes(n)
        attrs = _conv_attrs(n.attrs) | {"output_padding": list(n.attrs.get("output_padding", [0, 0]))}
        return self._weighted(n, attrs, codes, sw)

    def gemm(self, n: INode) -> QNode:
        codes, sw = self.weight_codes(n)
        kn = codes.T if n.w_axis == 0 else codes  # [K, N]
        return self._weighted(n, {}, np.ascontiguousarray(kn), sw)

    def add(self, n: INode) -> QNode:
        return self.node(n, add=self._add_params(n, self.q(n.inputs[0]), self.q(n.inputs[1])))

    def add_constant(self, n: INode) -> QNode:
        """The constant's codes (node_constants.constant_codes) in the input's rank, as the add's second operand."""
        assert n.factor is not None  # an add_constant node has its constant
        c = self.array(n.factor)
        codes, scale = constant_codes(c.reshape((1,) * (len(self.graph.shapes[n.inputs[0]]) - c.ndim) + c.shape))
        qc = QParams(scale, 0, -127, 127)
        return self.node(
            n,
            add=self._add_params(n, self.q(n.inputs[0]), qc),
            weight=codes,
            weight_scale=np.array([scale], np.float32),
        )

    def _add_params(self, n: INode, qa: QParams, qb: QParams) -> AddParams:
        qo = self.q(n.outputs[0])
        twice_max = 2.0 * max(qa.scale, qb.scale)
        what = f"add {n.name!r}"
        act = (n.activation.min, n.activation.max) if n.activation else None
        reach = max(qa.reach, qb.reach)
        shift = ADD_LEFT_SHIFT if reach <= 255 else ADD_LEFT_SHIFT_16
        if reach << shift > INT32_MAX:  # the kernels shift the zero-point-free codes in int32
            self.fail(
                f"{what}: codes {reach:,} from the zero point, << {shift}, do not fit int32 (a 16-bit input "
                "needs its zero point near 0)"
            )
        p = AddParams(
            shift,
            self.multiplier(qa.scale / twice_max, what),
            self.multiplier(qb.scale / twice_max, what),
            self.requant(twice_max / ((1 << shift) * qo.scale), qo, what, act),
        )
        return p

    def mul(self, n: INode) -> QNode:
        qa, qb = self.q(n.inputs[0]), self.q(n.inputs[1])
        qo = self.q(n.outputs[0])
        if qa.reach * qb.reach > INT32_MAX:  # the product of zero-point-free codes is int32 in every kernel
            self.fail(
                f"mul {n.name!r}: the product of its inputs' codes ({qa.reach:,} x {qb.reach:,} from their "
                "zero points) can overflow int32"
            )
        return self.node(n, requant=self.requant(mul_ratio(qa, qb, qo), qo, f"mul {n.name!r}"))

    def matmul(self, n: INode) -> QNode:
        qa, qb = self.q(n.inputs[0]), self.q(n.inputs[1])
        depth = int(self.graph.shapes[n.inputs[0]][-1])  # products summed per output element
        bound = depth * qa.reach * qb.reach  # the sum of products of zero-point-free codes
        wide = [(t, q) for t, q in zip(n.inputs, (qa, qb)) if q.bits > 8]
        # TFLite's 16x8 BATCH_MATMUL sums in int64 and requantizes with its int64 rounding (WideRules.matmul_*);
        # tcc's kernels and the 8-bit ones sum in int32
        wide_rules = self.rules.wide if wide and self.rules.wide.matmul_accumulator_bits else None
        limit = (1 << (wide_rules.matmul_accumulator_bits - 1)) - 1 if wide_rules else INT32_MAX
        if bound > limit and wide and self.headroom is not None:
            # a 16-bit calibration narrows the wide inputs' grids (tcc.quant.intgraph.widths.fit_accumulators), the
            # bits to lose shared between them
            bits = math.ceil(math.log2(bound / limit))
            for t, _ in wide:
                share = math.ceil(bits / len(wide))
                self.headroom[t] = max(share, self.headroom.get(t, (0, ""))[0]), n.name
        elif bound > limit:
            self.fail(
                f"matmul {n.name!r}: {depth} products of its inputs' codes ({qa.reach:,} x {qb.reach:,} from "
                f"their zero points) can overflow int{limit.bit_length() + 1}"
            )
        factor = float(self.array(n.factor).reshape(-1)[0]) if n.factor else 1.0  # a covered Mul (plan: > 0)
        qo = self.q(n.outputs[0])
        m = matmul_ratio(qa, qb, qo) * factor
        rounding = wide_rules.matmul_rounding if wide_rules else None
        return self.node(n, requant=self.requant(m, qo, f"matmul {n.name!r}", rounding=rounding))

    def lookup(self, n: INode) -> QNode:
        qi, qo = self.q(n.inputs[0]), self.q(n.outputs[0])
        codes = np.arange(qi.lo, qi.hi + 1, dtype=np.int64)
        if self.rules.lookup_arithmetic == "float32" and qi.bits > 8:
            if n.lookup != "Sigmoid" or (qo.scale, qo.zp) != (2.0**-15, 0) or qi.zp != 0:
                self.fail(
                    f"lookup {n.name!r} ({n.lookup}): LiteRT's int16 kernels here are LOGISTIC's, from codes "
                    "at zero point 0 to 2^-15"
                )
            try:
                rounded = tflite_logistic16(codes, qi.scale)
            except ValueError as e:
                self.fail(f"lookup {n.name!r}: {e}")
        elif self.rules.lookup_arithmetic == "float32":
            rounded = tflite_table(n, codes, qi, qo)
        else:
            # the input codes' real values (float32 scale, as QuantizeLinear / DequantizeLinear have it), f in
            # float64, one rounding half to even
            assert n.lookup is not None  # a lookup node names its function
            fn = gated(n.gate) if n.gate else LOOKUP_FUNCTIONS[n.lookup]
            x = (codes - qi.zp).astype(np.float64) * np.float64(qi.scale)
            rounded = np.rint(fn(x, n.attrs) / np.float64(qo.scale))
        table = np.clip(rounded + qo.zp, qo.lo, qo.hi).astype(np.int64)
        return self.node(n, table=table, attrs={"function": n.lookup})

    def softmax(self, n: INode) -> QNode:
        """The exp table at the input's step and the normalizer (C, k) at the output's (node_constants); under
        rules whose softmax is LiteRT's, its multiplier, shift and radius (the output fixed at 1/256, -128)."""
        qi, qo = self.q(n.inputs[0]), self.q(n.outputs[0])
        if self.rules.softmax == "gemmlowp":
            return self._gemmlowp_softmax(n, qi, qo)
        row = int(self.graph.shapes[n.inputs[0]][-1])
        if row * SOFTMAX_ONE > INT32_MAX:
            self.fail(f"softmax {n.name!r}: a row of {row:,} exponentials of up to 2^15 can overflow int32")
        try:
            numerator, shift = softmax_normalizer(qo.scale)
        except ValueError as e:
            self.fail(f"softmax {n.name!r}: {e}")
        return self.node(
            n, table=softmax_table(qi.scale, qi.hi - qi.lo + 1), attrs={"numerator": numerator, "shift": shift}
        )

    def _gemmlowp_softmax(self, n: INode, qi: QParams, qo: QParams) -> QNode:
        if (qi.lo, qi.hi) != (-128, 127) or (qo.scale, qo.zp, qo.lo, qo.hi) != (1 / 256, -128, -128, 127):
            self.fail(
                f"softmax {n.name!r}: rules {self.rules.name!r} (LiteRT's int8 SOFTMAX) take int8 codes in and "
                f"the output at step 1/256, zero point -128 (the table: {n.outputs[0]!r} at {qo.scale:.6g} / "
                f"{qo.zp}); a table for other rules?"
            )
        try:
            multiplier, left_shift, diff_min = tflite_softmax_params(qi.scale)
        except ValueError as e:
            self.fail(f"softmax {n.name!r}: {e}")
        return self.node(
            n, attrs={"form": "gemmlowp", "multiplier": multiplier, "left_shift": left_shift, "diff_min": diff_min}
        )

    def channel_scale(self, n: INode) -> QNode:
        qi, qo = self.q(n.inputs[0]), self.q(n.outputs[0])
        channels = int(self.graph.shapes[n.inputs[0]][1])
        factor = numpy_helper.to_array(self.inits[n.factor]).astype(np.float64).reshape(-1)
        below = np.broadcast_to(factor, (channels,))  # the planner checked: one factor, or one per channel
        above = below if n.op_type == "Mul" else np.ones(channels)  # PReLU: the identity at or above zero
        what = f"{n.op_type} {n.name!r}"
        fields = {}
        if self.rules.channel_factors == "int8":
            sides, fields = self._int8_factors(n, below, qi, qo)
        else:  # each factor its own fixed-point multiplier; its sign (or a zero) multiplies the code first
            sides = [
                (
                    np.sign(f).astype(np.int64),
                    np.float64(qi.scale) * np.where(f == 0, 1.0, np.abs(f)) / np.float64(qo.scale),
                )
                for f in (above, below)
            ]
        (k_above, m_above), (k_below, m_below) = sides
        return self.node(
            n,
            factors=np.stack([k_above, k_below]),
            requant=self.requant(m_above, qo, what),
            below=self.requant(m_below, qo, what),
            **fields,
        )

    def _int8_factors(self, n: INode, factor: np.ndarray, qi: QParams, qo: QParams):
        """The factors as TFLite's kernels store them, with the multipliers as those kernels compute them: PReLU's
        slope as PRELU's int8 alpha at one scale (LiteRT's PreluPrepare: s_in / s_out at or above zero,
        s_in s_alpha / s_out below, in float32 arithmetic); a layer scale as the weights of a 1x1
        DEPTHWISE_CONV_2D, per channel and symmetric in [-127, 127] (s_in s_w / s_out in double, as every conv).
        Returns ([(codes, multipliers) at or above zero, below], the QNode's weight_scale and acc_scale)."""
        f32 = np.float32
        s_in, s_out = f32(qi.scale), f32(qo.scale)
        if n.op_type == "PRelu":
            s_alpha = f32(max(np.abs(factor).max(), 1e-12) / 127)
            codes = np.clip(np.rint(factor / np.float64(s_alpha)), -127, 127).astype(np.int64)
            m_above, m_below = f32(s_in / s_out), f32(f32(s_in * s_alpha) / s_out)
            sides = [
                (np.ones_like(codes), np.full(len(codes), np.float64(m_above))),
                (codes, np.full(len(codes), np.float64(m_below))),
            ]
            return sides, {"weight_scale": np.array([s_alpha], np.float32)}
        s_w = (np.where(factor == 0, max(np.abs(factor).max(), 1e-12), np.abs(factor)) / 127).astype(np.float32)
        codes = np.clip(np.rint(factor / s_w.astype(np.float64)), -127, 127).astype(np.int64)
        m = np.float64(s_in) * s_w.astype(np.float64) / np.float64(s_out)
        s_acc = (np.float64(s_in) * s_w.astype(np.float64)).astype(np.float32)
        return [(codes, m), (codes, m)], {"weight_scale": s_w, "acc_scale": s_acc}

    def clamp(self, n: INode) -> QNode:
        qi, qo = self.q(n.inputs[0]), self.q(n.outputs[0])
        cmin, cmax = clip_bounds(n, self.onnx_nodes, self.inits)
        lo, hi = clamp_codes(qo, cmin, cmax, self.rules.input_rounding)
        rs = self.rescale(qi, qo, f"{n.op_type} {n.name!r}")
        return self.node(n, rescale=(rs,), attrs={"clamp": [lo, hi]})

    def max_pool(self, n: INode) -> QNode:
        qi, qo = self.q(n.inputs[0]), self.q(n.outputs[0])
        return self.node(
            n, attrs=pool_geometry(n, self.graph.shapes), rescale=(self.rescale(qi, qo, f"max pool {n.name!r}"),)
        )

    def global_max_pool(self, n: INode) -> QNode:
        qi, qo = self.q(n.inputs[0]), self.q(n.outputs[0])
        return self.node(n, rescale=(self.rescale(qi, qo, f"global max pool {n.name!r}"),))

    def _pool(self, n: INode, count: int, attrs: dict) -> QNode:
        qi, qo = self.q(n.inputs[0]), self.q(n.outputs[0])
        if qi.reach * count > INT32_MAX:  # window sums of zero-point-free codes, in int32
            self.fail(f"pool {n.name!r}: the sum of {count:,} codes of {n.inputs[0]!r} can overflow int32")
        if self.rules.pool_division:  # the mean of codes: input and output must be one grid
            if qi != qo:
                self.fail(
                    f"pool {n.name!r}: rules {self.rules.name!r} need its input and output at one scale and "
                    f"zero point ({n.inputs[0]!r}: {qi.scale:.6g}/{qi.zp}, {n.outputs[0]!r}: "
                    f"{qo.scale:.6g}/{qo.zp}); a table for other rules?"
                )
            return self.node(n, attrs=attrs, count=count, divide=True)
        return self.node(
            n, attrs=attrs, count=count, requant=self.requant(qi.scale / (qo.scale * count), qo, f"pool {n.name!r}")
        )

    def avg_pool(self, n: INode) -> QNode:
        geo = pool_geometry(n, self.graph.shapes)
        return self._pool(n, geo["kernel"][0] * geo["kernel"][1], geo)

    def global_avg_pool(self, n: INode) -> QNode:
        _, _, h, w = self.graph.shapes[n.inputs[0]]
        return self._pool(n, h * w, {})

    def concat(self, n: INode) -> QNode:
        qo = self.q(n.outputs[0])
        rank = len(self.graph.shapes[n.outputs[0]])
        rs = tuple(self.rescale(self.q(i), qo, f"concat {n.name!r} input {i!r}") for i in n.inputs)
        return self.node(n, attrs={"axis": int(n.attrs.get("axis", 1)) % rank}, rescale=rs)

    def _moves(self, n: INode, attrs: dict) -> QNode:
        qi = self.q(n.inputs[0])
        rs = tuple(self.rescale(qi, self.q(o), f"{n.op_type} {n.name!r}") for o in n.outputs)
        return self.node(n, attrs=attrs, rescale=rs)

    def reshape(self, n: INode) -> QNode:
        return self._moves(n, {"shape": [int(d) for d in self.graph.shapes[n.outputs[0]][1:]]})

    def transpose(self, n: INode) -> QNode:
        rank = len(self.graph.shapes[n.inputs[0]])
        perm = [int(p) for p in n.attrs.get("perm", list(range(rank))[::-1])]
        if perm[0] != 0:
            self.fail(f"transpose {n.name!r} moves the batch axis")  # plan's shape check keeps this rare
        return self._moves(n, {"perm": perm})

    def split(self, n: INode) -> QNode:
        rank = len(self.graph.shapes[n.inputs[0]])
        axis = int(n.attrs.get("axis", 0)) % rank
        sizes = [int(self.graph.shapes[o][axis]) for o in n.outputs]
        return self._moves(n, {"axis": axis, "sizes": sizes})

    def broadcast(self, n: INode) -> QNode:
        """The constant's codes at the output's scale ([1, ...]; every interpreter repeats them over the batch)."""
        qo = self.q(n.outputs[0])
        assert n.weight is not None  # a broadcast node has its constant
        c = self.array(n.weight).astype(np.float64)
        codes = np.clip(np.rint(c / np.float64(np.float32(qo.scale))) + qo.zp, qo.lo, qo.hi).astype(np.int64)
        return self.node(n, weight=codes)

    def resize_nearest(self, n: INode) -> QNode:
        """node_constants.resize_sampling: the input row and column each output reads."""
        shapes = self.graph.shapes
        a = resize_sampling(self.onnx_nodes[n.name], shapes[n.inputs[0]], shapes[n.outputs[0]], self.inits)
        return self._moves(n, {"index_h": a["index_h"], "index_w": a["index_w"]})

    def resize_bilinear(self, n: INode) -> QNode:
        """node_constants.resize_sampling: the exact taps of each axis (a stated scale whose fraction needs larger
        weights than int32 sums allow is refused here: the table's check bounds the sizes' form)."""
        shapes = self.graph.shapes
        a = resize_sampling(self.onnx_nodes[n.name], shapes[n.inputs[0]], shapes[n.outputs[0]], self.inits)
        if a["rows"]["d"] * a["cols"]["d"] > RESIZE_DENOMINATOR_MAX:
            self.fail(
                f"resize {n.name!r} by the stated scales {a['scales']}: their exact weights need a denominator of "
                f"{a['rows']['d'] * a['cols']['d']:,}; resize to a size instead"
            )
        return self._moves(n, {"rows": a["rows"], "cols": a["cols"], "coordinates": a["coordinates"]})

    def pad(self, n: INode) -> QNode:
        """node_constants.pad_geometry, and a constant pad's value as a code of the input (0: its zero point)."""
        a = pad_geometry(self.onnx_nodes[n.name], self.graph.shapes[n.inputs[0]], self.inits)
        x = self.q(n.inputs[0])
        code = int(np.clip(np.rint(a["value"] / np.float64(np.float32(x.scale))) + x.zp, x.lo, x.hi))
        return self._moves(n, {**a, "code": code})

    def slice(self, n: INode) -> QNode:
        """node_constants.slice_ranges: one (axis, start, stop, step) per sliced axis (never the batch axis)."""
        ranges = slice_ranges(self.onnx_nodes[n.name], self.graph.shapes[n.inputs[0]], self.inits)
        if any(axis == 0 for axis, *_ in ranges):
            self.fail(f"slice {n.name!r} slices the batch axis")
        return self._moves(n, {"ranges": ranges})

    def float_island(self, n: INode) -> QNode:
        """No integer constants: the parameters of its quantized inputs and outputs, and its FP32 sub-model."""
        q = [tuple(self.q(t) if t in self.quantized else None for t in ts) for ts in (n.inputs, n.outputs)]
        model = island_model(self.graph, n)
        # its parameters as the table's steps left them (equalized weights: its neighbours' channels were rescaled)
        changed = {t.name: self.array(t.name) for t in model.graph.initializer if t.name in self.calibrated()}
        model = with_initializers(model, changed)
        return QNode(
            n.kind,
            n.name,
            n.inputs,
            n.outputs,
            cast(tuple[QParams, ...], q[0]),  # an island's float tensors are None (QNode.qin says "QParams")
            q[1],
            attrs=dict(n.attrs),
            precision="float",
            float_model=model,
            rounding=self.rules.input_rounding,
        )


def mul_ratio(qa: QParams, qb: QParams, qo: QParams) -> np.float64:
    """A MUL's multiplier s_a s_b / s_out in float32 arithmetic, as LiteRT's mul.cc computes it from its float
    scales (measured on int16 MUL: the division in float64 differs in 31 of 16,384 products at one set of scales)."""
    sa, sb, so = (np.float32(q.scale) for q in (qa, qb, qo))
    return np.float64(np.float32(sa * sb) / so)


def matmul_ratio(qa: QParams, qb: QParams, qo: QParams) -> np.float64:
    """A matmul's multiplier as LiteRT's BATCH_MATMUL takes it (GetQuantizedConvolutionMultipler): s_a s_b in
    float32, divided by s_out in float64. Measured: the division in float32 puts acc 13,169 of an int8 attention
    context at 53 where LiteRT writes 54 (MobileViT-XXS at 256); everything in float64, one code in ~3 million."""
    sa, sb, so = (np.float32(q.scale) for q in (qa, qb, qo))
    return np.float64(np.float32(sa * sb)) / np.float64(so)


def _conv_attrs(a: dict) -> dict:
    return {
        "strides": list(a.get("strides", [1, 1])),
        "pads": list(a.get("pads", [0, 0, 0, 0])),
        "dilations": list(a.get("dilations", [1, 1])),
        "group": int(a.get("group", 1)),
    }


def quantize_graph(
    graph: IntGraph,
    table: CalibrationTable,
    rules: TargetRules | str | None = None,
    where: str = "calibration table",
    headroom: dict | None = None,
) -> QGraph:
    """The QGraph of `graph` under `table` (made under `rules`; default: the rules the table records), planned
    again first when the table keeps other nodes in float than `graph` does, or splits other patterns.
    `headroom`: a dict that collects, instead of refusing, each wide input whose readers' int32 accumulators can
    overflow: tensor -> (the bits its grid must lose, the layer); the QGraph is then not one to run
    (tcc.quant.calibrate narrows those grids)."""
    rules = (get_rules(rules) if rules is not None else table.rules).splitting(table.split_patterns)
    floats, other_split = float_nodes(table), graph.split_patterns != rules.split_patterns
    if floats != graph.placed or other_split:
        graph = graph.replan(floats, rules if other_split else None)
    qz = Quantizer(graph, table, rules, where, headroom)
    input_q = qz.q(graph.input) if graph.input in qz.quantized else None
    if input_q is not None:
        qz.reached[graph.input] = (input_q.lo, input_q.hi)
    reach, nodes = Reach(), []
    for n in graph.nodes:  # in order: a node's guards read the intervals of its inputs
        nodes.append(qz.run_node(n))
        qz.reached.update(zip(n.outputs, reach.run_node(nodes[-1], *(qz.reached.get(i) for i in n.inputs))))
    return QGraph(
        nodes,
        graph.input,
        input_q,
        list(graph.outputs),
        rules,
        tuple(graph.shapes.get(graph.input) or ()),
        rules.input_rounding,
        # every output's step, also a float output's: what integer outputs are compared in (an entry
        # the table lacks is refused here, not met as a KeyError where the self-check reads it)
        {o: qz.q(o).scale for o in graph.outputs},
        reached=qz.reached,
    )
