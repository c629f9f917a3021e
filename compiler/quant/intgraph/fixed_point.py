"""Fixed-point multipliers: a real multiplier M as (q, shift) with M ~ q * 2^(shift - 31), and acc * M in integers
under each target's rounding rule (tcc.quant.table.rules.ROUNDINGS). The quantizer (tcc.quant.intgraph.qgraph) makes the
multipliers, the integer reference (tcc.quant.intgraph.reference) and the TFLite kernels' tables apply them."""

from __future__ import annotations

import numpy as np

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


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


def gemmlowp_multiply(acc: np.ndarray, q: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """acc * M as TFLite's MultiplyByQuantizedMultiplier (tensorflow/lite/kernels/internal/common.h), in int64:
    acc * 2^max(shift, 0), SaturatingRoundingDoublingHighMul by q (the product + 2^30, or + 1 - 2^30 when
    negative, divided by 2^31 truncating toward zero), then RoundingDivideByPOT by 2^max(-shift, 0) (round half
    away from zero). Two roundings; LiteRT's reference kernels compute exactly this."""
    acc = np.asarray(acc, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    ab = (np.clip(acc, INT32_MIN, INT32_MAX) << left) * np.asarray(q, dtype=np.int64)
    nudged = ab + np.where(ab >= 0, np.int64(1) << 30, np.int64(1) - (np.int64(1) << 30))
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))
    mask = (np.int64(1) << right) - 1
    return (high >> right) + ((high & mask) > (mask >> 1) + (high < 0))


def single_half_away_multiply(acc: np.ndarray, q: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """acc * M with one rounding of the exact product acc * q by 2^(31 - shift), half away from zero: LiteRT's
    reference FULLY_CONNECTED (tcc.quant.table.rules.ROUNDINGS says how it was measured)."""
    prod = np.clip(np.asarray(acc, dtype=np.int64), INT32_MIN, INT32_MAX) * np.asarray(q, dtype=np.int64)
    k = np.minimum(31 - np.asarray(shift, dtype=np.int64), 62)
    return np.sign(prod) * ((np.abs(prod) + (np.int64(1) << (k - 1))) >> k)


def double_half_away_multiply(acc: np.ndarray, real: np.ndarray) -> np.ndarray:
    """acc * M in float64 (M = s_in s_w / s_out from the float32 scales, in double), rounded once, half away from
    zero: LiteRT's per-channel FULLY_CONNECTED at 8 and 16 bits (measured at 16 bits, where its accumulators reach
    2^25: the 31-bit fixed-point M differed on 1 of 196,608 codes of a MobileViT projection, double on none)."""
    v = np.asarray(acc, dtype=np.int64).astype(np.float64) * np.asarray(real, dtype=np.float64)
    return (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int64)


def tflite_int64_multiply(acc: np.ndarray, q: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """acc * M as TFLite's MultiplyByQuantizedMultiplier(int64_t x, int32_t q, int shift) (common.cc), which its
    16x8 kernels (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED with int64 bias) apply to their int64 accumulators:
    q reduced to 16 bits, (q + 2^15) >> 16 (0x7FFF from q >= 0x7FFF0000), then (acc * q16 + 2^(14 - shift)) >>
    (15 - shift), one rounding half up, the result taken as int32 (the kernel's cast: wraps beyond int32).
    LiteRT checks |acc| < 2^47 and -31 <= shift < 8 (the quantizer does too)."""
    acc = np.asarray(acc, dtype=np.int64)
    q = np.asarray(q, dtype=np.int64)
    reduced = np.where(q < 0x7FFF0000, (q + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - np.asarray(shift, dtype=np.int64)
    r = (acc * reduced + (np.int64(1) << (total - 1))) >> total
    return ((r + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def multiply(acc: np.ndarray, m, axis: int = 1) -> np.ndarray:
    """acc * M under the multiplier's rounding rule (tcc.quant.intgraph.qtypes.Multiplier: q, shift, rounding, and M
    itself for "double_half_away"); a per-channel M runs along `axis` of acc."""
    q, shift, real = m.q, m.shift, m.real
    if q.size > 1:
        shape = [1] * np.ndim(acc)
        shape[axis] = -1
        q, shift = q.reshape(shape), shift.reshape(shape)
        real = None if real is None else real.reshape(shape)
    else:
        q, shift, real = q[0], shift[0], None if real is None else real.reshape(-1)[0]
    if m.rounding == "double_half_away":
        assert real is not None  # a "double_half_away" multiplier carries M itself
        return double_half_away_multiply(acc, real)
    return ROUNDING_FUNCTIONS[m.rounding](acc, q, shift)


ROUNDING_FUNCTIONS = {
    "half_even": multiply_by_quantized_multiplier,
    "gemmlowp": gemmlowp_multiply,
    "single_half_away": single_half_away_multiply,
    "tflite_int64": tflite_int64_multiply,
}
