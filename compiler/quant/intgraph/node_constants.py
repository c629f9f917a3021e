"""How the quantizer turns a node's float facts into integer constants where a target's kernels fix the rule: LiteRT's
lookup tables, the code range of a clamp, a Relu's or Clip's real bounds, a pool's geometry, the integer softmax's
exp table and normalizer (LiteRT's: its multiplier and radius), the gathers of a nearest resize and a pad."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from onnx import helper, numpy_helper

from ...ops.spatial import CUBIC_COEFF_A, cubic_taps, linear_rational, nearest_indices
from .fixed_point import INT32_MAX, gemmlowp_multiply, quantize_multiplier
from .litert_unary import TFLITE_UNARY
from .match import INode
from .qtypes import QParams

SOFTMAX_ONE = 1 << 15  # exp(0) in the integer softmax's table: a row of up to 65,535 entries sums within int32


def softmax_table(s_in: float, span: int) -> np.ndarray:
    """exp(-d s_in) * 2^15, rounded half to even, for each distance d = 0 .. span - 1 of a code below its row's
    maximum (span: the input's number of codes), cut after its first 0: every larger distance reads that 0. An
    8-bit input has at most 256 entries; a 16-bit one stops where exp(-d s) < 2^-16 (d s > 11.1)."""
    d = np.arange(span, dtype=np.float64)
    table = np.rint(np.exp(-d * np.float64(np.float32(s_in))) * SOFTMAX_ONE).astype(np.int64)
    zeros = np.flatnonzero(table == 0)
    return table[: zeros[0] + 1] if zeros.size else table


def softmax_normalizer(s_out: float) -> tuple[int, int]:
    """(C, k) with C = round(2^k / s_out), k as large as int32 allows: the output code is (e r + 2^(k-1)) >> k with
    r = C // sum(e) per row, and e r <= C (e <= sum), so C + 2^(k-1) < 2^31 bounds every product. The rounding of r
    costs at most e / 2^k of an output step: 1/256 for an 8-bit output at 1/255 per step (k = 23)."""
    for k in range(30, 0, -1):
        c = int(round(2.0**k / np.float64(np.float32(s_out))))  # noqa: RUF046 (numpy float: an int for certain)
        if c + (1 << (k - 1)) <= INT32_MAX:
            return c, k
    raise ValueError(f"output step {s_out!r} is too coarse for the integer softmax")


def tflite_softmax_params(s_in: float, beta: float = 1.0) -> tuple[int, int, int]:
    """LiteRT's int8 SOFTMAX constants (SoftmaxPrepare: PreprocessSoftmaxScaling, CalculateInputRadius): the
    multiplier and left shift taking a code difference to Q5.26 (beta * s_in * 2^26, at most 2^31 - 1, as
    QuantizeMultiplierGreaterThanOne), and diff_min, the most negative difference whose shifted value fits int32
    (smaller ones give the lowest output code)."""
    real = min(beta * float(np.float32(s_in)) * (1 << (31 - 5)), (1 << 31) - 1.0)
    if real <= 1.0:
        raise ValueError(f"input step {s_in!r} is below 2^-26: LiteRT's SOFTMAX needs beta * s_in * 2^26 > 1")
    q, shift = quantize_multiplier(real)
    radius = math.floor(((1 << 5) - 1) * (1 << (31 - 5)) / (1 << int(shift[0])))
    return int(q[0]), int(shift[0]), -radius


def tflite_table(n: INode, codes: np.ndarray, qi: QParams, qo: QParams) -> np.ndarray:
    """The zero-point-free output codes (before + zp and the clamp) that LiteRT's int8 kernel of the lookup op n
    gives for each input code (litert_unary.TFLITE_UNARY): LUTPopulate's table (dequantize, f and rescale in float32,
    round half away from zero), or LEAKY_RELU's integer path (LeakyReluPrepare's two multipliers, applied by sign
    with TFLite's MultiplyByQuantizedMultiplier)."""
    assert n.lookup is not None  # a lookup node names its function
    kernel = TFLITE_UNARY[n.lookup]
    if kernel.lut is not None:
        x32 = (np.float32(qi.scale) * (codes - qi.zp).astype(np.float32)).astype(np.float32)
        scaled = (kernel.lut(x32, n.attrs) * (np.float32(1) / np.float32(qo.scale))).astype(np.float32)
        scaled = scaled.astype(np.float64)
        return np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    f32 = np.float32  # LeakyReluPrepare multiplies and divides float scales and a float slope: float32 arithmetic
    s_in, s_out, alpha = f32(qi.scale), f32(qo.scale), f32(n.attrs.get("alpha", 0.01))
    centered = codes - qi.zp
    identity = quantize_multiplier(np.float64(f32(s_in / s_out)))
    slope = quantize_multiplier(np.float64(f32(f32(s_in * alpha) / s_out)))
    return np.where(centered >= 0, gemmlowp_multiply(centered, *identity), gemmlowp_multiply(centered, *slope))


# LiteRT's int16 LOGISTIC (reference_integer_ops::Logistic, which its builtin kernel runs for every scale that
# is not a power of two, and its Prepare's multiplier): a table of sigmoid(i / 24) at 16 fractional bits, i = 0 ..
# 255, read at |x| 2^-9 of an input at 1 / (3 * 4096), interpolated over the 9 bits below, mirrored for x < 0. The
# table is the target's constant (kernels/internal/common.h, sigmoid_table_uint16), not a rounding of sigmoid: 44
# of its entries are one above round(65536 sigmoid(i / 24)), lifted for the interpolation between them
LOGISTIC16_TABLE = np.array(
    [
        32768,
        33451,
        34133,
        34813,
        35493,
        36169,
        36843,
        37513,
        38180,
        38841,
        39498,
        40149,
        40794,
        41432,
        42064,
        42688,
        43304,
        43912,
        44511,
        45102,
        45683,
        46255,
        46817,
        47369,
        47911,
        48443,
        48964,
        49475,
        49975,
        50464,
        50942,
        51409,
        51865,
        52311,
        52745,
        53169,
        53581,
        53983,
        54374,
        54755,
        55125,
        55485,
        55834,
        56174,
        56503,
        56823,
        57133,
        57433,
        57724,
        58007,
        58280,
        58544,
        58800,
        59048,
        59288,
        59519,
        59743,
        59959,
        60168,
        60370,
        60565,
        60753,
        60935,
        61110,
        61279,
        61441,
        61599,
        61750,
        61896,
        62036,
        62172,
        62302,
        62428,
        62549,
        62666,
        62778,
        62886,
        62990,
        63090,
        63186,
        63279,
        63368,
        63454,
        63536,
        63615,
        63691,
        63765,
        63835,
        63903,
        63968,
        64030,
        64090,
        64148,
        64204,
        64257,
        64308,
        64357,
        64405,
        64450,
        64494,
        64536,
        64576,
        64614,
        64652,
        64687,
        64721,
        64754,
        64786,
        64816,
        64845,
        64873,
        64900,
        64926,
        64950,
        64974,
        64997,
        65019,
        65039,
        65060,
        65079,
        65097,
        65115,
        65132,
        65149,
        65164,
        65179,
        65194,
        65208,
        65221,
        65234,
        65246,
        65258,
        65269,
        65280,
        65291,
        65301,
        65310,
        65319,
        65328,
        65337,
        65345,
        65352,
        65360,
        65367,
        65374,
        65381,
        65387,
        65393,
        65399,
        65404,
        65410,
        65415,
        65420,
        65425,
        65429,
        65433,
        65438,
        65442,
        65445,
        65449,
        65453,
        65456,
        65459,
        65462,
        65465,
        65468,
        65471,
        65474,
        65476,
        65479,
        65481,
        65483,
        65485,
        65488,
        65489,
        65491,
        65493,
        65495,
        65497,
        65498,
        65500,
        65501,
        65503,
        65504,
        65505,
        65507,
        65508,
        65509,
        65510,
        65511,
        65512,
        65513,
        65514,
        65515,
        65516,
        65517,
        65517,
        65518,
        65519,
        65520,
        65520,
        65521,
        65522,
        65522,
        65523,
        65523,
        65524,
        65524,
        65525,
        65525,
        65526,
        65526,
        65526,
        65527,
        65527,
        65528,
        65528,
        65528,
        65529,
        65529,
        65529,
        65529,
        65530,
        65530,
        65530,
        65530,
        65531,
        65531,
        65531,
        65531,
        65531,
        65532,
        65532,
        65532,
        65532,
        65532,
        65532,
        65533,
        65533,
        65533,
        65533,
        65533,
        65533,
        65533,
        65533,
        65534,
        65534,
        65534,
        65534,
        65534,
        65534,
        65534,
        65534,
        65534,
        65534,
        65535,
    ],
    np.int64,
)


def tflite_logistic16(codes: np.ndarray, s_in: float) -> np.ndarray:
    """LiteRT's int16 LOGISTIC of int16 codes at zero point 0 and scale s_in: output codes at 2^-15, zero point 0.
    SigmoidPrepare takes s_in to the table's input step 1 / (3 * 4096) as a multiplier of 15 bits and a right
    shift (doubling s_in * 3 * 4096 while it is at most 32767 / 2). A step within 0.1% (in log2) of 2^-12 or 2^-11
    takes LiteRT's power-of-two path instead (CheckedLog2), another arithmetic, and a step above 2^16 / (3 * 4096)
    overflows the kernel's int32 product: a ValueError for both."""
    s = float(np.float32(s_in))
    log2 = math.log2(s)
    if abs(log2 - round(log2)) < 1e-3 and round(log2) in (-12, -11):
        raise ValueError(f"input step {s!r} is a power of two to LiteRT (2^{round(log2)}): its other LOGISTIC path")
    multiplier, shift = s * 4096.0 * 3.0, 0
    while multiplier <= 32767.0 / 2.0 and shift <= 30:
        multiplier, shift = multiplier * 2.0, shift + 1
    multiplier = int(multiplier)
    round_ = (1 << (shift - 1)) if shift > 0 else 0
    if 32768 * multiplier + round_ > INT32_MAX:  # the kernel's int32 product of a code and the multiplier
        raise ValueError(
            f"input step {s!r} (codes to +-{32768 * s:.4g}) overflows LiteRT's int16 LOGISTIC: its "
            f"multiplier {multiplier} times a code exceeds int32 (steps up to 2^16 / (3 * 4096))"
        )
    x = (np.asarray(codes, np.int64) * multiplier + round_) >> shift
    ax = np.abs(x)
    uh = ax >> 9
    inside = uh < 255
    i = np.where(inside, uh, 0)
    ua, ub = LOGISTIC16_TABLE[i], LOGISTIC16_TABLE[np.minimum(i + 1, 255)]
    result = np.where(inside, (ua << 9) + (ax & 0x1FF) * (ub - ua), 0x7FFF << 10)
    result = np.where(x >= 0, result + (1 << 9), (1 << 25) - result + (1 << 9) - 1)
    return result >> 10


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


def window_geometry(pool_attrs: dict, in_shape) -> dict:
    """pool_geometry of a pooled conv's unpadded windows (its pool's ONNX attributes, its input's NCHW shape)."""
    kh, kw = pool_attrs["kernel_shape"]
    sh, sw = pool_attrs.get("strides", [1, 1])
    _, _, h, w = in_shape
    return {
        "kernel": [kh, kw],
        "strides": [sh, sw],
        "pads": [0, 0, 0, 0],
        "out_hw": [(h - kh) // sh + 1, (w - kw) // sw + 1],
    }


def slice_ranges(node, shape, inits: dict) -> list[list[int]]:
    """An ONNX Slice's starts / ends / axes / steps (constant inputs) made explicit: one [axis, start, stop, step]
    per sliced axis, sorted by axis, clamped to the axis as ONNX does and read as Python's range (a reversed range
    that runs to the first element has stop -1)."""

    def values(name):  # an initializer (or its array)
        v = inits[name]
        return (v if isinstance(v, np.ndarray) else numpy_helper.to_array(v)).astype(np.int64).reshape(-1).tolist()

    args = [values(i) if i else None for i in list(node.input[1:5]) + [""] * (5 - len(node.input))]
    starts, ends = args[0], args[1]
    assert starts is not None and ends is not None  # Slice's required inputs
    axes = args[2] if args[2] is not None else list(range(len(starts)))
    steps = args[3] if args[3] is not None else [1] * len(starts)
    ranges = []
    for axis, start, end, step in zip(axes, starts, ends, steps):
        axis %= len(shape)
        ranges.append([axis, *slice(start, end, step).indices(int(shape[axis]))])
    return sorted(ranges)


def constant_codes(value: np.ndarray) -> tuple[np.ndarray, float]:
    """A constant operand as int8 codes (zero point 0, symmetric in [-127, 127]) and its scale max |c| / 127 in
    float32: the largest value exact, as TFLite stores a constant int8 tensor."""
    c = np.asarray(value, np.float64)
    scale = float(np.float32(max(float(np.abs(c).max(initial=0.0)), 1e-12) / 127))
    return np.clip(np.rint(c / np.float64(scale)), -127, 127).astype(np.int64), scale


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _array(inits: dict, name: str) -> np.ndarray | None:
    if not name or name not in inits:
        return None
    v = inits[name]
    return v if isinstance(v, np.ndarray) else numpy_helper.to_array(v)


def resize_sampling(node, in_shape, out_shape, inits: dict) -> dict:
    """An ONNX Resize of H and W as the spec's resize attributes (mode, coordinates, rounding, the scale of each
    axis: the stated one, else out / in as ONNX defines it for sizes), and for a nearest resize the input row and
    column each output reads (`index_h`, `index_w`: tcc.ops.spatial.nearest_indices), for a bilinear one its exact
    taps per axis (`rows`, `cols`: tcc.ops.spatial.linear_rational), for a cubic one its four taps and float
    weights per axis (`rows`, `cols`: tcc.ops.spatial.cubic_taps)."""
    resize10 = len(node.input) == 2
    stated = _array(inits, node.input[1] if resize10 else (node.input[2] if len(node.input) > 2 else ""))
    (h, w), (oh, ow) = in_shape[2:], out_shape[2:]
    scales = [float(s) for s in stated.reshape(-1)[2:]] if stated is not None and stated.size else [oh / h, ow / w]
    attrs = {
        "mode": _attr(node, "mode", "nearest"),
        "coordinates": "asymmetric" if resize10 else _attr(node, "coordinate_transformation_mode", "half_pixel"),
        "nearest_mode": "floor" if resize10 else _attr(node, "nearest_mode", "round_prefer_floor"),
        "scales": scales,
        "out_hw": [int(oh), int(ow)],
    }
    if attrs["mode"] == "nearest":
        attrs["index_h"] = nearest_indices(h, oh, scales[0], attrs["coordinates"], attrs["nearest_mode"]).tolist()
        attrs["index_w"] = nearest_indices(w, ow, scales[1], attrs["coordinates"], attrs["nearest_mode"]).tolist()
    elif attrs["mode"] == "linear":
        exact = (
            [Fraction(float(np.float32(s))) for s in scales] if stated is not None and stated.size else
            [Fraction(int(oh), int(h)), Fraction(int(ow), int(w))]
        )  # fmt: skip
        attrs["rows"] = linear_rational(int(h), int(oh), exact[0], attrs["coordinates"])
        attrs["cols"] = linear_rational(int(w), int(ow), exact[1], attrs["coordinates"])
    elif attrs["mode"] == "cubic":
        a, exclude = float(_attr(node, "cubic_coeff_a", CUBIC_COEFF_A)), bool(_attr(node, "exclude_outside", 0))
        for key, n_in, n_out, scale in (("rows", h, oh, scales[0]), ("cols", w, ow, scales[1])):
            taps, weights = cubic_taps(int(n_in), int(n_out), scale, attrs["coordinates"], a, exclude)
            attrs[key] = {"taps": taps.tolist(), "weights": weights.tolist()}
    return attrs


def _pad_indices(size: int, before: int, after: int, mode: str) -> list[int]:
    """The input index each padded position reads: the edge repeated (edge) or mirrored without it (reflect)."""
    i = np.arange(-before, size + after)
    if mode == "edge":
        return np.clip(i, 0, size - 1).tolist()
    i = np.abs(i)
    return np.where(i > size - 1, 2 * (size - 1) - i, i).tolist()


def pad_geometry(node, in_shape, inits: dict) -> dict:
    """An ONNX Pad of H and W: its pads (t, l, b, r), mode and constant; for reflect and edge the input row and
    column each output reads (`index_h`, `index_w`)."""
    pads = _array(inits, node.input[1]) if len(node.input) > 1 and node.input[1] else np.array(_attr(node, "pads", []))
    p = [int(v) for v in np.asarray(pads).reshape(-1)]
    axes = _array(inits, node.input[3]) if len(node.input) > 3 else None
    if axes is not None:  # Pad-18: pads of the listed axes only
        full = [0] * 8
        k = len(axes.reshape(-1))
        for j, a in enumerate(int(v) % 4 for v in axes.reshape(-1)):
            full[a], full[a + 4] = p[j], p[j + k]
        p = full
    t, l, b, r = p[2], p[3], p[6], p[7]
    value = _array(inits, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    mode = _attr(node, "mode", "constant")
    attrs = {"pads": [t, l, b, r], "mode": mode, "value": float(value.reshape(-1)[0]) if value is not None else 0.0}
    if mode != "constant":
        h, w = in_shape[2:]
        attrs["index_h"], attrs["index_w"] = _pad_indices(h, t, b, mode), _pad_indices(w, l, r, mode)
    return attrs
