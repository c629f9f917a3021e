"""x86: the requantization of int32 accumulators as one float32 multiply-add, checked at build time against the
integer reference at every rounding boundary the accumulator can reach.

The reference rounds acc * M (M = q / 2^k, a 31-bit q) half to even. float64 holds that product exactly
(`requantize.float64_requantize_params`), but on AVX-512 the float64 form on lane pairs (`lane_pairs.py`) costs 9
vector instructions per 16 codes (two conversions to double and two multiply-adds on the pairs, their split and
merge, the clamp, the narrowing), and DDSNet's depthwise 3 x 3 convs do only 3 `vpdpbusd` per 16 outputs. Here,
per channel, in 6 (counted in the largest depthwise conv's machine code, Zen 4):

    code = clamp(rint(fma(float32(acc), scale, offset)), lo, hi)

(one conversion, one fused multiply-add: the exact acc * scale + offset rounded once to float32; the clamp; one
conversion that rounds half to even). float32's 24 bits do not hold acc * M exactly, so the form is only used where
it is proven equal to the reference:

- For scale > 0 the map is monotone in acc, as the reference is. Two monotone step functions are equal on
  [-bound, bound] when they are equal at both ends of each of the reference's steps: at the two accumulators on
  either side of each rounding boundary (k + 1/2) / M inside the range (at most one per output code), and at
  +-bound. `_check_points` lists them; the kernel's arithmetic is emulated exactly on them in numpy (the product of
  a 24-bit accumulator and a float32 scale is exact in float64, and the sum with the offset is checked exact, so
  rounding it to float32 is the one rounding of `vfmadd`).
- The search starts from scale = float32(M), offset = zp. A channel with an accumulator on the wrong side of a
  boundary (where acc * M lies within float32's resolution of k + 1/2) tries the neighbouring scales (a tilt) and
  offsets (a shift); a layer where some channel has no such pair keeps the float64 form (`None`).

Every depthwise conv of DDSNet passes (its accumulator's step, M ~ 1e-2 of a code, is far above float32's
resolution near a code, 2^-17); so do most pointwise convs; the transitions' (M ~ 1e-4) and the stem's do not.
"""

from __future__ import annotations

import numpy as np

from tcc.quant.intgraph.qtypes import Requant
from tcc.quant.intgraph.reference import apply_requant

from .tir import _dims

FLOAT32_EXACT = 2**24  # |integer| below this: exact in float32
MAX_CODES = 2**16  # the widest output code range checked (int16)
SCALE_STEPS = 16  # the float32 neighbours of M tried, in ulps each way
OFFSET_STEPS = 32  # offsets tried: zp + j * OFFSET_STEP, |j| <= OFFSET_STEPS
OFFSET_STEP = 2.0**-18  # a quarter of float32's step at codes in [64, 128)
TRIAL_BATCH = 64  # trials evaluated at once
NO_CODE = np.iinfo(np.int64).min  # what `_float_codes` gives a channel it cannot emulate: equal to no code


def float32_ulps(v: np.ndarray, k: int) -> np.ndarray:
    """v moved k float32 steps (toward +inf for k > 0)."""
    out = v.copy()
    for _ in range(abs(k)):
        out = np.nextafter(out, np.float32(np.inf if k > 0 else -np.inf)).astype(np.float32)
    return out


def _check_points(rq: Requant, m: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """int64 [C, P]: per channel, the accumulators around each rounding boundary of the reference inside
    [-bound, bound] (at most one per output code), and +-bound. The boundary of rounded value k -> k + 1 is
    (k + 1/2) / M; its float64 estimate is within 1e-9 of it, so the first accumulator past it is ceil(estimate)
    or the one after: the points ceil - 2 .. ceil + 1 hold both ends of every step."""
    ks = np.arange(rq.lo - rq.zp, rq.hi - rq.zp, dtype=np.float64)
    first = np.ceil((ks[None, :] + 0.5) / m[:, None]).astype(np.int64)
    points = np.concatenate([first - 2, first - 1, first, first + 1, -bound[:, None], bound[:, None]], axis=1)
    return np.clip(points, -bound[:, None], bound[:, None])


def _float_codes(points: np.ndarray, scale: np.ndarray, offset: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """What the kernel computes for accumulators `points` [C, P] with per-channel [C] scale and offset, emulated
    exactly; rows whose sum acc * scale + offset is not exact in float64 (never for DDSNet's) get `NO_CODE`."""
    product = points.astype(np.float64) * scale.astype(np.float64)[:, None]  # exact: 24 x 24 bits
    addend = np.broadcast_to(offset.astype(np.float64)[:, None], product.shape)
    total = product + addend
    virtual = total - product  # TwoSum: the exact error of the float64 sum
    error = (product - (total - virtual)) + (addend - virtual)
    y = np.clip(total.astype(np.float32), np.float32(lo), np.float32(hi))
    codes = np.rint(y).astype(np.int64)
    codes[np.any(error != 0, axis=1)] = NO_CODE
    return codes


def float32_requantize_params(rq: Requant, channels: int, bound: np.ndarray | None) -> np.ndarray | None:
    """float32 [2, C] (scale, offset) for `requantize_float32_primfunc`, equal to the reference's requantization
    of every accumulator |acc| <= bound; None where the form does not apply (bound unknown or 2^24 or more,
    a multiplier not positive, an output wider than 16 bits: one check point per code) or some channel has no such
    pair."""
    if bound is None or not np.all(np.asarray(rq.mult.q) > 0) or rq.hi - rq.lo > MAX_CODES:
        return None
    bound = np.broadcast_to(np.asarray(bound, np.int64), (channels,))
    if np.any(bound >= FLOAT32_EXACT):
        return None
    q = np.broadcast_to(np.asarray(rq.mult.q, np.float64).reshape(-1), (channels,))
    shift = np.broadcast_to(np.asarray(rq.mult.shift, np.float64).reshape(-1), (channels,))
    m = q * np.exp2(shift - 31)  # exact: a 31-bit q times a power of two
    points = _check_points(rq, m, bound)
    want = apply_requant(points, rq, axis=0)
    scale = m.astype(np.float32)
    offset = np.full(channels, rq.zp, np.float32)
    start_codes = _float_codes(points, scale, offset, rq.lo, rq.hi)
    bad = np.flatnonzero(np.any(start_codes != want, axis=1))
    if bad.size == 0:
        return np.stack([scale, offset])
    # the candidates nearest the start first: a tilt of i ulps of the scale, a shift of j offset steps
    trials = sorted(
        ((i, j) for i in range(-SCALE_STEPS, SCALE_STEPS + 1) for j in range(-OFFSET_STEPS, OFFSET_STEPS + 1)),
        key=lambda t: (abs(t[0]) + abs(t[1]), t),
    )
    tilts = np.array([t[0] for t in trials]) + SCALE_STEPS
    offsets = (rq.zp + np.array([t[1] for t in trials], np.float64) * OFFSET_STEP).astype(np.float32)
    for c in bad:  # the first channel without a pair ends the search
        scales = np.array([float32_ulps(scale[c : c + 1], i)[0] for i in range(-SCALE_STEPS, SCALE_STEPS + 1)])[tilts]
        found = _first_exact_trial(points[c], want[c], scales, offsets, (rq.lo, rq.hi), start_codes[c] != want[c])
        if found is None:
            return None
        scale[c], offset[c] = scales[found], offsets[found]
    return np.stack([scale, offset])


def _first_exact_trial(points, want, scales, offsets, bounds: tuple[int, int], missed) -> int | None:
    """The first trial (scales[t], offsets[t]) whose codes equal `want` at every point of one channel, or None.
    Trials are screened in batches on a few points: those the start missed (`missed`), the ends, and every point
    a screened trial then missed in full. A trial wrong there is wrong, so the first to pass the full check is
    the first trial that is right everywhere: the one checking each trial on all points finds, at a small
    fraction of the work (an int16 output has ~2^18 check points a channel)."""
    lo, hi = bounds
    screen = np.union1d(np.flatnonzero(missed), [0, len(points) - 1])
    for start in range(0, len(scales), TRIAL_BATCH):
        batch = slice(start, start + TRIAL_BATCH)
        got = _float_codes(
            np.broadcast_to(points[screen], (len(scales[batch]), screen.size)),
            scales[batch],
            offsets[batch],
            lo,
            hi,
        )
        for t in np.flatnonzero(np.all(got == want[screen][None, :], axis=1)):
            trial = start + int(t)
            wrong = _float_codes(points[None, :], scales[trial : trial + 1], offsets[trial : trial + 1], lo, hi)[0]
            wrong = np.flatnonzero(wrong != want)
            if wrong.size == 0:
                return trial
            screen = np.union1d(screen, wrong)
    return None


def requantize_float32_primfunc(dtype: str, shape, lo: int, hi: int):
    """codes out [.., C] (`dtype`) = clamp(rint(fma(float32(acc), scale[c], offset[c])), lo, hi) of int32 acc
    [.., C]; params float32 [2, C] from `float32_requantize_params`. Clamped as floats, so the conversion
    (`vcvtps2dq`, rounding half to even) only sees values in [lo, hi]; then narrowed. Op pattern kElemWise, as the
    other requantizations: it fuses into the producing kernel as its epilogue."""
    from tvm import te, tirx  # deferred: TVM loads where a PrimFunc is built

    dims = _dims(shape)
    acc = te.placeholder(dims, "int32", name="acc")
    params = te.placeholder((tirx.IntImm("int64", 2), dims[-1]), "float32", name="params")

    def one(*idx):
        c = idx[-1]
        y = tirx.call_llvm_pure_intrin("float32", "llvm.fma", acc[idx].astype("float32"), params[0, c], params[1, c])
        y = tirx.min(tirx.max(y, tirx.const(float(lo), "float32")), tirx.const(float(hi), "float32"))
        return tirx.call_llvm_pure_intrin("int32", "llvm.lrint", y).astype(dtype)

    out = te.compute(dims, one, name="requantize")
    func = te.create_prim_func([acc, params, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 0)
