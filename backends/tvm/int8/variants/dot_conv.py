"""Dense convs on the target's integer dot-product kernel (kernels.py: `vpdpbusd`, `vpmaddwd`, `sdot`, ARM's
widening multiply-adds): the kernel variants `dot_conv` (a conv) and `dot_rows` (a linear layer over rows, as a
1 x 1 conv on one image row), and the kernel call that the digits variants (digits.py, window_digits.py) make too.

- takes: a dense conv (groups 1) on 8-bit codes at zero point 0 (int16 codes: the kernels that read them, x86's
  `vpmaddwd`, a VNNI target's int16 twin; ARM's s8 kernels leave them to the generic conv) whose output channels
  the kernel or a narrower twin divides (choose.supports); a linear layer over rows ([R, K] @ [K, F]: attention's
  projections and MLPs over tokens) likewise;
- which kernel the layer runs on (`dot_plan`): the target's (or its int16 twin), narrowed to the output channels,
  in the dot or broadcast form and with or without an im2col copy of its windows (choose.dot_form), then its safe
  twin where the weights pair two -128 codes (choose.layer_kernel); an ARM micro-kernel takes its 1 x 1 convs
  (microkernel.py);
- compute: compute.py's conv in the kernel's steps (`conv_primfunc`, the dot form's `dot_conv_primfunc`, the
  micro-kernel's `microkernel_primfunc`; the im2col copy `im2col_primfunc`), the weights `pack_weights`;
- intrinsics: the kernel's step (intrinsics.ensure_registered), the dot form's partial sums
  (intrinsics.partial_sum_intrin), the ARM micro-kernels' tiles (microkernel.tile_intrin);
- schedule rule schedule.int8_rules.Int8DotConv; the requantization in the tile's epilogue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from tcc.quant.intgraph.qtypes import QNode

from ...schedule.int8_rules import Int8DotConv
from .. import choose, compute, intrinsics, microkernel
from ..codes import _Codes
from ..kernels import ConvShape, DotKernel
from .base import Layer, Match, Variant, widened, widens, zero_filters


@dataclass(frozen=True)
class DotPlan:
    """How a dense conv (`layer`: its shape) runs on a dot-product kernel: the layer's kernel (after its narrower,
    form and safe twins), the kernel chosen before the safe twin (its type makes the im2col copy), whether it reads
    an im2col copy of its windows, the conv the kernel computes (`shape`; on the copy: a 1 x 1 conv) and its weights
    packed for it."""

    layer: ConvShape
    kernel: DotKernel
    form_kernel: DotKernel
    im2col: bool
    shape: ConvShape
    packed: np.ndarray


def dot_plan(shape: ConvShape, base: DotKernel, weight: np.ndarray) -> DotPlan:
    """The plan of a conv of `shape` and OIHW `weight` codes on the kernel `base` (the target's, or its twin for the
    codes' type)."""
    kernel, im2col = choose.dot_form(shape, choose.narrow_kernel(shape, base))
    conv, weights = shape, weight
    if im2col:  # the windows of few input channels, copied out: the conv becomes 1 x 1 on them
        conv = compute.im2col_shape(shape, kernel)
        weights = compute.im2col_weights(weight, conv.c)
    packed = compute.pack_weights(weights, conv, kernel)
    layer = choose.layer_kernel(kernel, packed)
    if layer is not kernel:
        packed = compute.pack_weights(weights, conv, layer)
    return DotPlan(shape, layer, kernel, im2col, conv, packed)


def describe(plan: DotPlan, target: DotKernel | None) -> str:
    """How the plan runs where that is more than the target's kernel itself: a twin, im2col, a micro-kernel, the
    dot form."""
    notes = []
    if target is not None and plan.kernel.name != target.name:
        notes.append(f"the twin of {target.name}")
    if plan.im2col:
        notes.append("an im2col copy of its windows")
    tile = microkernel.tile_of(plan.kernel, plan.shape)
    if tile is not None:
        notes.append(f"the micro-kernel {tile.name}")
    elif plan.kernel.form == "dot":
        notes.append("the dot form")
    return "".join(f"; {note}" for note in notes)


def dot_call(low, codes, weight: np.ndarray, plan: DotPlan, start: Callable | None = None):
    """(acc, correction, started): the conv of `plan` as one call of its kernel's PrimFunc (compute.dense_conv) on
    `codes` (the layer's input codes, one of their digits, or their rows as an image) converted to the kernel's type
    (shifted where its signedness differs; Relax fuses the conversion into the producer), `weight` (OIHW codes)
    packed; `correction`: what the bias must add back (the kernel's shifted codes); started: whether the
    accumulators started from `start(correction)` (the vector a caller's `_bias` makes; None: from 0), which the
    kernel's form may decline (the dot form)."""
    op = low.relax.op
    dtype = codes.ty.dtype
    base = choose.codes_kernel(low.kernel, dtype)
    assert base is not None  # the match's kernel
    offset = base.act_offset(dtype)
    if base.act_dtype == "int16" or offset:
        codes = low.cast(codes, "int16")
        if offset:
            codes = low.cast(low.emit(op.add(codes, low.const(offset, "int16"))), base.act_dtype)
    shape, out_hw = plan.shape, plan.layer.out_hw
    if plan.im2col:
        act = plan.form_kernel.act_dtype
        func = low.bb.add_func(compute.im2col_primfunc(plan.layer, shape.c, act, offset, shape.w), "tcc_im2col")
        codes = low.emit(
            low.relax.call_tir(func, [codes], low.relax.TensorType([shape.n, shape.h, shape.w, shape.c], act))
        )
    correction = compute.bias_correction(weight, offset)
    bias = None if start is None else start(correction)
    func, packed, started = compute.dense_conv(shape, plan.kernel, offset, plan.packed, bias is not None, out_hw[1])
    func = low.bb.add_func(func, "tcc_dot_conv")
    acc = low.emit(
        low.relax.call_tir(
            func,
            [codes, low.const(packed, plan.kernel.weight_dtype), *low.start_args(bias if started else None)],
            low.relax.TensorType([shape.n, *out_hw, shape.co], "int32"),
        )
    )
    return acc, correction, started


@dataclass(frozen=True, kw_only=True)
class DotMatch(Match):
    plan: DotPlan
    weight: np.ndarray  # the conv's OIHW weight codes (a linear layer's as a 1 x 1 conv's)
    own: int | None = None  # the layer's output channels where the conv computes more (whole_lanes), else None


def dot_match(
    layer: Layer, shape: ConvShape, base: DotKernel, weight: np.ndarray, why: str, own: int | None = None
) -> DotMatch:
    """The match of a conv of `shape` and OIHW `weight` codes on the kernel `base`: its plan, why (+ how the plan
    runs: `describe`); `own`: the layer's output channels where `shape` has more (`whole_lanes`)."""
    plan = dot_plan(shape, base, weight)
    why += describe(plan, layer.kernel)
    own = None if own == shape.co else own
    return DotMatch(kernel=plan.kernel.name, why=why, shape=shape, plan=plan, weight=weight, own=own)


# what a variant on the dot-product kernels is made of: compute.py's convs, intrinsics.py's steps, their rule
DOT_COMPUTE = (
    compute.conv_primfunc,
    compute.dot_conv_primfunc,
    compute.microkernel_primfunc,
    compute.im2col_primfunc,
    compute.pack_weights,
)
DOT_INTRINSICS = (intrinsics.ensure_registered, intrinsics.partial_sum_intrin, microkernel.tile_intrin)


def dot_variant(name: str, kind: str, match, emit, about: str, extra_compute: tuple = ()) -> Variant:
    """A variant on the dot-product kernels (`dot_call`): their computes, intrinsics and schedule rule."""
    return Variant(name, (kind,), match, emit, about, (*extra_compute, *DOT_COMPUTE), DOT_INTRINSICS, Int8DotConv)


# ---------------------------------------------------------------------------------------------------- dot_conv
def _dense(layer: Layer) -> tuple[ConvShape, DotKernel] | None:
    """A dense conv's shape and the kernel its codes take (choose.codes_kernel), whatever its output channels."""
    kernel = choose.codes_kernel(layer.kernel, layer.dtype) if layer.node.attrs["group"] == 1 else None
    shape = layer.conv_shape(int16=kernel.act_dtype == "int16") if kernel is not None else None
    return None if kernel is None or shape is None else (shape, kernel)


def conv_shape(layer: Layer) -> ConvShape | None:
    """The conv's shape when the target's dot-product kernel takes it (a dense conv), else None. int16 codes: the
    kernels that multiply int16 pairs (x86 `vpmaddwd`: each int16 x int16 pair summed into int32, exact for int8
    weights; a VNNI target's twin, choose.codes_kernel); ARM's s8 kernels leave them to the generic conv."""
    found = _dense(layer)
    if found is None or choose.supports(found[0], choose.narrow_kernel(*found)) is not None:
        return None
    return found[0]


def whole_lanes(layer: Layer, shape: ConvShape, kernel: DotKernel) -> ConvShape | None:
    """The conv the kernel computes for the layer: `shape`, or where the narrowest twin's lanes do not divide its
    output channels, the conv on the next multiple (zero filters, base.widened; a 2-class head's 16 -> 2 took the
    generic conv at 1.6 instructions a multiply-add on ARMv7); None where the kernel cannot take it."""
    lanes = choose.narrow_kernel(shape, kernel).lanes
    wide = -(-shape.co // lanes) * lanes
    if widens(shape.co, wide, layer.pooled):
        shape = replace(shape, co=wide)
    return shape if choose.supports(shape, choose.narrow_kernel(shape, kernel)) is None else None


def widened_why(layer: Layer, shape: ConvShape) -> str:
    """What the match's reason adds where the conv computes more output channels than the layer has."""
    own = int(layer.weight.shape[0])
    return f" computed on {shape.co} (zero filters, sliced off)" if shape.co > own else ""


def match_conv(layer: Layer) -> DotMatch | None:
    found = _dense(layer)
    wide = whole_lanes(layer, *found) if found is not None else None
    if found is None or wide is None:
        return None
    shape, base = found
    what = (
        f"dense {shape.kh} x {shape.kw} / {shape.strides[0]}, {shape.c} -> {shape.co} channels"
        f"{widened_why(layer, wide)} ({layer.dtype})"
    )
    return dot_match(layer, wide, base, zero_filters(layer.weight, wide.co), what, shape.co)


def conv_call(low, n: QNode, x: _Codes, codes, m: DotMatch) -> list:
    """The conv of `m` as one call of its kernel on `codes`, requantized in its kernel; on more output channels
    than the layer's (whole_lanes: base.widened), its own kept after."""
    assert m.shape is not None
    computed = n if m.own is None else widened(n, m.shape.co)
    acc, correction, started = dot_call(low, codes, m.weight, m.plan, lambda c: low.bias(computed, c))
    out = low.accumulated(computed, acc, x.params, correction, in_kernel=True, started=started)
    return out if m.own is None else low.kept_channels(out, m.own)


def emit_conv(low, n: QNode, x: _Codes, m: DotMatch) -> list:
    return conv_call(low, n, x, x.expr, m)


ABOUT_CONV = (
    "a dense conv on the target's dot-product kernel (or a twin), im2col for few input channels, ARM micro-kernels"
)
CONV = dot_variant("dot_conv", "conv", match_conv, emit_conv, ABOUT_CONV)


# ---------------------------------------------------------------------------------------------------- dot_rows
def rows_shape(layer: Layer, kernel: DotKernel | None) -> tuple[ConvShape, np.ndarray] | None:
    """A linear layer over rows of codes ([R, K] @ [K, F]) as a 1 x 1 conv on one image row of R pixels, where
    `kernel` takes it: (its shape, its OIHW weight), else None. 8-bit or int16 codes at zero point 0, static
    shapes."""
    dims = [d for d in layer.dims if d is not None]
    if kernel is None or layer.params.zp or layer.dtype not in ("int8", "uint8", "int16") or len(dims) != 2:
        return None
    if len(layer.dims) != 2:
        return None
    (r, k), f = dims, int(layer.weight.shape[1])
    shape = ConvShape(1, 1, r, k, f, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1))
    if choose.supports(shape, choose.narrow_kernel(shape, kernel)) is not None:
        return None
    return shape, np.ascontiguousarray(layer.weight.T)[:, :, None, None]


def match_rows(layer: Layer) -> DotMatch | None:
    kernel = choose.codes_kernel(layer.kernel, layer.dtype)
    found = rows_shape(layer, kernel)
    if found is None or kernel is None:
        return None
    shape, weight = found
    what = f"linear over {shape.w} rows, {shape.c} -> {shape.co} ({layer.dtype}): a 1 x 1 conv on one image row"
    return dot_match(layer, shape, kernel, weight, what)


def on_rows(low, n: QNode, x: _Codes, m: DotMatch, conv: Callable) -> list:
    """A linear layer's output [R, F] from `conv(codes)`, the conv of its rows as an image [1, 1, R, K]: codes
    (zero-point-free) or, a float graph output, the dequantized NCHW [1, F, 1, R]."""
    assert m.shape is not None
    r, f = m.shape.w, m.shape.co
    (y,) = conv(low.emit(low.relax.op.reshape(x.expr, [1, 1, r, m.shape.c])))
    if not isinstance(y, _Codes):  # a float graph output (dequantized, in NCHW): [1, F, 1, R]
        return [low.emit(low.relax.op.reshape(low.emit(low.relax.op.permute_dims(y, [0, 3, 2, 1])), [r, f]))]
    return [_Codes(low.emit(low.relax.op.reshape(y.expr, [r, f])), y.params)]


def emit_rows(low, n: QNode, x: _Codes, m: DotMatch) -> list:
    return on_rows(low, n, x, m, lambda codes: conv_call(low, n, x, codes, m))


ABOUT_ROWS = "a linear layer over rows (attention's projections, MLPs over tokens) as a 1 x 1 conv on the dot kernel"
ROWS = dot_variant("dot_rows", "gemm", match_rows, emit_rows, ABOUT_ROWS)
