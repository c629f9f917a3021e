"""The quantized graph: an IntGraph (tcc.quant.plan) + a calibration table -> every integer constant, computed once.

    qgraph = quantize_graph(plan(fp32), table)     # raises CalibrationError naming the tensor for a bad table
    Reference().run(qgraph, x)                     # tcc.quant.reference: numpy integers, the golden INT8 model
    RelaxLowering().lower(qgraph)                  # tcc.backends.tvm_int8: the same constants as Relax ops

Here, and only here, scales become integers: weight codes, int32 bias codes at s_in * s_w, fixed-point multipliers
(q, shift) of every requantization, clamp bounds of folded activations, the 256-entry tables of lookup ops. Every
interpreter of a QGraph translates these constants; none recomputes them, so backends cannot drift apart.

The table is checked against the model as it is read, before any of it is used: every tensor the integer graph
quantizes and every weight has an entry of the right kind; scales are finite and positive, zero points lie in the
code range, weight scales are one per output channel; and what the integer kernels must represent fits them
(requantization multipliers below 2^30, bias codes and the worst-case accumulator within int32). A failure is a
CalibrationError (exit 2) that names the tensor or layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from onnx import numpy_helper

from ..intops import (FLOAT32_LOOKUPS, LOOKUP_FUNCTIONS, QUANTIZE, Interpreter, gated)
from .plan import INode, IntGraph
from .quantizer import qrange, quantize
from .rules import ROUNDINGS, TargetRules, get_rules
from .steps import calibrated_parameters
from .table import CalibrationError, CalibrationTable

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_MULTIPLIER_SHIFT = 30  # q * 2^(shift - 31) with shift <= 30: the product acc * q shifted by at least 1
ADD_LEFT_SHIFT = 20  # TFLite's int8 ADD: headroom bits so the per-input rescaling keeps ~20 bits of precision


# ---------------------------------------------------------------------------------------------------- fixed point
def quantize_multiplier(m) -> tuple[np.ndarray, np.ndarray]:
    """Real multiplier(s) M > 0 -> (Q31 multiplier q in [2^30, 2^31), shift) with M ~ q * 2^(shift - 31): TFLite's
    QuantizeMultiplier (frac * 2^31 rounded half away from zero, as TfLiteRound does)."""
    m = np.atleast_1d(np.asarray(m, dtype=np.float64))
    frac, exp = np.frexp(m)  # m = frac * 2^exp, frac in [0.5, 1)
    q = np.floor(frac * (1 << 31) + 0.5).astype(np.int64)
    full = q == (1 << 31)
    q[full] //= 2
    exp = exp + full
    return q, exp.astype(np.int64)


@dataclass(frozen=True)
class QParams:
    """A quantized tensor's parameters: real value = (code - zp) * scale, codes in [lo, hi]."""

    scale: float
    zp: int
    lo: int
    hi: int

    @property
    def dtype(self) -> str:
        """The narrowest integer type holding codes in [lo, hi]."""
        return storage_dtype(self.lo, self.hi)


def storage_dtype(lo: int, hi: int) -> str:
    if -128 <= lo and hi <= 127:
        return "int8"
    if 0 <= lo and hi <= 255:
        return "uint8"
    return "int32"


@dataclass(frozen=True)
class Multiplier:
    """A real multiplier M as fixed point: M = q * 2^(shift - 31), q in [2^30, 2^31), one value or one per channel;
    `rounding` names the rule that rounds the product (tcc.quant.rules.ROUNDINGS)."""

    q: np.ndarray  # int64
    shift: np.ndarray  # int64
    rounding: str = "half_even"

    @property
    def per_channel(self) -> bool:
        return self.q.size > 1


@dataclass(frozen=True)
class Requant:
    """codes = clamp(round(acc * M) + zp, lo, hi) in the storage type of the output tensor (`out`); [lo, hi] is the
    output's code range narrowed by a folded activation."""

    mult: Multiplier
    zp: int
    lo: int
    hi: int
    out: QParams


@dataclass(frozen=True)
class AddParams:
    """TFLite's integer ADD: each input (q - zp) << left_shift, times its multiplier (to the common scale
    2 max(s_a, s_b) at 2^left_shift finer resolution), summed, then `out` requantizes to the output."""

    left_shift: int
    a: Multiplier
    b: Multiplier
    out: Requant


@dataclass(frozen=True)
class QNode:
    """One integer op with its constants. Which fields a kind uses is documented with its reference method
    (tcc.quant.reference.Reference)."""

    kind: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    qin: tuple[QParams, ...]
    qout: tuple[QParams | None, ...]  # None: the output stays float (a weighted node's graph output)
    attrs: dict = field(default_factory=dict)  # geometry: strides, pads, dilations, group, axis, perm, shapes
    weight: np.ndarray | None = None  # weighted: int codes (int32): conv OIHW, gemm [K, N]
    weight_scale: np.ndarray | None = None  # weighted: the weight's scale per output channel (float32)
    bias: np.ndarray | None = None  # weighted: int32 codes at s_in * s_w (as int64)
    acc_scale: np.ndarray | None = None  # weighted: s_in * s_w per output channel (float32)
    float_clamp: tuple[float | None, float | None] | None = None  # float output with a folded activation
    requant: Requant | None = None  # the output's requantization (weighted, mul, pools, clamp)
    rescale: tuple[Requant | None, ...] = ()  # per input (concat) or output (moves): None = a copy (clamped)
    add: AddParams | None = None
    table: np.ndarray | None = None  # lookup: output codes (int64) indexed by input code - qin[0].lo
    count: int = 0  # pools: the window area
    divide: bool = False  # pools (rules.pool_division): the sum of codes divided by the area, half away from zero


@dataclass
class QGraph:
    nodes: list[QNode]
    input: str
    input_q: QParams
    outputs: list[str]
    rules: TargetRules
    input_shape: tuple = ()  # the graph input's shape (batch: None or a name where symbolic)
    input_rounding: str = "half_even"  # equation (8) at the graph input: x / s rounded half to even or half away
    output_scales: dict = field(default_factory=dict)  # graph output -> its calibrated step (LSB), also when float
    producer: dict = field(default_factory=dict)  # tensor -> QNode

    def __post_init__(self):
        self.producer = {o: n for n in self.nodes for o in n.outputs}


# ---------------------------------------------------------------------------------------------------- the quantizer
def _finite_positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


class Quantizer(Interpreter):
    """IntGraph + table -> QGraph: one method per kind of the integer op table."""

    lowering = QUANTIZE

    def __init__(self, graph: IntGraph, table: CalibrationTable, rules: TargetRules, where: str):
        self.graph, self.table, self.rules, self.where = graph, table, rules, where
        self.inits = {t.name: t for t in graph.model.graph.initializer}
        self._params: dict[str, np.ndarray] | None = None  # what the table's steps changed (tcc.quant.steps)
        self.onnx_nodes = {x.name: x for x in graph.model.graph.node}
        self.outputs = set(graph.outputs)
        self._q: dict[str, QParams] = {}

    # ------------------------------------------------------------------------------------------ table entries
    def fail(self, message: str):
        raise CalibrationError(f"{self.where}: {message}; recalibrate with `tcc calibrate`")

    def entry(self, name: str, kind: str) -> dict:
        t = self.table.tensors.get(name)
        if t is None:
            self.fail(f"no entry for {kind} tensor {name!r}, which the INT8 graph quantizes")
        if not isinstance(t, dict) or t.get("kind") != kind:
            self.fail(f"tensor {name!r} is listed as {t.get('kind') if isinstance(t, dict) else t!r}, "
                      f"the model needs it as {kind}")
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
        if bits != 8 or not isinstance(bits, int) or isinstance(bits, bool):
            self.fail(f"tensor {name!r}: {bits!r}-bit activations are not supported (8)")
        if not isinstance(signed, bool):
            self.fail(f"tensor {name!r}: `signed` must be true or false, not {signed!r}")
        lo, hi = qrange(8, signed)
        if not isinstance(zp, int) or isinstance(zp, bool) or not lo <= zp <= hi:
            self.fail(f"tensor {name!r}: zero point {zp!r} is outside its code range [{lo}, {hi}]")
        self._q[name] = QParams(scale, int(zp), lo, hi)
        return self._q[name]

    def weight_codes(self, n: INode) -> tuple[np.ndarray, np.ndarray]:
        """(int codes, float32 per-channel scales) of a weighted node's weight."""
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
        if not self.table.rounded(n.weight):
            return quantize(w, sw, bits, True, n.w_axis), sw
        try:
            return self.table.weight_codes(n.weight, w), sw
        except ValueError as e:  # a stored rounding that does not fit the weight (or is not base64)
            self.fail(f"weight {n.weight!r}: its stored rounding does not fit the weight ({e})")

    def array(self, name: str) -> np.ndarray:
        """An initializer as the integer graph quantizes it: the table's calibrated value, else the model's."""
        if self._params is None:
            try:
                self._params = calibrated_parameters(self.graph.model, self.table.doc)
            except CalibrationError as e:
                self.fail(str(e))
        return self._params[name] if name in self._params else numpy_helper.to_array(self.inits[name])

    def multiplier(self, m, what: str, rounding: str | None = None) -> Multiplier:
        m = np.asarray(m, np.float64)
        if not (np.isfinite(m).all() and (m > 0).all()):
            self.fail(f"{what}: the requantization multiplier is not a finite positive number")
        q, shift = quantize_multiplier(m)
        if (shift > MAX_MULTIPLIER_SHIFT).any():
            self.fail(f"{what}: requantization multiplier {float(m.max()):.3g} is >= 2^{MAX_MULTIPLIER_SHIFT}, "
                      "beyond the integer kernels (the scales are implausible)")
        rounding = rounding or self.rules.rounding
        if rounding not in ROUNDINGS:
            self.fail(f"rules {self.rules.name!r}: unknown rounding {rounding!r}")
        return Multiplier(q, shift, rounding)

    def requant(self, m, out: QParams, what: str, activation=None, rounding: str | None = None) -> Requant:
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
    def _weighted(self, n: INode, attrs: dict, weight: np.ndarray, sw: np.ndarray) -> QNode:
        x = self.q(n.inputs[0])
        s_acc = (np.float64(np.float32(x.scale)) * sw.astype(np.float64)).astype(np.float32)
        bias = None
        if n.bias:
            b = self.array(n.bias).astype(np.float64)
            codes = np.rint(b / s_acc.astype(np.float64))
            if not (np.isfinite(codes).all() and (np.abs(codes) <= INT32_MAX).all()):
                self.fail(f"layer {n.name!r}: bias {n.bias!r} at the accumulator scale (input {n.inputs[0]!r} x "
                          f"weight scales) does not fit int32: those scales are implausibly small")
            bias = codes.astype(np.int64)
        # the accumulator must fit int32 for every input (the kernels accumulate in int32)
        reach = max(abs(x.lo - x.zp), abs(x.hi - x.zp))
        w_abs = np.abs(weight.astype(np.int64))
        per_channel = (w_abs.reshape(w_abs.shape[0], -1).sum(axis=1) if n.kind == "conv"
                       else w_abs.sum(axis=0)) * reach
        if bias is not None:
            per_channel = per_channel + np.abs(bias)
        if per_channel.max(initial=0) > INT32_MAX:
            self.fail(f"layer {n.name!r}: its int32 accumulator can overflow (worst case "
                      f"{int(per_channel.max()):,}): the bias or weight scales are implausible")
        out = n.outputs[0]
        act = (n.activation.min, n.activation.max) if n.activation else None
        if out in self.outputs and self.rules.float_outputs:  # a float graph output: from the accumulator
            return self.node(n, qout=(None,), attrs=attrs, weight=weight, weight_scale=sw, bias=bias,
                             acc_scale=s_acc, float_clamp=act)
        qo = self.q(out)
        # M = s_in s_w / s_out in float64 from the float32 scales (TFLite's PopulateConvolutionQuantizationParams)
        m = np.float64(x.scale) * sw.astype(np.float64) / np.float64(qo.scale)
        rounding = self.rules.gemm_rounding if n.kind == "gemm" else None
        rq = self.requant(m, qo, f"layer {n.name!r}", act, rounding)
        return self.node(n, attrs=attrs, weight=weight, weight_scale=sw, bias=bias, acc_scale=s_acc, requant=rq)

    def conv(self, n: INode) -> QNode:
        codes, sw = self.weight_codes(n)
        a = n.attrs
        attrs = {"strides": list(a.get("strides", [1, 1])), "pads": list(a.get("pads", [0, 0, 0, 0])),
                 "dilations": list(a.get("dilations", [1, 1])), "group": int(a.get("group", 1))}
        return self._weighted(n, attrs, codes, sw)

    def gemm(self, n: INode) -> QNode:
        codes, sw = self.weight_codes(n)
        kn = codes.T if n.w_axis == 0 else codes  # [K, N]
        return self._weighted(n, {}, np.ascontiguousarray(kn), sw)

    def add(self, n: INode) -> QNode:
        qa, qb = self.q(n.inputs[0]), self.q(n.inputs[1])
        qo = self.q(n.outputs[0])
        twice_max = 2.0 * max(qa.scale, qb.scale)
        what = f"add {n.name!r}"
        act = (n.activation.min, n.activation.max) if n.activation else None
        p = AddParams(ADD_LEFT_SHIFT, self.multiplier(qa.scale / twice_max, what),
                      self.multiplier(qb.scale / twice_max, what),
                      self.requant(twice_max / ((1 << ADD_LEFT_SHIFT) * qo.scale), qo, what, act))
        return self.node(n, add=p)

    def mul(self, n: INode) -> QNode:
        qa, qb = self.q(n.inputs[0]), self.q(n.inputs[1])
        qo = self.q(n.outputs[0])
        return self.node(n, requant=self.requant(qa.scale * qb.scale / qo.scale, qo, f"mul {n.name!r}"))

    def lookup(self, n: INode) -> QNode:
        qi, qo = self.q(n.inputs[0]), self.q(n.outputs[0])
        codes = np.arange(qi.lo, qi.hi + 1, dtype=np.int64)
        if self.rules.lookup_arithmetic == "float32":
            # TFLite's LUTPopulate: dequantize, f and rescale in float32, round half away from zero
            fn32 = FLOAT32_LOOKUPS[n.lookup]
            x32 = (np.float32(qi.scale) * (codes - qi.zp).astype(np.float32)).astype(np.float32)
            scaled = (fn32(x32) * (np.float32(1) / np.float32(qo.scale))).astype(np.float32).astype(np.float64)
            rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
        else:
            # the input codes' real values (float32 scale, as QuantizeLinear / DequantizeLinear have it), f in
            # float64, one rounding half to even
            fn = gated(n.gate) if n.gate else LOOKUP_FUNCTIONS[n.lookup]
            x = (codes - qi.zp).astype(np.float64) * np.float64(qi.scale)
            rounded = np.rint(fn(x, n.attrs) / np.float64(qo.scale))
        table = np.clip(rounded + qo.zp, qo.lo, qo.hi).astype(np.int64)
        return self.node(n, table=table, attrs={"function": n.lookup})

    def clamp(self, n: INode) -> QNode:
        qi, qo = self.q(n.inputs[0]), self.q(n.outputs[0])
        cmin, cmax = clip_bounds(n, self.onnx_nodes, self.inits)
        lo, hi = clamp_codes(qo, cmin, cmax, self.rules.input_rounding)
        rs = self.rescale(qi, qo, f"{n.op_type} {n.name!r}")
        return self.node(n, rescale=(rs,), attrs={"clamp": [lo, hi]})

    def max_pool(self, n: INode) -> QNode:
        qi, qo = self.q(n.inputs[0]), self.q(n.outputs[0])
        return self.node(n, attrs=pool_geometry(n, self.graph.shapes),
                         rescale=(self.rescale(qi, qo, f"max pool {n.name!r}"),))

    def _pool(self, n: INode, count: int, attrs: dict) -> QNode:
        qi, qo = self.q(n.inputs[0]), self.q(n.outputs[0])
        if self.rules.pool_division:  # the mean of codes: input and output must be one grid
            if qi != qo:
                self.fail(f"pool {n.name!r}: rules {self.rules.name!r} need its input and output at one scale and "
                          f"zero point ({n.inputs[0]!r}: {qi.scale:.6g}/{qi.zp}, {n.outputs[0]!r}: "
                          f"{qo.scale:.6g}/{qo.zp}); a table for other rules?")
            return self.node(n, attrs=attrs, count=count, divide=True)
        return self.node(n, attrs=attrs, count=count,
                         requant=self.requant(qi.scale / (qo.scale * count), qo, f"pool {n.name!r}"))

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


def clamp_codes(q: QParams, cmin: float | None, cmax: float | None, rounding: str = "half_even") -> tuple[int, int]:
    """The code range [lo, hi] of q narrowed to the real range [cmin, cmax] (None: unbounded): the clamp of a
    Relu (cmin 0: the zero point) or a Clip (ReLU6: the code of 6.0). rounding "half_away": TFLite's
    CalculateActivationRangeQuantized (f / scale in float32, TfLiteRound)."""

    def code(v: float) -> int:
        if rounding == "half_away":
            r = float(np.float32(v) / np.float32(q.scale))
            return q.zp + int(np.sign(r) * np.floor(abs(r) + 0.5))
        return q.zp + int(np.rint(v / q.scale))

    lo, hi = q.lo, q.hi
    if cmin is not None:
        lo = max(lo, min(hi, code(cmin)))
    if cmax is not None:
        hi = min(hi, max(lo, code(cmax)))
    return lo, hi


def clip_bounds(n: INode, onnx_nodes: dict, inits: dict) -> tuple[float | None, float | None]:
    """A standalone Relu's or Clip's real bounds (None: unbounded): Clip's attributes (opset < 11) or its constant
    inputs (initializer protos or arrays)."""
    if n.op_type == "Relu":
        return 0.0, None
    node = onnx_nodes[n.name]
    bounds = []
    for key, idx in (("min", 1), ("max", 2)):
        if key in n.attrs:
            v = float(n.attrs[key])
        elif len(node.input) > idx and node.input[idx]:
            t = inits[node.input[idx]]
            v = float(t if isinstance(t, np.ndarray) else numpy_helper.to_array(t))
        else:
            v = None
        bounds.append(None if v is None or not math.isfinite(v) else v)
    return bounds[0], bounds[1]


def pool_geometry(n: INode, shapes: dict) -> dict:
    """A pool's kernel, strides, pads (t, l, b, r) and output size; ceil_mode as the extra end padding that the
    output shape implies (never read: the lowest code for max pooling)."""
    a = n.attrs
    kh, kw = a["kernel_shape"]
    sh, sw = a.get("strides", [1, 1])
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    _, _, h, w = shapes[n.inputs[0]]
    _, _, oh, ow = shapes[n.outputs[0]]
    pb = max(pb, (oh - 1) * sh + kh - h - pt)
    pr = max(pr, (ow - 1) * sw + kw - w - pl)
    return {"kernel": [kh, kw], "strides": [sh, sw], "pads": [pt, pl, pb, pr], "out_hw": [oh, ow]}


def quantize_graph(graph: IntGraph, table: CalibrationTable, rules: TargetRules | str | None = None,
                   where: str = "calibration table") -> QGraph:
    """The QGraph of `graph` under `table` (made under `rules`; default: the rules the table records)."""
    rules = get_rules(rules if rules is not None else table.doc.get("target", "tvm"))
    qz = Quantizer(graph, table, rules, where)
    nodes = [qz.run_node(n) for n in graph.nodes]
    return QGraph(nodes, graph.input, qz.q(graph.input), list(graph.outputs), rules,
                  tuple(graph.shapes.get(graph.input) or ()), rules.input_rounding,
                  {o: qz.q(o).scale for o in graph.outputs})
