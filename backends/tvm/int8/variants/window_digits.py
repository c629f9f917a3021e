"""A pooled conv (a 1 x 1 conv after its average pool, pool_before_conv: reference.pooled_conv) on the dot-product
kernel: the kernel variant `window_digits`. With 8-bit codes at zero point 0 and a window of A = 2^k pixels, the
window sums S as two 8-bit digits, S >> k and S & (A - 1) (`window_digits_primfunc`, one pass over the input), each
a call of the kernel on the pooled pixels (dot_conv.dot_call), (acc_high << k) + acc_low: exact, 2 / A of the
multiply-adds of the conv before the pool. Where its input is an x86 affine map (affine_map.py), the digits
compute the map as the windows read it.

- takes: a pooled conv, groups 1, 8-bit codes at zero point 0, a window of 2^k pixels, static shapes (output
  channels the kernel's lanes do not divide: computed on more, dot_conv.whole_lanes);
- compute: `window_digits_primfunc` (opaque: a kernel of its own), then the dot conv's (dot_conv.py) twice;
  schedule: Int8DotConv (its digits: Injective); the requantization in the tile's epilogue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tvm import te, tirx

from tcc.quant.intgraph.qtypes import QNode, window_sums

from ..codes import _Codes
from ..kernels import ConvShape
from .affine_map import mapped as affine_mapped
from .base import Layer, widened, zero_filters
from .dot_conv import DotMatch, dot_call, dot_match, dot_variant, whole_lanes, widened_why

WINDOW_DIGITS_BLOCK = "tcc_window_digits"  # a pooled conv's window sums as 8-bit digits (`window_digits_primfunc`)


def window_digits_primfunc(
    shape: Sequence[int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dtype: str,
    mapped: tuple | None = None,
):
    """A pooled conv's input: x [n, h, w, c] of 8-bit codes at zero point 0 -> two
    tensors [n, oh, ow, c] in x's type, per unpadded window of A = 2^k pixels its sum S as the digits S >> k (the
    window's floor mean: in the codes' own range, signed where they are) and S & (A - 1), so S = 2^k high + low,
    exactly; one pass over x. `mapped` (source dtype, lo, hi): x is the per-channel float32 map of source codes
    (affine_map.py, its shift and scale the function's next arguments), computed here as the windows read it."""

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731
    n, h, w, c = shape
    (kh, kw), (sh, sw) = kernel, strides
    area = kh * kw
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    x = te.placeholder([i64(d) for d in shape], dtype if mapped is None else mapped[0], name="x")
    params = [] if mapped is None else [te.placeholder([i64(c)], "float32", name=nm) for nm in ("shift", "scale")]

    def code(b, y, xx, ch):
        if mapped is None:
            return x[b, y, xx, ch].astype("int16")
        return affine_mapped(x[b, y, xx, ch], params[0][ch], params[1][ch], mapped[1], mapped[2]).astype("int16")

    def digits(b, i, j, ch):
        total = sum(code(b, i * sh + ky, j * sw + kx, ch) for ky in range(kh) for kx in range(kw))
        return (
            (total >> tirx.const(area.bit_length() - 1, "int16")).astype(dtype),
            (total & tirx.const(area - 1, "int16")).astype(dtype),
        )

    high, low = te.compute([i64(d) for d in (n, oh, ow, c)], digits, name=WINDOW_DIGITS_BLOCK)
    # opaque: a kernel of its own (fused with a dense block's concat, its loops test the concat's bounds per element:
    # slower, docs/notes/pool-before-conv.md)
    func = te.create_prim_func([x, *params, high, low]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 8)


# ---------------------------------------------------------------------------------------------------- the variant
def match(layer: Layer) -> DotMatch | None:
    n, kernel = layer.node, layer.kernel
    g = n.attrs["pool"]
    kh, kw = g["kernel"]
    area = kh * kw
    dims = [d for d in layer.dims if d is not None]
    if (
        kernel is None
        or area & (area - 1) != 0
        or layer.params.bits != 8
        or layer.params.zp
        or n.attrs["group"] != 1
        or len(dims) != len(layer.dims)
    ):
        return None
    oh, ow = g["out_hw"]
    shape = ConvShape(dims[0], oh, ow, dims[3], int(layer.weight.shape[0]), 1, 1, (1, 1), (0, 0, 0, 0), (1, 1))
    wide = whole_lanes(layer, shape, kernel)
    if wide is None:
        return None
    what = (
        f"{kh} x {kw} average pool, then 1 x 1 {shape.c} -> {shape.co}{widened_why(layer, wide)}: the window sums "
        "as two 8-bit digits, two calls of the kernel on the pooled pixels"
    )
    # the digits are codes of the layer's 8-bit type
    return dot_match(layer, wide, kernel, zero_filters(layer.weight, wide.co), what, shape.co)


def emit(low, n: QNode, x: _Codes, m: DotMatch) -> list:
    """The window sums' digits (one call of `window_digits_primfunc`, on the affine map's input where x is one), the
    kernel on each, (acc_high << k) + acc_low, requantized in the second's epilogue; on more output channels than
    the layer's (dot_conv.whole_lanes), its own kept after."""
    assert m.shape is not None
    if m.own is not None:
        return low.kept_channels(emit(low, widened(n, m.shape.co), x, replace(m, own=None)), m.own)
    op, g = low.relax.op, n.attrs["pool"]
    kh, kw = g["kernel"]
    area = kh * kw
    dims = [int(d) for d in x.expr.ty.shape]  # static: the match's
    oh, ow = g["out_hw"]
    dtype = x.expr.ty.dtype
    source = next((a for a in low.affine_maps if a[0].same_as(x.expr)), None)
    mapped = None if source is None else (str(source[1][0].ty.dtype), source[2], source[3])
    func = low.bb.add_func(window_digits_primfunc(dims, (kh, kw), g["strides"], dtype, mapped), "tcc_window_digits")
    digit = low.relax.TensorType([dims[0], oh, ow, dims[3]], dtype)
    pair = low.emit(low.relax.call_tir(func, [x.expr] if source is None else source[1], [digit, digit]))
    high, low_digit = (low.emit(low.relax.TupleGetItem(pair, k)) for k in (0, 1))
    high, c_high, _ = dot_call(low, high, m.weight, m.plan)
    # (high << k) + low: the low digit's accumulators start from the bias
    low_digit, c_low, started = dot_call(low, low_digit, m.weight, m.plan, lambda c: low.bias(n, c_high * area + c))
    acc = low.emit(op.add(low.emit(op.left_shift(high, low.const(area.bit_length() - 1, "int32"))), low_digit))
    sums = window_sums(x.params, area)
    return low.accumulated(n, acc, sums, c_high * area + c_low, in_kernel=True, started=started)


ABOUT = "a pooled conv: the window sums as two 8-bit digits, two calls of the dot kernel on the pooled pixels"
VARIANT = dot_variant("window_digits", "pooled_conv", match, emit, ABOUT, extra_compute=(window_digits_primfunc,))
