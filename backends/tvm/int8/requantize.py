"""The requantization PrimFuncs of the INT8 Relax lowering (reference.apply_requant: int32 accumulators -> codes,
channels last) and the parameter rows each takes, one form per target (which one: requantize_forms.FORMS):

- `requantize_primfunc` (`requantize_params`): the exact int64 product, on any target;
- `requantize_neon_primfunc` (`neon_requantize_params`): ARM NEON (ARMv7, AArch64), 32-bit lanes, in the kernels'
  epilogues; `requantize_neon_tie_free_primfunc` (`neon_tie_free_params`) where the accumulator bound rules out
  ties, as for every conv of the zoo's models; both narrow to 8-bit codes by saturating (`_saturating_codes`), on
  vectors of up to 16 lanes (int8/register_split.py);
- `requantize_tie_free_primfunc` (`tie_free_params`): any target, outside the kernels, where the accumulator bound
  rules out ties (a matmul of two activations): int32 lanes but the product's high half;
- `requantize_float32.requantize_float32_primfunc` (its module's `float32_requantize_params`): x86, where a float32
  multiply-add per channel is checked equal to the reference at every rounding boundary the accumulator reaches
  (DDSNet's depthwise convs; the lowering tries it first);
- `requantize_float64_primfunc` (`float64_requantize_params`): x86, where the accumulator bound makes float64 exact;
- `requantize_int32_primfunc` (`int32_requantize_params`): x86 otherwise, int32 lanes but the product's high half.
"""

from __future__ import annotations

import numpy as np

from tcc.quant.intgraph.fixed_point import INT32_MAX, INT32_MIN
from tcc.quant.intgraph.qtypes import Requant

from .tir import _dims, _half_even_mul, fixed_point, high_half, tie_free


def requantize_params(rq: Requant, channels: int) -> tuple[bool, np.ndarray, np.ndarray]:
    """(narrow, int32 [4, C], int64 [2, C]) for `requantize_primfunc`: one row per parameter, so that a vector of
    channels loads each with one instruction (a [C, 6] table measured 1.45x slower on x86).

    int32 rows: q (< 2^31: the product acc * q is a widening 32 x 32 -> 64 multiply, vmull.s32 / vpmuldq), and
    for the narrow form lo - zp, hi - zp (clipped to int32) and zp; int64 rows: k = 31 - shift, 2^(k-1) - 1.
    narrow: every k >= 31 (multipliers below 1, as a conv's s_in s_w / s_out), so that the rounded product
    |acc q / 2^k| <= 2^31 - 1 fits int32 and the clamp runs on int32 lanes: clamp(y + zp, lo, hi) = clamp(y,
    lo - zp, hi - zp) + zp, and clipping those bounds to int32 changes nothing for an int32 y. ARMv7 NEON has no
    64-bit min / max (the int64 clamp ran as scalar code there); the wide form keeps it, in int64."""
    q, k, below_half = fixed_point(rq.mult.q, rq.mult.shift)
    narrow = bool(np.all(k >= 31))
    p32 = np.empty((4, channels), np.int64)
    p32[0] = q
    if narrow:
        p32[1], p32[2] = rq.lo - np.int64(rq.zp), rq.hi - np.int64(rq.zp)
    else:
        p32[1], p32[2] = rq.lo, rq.hi
    p32[3] = rq.zp
    p64 = np.empty((2, channels), np.int64)
    p64[0], p64[1] = k, below_half
    return narrow, np.clip(p32, INT32_MIN, INT32_MAX).astype(np.int32), p64


def neon_requantize_params(rq: Requant, channels: int) -> np.ndarray | None:
    """int32 [8, C] for `requantize_neon_primfunc`, or None where that form does not apply: it needs every shift
    s = -shift in [1, 22] (multipliers below 1/2; every conv of the zoo's models) and an output within 16 bits.
    Rows: q, 2^(s-1) - 1, 2^s, 2^(31 - v) - 1 with v the number of trailing zero bits of q, -s, lo - zp,
    hi - zp, zp. Why these, see `requantize_neon_primfunc`."""
    q, shift = np.atleast_1d(np.asarray(rq.mult.q, np.int64)), np.atleast_1d(np.asarray(rq.mult.shift, np.int64))
    s = -np.broadcast_to(shift, (channels,))
    q = np.broadcast_to(q, (channels,))
    if np.any(s < 1) or np.any(s > 22) or rq.lo < -(1 << 15) or rq.hi > (1 << 15) or np.any(q <= 0):
        return None
    trailing = np.array([(int(v) & -int(v)).bit_length() - 1 for v in q], np.int64)
    rows = np.stack(
        [
            q,
            (1 << (s - 1)) - 1,
            1 << s,
            (1 << (31 - trailing)) - 1,
            -s,
            np.full(channels, rq.lo - rq.zp),
            np.full(channels, rq.hi - rq.zp),
            np.full(channels, rq.zp),
        ]
    )
    return rows.astype(np.int32)


def _tie_free_shifts(rq: Requant, channels: int, bound: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(q, s) per channel where no accumulator within `bound` (|acc| <= bound per channel; None: unknown) can make
    acc q lie exactly half way between two results (tir.tie_free), every s = -shift in [1, 31]; else None. (A
    conv's multipliers are 31-bit fractions with few trailing zeros and its accumulators ~20 bits: no tie can
    occur; an average pool's 1/4 can tie.)"""
    if bound is None:
        return None
    q = np.broadcast_to(np.atleast_1d(np.asarray(rq.mult.q, np.int64)), (channels,))
    shift = np.broadcast_to(np.atleast_1d(np.asarray(rq.mult.shift, np.int64)), (channels,))
    bound = np.broadcast_to(np.asarray(bound, np.int64), (channels,))
    s = [tie_free(qc, sc, int(b)) for qc, sc, b in zip(q, shift, bound)]
    if any(v is None or v == 0 for v in s):
        return None
    return q, np.array(s, np.int64)


def neon_tie_free_params(rq: Requant, channels: int, bound: np.ndarray | None) -> np.ndarray | None:
    """int32 [5, C] for `requantize_neon_tie_free_primfunc`, or None where that form does not apply: no
    accumulator within `bound` may meet a tie (`_tie_free_shifts`). Rows: q, -s, lo - zp, hi - zp, zp."""
    found = _tie_free_shifts(rq, channels, bound)
    if found is None:
        return None
    q, s = found
    rows = np.stack(
        [q, -s, np.full(channels, rq.lo - rq.zp), np.full(channels, rq.hi - rq.zp), np.full(channels, rq.zp)]
    )
    return np.clip(rows, INT32_MIN, INT32_MAX).astype(np.int32)


def tie_free_params(rq: Requant, channels: int, bound: np.ndarray | None) -> np.ndarray | None:
    """int32 [6, C] for `requantize_tie_free_primfunc`, where `_tie_free_shifts` allows it. Rows: q, 2^(s-1), s,
    lo - zp, hi - zp, zp."""
    found = _tie_free_shifts(rq, channels, bound)
    if found is None:
        return None
    q, s = found
    rows = np.stack(
        [
            q,
            np.int64(1) << (s - 1),
            s,
            np.full(channels, rq.lo - rq.zp),
            np.full(channels, rq.hi - rq.zp),
            np.full(channels, rq.zp),
        ]
    )
    return np.clip(rows, INT32_MIN, INT32_MAX).astype(np.int32)


def _saturating_codes(y, dtype: str, lo_zp: int, hi_zp: int, zp: int):
    """clamp(y, lo - zp, hi - zp) + zp as dtype for int32 y, through the saturating narrowings: int16, then the
    8-bit code (with the zero point added in int16, saturating), clamped there where lo / hi are inside the type's
    range. Equal to the int32 form for every int32 y: lo - zp and hi - zp lie inside int16, so a saturated value is
    past the clamp either way. LLVM selects AArch64's `sqxtn` / `sqxtn2`, `sqadd` and `sqxtun` / `sqxtn` (ARMv7's
    `vqmovn`, `vqadd`, `vqmovun`) for them: 16 codes in 6 instructions after the rounding (8 with a zero point),
    where the int32 clamp, `xtn`, `uzp1`, a lane move and the clamp's constants took 12 per 8 codes (DDSNet's stem
    on `aarch64-dotprod`, disassembled)."""
    from tvm import tirx  # deferred: TVM loads where a PrimFunc is built

    info = np.iinfo(dtype)
    lo, hi = lo_zp + zp, hi_zp + zp

    def clamp(x, low, high, dtype_of_bounds):
        return tirx.min(tirx.max(x, tirx.const(low, dtype_of_bounds)), tirx.const(high, dtype_of_bounds))

    y16 = clamp(y, -(1 << 15), (1 << 15) - 1, "int32").astype("int16")  # sqxtn / vqmovn
    if zp:
        y16 = tirx.call_llvm_pure_intrin("int16", "llvm.sadd.sat", y16, tirx.const(zp, "int16"))  # sqadd
    codes = clamp(y16, int(info.min), int(info.max), "int16").astype(dtype)  # sqxtun / sqxtn
    if lo > info.min:
        codes = tirx.max(codes, tirx.const(lo, dtype))
    if hi < info.max:
        codes = tirx.min(codes, tirx.const(hi, dtype))
    return codes


def _rows_primfunc(
    dtype: str, shape, uniform: dict[int, int] | None, count: int, rounded, extra=None, saturating: bool = False
):
    """The PrimFunc every row-parameter form shares: acc int32 [.., C], (an `extra(dims)` input,) params int32
    [rows, C], out `dtype` [.., C] = clamp(rounded(acc, rows, c), lo - zp, hi - zp) + zp. The form has `count`
    rows per channel, the last three lo - zp, hi - zp, zp; `rounded` gets the value of each other row at the
    element's channel c (and the extra input). uniform: rows equal for every channel (row -> value), compiled in
    as constants; the params tensor holds the others, in order (at least one row). Op pattern kElemWise, as
    `requantize_primfunc`: it fuses into the producing op."""
    from tvm import te, tirx  # deferred: TVM loads where a PrimFunc is built

    uniform = uniform or {}
    varying = [k for k in range(count) if k not in uniform]
    dims = _dims(shape)
    acc = te.placeholder(dims, "int32", name="acc")
    inputs = [acc] + ([extra(dims)] if extra is not None else [])
    par = te.placeholder((tirx.IntImm("int64", max(1, len(varying))), dims[-1]), "int32", name="params")

    def one(*idx):
        c = idx[-1]
        rows = [tirx.const(uniform[k], "int32") if k in uniform else par[varying.index(k), c] for k in range(count)]
        lo, hi, zp = rows[-3:]
        y = rounded(acc[idx], rows[:-3], c, *inputs[1:])
        if saturating and all(k in uniform for k in range(count - 3, count)):
            return _saturating_codes(y, dtype, *(uniform[k] for k in range(count - 3, count)))
        return (tirx.min(tirx.max(y, lo), hi) + zp).astype(dtype)

    out = te.compute(dims, one, name="requantize")
    func = te.create_prim_func([*inputs, par, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 0)


def requantize_tie_free_primfunc(dtype: str, shape, uniform: dict[int, int] | None = None):
    """The requantization as `requantize_primfunc` computes it where no tie can occur (`tie_free_params`): the
    high half of the int64 product acc q, then one rounding shift and the clamp in int32 (tir._tie_free_mul's
    arithmetic) -- plain TIR, so it vectorizes at any width on every target, where the int64 half-even form runs
    as scalar code on ARMv7 (no 64-bit compare, min or max). Outside tcc's kernels' epilogues: a matmul of two
    activations, an elementwise product. uniform: rows equal for every channel, compiled in as constants; the
    params tensor holds the others, in order (at least one row)."""

    def rounded(x, rows, c):
        q, half, s = rows
        return (high_half(x, q) + half) >> s

    return _rows_primfunc(dtype, shape, uniform, 6, rounded)


# the NEON requantization's doubling high half, shift by a lane's (negative) count and rounding shift, per
# instruction set
NEON_REQUANTIZE_INTRINSICS = {
    "armv7": ("llvm.arm.neon.vqdmulh", "llvm.arm.neon.vshifts", "llvm.arm.neon.vrshifts"),
    "aarch64": ("llvm.aarch64.neon.sqdmulh", "llvm.aarch64.neon.sshl", "llvm.aarch64.neon.srshl"),
}


def requantize_neon_primfunc(dtype: str, shape, uniform: dict[int, int] | None = None, arch: str = "armv7"):
    """The requantization as `requantize_primfunc` computes it, in 32-bit NEON lanes (ARMv7 has no 64-bit
    vector multiply, compare or min / max; the int64 form costs ~5 instructions per value there; AArch64 has
    them, in 2 lanes). With the exact product P = acc q and k = 31 + s:

        hi = floor(P / 2^31)                         vqdmulh.s32 (AArch64 sqdmulh: the doubling high half)
        y = (hi + 2^(s-1) - 1 + m) >> s              rounds P / 2^k half to even, where
        m = [P mod 2^31 != 0] or [bit s of hi]       P mod 2^31 != 0  <=>  acc has a set bit below 31 - v
                                                     (v = trailing zero bits of q): no low product needed

    (hi = f 2^s + t: y = f + [t + m > 2^(s-1)], which is f + 1 exactly when the remainder t 2^31 + (P mod
    2^31) is above half, or is half (t = 2^(s-1), P mod 2^31 = 0) and f is odd.) The sums saturate
    (llvm.sadd.sat: vqadd.s32): a saturated sum is past every 16-bit clamp bound when s <= 22
    (`neon_requantize_params`), and TIR's int32 arithmetic may not wrap. Then clamp(y, lo - zp, hi - zp) + zp as in
    the narrow form (8-bit codes: `_saturating_codes`). Only for the
    epilogues of tcc's kernels, whose schedules vectorize it (the NEON intrinsics have no scalar form).
    uniform: rows of `neon_requantize_params` equal for every channel (row -> value), compiled in as constants
    (the bounds and zero point always; the shift where the layer has one): the params tensor holds the others,
    in order (at least one row)."""
    from tvm import tirx  # deferred: TVM loads where a PrimFunc is built

    doubling_high, shift, _ = NEON_REQUANTIZE_INTRINSICS[arch]

    def intrin(name, *args):
        return tirx.call_llvm_pure_intrin("int32", name, *args)

    def rounded(x, rows, c):
        q, below, bit, low_mask, neg_s = rows
        high = intrin(doubling_high, x, q)
        m = tirx.Or(tirx.NE(x & low_mask, 0), tirx.NE(high & bit, 0)).astype("int32")
        return intrin(shift, intrin("llvm.sadd.sat", intrin("llvm.sadd.sat", high, below), m), neg_s)

    return _rows_primfunc(dtype, shape, uniform, 8, rounded, saturating=dtype in ("int8", "uint8"))


def requantize_neon_tie_free_primfunc(dtype: str, shape, uniform: dict[int, int] | None = None, arch: str = "armv7"):
    """`requantize_neon_primfunc` where no tie can occur (`neon_tie_free_params`): with hi = floor(P / 2^31)
    (sqdmulh) and no tie, the reference's rounding of P / 2^k is up exactly where hi mod 2^s >= 2^(s-1) (its
    remainder, hi's low s bits and P's low 31, is above half there, below it elsewhere), which is the rounding
    shift (hi + 2^(s-1)) >> s: one `vrshl` / `srshl`, no tie test (the general form spends nine more
    instructions a vector on it). Then clamp(y, lo - zp, hi - zp) + zp as in the narrow form (8-bit codes:
    `_saturating_codes`). uniform: rows of
    `neon_tie_free_params` equal for every channel, compiled in as constants; the params tensor holds the others,
    in order (at least one row)."""
    from tvm import tirx  # deferred: TVM loads where a PrimFunc is built

    doubling_high, _, rounding_shift = NEON_REQUANTIZE_INTRINSICS[arch]

    def rounded(x, rows, c):
        q, neg_s = rows
        high = tirx.call_llvm_pure_intrin("int32", doubling_high, x, q)
        return tirx.call_llvm_pure_intrin("int32", rounding_shift, high, neg_s)

    return _rows_primfunc(dtype, shape, uniform, 5, rounded, saturating=dtype in ("int8", "uint8"))


FLOAT64_EXACT = 2**53  # |integer| below this: exact in float64


def float64_requantize_params(rq: Requant, channels: int, bound: np.ndarray | None) -> tuple | None:
    """(float64 [C], int32 [3, C]) for `requantize_float64_primfunc`, or None where that form does not apply:
    it needs multipliers below 1 (k = 31 - shift >= 31) and every product |acc q| <= bound q below 2^53, so that
    float64 holds it exactly (bound None: |acc| unknown). The float64 row: M = q / 2^k (exact: a 31-bit q times a
    power of two); the int32 rows: lo - zp, hi - zp, zp."""
    if bound is None:
        return None
    q, k, _ = fixed_point(rq.mult.q, rq.mult.shift)
    q, k = np.broadcast_to(q, (channels,)), np.broadcast_to(k, (channels,))
    if np.any(k < 31) or np.any(np.abs(q) * np.broadcast_to(bound, (channels,)) >= FLOAT64_EXACT):
        return None
    m = np.ldexp(q.astype(np.float64), -k.astype(np.int32))
    rows = np.stack([np.full(channels, rq.lo - rq.zp), np.full(channels, rq.hi - rq.zp), np.full(channels, rq.zp)])
    return m, np.clip(rows, INT32_MIN, INT32_MAX).astype(np.int32)


def requantize_float64_primfunc(dtype: str, shape, uniform: dict[int, int] | None = None):
    """The requantization as `requantize_primfunc` computes it, in float64 where that is exact
    (`float64_requantize_params`): acc M is the exact product acc q / 2^k (below 2^53, times a power of two),
    and rounding it to the nearest integer, ties to even, is the reference's rounding of acc q / 2^k: `llvm.lrint`
    in the default rounding mode, one `vcvtpd2dq` (nearbyint and a truncating conversion were two instructions:
    DDSNet host INT8 -6%, Zen 5; |acc M| < 2^31 since M < 1). Then clamp(y, lo - zp, hi - zp) + zp in int32 as in
    the narrow form. Three conversions and a multiply per 8 values on AVX2, where the 64-bit integer product takes
    widening, shifts and shuffles (a light layer -- depthwise, a stem on 3 channels -- spends more on its
    requantization than on its products). Params: float64 [1, C] (M), int32 [rows, C]: the rows of
    `float64_requantize_params` not in `uniform` (row -> value, compiled in as constants; at least one row)."""
    from tvm import te, tirx  # deferred: TVM loads where a PrimFunc is built

    def multiplier(dims):
        return te.placeholder((tirx.IntImm("int64", 1), dims[-1]), "float64", name="multiplier")

    def rounded(x, rows, c, mul):
        return tirx.call_llvm_pure_intrin("int32", "llvm.lrint", x.astype("float64") * mul[0, c])

    return _rows_primfunc(dtype, shape, uniform, 3, rounded, multiplier)


def int32_requantize_params(rq: Requant, channels: int) -> np.ndarray | None:
    """int32 [9, C] for `requantize_int32_primfunc`, or None where that form does not apply: it needs every
    multiplier below 1/2 (s = -shift in [1, 30]) and q > 0. Rows: q, 2^(31 - v) - 1 with v the number of
    trailing zero bits of q, s, 2^s - 1, 2^(s-1), 2^s, lo - zp, hi - zp, zp."""
    q, shift = np.atleast_1d(np.asarray(rq.mult.q, np.int64)), np.atleast_1d(np.asarray(rq.mult.shift, np.int64))
    s = -np.broadcast_to(shift, (channels,))
    q = np.broadcast_to(q, (channels,))
    if np.any(s < 1) or np.any(s > 30) or np.any(q <= 0) or np.any(q > INT32_MAX):
        return None
    trailing = np.array([(int(v) & -int(v)).bit_length() - 1 for v in q], np.int64)
    rows = np.stack(
        [
            q,
            (1 << (31 - trailing)) - 1,
            s,
            (1 << s) - 1,
            1 << (s - 1),
            1 << s,
            np.full(channels, rq.lo - rq.zp),
            np.full(channels, rq.hi - rq.zp),
            np.full(channels, rq.zp),
        ]
    )
    return np.clip(rows, INT32_MIN, INT32_MAX).astype(np.int32)


def requantize_int32_primfunc(dtype: str, shape, uniform: dict[int, int] | None = None):
    """The requantization as `requantize_primfunc` computes it, with one 64-bit step: the high half of the
    product, the rest in int32 lanes (x86: AVX2 has no 64-bit arithmetic shift, min or max, and an int64 lane
    holds half as many values; the int64 form was most of a light layer's time, FastNet's stem 78%). With the
    exact product P = acc q (|P| < 2^62) and k = 31 + s:

        hi = floor(P / 2^31)                          (vpmuldq, the high half shifted: fits int32)
        y = (hi >> s) + (((hi & (2^s - 1)) + 2^(s-1) - z) >> s)
        z = [acc & (2^(31 - v) - 1) == 0] and [bit s of hi == 0]

    which is `requantize_neon_primfunc`'s (hi + 2^(s-1) - 1 + m) >> s with m = 1 - z (P mod 2^31 = 0 exactly
    where acc has no set bit below 31 - v, v the trailing zero bits of q; bit s of hi is the floor's parity),
    split so that no int32 sum can overflow: the second term is 0 or 1. Then clamp(y, lo - zp, hi - zp) + zp as
    in the narrow form. uniform: rows of `int32_requantize_params` equal for every channel, compiled in as
    constants; the params tensor holds the others, in order (at least one row)."""
    from tvm import tirx  # deferred: TVM loads where a PrimFunc is built

    def rounded(x, rows, c):
        q, low_mask, s, mask, half, bit = rows
        high = high_half(x, q)
        exact = tirx.And(tirx.EQ(x & low_mask, 0), tirx.EQ(high & bit, 0)).astype("int32")
        return (high >> s) + (((high & mask) + half - exact) >> s)

    return _rows_primfunc(dtype, shape, uniform, 9, rounded)


def requantize_primfunc(dtype: str, shape, narrow: bool = True):
    """The requantization kernel for one output dtype and shape, fused by Relax into the producing conv. Channels
    last:

        out[..., c] = clamp(multiply_by_quantized_multiplier(acc[..., c], q[c], shift[c]) + zp[c], lo[c], hi[c])

    acc int32 [D0, .., C]; p32 int32 [4, C], p64 int64 [2, C] and `narrow` as `requantize_params` makes them;
    out `dtype`. (Sign and magnitude, for AVX2's missing arithmetic 64-bit shift, measured no faster.)"""
    from tvm import te, tirx  # deferred: TVM loads where a PrimFunc is built

    dims = _dims(shape)
    acc = te.placeholder(dims, "int32", name="acc")
    p32 = te.placeholder((tirx.IntImm("int64", 4), dims[-1]), "int32", name="p32")
    p64 = te.placeholder((tirx.IntImm("int64", 2), dims[-1]), "int64", name="p64")

    def one(*idx):
        c = idx[-1]
        q, lo, hi, zp = (p32[p, c] for p in range(4))
        y = _half_even_mul(acc[idx].astype("int64"), q.astype("int64"), p64[0, c], p64[1, c])
        if narrow:
            return (tirx.min(tirx.max(y.astype("int32"), lo), hi) + zp).astype(dtype)
        y = y + zp.astype("int64")
        return tirx.min(tirx.max(y, lo.astype("int64")), hi.astype("int64")).astype(dtype)

    out = te.compute(dims, one, name="requantize")
    # op pattern kElemWise, as TVM's analysis rates a bias add (out[..., c] from acc[..., c] and constants of
    # channel c): Relax then fuses it into the conv that makes acc, like an activation. Its own analysis would say
    # "injective" (params[k, c]), which a conv does not take into its group; tvm_compile's pipeline applies this
    # declared pattern after that analysis
    func = te.create_prim_func([acc, p32, p64, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 0)
