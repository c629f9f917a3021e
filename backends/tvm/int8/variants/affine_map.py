"""A per-channel affine map of 8-bit codes (a 1 x 1 depthwise conv: a batch norm after a ReLU, DDSNet's transitions)
as float32 arithmetic whose every result is checked against the integer reference at build time: the kernel variant
`affine_map` (x86), in one place -- its matcher (`match`: a 1 x 1 depthwise conv, not strided or padded, on 8-bit
codes, codes out, whose map `affine_params` finds), its compute (`affine_primfunc`, an elementwise block that
schedule.float_rules.Injective vectorizes), no intrinsic, no requantization (the map computes the codes).

Each channel's output depends on one 8-bit code, so the integer reference -- acc = q w + b, requantized -- is a
table of 256 codes per channel. `affine_params` finds float32 (shift, scale) per channel such that

    clamp(rint((float(q) + shift) * scale), lo, hi)

(one float32 add, one multiply, both rounded to nearest even as IEEE and numpy round them; then rounded half to
even) equals that table for all 256 codes: it starts from the real multiplier and, for a channel where some code
lands on the other side of a rounding boundary, tries the neighbouring float32 values. Where no channel-wise pair
matches, the layer keeps the generic kernel (`None`). An add then a multiply, not a multiply then an add: LLVM
may contract the latter into one fused multiply-add, whose single rounding the check would not have seen.

On x86 (AVX-512) a vector of 16 codes then costs 9 vector instructions (a widening, two conversions, an add, a
multiply, two clamps, the narrowing and its store), where the int16-tap conv with the float64 requantization took
12: DDSNet host INT8 x 0.988 (Zen 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from tcc.quant.intgraph.qtypes import QNode, Requant
from tcc.quant.intgraph.reference import apply_requant

from ..codes import _Codes
from ..requantize_float32 import float32_ulps
from .base import Layer, Match, Variant

AFFINE_BLOCK = "tcc_affine"  # the map's block (`affine_primfunc`)

# the float32 neighbours of the real multiplier's (shift, scale) tried for a channel with a mismatch, in ulps
SCALE_STEPS = 4
SHIFT_STEPS = 8


def _codes(dtype: str) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.arange(info.min, info.max + 1, dtype=np.int64)


def _float_map(codes: np.ndarray, shift: np.ndarray, scale: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """What the kernel computes, in numpy's IEEE float32: [codes, channels]."""
    y = (codes.astype(np.float32)[:, None] + shift[None, :]) * scale[None, :]
    return np.rint(np.clip(y, np.float32(lo), np.float32(hi))).astype(np.int64)


def affine_params(weight: np.ndarray, bias: np.ndarray | None, rq: Requant, in_dtype: str):
    """(shift, scale) float32 per channel for a 1 x 1 depthwise conv of `weight` [C] and `bias` [C] codes on
    `in_dtype` codes (zero point 0) requantized by `rq`, equal to the integer reference on every code; None where
    some channel has no such pair."""
    codes = _codes(in_dtype)
    w = np.asarray(weight, np.int64).reshape(-1)
    b = np.zeros_like(w) if bias is None else np.asarray(bias, np.int64).reshape(-1)
    want = apply_requant(codes[:, None] * w[None, :] + b[None, :], rq, axis=1)
    shift, scale = start_params(w, b, rq)
    bad = np.any(_float_map(codes, shift, scale, rq.lo, rq.hi) != want, axis=0)
    for i in range(-SCALE_STEPS, SCALE_STEPS + 1):
        for j in range(-SHIFT_STEPS, SHIFT_STEPS + 1):
            if not bad.any():
                return shift, scale
            idx = np.flatnonzero(bad)
            trial_scale = float32_ulps(scale[idx], i)
            trial_shift = float32_ulps(shift[idx], j)
            fixed = ~np.any(_float_map(codes, trial_shift, trial_scale, rq.lo, rq.hi) != want[:, idx], axis=0)
            scale[idx[fixed]], shift[idx[fixed]] = trial_scale[fixed], trial_shift[fixed]
            bad[idx[fixed]] = False
    return None if bad.any() else (shift, scale)


def start_params(w: np.ndarray, b: np.ndarray, rq: Requant) -> tuple[np.ndarray, np.ndarray]:
    """The search's start: (q + b / w + zp / (M w)) * M w in float32, M the real multiplier; a zero weight (a
    constant channel): its constant far past float32's resolution of the codes (q + shift rounds to shift), times a
    tiny scale."""
    real = np.broadcast_to(
        np.asarray(rq.mult.q, np.float64) * np.exp2(np.asarray(rq.mult.shift, np.float64) - 31), w.shape
    )
    zero = w == 0
    safe = np.where(zero, 1, w)
    constant = np.clip(np.rint(real * b) + rq.zp, rq.lo, rq.hi)
    scale = np.where(zero, 2.0**-40, real * safe).astype(np.float32)
    shift = np.where(zero, constant * 2.0**40, b / safe + rq.zp / (real * safe)).astype(np.float32)
    return shift, scale


def mapped(code, shift, scale, lo: int, hi: int):
    """One code's map as a TIR expression (int32): clamp(rint((float32(code) + shift) * scale), lo, hi), clamped
    from above as a float (what converts to int32 stays in range: a larger one would convert to int32's minimum),
    rounded by the conversion (`vcvtps2dq`), clamped from below as an integer."""

    y = (code.astype("float32") + shift) * scale
    rounded = tirx.call_llvm_pure_intrin("int32", "llvm.lrint", tirx.min(y, tirx.const(float(hi), "float32")))
    return tirx.max(rounded, tirx.const(lo, "int32"))


def affine_primfunc(shape, in_dtype: str, out_dtype: str, lo: int, hi: int):
    """codes out [n, h, w, c] (`out_dtype`) = clamp(rint((float32(x) + shift[c]) * scale[c]), lo, hi) of 8-bit codes
    x [n, h, w, c]; the parameters from `affine_params`. An elementwise block (`AFFINE_BLOCK`): the Injective rule
    vectorizes it along the channels."""

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731
    dims = [i64(d) for d in shape]
    x = te.placeholder(dims, in_dtype, name="x")
    shift = te.placeholder([dims[-1]], "float32", name="shift")
    scale = te.placeholder([dims[-1]], "float32", name="scale")

    out = te.compute(
        dims, lambda n, h, w, c: mapped(x[n, h, w, c], shift[c], scale[c], lo, hi).astype(out_dtype), name=AFFINE_BLOCK
    )
    # opaque: a kernel of its own (fused with a concat before it and a pool's window sums after it, the loops test
    # the concat's bounds per element: slower, docs/notes/x86-int8-zen4.md)
    return te.create_prim_func([x, shift, scale, out]).without_attr("global_symbol").with_attr("tcc.op_pattern", 8)


# ---------------------------------------------------------------------------------------------------- the variant
@dataclass(frozen=True, kw_only=True)
class AffineMatch(Match):
    params: tuple[np.ndarray, np.ndarray]  # (shift, scale) per channel (`affine_params`)


def match(layer: Layer) -> AffineMatch | None:
    n = layer.node
    if not layer.x86 or n.qout[0] is None or n.requant is None:
        return None
    shape = layer.conv_shape()
    if (
        shape is None
        or not layer.depthwise(shape)
        or (shape.kh, shape.kw) != (1, 1)
        or shape.strides != (1, 1)
        or any(shape.pads)
    ):
        return None
    params = affine_params(layer.weight[:, 0, 0, 0], n.bias, n.requant, layer.dtype)
    if params is None:
        return None
    return AffineMatch(
        kernel=AFFINE_BLOCK,
        why=f"1 x 1 depthwise on {shape.c} channels: a float32 map per channel, equal to the reference on every code",
        shape=shape,
        params=params,
    )


def emit(low, n: QNode, x: _Codes, m: AffineMatch) -> list:
    """The map as one call of `affine_primfunc` (its parameters float32 constants), kept in `low.affine_maps`: a
    pooled conv reading it computes the map in its window sums (window_digits.py; this call is then dead code)."""
    shape, out, rq = m.shape, n.qout[0], n.requant
    assert shape is not None and out is not None and rq is not None
    dims = [shape.n, shape.h, shape.w, shape.c]
    func = low.bb.add_func(affine_primfunc(dims, str(x.expr.ty.dtype), out.dtype, rq.lo, rq.hi), "tcc_affine")
    args = [x.expr, *(low.const(p, "float32") for p in m.params)]
    y = low.emit(low.relax.call_tir(func, args, low.relax.TensorType(dims, out.dtype)))
    low.affine_maps.append((y, args, rq.lo, rq.hi))
    return [_Codes(y, out)]


VARIANT = Variant(
    "affine_map",
    ("conv",),
    match,
    emit,
    "x86: a 1 x 1 depthwise conv as a float32 map per channel, checked equal to the reference on every code",
    compute=(affine_primfunc,),
    requantize="none",
)
