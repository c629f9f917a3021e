"""The integer reference executor: runs a quantized graph (tcc.quant.intgraph.qgraph) with integer arithmetic only,
exactly
as an integer backend does: the golden INT8 model of the TVM (and later TFLite and AX) backends.

    y = run_reference(fp32_onnx, table, x)                       # plan + quantize_graph + Reference().run
    y, codes = Reference().run(qgraph, x, return_all=True)       # with {tensor: QTensor} of every quantized tensor

`Reference` is an interpreter with one method per kind of the integer op table (tcc.intops); each method's
docstring is that kind's integer meaning. The constants it uses (weight and bias codes, fixed-point multipliers,
clamp bounds, lookup tables) come from the QGraph: computed once, shared with every backend lowering.

Conventions (TFLite / gemmlowp):
- a quantized tensor is (int codes, scale, zero point); the graph input is quantized once with equation (8)
  (round half to even, like ONNX QuantizeLinear), everything after it is integer;
- conv / gemm: int8 x int8 (zero-point-corrected) products accumulated in int32 (int64 here; the quantizer proved
  the worst case fits int32), plus the int32 bias at scale s_in * s_w;
- requantization: real multiplier M = s_in * s_w / s_out per channel as a Q31 fixed-point multiplier and a shift
  (TFLite's representation), applied as one exact int64 product and one rounding shift, round half to even
  (`multiply_by_quantized_multiplier` says why not gemmlowp's double rounding), then + zero point and clamp; a
  folded ReLU / ReLU6 narrows the clamp (at the zero point, at the code of 6.0);
- max pool, reshape, transpose, split and concat move codes (rescaled where input and output parameters differ);
  average pooling sums zero-point-free codes and requantizes by s_in / (s_out k);
- a graph output that a conv / gemm writes stays float: dequantized from the accumulator (acc * s_in * s_w); one
  that another computing node writes is, under ONNX Runtime's rules, a float island (`float_graph_outputs`);
- residual Add follows TFLite's integer ADD: both inputs are left-shifted by 20 bits, brought to the common scale
  2 * max(s_a, s_b) by per-input fixed-point multipliers, summed, and requantized to the output;
- Mul: (a - za)(b - zb) in int32 requantized by s_a s_b / s_out; lookup ops: out = table[code - lowest code];
- softmax: exp of each code's distance below its row's maximum from a table (2^15 exp(-d s_in)), normalized by one
  integer division per row (`softmax_codes`);
- a per-channel multiply (PReLU, a layer scale): the zero-point-free code times a small integer per channel
  (the factor's sign, or its int8 code under TFLite's rules), requantized per channel, one multiplier for codes at
  or above the zero point and one below;
- a float island (tcc.quant.table.placement) dequantizes its quantized inputs ((q - zp) * s in float32), runs its FP32
  sub-model on ONNX Runtime's float kernels (tcc.quant.intgraph.islands) and quantizes the outputs an integer node reads
  with the graph input's equation (8); a tensor between islands stays float.
"""

from __future__ import annotations

import numpy as np
import onnx

from ...intops import REFERENCE, Interpreter
from ..table.file import CalibrationTable
from . import gemmlowp
from .fixed_point import (  # noqa: F401 (re-exported)
    INT32_MAX,
    INT32_MIN,
    ROUNDING_FUNCTIONS,
    gemmlowp_multiply,
    multiply,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    single_half_away_multiply,
)
from .islands import FloatOps
from .match import plan
from .qgraph import quantize_graph
from .qtypes import ADD_LEFT_SHIFT, AddParams, Multiplier, QGraph, QNode, QParams, Requant

__all__ = [
    "ADD_LEFT_SHIFT",
    "INT32_MAX",
    "INT32_MIN",
    "QTensor",
    "Reference",
    "add_int",
    "add_params",
    "backend_tensors",
    "multiply_by_quantized_multiplier",
    "per_op_deviation",
    "quantize_multiplier",
    "requantize",
    "run_reference",
]


def apply_requant(acc: np.ndarray, rq: Requant, axis: int = 1) -> np.ndarray:
    return np.clip(multiply(acc, rq.mult, axis) + rq.zp, rq.lo, rq.hi)


def requantize(acc: np.ndarray, m, zp: int, lo: int, hi: int, axis: int = 1) -> np.ndarray:
    """clamp(acc * m + zp, lo, hi) with the real multiplier(s) m as fixed point (one per channel along `axis`)."""
    q, shift = quantize_multiplier(m)
    return np.clip(multiply(acc, Multiplier(q, shift), axis) + zp, lo, hi)


def add_params(s_a: float, s_b: float, s_o: float) -> dict:
    """Fixed-point parameters of `add_int` (TFLite's ADD): the inputs go to the common scale twice_max =
    2 * max(s_a, s_b) at 2^20 finer resolution (multipliers s_a / twice_max, s_b / twice_max <= 1/2), the sum
    back to s_o (multiplier twice_max / (2^20 s_o)). Returns python ints {left_shift, a: (q, shift), b: ..., out: ...}
    (what tcc.quant.intgraph.qgraph.Quantizer.add computes for an add node)."""
    twice_max = 2.0 * max(float(s_a), float(s_b))

    def qm(m):
        q, shift = quantize_multiplier(m)
        return int(q[0]), int(shift[0])

    return {
        "left_shift": ADD_LEFT_SHIFT,
        "a": qm(float(s_a) / twice_max),
        "b": qm(float(s_b) / twice_max),
        "out": qm(twice_max / ((1 << ADD_LEFT_SHIFT) * float(s_o))),
    }


def add_codes(a_q: np.ndarray, a_zp: int, b_q: np.ndarray, b_zp: int, p: AddParams) -> np.ndarray:
    """TFLite's integer ADD with this module's rounding: (q - zp) << 20 fits int32 for 8-bit codes
    (|.| <= 255 * 2^20 < 2^28), << 15 for 16-bit ones (the quantizer checked |q - zp| << 15 < 2^31); each rescaled
    input is at most half of that, so the sum fits int32 too."""
    sa = multiply((np.asarray(a_q, np.int64) - a_zp) << p.left_shift, p.a)
    sb = multiply((np.asarray(b_q, np.int64) - b_zp) << p.left_shift, p.b)
    return apply_requant(sa + sb, p.out)


def add_int(a: QTensor, b: QTensor, out: QParams) -> np.ndarray:
    """Integer a + b (codes at their own scales and zero points) -> codes at `out`'s scale and zero point, clamped to
    its range."""
    p = add_params(a.scale, b.scale, out.scale)

    def mult(key):
        q, shift = p[key]
        return Multiplier(np.array([q], np.int64), np.array([shift], np.int64))

    out = QParams(float(out.scale), int(out.zp), int(out.lo), int(out.hi))
    requant = Requant(mult("out"), out.zp, out.lo, out.hi, out)
    return add_codes(a.q, a.zp, b.q, b.zp, AddParams(p["left_shift"], mult("a"), mult("b"), requant))


def softmax_codes(q: np.ndarray, table: np.ndarray, numerator: int, shift: int, out: QParams) -> np.ndarray:
    """The integer softmax of codes q along their last axis (Reference.softmax)."""
    q = np.asarray(q, np.int64)
    e = table[np.minimum(q.max(axis=-1, keepdims=True) - q, len(table) - 1)]
    r = numerator // e.sum(axis=-1, keepdims=True)
    return np.clip(((e * r + (1 << (shift - 1))) >> shift) + out.zp, out.lo, out.hi)


# ---------------------------------------------------------------------------------------------------- the executor
class QTensor:
    """Codes (int64) with their quantization parameters."""

    __slots__ = ("params", "q")

    def __init__(self, q: np.ndarray, params: QParams):
        self.q, self.params = q, params

    scale = property(lambda self: self.params.scale)
    zp = property(lambda self: self.params.zp)
    lo = property(lambda self: self.params.lo)
    hi = property(lambda self: self.params.hi)

    def dequant(self) -> np.ndarray:
        return ((self.q - self.zp) * np.float32(self.scale)).astype(np.float32)


def _float_clamped(y: np.ndarray, n: QNode) -> np.ndarray:
    """A float output (n.qout[0] None) clamped by its folded activation's float bounds, as float32."""
    if n.float_clamp is not None:
        lo, hi = n.float_clamp
        y = np.clip(y, -np.inf if lo is None else lo, np.inf if hi is None else hi)
    return y.astype(np.float32)


def quantize_input(x: np.ndarray, p: QParams, rounding: str = "half_even") -> np.ndarray:
    """Equation (8) in float32 + zero point, clamped: the graph input's codes; x / s rounded half to even (ONNX
    QuantizeLinear) or half away from zero (TFLite's QUANTIZE)."""
    v = (np.asarray(x, np.float32) / np.float32(p.scale)).astype(np.float32).astype(np.float64)
    r = np.rint(v) if rounding == "half_even" else np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + p.zp, p.lo, p.hi).astype(np.int64)


def divide_half_away(total: np.ndarray, count: int) -> np.ndarray:
    """total / count rounded half away from zero in integers (TFLite's average pooling)."""
    return np.where(total > 0, (total + count // 2) // count, -((-total + count // 2) // count))


def _moved(x: QTensor, codes: np.ndarray, rs: Requant | None, out: QParams) -> QTensor:
    """Codes moved out of x, at the output's parameters: a copy (clamped to its range) or a requantization."""
    if rs is None:
        return QTensor(np.clip(codes, out.lo, out.hi), out)
    return QTensor(apply_requant(codes - x.zp, rs), out)


def _gathered(codes: np.ndarray, attrs: dict) -> np.ndarray:
    """NCHW codes at the rows attrs index_h and the columns index_w."""
    return np.take(np.take(codes, attrs["index_h"], axis=2), attrs["index_w"], axis=3)


def bilinear_codes(codes: np.ndarray, rows: dict, cols: dict) -> np.ndarray:
    """NCHW codes resized bilinearly in integers: the rows' two taps weighted (d - r, r), then the columns', the
    sum of the codes (zero point included) divided by d_h d_w rounding half away from zero: LiteRT's int8
    RESIZE_BILINEAR's sums and rounding (its MultiplyByQuantizedMultiplier), where it resizes by an integer factor."""
    v = codes.astype(np.int64)
    r = np.asarray(rows["r"]).reshape(-1, 1)
    v = np.take(v, rows["i0"], axis=2) * (rows["d"] - r) + np.take(v, rows["i1"], axis=2) * r
    c = np.asarray(cols["r"])
    v = np.take(v, cols["i0"], axis=3) * (cols["d"] - c) + np.take(v, cols["i1"], axis=3) * c
    dd = rows["d"] * cols["d"]
    return np.sign(v) * ((np.abs(v) + dd // 2) // dd)


def _conv_int(x: np.ndarray, w: np.ndarray, attrs: dict) -> np.ndarray:
    """Integer NCHW conv (int64 accumulate): im2col + integer matmul per group."""
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    g = int(attrs.get("group", 1))
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    pt, pl, pb, pr = attrs.get("pads", [0, 0, 0, 0])
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, c, kh, kw, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[
                :, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw
            ]
    cols = cols.reshape(n, g, cg * kh * kw, oh * ow)
    wg = w.reshape(g, co // g, cg * kh * kw).astype(np.int64)
    out = np.einsum("gok,ngkp->ngop", wg, cols)
    return out.reshape(n, co, oh, ow)


def _conv_transpose_int(x: np.ndarray, w: np.ndarray, attrs: dict) -> np.ndarray:
    """Integer NCHW transposed conv (int64 accumulate), one group: input pixel (i, j) times tap (k_h, k_w) of the
    [C_in, C_out, k_h, k_w] weight lands on the full output's (s_h i + d_h k_h, s_w j + d_w k_w); output_padding
    appends rows and columns no tap reaches; the pads are cut from the full output's two ends."""
    n, _, h, wd = x.shape
    _, co, kh, kw = w.shape
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    pt, pl, pb, pr = attrs.get("pads", [0, 0, 0, 0])
    oph, opw = attrs.get("output_padding", [0, 0])
    full = np.zeros((n, co, sh * (h - 1) + dh * (kh - 1) + 1 + oph, sw * (wd - 1) + dw * (kw - 1) + 1 + opw), np.int64)
    xi, wi = x.astype(np.int64), w.astype(np.int64)
    for i in range(kh):
        for j in range(kw):
            rows, cols = slice(i * dh, i * dh + sh * (h - 1) + 1, sh), slice(j * dw, j * dw + sw * (wd - 1) + 1, sw)
            full[:, :, rows, cols] += np.einsum("nchw,co->nohw", xi, wi[:, :, i, j])
    return full[:, :, pt : full.shape[2] - pb, pl : full.shape[3] - pr]


def _windows(x: np.ndarray, geo: dict, kind: str, pad_value) -> np.ndarray:
    """Max or sum over the pooling windows of geo (kernel, strides, pads t l b r) of NCHW codes."""
    kh, kw = geo["kernel"]
    sh, sw = geo["strides"]
    pt, pl, pb, pr = geo["pads"]
    oh, ow = geo["out_hw"]
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    out = None
    for i in range(kh):
        for j in range(kw):
            v = xp[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            out = v.copy() if out is None else (np.maximum(out, v) if kind == "max" else out + v)
    return out


class Reference(Interpreter):
    """The integer meaning of every kind of the integer op table, in numpy (NCHW codes as int64)."""

    lowering = REFERENCE

    def __init__(self):
        self.floats = None  # tcc.quant.intgraph.islands.FloatOps, made when the first island runs
        self.batch = 1  # the batch a constant is repeated over (run() sets it; one op alone: broadcasting)

    def run(self, qg: QGraph, x: np.ndarray, return_all: bool = False):
        """The float graph output(s) for float input x [N, C, H, W]; with return_all also {tensor: QTensor}."""
        self.batch = len(x)
        env: dict[str, object] = {
            qg.input: QTensor(quantize_input(x, qg.input_q, qg.input_rounding), qg.input_q)
            if qg.input_q is not None
            else np.asarray(x, np.float32)
        }
        for node in qg.nodes:
            env.update(zip(node.outputs, self.run_node(node, *(env[i] for i in node.inputs))))
        outs = [env[o].dequant() if isinstance(env[o], QTensor) else env[o] for o in qg.outputs]
        result = outs[0] if len(outs) == 1 else outs
        if return_all:
            return result, {k: v for k, v in env.items() if isinstance(v, QTensor)}
        return result

    # ------------------------------------------------------------------------------------------ weighted
    def _accumulated(self, n: QNode, acc: np.ndarray) -> list:
        """+ bias; then requantized, or (a float graph output) dequantized: acc * s_in * s_w, float clamp."""
        ch = [1, -1] + [1] * (acc.ndim - 2)
        if n.bias is not None:
            acc = acc + n.bias.reshape(ch)
        if n.qout[0] is None:
            return [_float_clamped(acc.astype(np.float64) * n.acc_scale.astype(np.float64).reshape(ch), n)]
        return [QTensor(apply_requant(acc, n.requant, axis=1), n.qout[0])]

    def conv(self, n: QNode, x: QTensor) -> list:
        """Integer conv of zero-point-free codes with the int8 weight codes (attrs: strides, pads, dilations,
        group), int32 bias at s_in * s_w, per-channel requantization (a folded activation in its clamp)."""
        return self._accumulated(n, _conv_int(x.q - x.zp, n.weight, n.attrs))

    def pooled_conv(self, n: QNode, x: QTensor) -> list:
        """The conv (as `conv`) on the window sums of zero-point-free codes over attrs "pool" (exact: no rounding),
        its bias at s_in s_w / area and its requantization by s_in s_w / (area s_out) (the quantizer's)."""
        return self._accumulated(n, _conv_int(_windows(x.q - x.zp, n.attrs["pool"], "sum", 0), n.weight, n.attrs))

    def conv_transpose(self, n: QNode, x: QTensor) -> list:
        """Integer transposed conv of zero-point-free codes with the int8 weight codes ([C_in, C_out, k_h, k_w];
        attrs: strides, pads, output_padding), int32 bias at s_in * s_w, per-channel requantization."""
        return self._accumulated(n, _conv_transpose_int(x.q - x.zp, n.weight, n.attrs))

    def gemm(self, n: QNode, x: QTensor) -> list:
        """[N, K] zero-point-free codes @ int8 weight codes [K, F], + int32 bias, per-feature requantization."""
        xi = x.q - x.zp
        return self._accumulated(n, xi.reshape(xi.shape[0], -1) @ n.weight.astype(np.int64))

    # ------------------------------------------------------------------------------------------ elementwise
    def add(self, n: QNode, a: QTensor, b: QTensor) -> list:
        """TFLite's integer ADD (`add_codes`) with broadcasting; a folded activation narrows the clamp."""
        return [QTensor(add_codes(a.q, a.zp, b.q, b.zp, n.add), n.qout[0])]

    def broadcast(self, n: QNode) -> list:
        """The constant's codes (n.weight, [1, ...]) repeated over the batch."""
        return [QTensor(np.repeat(n.weight, self.batch, axis=0), n.qout[0])]

    def add_constant(self, n: QNode, x: QTensor) -> list:
        """add_codes with the constant's int8 codes (n.weight, zero point 0, broadcast) as the second operand."""
        return [QTensor(add_codes(x.q, x.zp, n.weight, 0, n.add), n.qout[0])]

    def mul(self, n: QNode, a: QTensor, b: QTensor) -> list:
        """(a - za) * (b - zb) (|.| <= 255^2: int32), requantized by s_a s_b / s_out, with broadcasting."""
        return [QTensor(apply_requant((a.q - a.zp) * (b.q - b.zp), n.requant), n.qout[0])]

    def matmul(self, n: QNode, a: QTensor, b: QTensor) -> list:
        """Batched (a - za) @ (b - zb) of zero-point-free codes, summed in int64 (the quantizer checked that the
        sums fit int32), requantized by s_a s_b / s_out."""
        return [QTensor(apply_requant(np.matmul(a.q - a.zp, b.q - b.zp), n.requant), n.qout[0])]

    def lookup(self, n: QNode, x: QTensor) -> list:
        """out = table[code - lowest input code]: f sampled at every input code, quantized to the output."""
        return [QTensor(n.table[x.q - n.qin[0].lo], n.qout[0])]

    def softmax(self, n: QNode, x: QTensor) -> list:
        """Along the last axis: e = table[min(row max - code, len(table) - 1)] (2^15 exp(-d s_in)), r = C // sum(e)
        per row (attrs "numerator"), out = (e r + 2^(k-1)) >> k + zp (attrs "shift": k), clamped; all int32. Or
        (attrs "form" gemmlowp) LiteRT's reference int8 SOFTMAX (tcc.quant.intgraph.gemmlowp.softmax_codes)."""
        a = n.attrs
        if a.get("form") == "gemmlowp":
            return [QTensor(gemmlowp.softmax_codes(x.q, a["multiplier"], a["left_shift"], a["diff_min"]), n.qout[0])]
        return [QTensor(softmax_codes(x.q, n.table, a["numerator"], a["shift"], n.qout[0]), n.qout[0])]

    def channel_scale(self, n: QNode, x: QTensor) -> list:
        """Per channel c (axis 1): the zero-point-free code d times factors[0, c] requantized by `requant` where
        d >= 0, times factors[1, c] requantized by `below` where d < 0 (PReLU's two slopes; a layer scale's one)."""
        d = x.q - x.zp
        shape = [1, -1] + [1] * (d.ndim - 2)
        above = apply_requant(d * n.factors[0].reshape(shape), n.requant)
        below = apply_requant(d * n.factors[1].reshape(shape), n.below)
        return [QTensor(np.where(d >= 0, above, below), n.qout[0])]

    def clamp(self, n: QNode, x: QTensor) -> list:
        """Relu / Clip on its own: the codes at the output's parameters, clamped to attrs["clamp"]."""
        y = _moved(x, x.q, n.rescale[0], n.qout[0])
        lo, hi = n.attrs["clamp"]
        return [QTensor(np.clip(y.q, lo, hi), n.qout[0])]

    # ------------------------------------------------------------------------------------------ pools
    def max_pool(self, n: QNode, x: QTensor) -> list:
        """Max of codes over each window, padding with the lowest code (never chosen), then rescaled."""
        return [_moved(x, _windows(x.q, n.attrs, "max", x.lo), n.rescale[0], n.qout[0])]

    def global_max_pool(self, n: QNode, x: QTensor) -> list:
        """Max of codes over H x W (keeping [N, C, 1, 1]), then rescaled."""
        return [_moved(x, x.q.max(axis=(2, 3), keepdims=True), n.rescale[0], n.qout[0])]

    def avg_pool(self, n: QNode, x: QTensor) -> list:
        """Window sums of zero-point-free codes (zero padding counted), requantized by s_in / (s_out * area); or
        (n.divide: input and output on one grid, TFLite) the window sums of codes (padding: the zero point) divided
        by the area, half away from zero."""
        if n.divide:
            return [QTensor(divide_half_away(_windows(x.q, n.attrs, "sum", x.zp), n.count), n.qout[0])]
        return [QTensor(apply_requant(_windows(x.q - x.zp, n.attrs, "sum", 0), n.requant), n.qout[0])]

    def global_avg_pool(self, n: QNode, x: QTensor) -> list:
        """Sum over H x W of zero-point-free codes, requantized by s_in / (s_out * H * W); or (n.divide) the sum of
        codes divided by H * W, half away from zero."""
        if n.divide:
            return [QTensor(divide_half_away(x.q.sum(axis=(2, 3), keepdims=True), n.count), n.qout[0])]
        total = (x.q - x.zp).sum(axis=(2, 3), keepdims=True)
        return [QTensor(apply_requant(total, n.requant), n.qout[0])]

    # ------------------------------------------------------------------------------------------ moves
    def concat(self, n: QNode, *xs: QTensor) -> list:
        """Each input at the output's parameters (a copy where they are equal), concatenated along attrs axis."""
        parts = [_moved(x, x.q, rs, n.qout[0]).q for x, rs in zip(xs, n.rescale)]
        return [QTensor(np.concatenate(parts, axis=n.attrs["axis"]), n.qout[0])]

    def resize_nearest(self, n: QNode, x: QTensor) -> list:
        """The codes at the input rows attrs index_h and columns index_w (a nearest resize), then rescaled."""
        return [_moved(x, _gathered(x.q, n.attrs), n.rescale[0], n.qout[0])]

    def resize_bilinear(self, n: QNode, x: QTensor) -> list:
        """Per output the four codes it reads times their exact weights, summed in int64, divided by d_h d_w
        rounding half away from zero (attrs rows, cols: tcc.ops.spatial.linear_rational), then rescaled."""
        return [_moved(x, bilinear_codes(x.q, n.attrs["rows"], n.attrs["cols"]), n.rescale[0], n.qout[0])]

    def pad(self, n: QNode, x: QTensor) -> list:
        """The codes padded with attrs code (mode constant) or gathered (reflect, edge), then rescaled."""
        a = n.attrs
        if a["mode"] != "constant":
            return [_moved(x, _gathered(x.q, a), n.rescale[0], n.qout[0])]
        t, l, b, r = a["pads"]
        padded = np.pad(x.q, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=a["code"])
        return [_moved(x, padded, n.rescale[0], n.qout[0])]

    def reshape(self, n: QNode, x: QTensor) -> list:
        """The codes in the shape [N, *attrs shape] (element order unchanged)."""
        # -1: a row-folding reshape ([N, T, D] -> [N T, D] before a linear layer, and back) keeps any batch size
        return [_moved(x, x.q.reshape(-1, *n.attrs["shape"]), n.rescale[0], n.qout[0])]

    def transpose(self, n: QNode, x: QTensor) -> list:
        """The codes with their axes permuted by attrs perm."""
        return [_moved(x, x.q.transpose(n.attrs["perm"]), n.rescale[0], n.qout[0])]

    def split(self, n: QNode, x: QTensor) -> list:
        """The codes split along attrs axis into parts of attrs sizes."""
        cuts = np.cumsum(n.attrs["sizes"])[:-1]
        parts = np.split(x.q, cuts, axis=n.attrs["axis"])
        return [_moved(x, p, rs, q) for p, rs, q in zip(parts, n.rescale, n.qout)]

    def slice(self, n: QNode, x: QTensor) -> list:
        """The codes at attrs ranges: (axis, start, stop, step) per sliced axis, as Python's range."""
        q = x.q
        for axis, start, stop, step in n.attrs["ranges"]:
            q = np.take(q, np.arange(start, stop, step), axis=axis)
        return [_moved(x, q, n.rescale[0], n.qout[0])]

    # ------------------------------------------------------------------------------------------ float islands
    def float_island(self, n: QNode, *xs) -> list:
        """The node's FP32 sub-model on its inputs (dequantized where quantized), in float32; each output that an
        integer node reads quantized with equation (8) under the target's rounding, the others float."""
        if self.floats is None:
            self.floats = FloatOps()
        ys = self.floats.run(n, [x.dequant() if isinstance(x, QTensor) else x for x in xs])
        return [QTensor(quantize_input(y, q, n.rounding), q) if q is not None else y for y, q in zip(ys, n.qout)]


def run_reference(model: onnx.ModelProto, table: CalibrationTable, x: np.ndarray, return_all: bool = False):
    """Run `model` (the FP32 graph the table was made for) in integers on float input x [N, C, H, W]: the graph
    output(s), dequantized; with return_all also {tensor: QTensor} of every quantized tensor."""
    graph = plan(model, rules=table.rules)
    return Reference().run(quantize_graph(graph, table), x, return_all)  # quantize_graph: with the table's placement


def backend_tensors(qg: QGraph, x: np.ndarray, values: dict) -> tuple[dict, dict]:
    """A backend's exposed tensors ({name: array}) as per_op_deviation takes them: (codes, floats), integer arrays
    apart from float ones (tensors between float islands), with the graph input added: its codes from equation
    (8), exact everywhere (ORT may expose them space-to-depth rearranged), or the input itself when only float
    islands read it."""
    codes = {k: v for k, v in values.items() if not np.issubdtype(np.asarray(v).dtype, np.floating)}
    floats = {k: v for k, v in values.items() if k not in codes}
    if qg.input_q is not None:
        codes[qg.input] = quantize_input(x, qg.input_q, qg.input_rounding)
    else:
        floats[qg.input] = np.asarray(x, np.float32)
    return codes, floats


def per_op_deviation(qg: QGraph, codes: dict, outputs: dict, floats: dict | None = None) -> dict:
    """How far a backend's integer ops are from the reference's, op by op: each op of `qg` run by the reference
    on the backend's own codes of its inputs (`codes`: tensor -> codes the backend computed), against the
    backend's codes of its outputs; a float graph output (`outputs`: name -> float array) in units of its
    calibrated step. Unlike an end-to-end comparison this is not blurred by the network amplifying a one-LSB tie
    break; it is what a backend that requantizes in float (ONNX Runtime) can promise: at most 1 LSB per op.

    Float islands are run the same way; a float tensor between islands comes from `floats` (the backend's) or, where
    the backend keeps it to itself, from the reference's own island run on the backend's codes. Integer ops and
    islands are reported apart (`max_lsb_integer`, `max_lsb_islands`): the contract differs (tcc.tolerance)."""
    ref = Reference()
    floats = dict(floats or {})
    by_kind: dict[str, float] = {}
    worst, worst_op, differ, total, checked = 0.0, None, 0, 0, 0
    part = {True: 0.0, False: 0.0}
    for n in qg.nodes:
        ins = []
        for i, p in zip(n.inputs, n.qin):
            if p is not None and i in codes:
                ins.append(QTensor(np.asarray(codes[i], np.int64), p))
            elif p is None and i in floats:
                ins.append(np.asarray(floats[i], np.float32))
        if len(ins) != len(n.inputs):
            continue
        compared, to_compare = 0, 0
        for o, r in zip(n.outputs, ref.run_node(n, *ins)):
            if not isinstance(r, QTensor) and o not in outputs:
                floats.setdefault(o, r)  # between islands: checked where it is quantized again
                continue
            to_compare += 1
            if isinstance(r, QTensor) and o in codes:
                d = np.abs(np.asarray(codes[o], np.int64) - r.q).astype(np.float64)
            elif o in outputs:  # a float graph output: dequantized codes, or a conv / gemm's float result
                value = r.dequant() if isinstance(r, QTensor) else r
                d = np.abs(np.asarray(outputs[o], np.float64) - value) / qg.output_scales[o]
            else:
                continue
            compared += 1
            m = float(d.max()) if d.size else 0.0
            differ += int(np.count_nonzero(d > 1e-6))
            total += d.size
            key = n.kind if n.integer else f"{n.kind} (float island)"
            by_kind[key] = max(by_kind.get(key, 0.0), m)
            part[n.integer] = max(part[n.integer], m)
            if worst_op is None or m > worst:
                worst, worst_op = m, n.name
        checked += compared == to_compare
    return {
        "ops_checked": checked,
        "max_lsb": worst,
        "worst_op": worst_op,
        "differing_elements": differ,
        "elements": total,
        "max_lsb_by_kind": dict(sorted(by_kind.items())),
        "max_lsb_integer": part[True],
        "max_lsb_islands": part[False],
        "islands": len(qg.islands),
    }
