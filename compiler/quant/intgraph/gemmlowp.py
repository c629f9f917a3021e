"""gemmlowp's fixed-point arithmetic (fixedpoint/fixedpoint.h) as LiteRT's reference int8 SOFTMAX computes with it
(tensorflow/lite/kernels/internal/reference/softmax.h): int32 raw values in numpy int64 arrays, each operation with
the rounding and saturation of its C++ original, so that `softmax_codes` equals the kernel bit for bit
(tests/backends/test_tflite.py runs both on the same codes).

A FixedPoint<int32, I> holds x * 2^(31 - I) in its raw int32: `I` integer bits. The kernel's scaled differences are
Q5.26 (I = 5), its sum of exponentials Q12.19, the probabilities Q0.31.
"""

from __future__ import annotations

import numpy as np

from .fixed_point import INT32_MAX, INT32_MIN

SCALED_DIFF_INTEGER_BITS = 5  # kScaledDiffIntegerBits
ACCUMULATION_INTEGER_BITS = 12  # kAccumulationIntegerBits


def high_mul(a, b) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul: (a b + 2^30, or + 1 - 2^30 when negative) / 2^31, truncated toward
    zero; INT32_MAX for INT32_MIN squared."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    nudged = ab + np.where(ab >= 0, np.int64(1) << 30, np.int64(1) - (np.int64(1) << 30))
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)


def divide_by_pot(x, exponent) -> np.ndarray:
    """RoundingDivideByPOT: x / 2^exponent rounded half away from zero (exponent: an int or an array)."""
    x = np.asarray(x, np.int64)
    mask = (np.int64(1) << np.asarray(exponent, np.int64)) - 1
    return (x >> exponent) + ((x & mask) > (mask >> 1) + (x < 0))


def multiply_by_pot(x, exponent: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT: x * 2^exponent, saturated to int32 (exponent > 0) or rounded (< 0)."""
    if exponent >= 0:
        return np.clip(np.asarray(x, np.int64) << exponent, INT32_MIN, INT32_MAX)
    return divide_by_pot(x, -exponent)


def rescale(x, bits_from: int, bits_to: int) -> np.ndarray:
    """Rescale<bits_to> of a FixedPoint with `bits_from` integer bits."""
    return multiply_by_pot(x, bits_from - bits_to)


def wrap(x) -> np.ndarray:
    """int32 addition's wrap-around (gemmlowp adds raw values without saturation)."""
    return ((np.asarray(x, np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def exp_on_interval(a) -> np.ndarray:
    """exp_on_interval_between_negative_one_quarter_and_0_excl (Q0.31 in and out): a Taylor expansion around -1/8."""
    constant_term = 1895147668  # exp(-1/8) in Q0.31
    one_third = 715827883
    x = wrap(a + (1 << 28))  # + 1/8
    x2 = high_mul(x, x)
    x3 = high_mul(x2, x)
    x4 = high_mul(x2, x2)
    x4_over_4 = divide_by_pot(x4, 2)
    poly = multiply_by_pot(wrap(high_mul(wrap(x4_over_4 + x3), one_third) + x2), -1)
    return wrap(constant_term + high_mul(constant_term, wrap(x + poly)))


# exp(-2^k) in Q0.31 for the bits of |a| above a quarter (GEMMLOWP_EXP_BARREL_SHIFTER)
_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a) -> np.ndarray:
    """exp(a) for a <= 0 in Q5.26, as Q0.31 (gemmlowp's exp_on_negative_values with 5 integer bits): exp of a
    modulo 1/4 by the polynomial, times exp(-2^k) for every bit k of the rest; exp(0) is INT32_MAX."""
    a = np.asarray(a, np.int64)
    fractional = 31 - SCALED_DIFF_INTEGER_BITS
    quarter = np.int64(1) << (fractional - 2)
    mod_minus_quarter = wrap((a & (quarter - 1)) - quarter)
    result = exp_on_interval(rescale(mod_minus_quarter, SCALED_DIFF_INTEGER_BITS, 0))
    remainder = wrap(mod_minus_quarter - a)
    for exponent, multiplier in _BARREL:
        if exponent < SCALED_DIFF_INTEGER_BITS:
            bit = np.int64(1) << (fractional + exponent)
            result = np.where((remainder & bit) != 0, high_mul(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x(a) -> np.ndarray:
    """one_over_one_plus_x_for_x_in_0_1 (Q0.31 in and out): Newton-Raphson on 1 / (1 + x) in Q2.29, three steps
    from 48/17 - 32/17 d, where d = (1 + x) / 2 is RoundingHalfSum(a, One())."""
    total = np.asarray(a, np.int64) + INT32_MAX
    nudged = total + np.where(total >= 0, 1, -1)
    half_denominator = np.where(nudged >= 0, nudged // 2, -((-nudged) // 2))  # C division: toward zero
    x = wrap(1515870810 + high_mul(half_denominator, -1010580540))
    one = np.int64(1) << 29
    for _ in range(3):
        one_minus = wrap(one - high_mul(half_denominator, x))
        x = wrap(x + rescale(high_mul(x, one_minus), 4, 2))  # Q2.29 x Q2.29 is Q4.27
    return rescale(x, 1, 0)  # ExactMulByPot<-1> (Q1.30, the same raw), then Rescale<0>


def reciprocal(total) -> tuple[np.ndarray, np.ndarray]:
    """GetReciprocal(sum in Q12.19): (1 / the sum's mantissa in [1, 2) as Q0.31, the sum's bits over one)."""
    total = np.asarray(total, np.int64)
    headroom_plus_one = 32 - np.frexp(total.astype(np.float64))[1]  # CountLeadingZeros (exact below 2^53)
    shifted_minus_one = ((total << headroom_plus_one) & 0xFFFFFFFF) - (np.int64(1) << 31)
    return one_over_one_plus_x(shifted_minus_one), ACCUMULATION_INTEGER_BITS - headroom_plus_one


def softmax_codes(q, multiplier: int, left_shift: int, diff_min: int, out_bits: int = 8) -> np.ndarray:
    """LiteRT's reference int8 SOFTMAX along the last axis of int8 codes q: the difference from the row's maximum
    times beta * s_in (input_multiplier, input_left_shift: Q5.26), its exponential, their sum in Q12.19, the
    reciprocal, and each output rounded to 1/256 at zero point -128; a difference below diff_min gives -128."""
    q = np.asarray(q, np.int64)
    diff = q - q.max(axis=-1, keepdims=True)
    kept = diff >= diff_min
    scaled = high_mul(np.where(kept, diff, 0) << left_shift, multiplier)
    e = np.where(kept, exp_on_negative_values(scaled), 0)
    total = wrap(rescale(e, 0, ACCUMULATION_INTEGER_BITS).sum(axis=-1, keepdims=True))
    scale, bits_over_unit = reciprocal(total)
    lowest = -(1 << (out_bits - 1))
    out = divide_by_pot(high_mul(scale, e), bits_over_unit + 31 - out_bits)
    return np.where(kept, np.clip(out + lowest, lowest, -lowest - 1), lowest)
