"""The TE computes of the dot-product kernels' convs that schedule.int8_rules.Int8DotConv tiles: a dense conv in the
steps of its dot-product kernel (`conv_primfunc`, ARM's dot form `dot_conv_primfunc`, the ARM micro-kernels'
`microkernel_primfunc`; `dense_conv` picks one), the im2col copy that turns a conv on few input channels into a 1 x 1
one (`im2col_primfunc`, `im2col_shape`, `im2col_weights`), and the weights in the kernels' layout (`pack_weights`)
with the bias that takes back the codes' shift (`bias_correction`); the pieces the variants share (`reduction_primfunc`,
`cropped`, `padded_rows_macro`). The variants' own computes are their modules' (variants/)."""

from __future__ import annotations

import numpy as np

from .. import tir_json
from . import microkernel
from .kernels import (
    CONV_BLOCK,
    CROP_BLOCK,
    FLAT_ATTR,
    KERNEL_ATTR,
    MICROKERNEL_ATTR,
    PAD_BLOCK,
    SUM_BLOCK,
    VECTORS_ATTR,
    ConvShape,
    DotKernel,
)


def im2col_shape(shape: ConvShape, k: DotKernel) -> ConvShape:
    """The 1 x 1 conv on the im2col copy: one pixel's window (kh, kw, c) padded to a multiple of the step (for
    AArch64's `sdot`, 4 codes, and one block of 16 at least: its micro-kernel's loop runs whole blocks, then the
    steps left); on AArch64 its width rounded up to whole tiles (`sdot`'s micro-kernel: `microkernel.padded_width`;
    ARMv8.0's broadcast form: its kernel's pixels), on ARMv7 to whole 2-pixel tiles of the dot form's micro-kernel
    where it takes the copy (`microkernel.pads_im2col`), the conv cropped after."""
    oh, ow = shape.out_hw
    reduction = shape.window_codes(k)
    if k.instruction == "sdot":  # and the width in whole tiles of pixels (cropped after the conv)
        reduction, ow = max(reduction, microkernel.BLOCK), microkernel.padded_width(ow)
    elif k.arch == "aarch64" and k.form == "broadcast":
        # ARMv8.0's broadcast form (a width with no divisor up to its tile's pixels, choose.dot_form): whole tiles
        # of them too (ARMv7's 2-pixel tiles executed more that way, not there: docs/notes/aarch64-dot-kernels.md)
        ow = microkernel.padded_width(ow, k.tile[0])
    elif microkernel.pads_im2col(k, reduction):  # ARMv7's dot form: whole tiles of its micro-kernel's 2 pixels
        ow = microkernel.padded_width(ow, microkernel.MAX_PIXELS["armv7"])
    return ConvShape(shape.n, oh, ow, reduction, shape.co, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1))


def im2col_weights(w_oihw: np.ndarray, reduction: int) -> np.ndarray:
    """[C_out, C_in, kh, kw] weights as the 1 x 1 conv on the im2col copy: [C_out, reduction, 1, 1], (ky, kx, c)
    order, zeros past the window."""
    co = len(w_oihw)
    w = np.zeros((co, reduction), np.int64)
    flat = np.asarray(w_oihw, np.int64).transpose(0, 2, 3, 1).reshape(co, -1)
    w[:, : flat.shape[1]] = flat
    return w.reshape(co, reduction, 1, 1)


def pack_weights(w_oihw: np.ndarray, shape: ConvShape, k: DotKernel) -> np.ndarray:
    """Weight codes [C_out, C_in, kh, kw] in the kernel's layout: [C_out / (lanes m), kh, (kw,) steps, m, (pairs,)
    lanes, group] with m = `tile_vectors` (kw only in the direct form, pairs only where the kernel has them), so
    that a step of a register tile reads its m vectors' weights as one run; zeros past the window."""
    co, ci, kh, kw = w_oihw.shape
    m, step = shape.tile_vectors(k), k.step
    w = np.asarray(w_oihw, np.int64).transpose(0, 2, 3, 1)  # [co, kh, kw, ci]
    if k.form == "dot":  # [C_out / t, kh, kw, steps, t, 16], t output channels per tile
        t = shape.tile_channels(k)
        packed = w.reshape(co // t, t, kh, kw, ci // step, step).transpose(0, 2, 3, 4, 1, 5)
        return np.ascontiguousarray(packed).astype(k.weight_dtype)
    if shape.flat(k):
        row = np.zeros((co, kh, shape.steps(k) * step), np.int64)
        row[:, :, : kw * ci] = w.reshape(co, kh, kw * ci)
        w = row.reshape(co // (k.lanes * m), m, k.lanes, kh, 1, shape.steps(k), k.pairs, k.group)
    else:
        w = w.reshape(co // (k.lanes * m), m, k.lanes, kh, kw, ci // step, k.pairs, k.group)
    # [tiles, m, lanes, kh, kw, steps, pairs, group] -> [tiles, kh, kw, steps, m, pairs, lanes, group]
    packed = w.transpose(0, 3, 4, 5, 1, 6, 2, 7)
    if shape.flat(k):
        packed = packed.squeeze(2)
    if k.pairs == 1:
        packed = packed.squeeze(-3)
    return np.ascontiguousarray(packed).astype(k.weight_dtype)


def bias_correction(w_oihw: np.ndarray, offset: int) -> np.ndarray:
    """What the kernel's sum misses per output channel when the codes it reads are shifted by `offset`:
    sum(a w) = sum((a + offset) w) - offset sum(w)."""
    return -offset * np.asarray(w_oihw, np.int64).reshape(len(w_oihw), -1).sum(axis=1)


BIAS = "bias"  # the parameter a conv's accumulators start from (`reduction_primfunc`)


def reduction_primfunc(tensors: list, channels: int, block: str, biased: bool):
    """The PrimFunc of TE `tensors` (inputs, then the output), with a `bias` parameter int32 [channels] before the
    output that the reduction `block` starts from (tir_json.init_from) where `biased`: the bias is then a load per
    accumulator vector in place of its zeroing, not an add per output vector after the reduction."""
    from tvm import te, tirx  # deferred: TVM loads where a PrimFunc is built

    if not biased:
        return te.create_prim_func(tensors).without_attr("global_symbol")
    bias = te.placeholder([tirx.IntImm("int64", channels)], "int32", name=BIAS)
    func = te.create_prim_func([*tensors[:-1], bias, tensors[-1]]).without_attr("global_symbol")
    return tir_json.init_from(func, block, BIAS)


def cropped(out, width: int | None):
    """A TE conv output [n, oh, ow, co] computed over more columns than the layer has, cropped to its `width`
    (block CROP_BLOCK: the schedules write their tiles back through it); `out` itself where width is None or ow."""
    from tvm import te, tirx  # deferred: TVM loads where a PrimFunc is built

    n, oh, ow, co = (int(d) for d in out.shape)
    if width is None or width >= ow:
        return out
    return te.compute([tirx.IntImm("int64", d) for d in (n, oh, width, co)], lambda *i: out[i], name=CROP_BLOCK)


def conv_primfunc(shape: ConvShape, k: DotKernel, pad_code: int, biased: bool = False, width: int | None = None):
    """The conv as a TE compute in the kernel's steps: int32 acc [n, oh, ow, co] of x [n, h, w, c] (the kernel's
    activation type, NHWC) and the packed weights, padded with `pad_code` (the shifted zero); cropped to `width`
    (CROP_BLOCK) where that is less than ow (an im2col copy of padded width)."""
    from tvm import te, tirx  # deferred: TVM loads where a PrimFunc is built

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731  (Relax's shapes are int64)
    oh, ow = shape.out_hw
    (sh, sw), (dh, dw) = shape.strides, shape.dilations
    pt, pl, pb, pr = shape.pads
    x = te.placeholder([i64(d) for d in (shape.n, shape.h, shape.w, shape.c)], k.act_dtype, name="x")
    flat = shape.flat(k)
    m = shape.tile_vectors(k)
    wshape = [
        shape.co // (k.lanes * m),
        shape.kh,
        *(() if flat else (shape.kw,)),
        shape.steps(k),
        m,
        *((k.pairs,) if k.pairs > 1 else ()),
        k.lanes,
        k.group,
    ]
    weights = te.placeholder([i64(d) for d in wshape], k.weight_dtype, name="weights")
    extra = shape.extra_columns(k)
    if any((pt, pl, pb, pr, extra)):
        hp, wp = shape.h + pt + pb, shape.w + pl + pr + extra

        def padded(n, y, xx, c):
            inside = tirx.all(y >= pt, y < pt + shape.h, xx >= pl, xx < pl + shape.w)
            return tirx.if_then_else(inside, x[n, y - pt, xx - pl, c], tirx.const(pad_code, k.act_dtype))

        src = te.compute([i64(d) for d in (shape.n, hp, wp, shape.c)], padded, name=PAD_BLOCK)
    else:
        src = x
    ky = te.reduce_axis((i64(0), i64(shape.kh)), name="ky")
    g = te.reduce_axis((i64(0), i64(shape.steps(k))), name="g")
    j = te.reduce_axis((i64(0), i64(k.group)), name="j")
    h = te.reduce_axis((i64(0), i64(k.pairs)), name="h") if k.pairs > 1 else None
    kx = None if flat else te.reduce_axis((i64(0), i64(shape.kw)), name="kx")
    lanes, tile = i64(k.lanes), i64(k.lanes * m)

    def acc(n, y, xx, co):
        e = (g * k.pairs + h) * k.group + j if h is not None else g * k.group + j
        taps = (ky,) if flat else (ky, kx)
        w = weights[(co // tile, *taps, g, (co // lanes) % i64(m), *((h,) if h is not None else ()), co % lanes, j)]
        if flat:
            f = xx * (sw * shape.c) + e
            a = src[n, y * sh + ky, tirx.floordiv(f, shape.c), tirx.floormod(f, shape.c)]
        else:
            a = src[n, y * sh + ky * dh, xx * sw + kx * dw, e]
        return te.sum(
            a.astype("int32") * w.astype("int32"),
            axis=[ky, *(() if flat else (kx,)), g, *((h,) if h is not None else ()), j],
        )

    out = te.compute(
        [i64(d) for d in (shape.n, oh, ow, shape.co)],
        acc,
        name=CONV_BLOCK,
        attrs={KERNEL_ATTR: k.name, FLAT_ATTR: shape.c if flat else 0, VECTORS_ATTR: m},
    )
    func = reduction_primfunc([x, weights, cropped(out, width)], shape.co, CONV_BLOCK, biased)
    return func.with_attr("tcc.op_pattern", 4)  # kOutEWiseFusable: the bias add and requantization fuse after it


def dense_conv(
    shape: ConvShape, k: DotKernel, pad_code: int, packed: np.ndarray, biased: bool = False, width: int | None = None
):
    """(PrimFunc, packed weights, started) for a dense conv: the packed weights (`pack_weights`) in the shape that
    PrimFunc reads; the ARM micro-kernel's 1 x 1 conv (microkernel.py) where one takes the layer, else the dot
    form (`dot_conv_primfunc`) or the kernel's steps (`conv_primfunc`). biased: its accumulators start from a
    `bias` parameter where the form takes one (started; the dot form sums partial lanes: not). width: the output's,
    where the conv is computed wider (an im2col copy of padded width, `im2col_shape`) and cropped: the micro-kernel
    or the broadcast form, not the dot form."""
    tile = microkernel.tile_of(k, shape)
    width = shape.out_hw[1] if width is None else width
    if tile is None and width != shape.out_hw[1] and k.form == "dot":
        raise ValueError(f"a conv {shape.out_hw[1]} wide cropped to {width} in the dot form")
    if tile is not None:  # [C_out / t, 1, 1, steps, t, codes]: AArch64's (vectors, lanes) merged, the same order
        layout = (shape.co // tile.channels, 1, 1, shape.c // tile.group, tile.channels, tile.group)
        return microkernel_primfunc(shape, k, tile, biased, width), packed.reshape(layout), biased
    if k.form == "dot":
        return dot_conv_primfunc(shape, k, pad_code), packed, False
    return conv_primfunc(shape, k, pad_code, biased, width), packed, biased


def dot_conv_primfunc(shape: ConvShape, k: DotKernel, pad_code: int):
    """The dot form (input channels a multiple of 16): int32 partial sums [n, oh, ow, co, 4], lane l holding the
    products of codes 16 g + 8 h + 2 l + j (h, j in 0, 1: what vmull.s8 / vmlal.s8 / vpadal.s16 add into it),
    then acc [n, oh, ow, co] = the sum of the 4 lanes (`SUM_BLOCK`). Weights as `pack_weights` lays them out."""
    from tvm import te  # deferred: TVM loads where a PrimFunc is built

    func = te.create_prim_func(list(dot_conv_tensors(shape, k, pad_code))).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 4)


def microkernel_primfunc(
    shape: ConvShape, k: DotKernel, tile: microkernel.Tile, biased: bool = False, width: int | None = None
):
    """A 1 x 1 conv for an ARM micro-kernel (microkernel.py): acc[n, y, x, co] the sum over every step g and code e
    of x[n, y, x, group g + e] * weights[co / t, 0, 0, g, co % t, e], t the tile's channels (from bias[co] where
    `biased`); cropped to `width` (CROP_BLOCK) where that is less than the shape's."""
    func = reduction_primfunc(list(microkernel_tensors(shape, k, tile, width)), shape.co, CONV_BLOCK, biased)
    return func.with_attr("tcc.op_pattern", 4)


def microkernel_tensors(shape: ConvShape, k: DotKernel, tile: microkernel.Tile, width: int | None = None):
    """microkernel_primfunc's TE tensors: (input codes, weights, acc); the tile in the block's annotations."""
    from tvm import te, tirx  # deferred: TVM loads where a PrimFunc is built

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731
    oh, ow = shape.out_hw
    t, group = tile.channels, tile.group
    x = te.placeholder([i64(d) for d in (shape.n, shape.h, shape.w, shape.c)], k.act_dtype, name="x")
    weights = te.placeholder(
        [i64(d) for d in (shape.co // t, 1, 1, shape.c // group, t, group)], k.weight_dtype, name="weights"
    )
    g = te.reduce_axis((i64(0), i64(shape.c // group)), name="g")
    e = te.reduce_axis((i64(0), i64(group)), name="e")
    out = te.compute(
        [i64(d) for d in (shape.n, oh, ow, shape.co)],
        lambda n, y, xx, co: te.sum(
            x[n, y, xx, g * group + e].astype("int32")
            * weights[co // i64(t), i64(0), i64(0), g, co % i64(t), e].astype("int32"),
            axis=[g, e],
        ),
        name=CONV_BLOCK,
        attrs={KERNEL_ATTR: k.name, FLAT_ATTR: 0, VECTORS_ATTR: t, MICROKERNEL_ATTR: tile.encode()},
    )
    return x, weights, cropped(out, width)


def dot_conv_tensors(shape: ConvShape, k: DotKernel, pad_code: int):
    """dot_conv_primfunc's TE tensors: (input codes, packed weights, acc)."""
    from tvm import te, tirx  # deferred: TVM loads where a PrimFunc is built

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731
    oh, ow = shape.out_hw
    (sh, sw), (dh, dw) = shape.strides, shape.dilations
    pt, pl, pb, pr = shape.pads
    t = shape.tile_channels(k)
    x = te.placeholder([i64(d) for d in (shape.n, shape.h, shape.w, shape.c)], k.act_dtype, name="x")
    weights = te.placeholder(
        [i64(d) for d in (shape.co // t, shape.kh, shape.kw, shape.c // 16, t, 16)], k.weight_dtype, name="weights"
    )
    src = _padded(x, shape, pad_code, k.act_dtype) if any((pt, pl, pb, pr)) else x
    ky, kx = te.reduce_axis((i64(0), i64(shape.kh)), name="ky"), te.reduce_axis((i64(0), i64(shape.kw)), name="kx")
    g = te.reduce_axis((i64(0), i64(shape.c // 16)), name="g")
    h, j = te.reduce_axis((i64(0), i64(2)), name="h"), te.reduce_axis((i64(0), i64(2)), name="j")

    def partial(n, y, xx, co, lane):
        e = h * 8 + lane * 2 + j
        a = src[n, y * sh + ky * dh, xx * sw + kx * dw, g * 16 + e]
        return te.sum(
            a.astype("int32") * weights[co // i64(t), ky, kx, g, co % i64(t), e].astype("int32"), axis=[ky, kx, g, h, j]
        )

    part = te.compute(
        [i64(d) for d in (shape.n, oh, ow, shape.co, 4)],
        partial,
        name=CONV_BLOCK,
        attrs={KERNEL_ATTR: k.name, FLAT_ATTR: 0, VECTORS_ATTR: t},
    )
    out = te.compute(
        [i64(d) for d in (shape.n, oh, ow, shape.co)],
        lambda n, y, xx, co: (
            part[n, y, xx, co, i64(0)]
            + part[n, y, xx, co, i64(1)]
            + part[n, y, xx, co, i64(2)]
            + part[n, y, xx, co, i64(3)]
        ),
        name=SUM_BLOCK,
    )
    return x, weights, out


def _padded(x, shape: ConvShape, pad_code: int, dtype: str, extra: int = 0):
    from tvm import te, tirx  # deferred: TVM loads where a PrimFunc is built

    pt, pl, pb, pr = shape.pads

    def padded(n, y, xx, c):
        inside = tirx.all(y >= pt, y < pt + shape.h, xx >= pl, xx < pl + shape.w)
        return tirx.if_then_else(inside, x[n, y - pt, xx - pl, c], tirx.const(pad_code, dtype))

    dims = (shape.n, shape.h + pt + pb, shape.w + pl + pr + extra, shape.c)
    return te.compute([tirx.IntImm("int64", d) for d in dims], padded, name=PAD_BLOCK)


def _runs(run: int) -> tuple[int, int, int]:
    """(width, count, tail): a window row of `run` codes copied as `count` vectors of `width` (16, 8 or 4 codes)
    and, where they leave some, one vector of `tail` codes ending at the row's end (overlapping the last: the
    same codes written twice). 7 x 3 codes: 16 + 8, two loads and two stores, where a vector of 21 took
    three of each (16 + 4 + 1). Rows under 4 codes: one vector of them."""
    width = next((w for w in (16, 8, 4) if w <= run), run)
    rest = run % width
    return width, run // width, next(w for w in (4, 8, 16) if w >= rest) if rest else 0


def padded_rows_macro(shape: ConvShape, dtype: str, pad_code: int, slack: int = 0):
    """A TVMScript macro (rows, flat): the input `flat` [h * w * c] padded once into `rows` [(h + pt + pb) * (w + pl +
    pr) * c + slack] (rows of (x, c) codes, `pad_code` in the padding and the `slack` past the last row), each input
    row copied by 64-code vectors, rows in parallel: the im2col copy's first step, and AMX's windows
    (variants/amx_stem.py)."""
    from tvm.script import tirx as T  # deferred: TVM loads where a PrimFunc is built

    h, w, c = shape.h, shape.w, shape.c
    pt, pl, pb, pr = shape.pads
    hp, row, body = h + pt + pb, (w + pl + pr) * c, w * c

    @T.macro
    def padded_rows(rows, flat):
        for y in T.parallel(hp):
            if pt <= y and y < pt + h:  # a padded input row: its codes copied by vectors, no select
                for e in range(pl * c):
                    rows[y * row + e] = T.Cast(dtype, pad_code)
                for v in range(body // 64):
                    for e in T.vectorized(64):
                        rows[y * row + pl * c + v * 64 + e] = flat[(y - pt) * body + v * 64 + e]
                for e in range(body % 64):
                    rows[y * row + pl * c + body // 64 * 64 + e] = flat[(y - pt) * body + body // 64 * 64 + e]
                for e in range(pr * c):
                    rows[y * row + (pl + w) * c + e] = T.Cast(dtype, pad_code)
            else:
                for e in range(row):
                    rows[y * row + e] = T.Cast(dtype, pad_code)
        for e in range(slack):
            rows[hp * row + e] = T.Cast(dtype, pad_code)

    return padded_rows


def im2col_primfunc(shape: ConvShape, reduction: int, dtype: str, pad_code: int, width: int | None = None):
    """x [1, h, w, c] -> [1, oh, width, reduction]: per output pixel its window's codes in (ky, kx, c) order, then
    zeros, and zeros for the pixels past ow (`width`: ow or more); the padding holds `pad_code`. Written out as
    loops (and marked scheduled): the input padded once into rows of (x, c), each input row copied by 64-code
    vectors, then each window row copied as one run of kw * c codes in whole vectors (`_runs`), no division per
    element."""
    from tvm.script import tirx as T  # deferred: TVM loads where a PrimFunc is built

    n, h, w, c = shape.n, shape.h, shape.w, shape.c
    oh, ow = shape.out_hw
    (sh, sw), (dh, dw) = shape.strides, shape.dilations
    pt, pl, pb, pr = shape.pads
    kh, kw = shape.kh, shape.kw
    hp, row = h + pt + pb, (w + pl + pr) * c
    run, window = kw * c, kh * kw * c
    assert n == 1 and dh == 1 and dw == 1
    padded = ow if width is None else width
    zeros = (padded - ow) * reduction
    assert padded >= ow
    width, full, tail = _runs(run)
    padded_rows = padded_rows_macro(shape, dtype, pad_code)

    @T.prim_func(s_tir=True)
    def im2col(
        x: T.Buffer((1, h, w, c), dtype),  # type: ignore[valid-type]
        col: T.Buffer((1, oh, padded, reduction), dtype),  # type: ignore[valid-type]
    ):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})
        with T.sblock("root"):
            rows = T.sblock_alloc_buffer((hp, row), dtype)
            flat = T.decl_buffer((h * w * c,), dtype, data=x.data)
            col_flat = T.decl_buffer((oh * padded * reduction,), dtype, data=col.data)
            padded_rows(T.decl_buffer((hp * row,), dtype, data=rows.data), flat)
            for yy in T.parallel(oh):
                for xx, ky in T.grid(ow, kh):
                    for v in range(full):
                        for e in T.vectorized(width):
                            col[0, yy, xx, ky * run + v * width + e] = rows[yy * sh + ky, xx * sw * c + v * width + e]
                    if tail > 0:
                        for e in T.vectorized(tail):
                            col[0, yy, xx, ky * run + run - tail + e] = rows[yy * sh + ky, xx * sw * c + run - tail + e]
                if reduction > window:
                    for xx in range(ow):
                        for e in T.vectorized(reduction - window):
                            col[0, yy, xx, window + e] = T.Cast(dtype, 0)
                if padded > ow:  # the pixels past ow: one run of zeros, in vectors of 16 codes
                    for v in range(zeros // 16):
                        for e in T.vectorized(16):
                            col_flat[(yy * padded + ow) * reduction + v * 16 + e] = T.Cast(dtype, 0)
                    for e in range(zeros % 16):
                        col_flat[(yy * padded + ow) * reduction + zeros // 16 * 16 + e] = T.Cast(dtype, 0)

    return im2col.without_attr("global_symbol")
