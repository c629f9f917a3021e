"""The integer reference executor: runs an FP32 ONNX graph + calibration table with integer arithmetic only,
exactly as an integer backend would (the golden INT8 model for the TVM and TFLite backends).

Conventions (TFLite / gemmlowp):
- a quantized tensor is (int32 codes, scale, zero point); the graph input is quantized once with equation (8)
  (round half to even, like ONNX QuantizeLinear), everything after it is integer;
- conv / gemm: int8 x int8 (zero-point-corrected) products accumulated in int32 (int64 here, checked to fit
  int32), plus the int32 bias at scale s_in * s_w;
- requantization: real multiplier M = s_in * s_w / s_out per channel as a Q31 fixed-point multiplier and a shift
  (`quantize_multiplier`, TFLite's representation), applied as one exact int64 product and one rounding shift,
  round half to even (`multiply_by_quantized_multiplier` says why not gemmlowp's double rounding), then + zero
  point and clamp; a fused ReLU / ReLU6 is a clamp at the zero point (and at the code of 6.0);
- max pool and concat (shared scale) move codes; average pooling sums codes and requantizes by s_in / (s_out k);
- a graph output that the table does not quantize is dequantized from the accumulator (float = acc * s_in * s_w);
- residual Add (`add_int`) follows TFLite's integer ADD: both inputs are left-shifted by 20 bits, brought to the
  common scale 2 * max(s_a, s_b) by per-input fixed-point multipliers, summed, and requantized to the output.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .quantizer import qrange
from .stats import fused_away
from .table import CalibrationTable

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# ---------------------------------------------------------------------------------------------------- fixed point
def quantize_multiplier(m) -> tuple[np.ndarray, np.ndarray]:
    """Real multiplier(s) M > 0 -> (Q31 multiplier q in [2^30, 2^31), shift) with M ~ q * 2^(shift - 31)."""
    m = np.atleast_1d(np.asarray(m, dtype=np.float64))
    frac, exp = np.frexp(m)  # m = frac * 2^exp, frac in [0.5, 1)
    q = np.round(frac * (1 << 31)).astype(np.int64)
    full = q == (1 << 31)
    q[full] //= 2
    exp = exp + full
    return q, exp.astype(np.int64)


def multiply_by_quantized_multiplier(acc: np.ndarray, q: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """acc * M in integers, M = q * 2^(shift - 31): the exact product acc * q (|acc| < 2^31, q < 2^31: fits int64)
    shifted right by 31 - shift with ONE rounding, half to even.

    Why not gemmlowp's SaturatingRoundingDoublingHighMul + RoundingDivideByPOT (TFLite): they round twice, both
    half away from zero. Exact ties are frequent in CNNs (average pooling by 4 with an unchanged scale is M = 1/4:
    every odd sum is a tie), and half-away rounding turns them into a systematic bias that the following layers
    amplify: on DDSNet (GC checkpoint, histology crops) the gemmlowp convention gave INT8-vs-FP32 cosine 0.9939,
    this rounding 0.99932, the same as ONNX Runtime's float requantization (0.99930), max 0.5 output LSB apart.
    """
    acc = np.asarray(acc, dtype=np.int64)
    q = np.asarray(q, dtype=np.int64)
    k = 31 - np.asarray(shift, dtype=np.int64)
    if np.any(k < 1):
        raise OverflowError("requantization multiplier >= 2^30 is not supported")
    k = np.broadcast_to(np.minimum(k, 62), np.broadcast(acc, q, k).shape)  # |acc * q| < 2^62: shifting 62 gives 0
    prod = np.clip(acc, INT32_MIN, INT32_MAX) * q
    floor = prod >> k  # arithmetic shift: floor division by 2^k
    rem = prod - (floor << k)
    half = np.int64(1) << (k - 1)
    return floor + ((rem > half) | ((rem == half) & ((floor & 1) == 1)))


def requantize(acc: np.ndarray, m, zp: int, lo: int, hi: int, axis: int = 1) -> np.ndarray:
    q, shift = quantize_multiplier(m)
    if len(q) > 1:
        shape = [1] * acc.ndim
        shape[axis] = -1
        q, shift = q.reshape(shape), shift.reshape(shape)
    else:
        q, shift = q[0], shift[0]
    return np.clip(multiply_by_quantized_multiplier(acc, q, shift) + zp, lo, hi)


ADD_LEFT_SHIFT = 20  # TFLite's int8 ADD: headroom bits so the per-input rescaling keeps ~20 bits of precision


def add_params(s_a: float, s_b: float, s_o: float) -> dict:
    """Fixed-point parameters of `add_int` (TFLite's ADD): the inputs go to the common scale twice_max =
    2 * max(s_a, s_b) at 2^20 finer resolution (multipliers s_a / twice_max, s_b / twice_max <= 1/2), the sum
    back to s_o (multiplier twice_max / (2^20 s_o)). Returns python ints {left_shift, a: (q, shift), b: ..., out: ...}."""
    twice_max = 2.0 * max(float(s_a), float(s_b))

    def qm(m):
        q, shift = quantize_multiplier(m)
        return int(q[0]), int(shift[0])

    return {"left_shift": ADD_LEFT_SHIFT, "a": qm(float(s_a) / twice_max), "b": qm(float(s_b) / twice_max),
            "out": qm(twice_max / ((1 << ADD_LEFT_SHIFT) * float(s_o)))}


def add_int(a_q: np.ndarray, a_zp: int, s_a: float, b_q: np.ndarray, b_zp: int, s_b: float,
            s_o: float, zp_o: int, lo: int, hi: int) -> np.ndarray:
    """Integer a + b (codes at their own scales) -> codes at (s_o, zp_o), clamped to [lo, hi].

    TFLite's ADD with this module's rounding (`multiply_by_quantized_multiplier`: one rounding, half to even,
    instead of gemmlowp's double half-away rounding): (q - zp) << 20 fits int32 for 8-bit codes (|.| <= 255 * 2^20
    < 2^28), each rescaled input is at most half of that, so the sum fits int32 too."""
    p = add_params(s_a, s_b, s_o)
    sa = multiply_by_quantized_multiplier((np.asarray(a_q, np.int64) - a_zp) << p["left_shift"], *p["a"])
    sb = multiply_by_quantized_multiplier((np.asarray(b_q, np.int64) - b_zp) << p["left_shift"], *p["b"])
    return np.clip(multiply_by_quantized_multiplier(sa + sb, *p["out"]) + zp_o, lo, hi)


# ---------------------------------------------------------------------------------------------------- executor
class QTensor:
    __slots__ = ("q", "scale", "zp", "lo", "hi")

    def __init__(self, q, scale, zp, lo, hi):
        self.q, self.scale, self.zp, self.lo, self.hi = q, float(scale), int(zp), lo, hi

    def dequant(self) -> np.ndarray:
        return ((self.q - self.zp) * np.float32(self.scale)).astype(np.float32)


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
            cols[:, :, i, j] = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
    cols = cols.reshape(n, g, cg * kh * kw, oh * ow)
    wg = w.reshape(g, co // g, cg * kh * kw).astype(np.int64)
    out = np.einsum("gok,ngkp->ngop", wg, cols)
    return out.reshape(n, co, oh, ow)


def run_reference(model: onnx.ModelProto, table: CalibrationTable, x: np.ndarray, return_all: bool = False):
    """Run `model` (the FP32 graph the table was made for) in integers on float input x [N, C, H, W].

    Returns the float graph output(s) (dequantized), or with return_all also {tensor: QTensor} of every
    quantized tensor."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    gone = fused_away(model)
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    t = table.tensors
    env: dict[str, object] = {}

    def qparams(name):
        e = t[name]
        lo, hi = qrange(e["bits"], e["signed"])
        return float(e["scale"]), int(e["zero_point"]), lo, hi

    inp = [i.name for i in model.graph.input if i.name not in inits][0]
    s, zp, lo, hi = qparams(inp)
    q = np.clip(np.rint(np.asarray(x, np.float32) / np.float32(s)) + zp, lo, hi)  # equation (8) + zero point
    env[inp] = QTensor(q.astype(np.int64), s, zp, lo, hi)
    outputs = [o.name for o in model.graph.output]
    skip = set()
    for node in model.graph.node:
        if node.name in skip:
            continue
        op = node.op_type
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        if op in ("Conv", "Gemm", "MatMul"):
            xq: QTensor = env[node.input[0]]
            w = inits[node.input[1]]
            ws = table.weight_scale(node.input[1])
            wq = table.weight_codes(node.input[1], w).astype(np.int64)
            xi = xq.q - xq.zp
            if op == "Conv":
                acc = _conv_int(xi, wq, a)
            else:
                wm = wq.T if (op == "Gemm" and a.get("transB", 0)) else wq  # [K, C_out]
                acc = xi.reshape(xi.shape[0], -1) @ wm
            s_acc = (np.float64(np.float32(xq.scale)) * ws.astype(np.float64)).astype(np.float32)
            bias_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
            if bias_name:
                bq = bias_codes(inits[bias_name], s_acc)
                acc = acc + (bq.reshape(1, -1, 1, 1) if op == "Conv" else bq.reshape(1, -1))
            if np.abs(acc).max(initial=0) > INT32_MAX:
                raise OverflowError(f"{node.name}: int32 accumulator overflow")
            out_name, act = fused_output(node, gone, consumers, skip)
            if out_name not in t or out_name in outputs:  # graph output (QDQ keeps it float): dequantize acc
                y = acc.astype(np.float64) * (s_acc.reshape(1, -1, 1, 1) if op == "Conv" else s_acc.reshape(1, -1))
                env[out_name] = y.astype(np.float32)
                continue
            s_o, zp_o, lo, hi = qparams(out_name)
            yq = requantize(acc, s_acc.astype(np.float64) / s_o, zp_o, lo, hi, axis=1)
            if act is not None:
                lo_act, hi_act = _act_range(act, s_o, zp_o, lo, hi, inits)
                yq = np.clip(yq, lo_act, hi_act)
            env[out_name] = QTensor(yq, s_o, zp_o, lo, hi)
        elif op == "Add":
            if any(i not in env or not isinstance(env[i], QTensor) for i in node.input[:2]):
                raise NotImplementedError(f"{node.name}: Add of a constant or a float tensor")
            aq, bq = env[node.input[0]], env[node.input[1]]
            if aq.q.shape != bq.q.shape:
                raise NotImplementedError(f"{node.name}: broadcasting Add")
            out_name, act = fused_output(node, gone, consumers, skip)  # a fused ReLU / ReLU6, as for conv
            if out_name not in t:
                raise NotImplementedError(f"{node.name}: Add output {out_name!r} has no scale in the table")
            s_o, zp_o, lo, hi = qparams(out_name)
            if act is not None:
                lo, hi = _act_range(act, s_o, zp_o, lo, hi, inits)
            y = add_int(aq.q, aq.zp, aq.scale, bq.q, bq.zp, bq.scale, s_o, zp_o, lo, hi)
            env[out_name] = QTensor(y, s_o, zp_o, *qparams(out_name)[2:])
        elif op in ("Relu", "Clip"):
            xq = env[node.input[0]]
            s_o, zp_o, lo, hi = qparams(node.output[0])
            y = _rescale(xq, s_o, zp_o, lo, hi)
            lo_act, hi_act = _act_range(node, s_o, zp_o, lo, hi, inits)
            env[node.output[0]] = QTensor(np.clip(y, lo_act, hi_act), s_o, zp_o, lo, hi)
        elif op == "MaxPool":
            xq = env[node.input[0]]
            y = _pool(xq.q, a, "max", pad_value=xq.lo)
            s_o, zp_o, lo, hi = qparams(node.output[0])
            env[node.output[0]] = QTensor(_rescale(QTensor(y, xq.scale, xq.zp, xq.lo, xq.hi), s_o, zp_o, lo, hi),
                                          s_o, zp_o, lo, hi)
        elif op in ("AveragePool", "GlobalAveragePool"):
            xq = env[node.input[0]]
            if op == "GlobalAveragePool":
                total = (xq.q - xq.zp).sum(axis=(2, 3), keepdims=True)
                count = xq.q.shape[2] * xq.q.shape[3]
            else:
                if a.get("count_include_pad", 0) == 0 and any(a.get("pads", [0])):
                    raise NotImplementedError(f"{node.name}: padded AveragePool without count_include_pad")
                total = _pool(xq.q - xq.zp, a, "sum", pad_value=0)
                count = int(np.prod(a["kernel_shape"]))
            s_o, zp_o, lo, hi = qparams(node.output[0])
            env[node.output[0]] = QTensor(requantize(total, xq.scale / (s_o * count), zp_o, lo, hi), s_o, zp_o, lo, hi)
        elif op == "Concat":
            s_o, zp_o, lo, hi = qparams(node.output[0])
            parts = [_rescale(env[i], s_o, zp_o, lo, hi) for i in node.input]
            env[node.output[0]] = QTensor(np.concatenate(parts, axis=a.get("axis", 1)), s_o, zp_o, lo, hi)
        elif op in ("Flatten", "Reshape", "Identity"):
            xq = env[node.input[0]]
            if op == "Flatten":
                y = xq.q.reshape(xq.q.shape[0], -1)
            elif op == "Reshape":
                y = xq.q.reshape([d if d else xq.q.shape[k] for k, d in enumerate(inits[node.input[1]].tolist())])
            else:
                y = xq.q
            s_o, zp_o, lo, hi = qparams(node.output[0])
            env[node.output[0]] = QTensor(_rescale(QTensor(y, xq.scale, xq.zp, xq.lo, xq.hi), s_o, zp_o, lo, hi),
                                          s_o, zp_o, lo, hi)
        else:
            raise NotImplementedError(f"integer reference: op {op} ({node.name}) is not supported")
    outs = [env[o].dequant() if isinstance(env[o], QTensor) else env[o] for o in outputs]
    result = outs[0] if len(outs) == 1 else outs
    if return_all:
        return result, {k: v for k, v in env.items() if isinstance(v, QTensor)}
    return result


def _rescale(xq: QTensor, s_o: float, zp_o: int, lo: int, hi: int) -> np.ndarray:
    """Codes of xq at (s_o, zp_o): a copy when the parameters agree, else an integer requantization."""
    if np.float32(xq.scale) == np.float32(s_o) and xq.zp == zp_o:
        return np.clip(xq.q, lo, hi)
    return requantize(xq.q - xq.zp, xq.scale / s_o, zp_o, lo, hi)


def bias_codes(b, s_acc) -> np.ndarray:
    """An int32 bias at the accumulator's scale s_in * s_w (per output channel), as int64."""
    return np.clip(np.rint(np.asarray(b, np.float64) / s_acc), INT32_MIN, INT32_MAX).astype(np.int64)


def fused_output(node, gone, consumers, skip) -> tuple[str, object]:
    """(the tensor a conv / add really writes, its fused ReLU / Clip node or None): an output the passes marked as
    fused away is requantized straight into its activation's output, and the activation node is skipped."""
    out_name = node.output[0]
    if out_name not in gone:
        return out_name, None
    act = consumers[out_name][0]
    skip.add(act.name)
    return act.output[0], act


def _act_range(node, s, zp, lo, hi, inits) -> tuple[int, int]:
    if node.op_type == "Relu":
        return max(lo, zp), hi
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    cmin = a.get("min", inits[node.input[1]].item() if len(node.input) > 1 and node.input[1] else -np.inf)
    cmax = a.get("max", inits[node.input[2]].item() if len(node.input) > 2 and node.input[2] else np.inf)
    qlo = lo if not np.isfinite(cmin) else max(lo, zp + int(np.rint(cmin / s)))
    qhi = hi if not np.isfinite(cmax) else min(hi, zp + int(np.rint(cmax / s)))
    return qlo, qhi


def _pool(x: np.ndarray, a: dict, kind: str, pad_value) -> np.ndarray:
    kh, kw = a["kernel_shape"]
    sh, sw = a.get("strides", [1, 1])
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    if a.get("ceil_mode", 0):
        raise NotImplementedError("ceil_mode pooling")
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    h, w = xp.shape[2:]
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            v = xp[:, :, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw]
            out = v.copy() if out is None else (np.maximum(out, v) if kind == "max" else out + v)
    return out
