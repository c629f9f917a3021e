"""The TE computes of the INT8 convs that tcc's schedule rules tile (backends/tvm/schedule/): a dense conv in the
steps of its dot-product kernel (`conv_primfunc`, ARMv7's dot form `dot_conv_primfunc`), the im2col copy that
turns a conv on few input channels into a 1 x 1 one (`im2col_primfunc`, `im2col_shape`, `im2col_weights`), the
depthwise conv on int16 taps (`depthwise_primfunc`), on 4 rows a lane (`depthwise_rows_primfunc`) or on pairs of
rows (`depthwise_pairs_primfunc`), and the weights in the kernels' layout (`pack_weights`) with
the bias that takes back the codes' shift (`bias_correction`)."""

from __future__ import annotations

import numpy as np

from .. import tir_json
from . import microkernel
from .affine import mapped as affine_mapped
from .kernels import (
    CONV_BLOCK,
    CROP_BLOCK,
    DEPTHWISE_BLOCK,
    DEPTHWISE_DOT_BLOCK,
    DEPTHWISE_MADD_BLOCK,
    DEPTHWISE_PAD_BLOCK,
    DEPTHWISE_PAIRS_BLOCK,
    DEPTHWISE_ROWS_BLOCK,
    FLAT_ATTR,
    KERNEL_ATTR,
    MICROKERNEL_ATTR,
    PAD_BLOCK,
    ROWS,
    ROWS_PADS_ATTR,
    SUM_BLOCK,
    VECTORS_ATTR,
    WINDOW_DIGITS_BLOCK,
    ConvShape,
    DotKernel,
)


def im2col_shape(shape: ConvShape, k: DotKernel) -> ConvShape:
    """The 1 x 1 conv on the im2col copy: one pixel's window (kh, kw, c) padded to a multiple of the step (for
    AArch64's `sdot`, 4 codes, and one block of 16 at least: its micro-kernel's loop runs whole blocks, then the
    steps left); on AArch64 its width rounded up to whole tiles (`sdot`'s micro-kernel: `microkernel.padded_width`;
    ARMv8.0's broadcast form: its kernel's pixels), the conv cropped after."""
    oh, ow = shape.out_hw
    reduction = -(-shape.kh * shape.kw * shape.c // k.group) * k.group
    if k.instruction == "sdot":  # and the width in whole tiles of pixels (cropped after the conv)
        reduction, ow = max(reduction, microkernel.BLOCK), microkernel.padded_width(ow)
    elif k.arch == "aarch64" and k.form == "broadcast":
        # ARMv8.0's broadcast form (a width with no divisor up to its tile's pixels, choose.dot_form): whole tiles
        # of them too (FastNet `aarch64` 35.75 -> 35.10 M executed instructions; ARMv7's 2-pixel tiles: 50.19 ->
        # 53.17 M, not there)
        ow = microkernel.padded_width(ow, k.tile[0])
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
    from tvm import te, tirx

    if not biased:
        return te.create_prim_func(tensors).without_attr("global_symbol")
    bias = te.placeholder([tirx.IntImm("int64", channels)], "int32", name=BIAS)
    func = te.create_prim_func([*tensors[:-1], bias, tensors[-1]]).without_attr("global_symbol")
    return tir_json.init_from(func, block, BIAS)


def cropped(out, width: int | None):
    """A TE conv output [n, oh, ow, co] computed over more columns than the layer has, cropped to its `width`
    (block CROP_BLOCK: the schedules write their tiles back through it); `out` itself where width is None or ow."""
    from tvm import te, tirx

    n, oh, ow, co = (int(d) for d in out.shape)
    if width is None or width >= ow:
        return out
    return te.compute([tirx.IntImm("int64", d) for d in (n, oh, width, co)], lambda *i: out[i], name=CROP_BLOCK)


def conv_primfunc(shape: ConvShape, k: DotKernel, pad_code: int, biased: bool = False, width: int | None = None):
    """The conv as a TE compute in the kernel's steps: int32 acc [n, oh, ow, co] of x [n, h, w, c] (the kernel's
    activation type, NHWC) and the packed weights, padded with `pad_code` (the shifted zero); cropped to `width`
    (CROP_BLOCK) where that is less than ow (an im2col copy of padded width)."""
    from tvm import te, tirx

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
    from tvm import te

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
    from tvm import te, tirx

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
    from tvm import te, tirx

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
    from tvm import te, tirx

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
    row copied by 64-code vectors, rows in parallel: the im2col copy's first step, and AMX's windows (amx.py)."""
    from tvm.script import tirx as T

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
    from tvm.script import tirx as T

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
    def im2col(x: T.Buffer((1, h, w, c), dtype), col: T.Buffer((1, oh, padded, reduction), dtype)):
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


def window_digits_primfunc(
    shape: tuple[int, int, int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dtype: str,
    mapped: tuple | None = None,
):
    """A pooled conv's input (lower.py, `pooled_conv`): x [n, h, w, c] of 8-bit codes at zero point 0 -> two
    tensors [n, oh, ow, c] in x's type, per unpadded window of A = 2^k pixels its sum S as the digits S >> k (the
    window's floor mean: in the codes' own range, signed where they are) and S & (A - 1), so S = 2^k high + low,
    exactly; one pass over x. `mapped` (source dtype, lo, hi): x is the per-channel float32 map of source codes
    (int8.affine, its shift and scale the function's next arguments), computed here as the windows read it."""
    from tvm import te, tirx

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
    # opaque: a kernel of its own (with a dense block's concat fused in, DDSNet host INT8 ran 1.33x its time: the
    # fused loops test the concat's bounds per element)
    func = te.create_prim_func([x, *params, high, low]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 8)


def depthwise_primfunc(shape: ConvShape, source_dtype: str, biased: bool = False):
    """A depthwise conv (groups = channels) on 8-bit codes: int32 acc [n, oh, ow, c] of x [n, h, w, c] and int16
    weights [kh, kw, c]. The codes are widened to int16 once, with the padding (zero), into a buffer of their own,
    so that each tap is an int16 x int16 product summed into int32 (`vmlal.s16` on ARM, `vpmaddwd` on x86), where
    widening in the loop made LLVM multiply 32-bit lanes (`vmovl` twice and `vmla.i32`)."""
    from tvm import te, tirx

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731
    oh, ow = shape.out_hw
    (sh, sw), (dh, dw) = shape.strides, shape.dilations
    pt, pl, pb, pr = shape.pads
    x = te.placeholder([i64(d) for d in (shape.n, shape.h, shape.w, shape.c)], source_dtype, name="x")
    weights = te.placeholder([i64(d) for d in (shape.kh, shape.kw, shape.c)], "int16", name="weights")

    def padded(n, y, xx, c):
        inside = tirx.all(y >= pt, y < pt + shape.h, xx >= pl, xx < pl + shape.w)
        return tirx.if_then_else(inside, x[n, y - pt, xx - pl, c].astype("int16"), tirx.const(0, "int16"))

    src = te.compute(
        [i64(d) for d in (shape.n, shape.h + pt + pb, shape.w + pl + pr, shape.c)], padded, name=DEPTHWISE_PAD_BLOCK
    )
    ky = te.reduce_axis((i64(0), i64(shape.kh)), name="ky")
    kx = te.reduce_axis((i64(0), i64(shape.kw)), name="kx")
    out = te.compute(
        [i64(d) for d in (shape.n, oh, ow, shape.c)],
        lambda n, y, xx, c: te.sum(
            src[n, y * sh + ky * dh, xx * sw + kx * dw, c].astype("int32") * weights[ky, kx, c].astype("int32"),
            axis=[ky, kx],
        ),
        name=DEPTHWISE_BLOCK,
    )
    return reduction_primfunc([x, weights, out], shape.c, DEPTHWISE_BLOCK, biased).with_attr("tcc.op_pattern", 4)


def rows_per_window(shape: ConvShape) -> int:
    """Output rows one window of ROWS interleaved input rows serves (`depthwise_rows_primfunc`): as many as fit
    (3 x 3, stride 1: 2), fewer until they divide the output's height; 0 where the kernel does not fit a window
    (taller than ROWS, or dilated)."""
    (sh, _), (dh, _) = shape.strides, shape.dilations
    if shape.kh > ROWS or dh != 1:
        return 0
    j = 1 + (ROWS - shape.kh) // sh
    while shape.out_hw[0] % j:
        j -= 1
    return j


def depthwise_rows_weights(w_oihw: np.ndarray, shape: ConvShape) -> np.ndarray:
    """Depthwise weight codes [C, 1, kh, kw] as `depthwise_rows_primfunc` reads them: [J, kw, C, ROWS], the
    weight of window row r for the j-th output row of the window (kernel row r - j * stride, zero outside)."""
    j_rows, sh = rows_per_window(shape), shape.strides[0]
    c, _, kh, kw = w_oihw.shape
    out = np.zeros((j_rows, kw, c, ROWS), np.int64)
    for j in range(j_rows):
        for ky in range(kh):
            out[j, :, :, j * sh + ky] = np.asarray(w_oihw, np.int64)[:, 0, ky, :].T
    return out.astype(np.int8)


def reads_rows_directly(shape: ConvShape) -> bool:
    """Whether `depthwise_rows_primfunc(direct=True)` can take `shape`: its interleave (intrinsics.gather_rows_intrin)
    finds a window's first row from its offset in the input, which needs the windows' first rows to span fewer rows
    than the image has (true unless the pads add up to the kernel's height or more)."""
    j_rows = rows_per_window(shape)
    return j_rows > 0 and (shape.out_hw[0] // j_rows - 1) * j_rows * shape.strides[0] < shape.h


def _column_padded(x, shape: ConvShape, height: int, offset: int, dtype: str):
    """`x` [n, h, w, c] shifted by `offset` to `dtype` and padded with the shifted zero, column-major (block
    DEPTHWISE_PAD_BLOCK [n, w + pads, height, c]): a window's rows of one column are consecutive blocks of c codes."""
    from tvm import te, tirx

    pt, pl, pb, pr = shape.pads

    def padded(n, xx, y, c):
        inside = tirx.all(y >= pt, y < pt + shape.h, xx >= pl, xx < pl + shape.w)
        code = (x[n, y - pt, xx - pl, c].astype("int16") + tirx.const(offset, "int16")).astype(dtype)
        return tirx.if_then_else(inside, code, tirx.const(offset, dtype))

    dims = (shape.n, shape.w + pl + pr, height, shape.c)
    return te.compute([tirx.IntImm("int64", d) for d in dims], padded, name=DEPTHWISE_PAD_BLOCK)


def depthwise_rows_primfunc(
    shape: ConvShape, offset: int, act_dtype: str = "int8", biased: bool = False, direct: bool = False
):
    """A depthwise conv on a dot-product instruction that sums 4 byte products into each int32 lane (AArch64's
    `sdot`: s8 x s8; x86's `vpdpbusd`: u8 x s8): int32 acc [n, oh, ow, c] of 8-bit codes x [n, h, w, c] and
    weights [J, kw, c, ROWS] (`depthwise_rows_weights`). The input is shifted to the instruction's `act_dtype` by
    `offset` (u8 codes for `sdot`: -128; s8 ones for `vpdpbusd`: +128; the bias takes it back) and copied as windows
    of ROWS rows interleaved per channel (`tcc_dw_rows` [n, windows, w + pads, c, ROWS]), so that one vector load
    holds 4 rows of each of its channels and one instruction against the weights sums a column of the kernel per
    channel; a window serves J output rows (`rows_per_window`), each with its own weights. The padding is the
    shifted zero: AArch64 pads the input first (`tcc_dw_pad`, column-major [n, x, y, c], so that a window's 4 rows
    of 16 channels are one (4, 16) block of its last two axes); `direct` (x86, `reads_rows_directly`): the windows
    read the input itself, past its edges too, and their interleave (intrinsics.gather_rows_intrin) loads the rows
    outside the image as zeros (masked loads), annotated with the pads (ROWS_PADS_ATTR) it needs for that."""
    from tvm import te, tirx

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731
    oh, ow = shape.out_hw
    j_rows = rows_per_window(shape)
    (sh, sw), (_, dw) = shape.strides, shape.dilations
    pt, pl, pb, pr = shape.pads
    step = j_rows * sh  # input rows between windows
    windows = oh // j_rows
    height = (windows - 1) * step + ROWS  # padded rows the windows read (the last ones may reach past the padding)
    dtype = act_dtype if offset == 0 else {"int8": "uint8", "uint8": "int8"}[act_dtype]
    x = te.placeholder([i64(d) for d in (shape.n, shape.h, shape.w, shape.c)], dtype, name="x")
    weights = te.placeholder([i64(d) for d in (j_rows, shape.kw, shape.c, ROWS)], "int8", name="weights")

    width = shape.w + pl + pr
    rows_shape = [i64(d) for d in (shape.n, windows, width, shape.c, ROWS)]
    if direct:
        if not reads_rows_directly(shape):
            raise ValueError(f"the windows of {shape} cannot read their input directly")

        def window(n, t, xx, c, r):
            code = x[n, t * step + r - pt, xx - pl, c]
            return code if offset == 0 else (code.astype("int16") + tirx.const(offset, "int16")).astype(act_dtype)

        rows = te.compute(rows_shape, window, name=DEPTHWISE_ROWS_BLOCK, attrs={ROWS_PADS_ATTR: f"{pt},{pl}"})
    else:
        src = _column_padded(x, shape, height, offset, act_dtype)
        rows = te.compute(rows_shape, lambda n, t, xx, c, r: src[n, xx, t * step + r, c], name=DEPTHWISE_ROWS_BLOCK)
    kx = te.reduce_axis((i64(0), i64(shape.kw)), name="kx")
    r = te.reduce_axis((i64(0), i64(ROWS)), name="r")
    out = te.compute(
        [i64(d) for d in (shape.n, oh, ow, shape.c)],
        lambda n, y, xx, c: te.sum(
            rows[n, tirx.floordiv(y, j_rows), xx * sw + kx * dw, c, r].astype("int32")
            * weights[tirx.floormod(y, j_rows), kx, c, r].astype("int32"),
            axis=[kx, r],
        ),
        name=DEPTHWISE_DOT_BLOCK,
    )
    func = reduction_primfunc([x, weights, out], shape.c, DEPTHWISE_DOT_BLOCK, biased)
    return func.with_attr("tcc.op_pattern", 4)


def depthwise_pairs_weights(w_oihw: np.ndarray, shape: ConvShape) -> np.ndarray:
    """Depthwise weight codes [C, 1, kh, kw] as `depthwise_pairs_primfunc` reads them: int16 [J, kw, ROWS / 2, C,
    2], `depthwise_rows_weights`' window rows as pairs, a pair's two weights of a channel adjacent."""
    rows = depthwise_rows_weights(w_oihw, shape)  # [J, kw, C, ROWS]
    j_rows, kw, c, _ = rows.shape
    return np.ascontiguousarray(rows.reshape(j_rows, kw, c, ROWS // 2, 2).transpose(0, 1, 3, 2, 4)).astype(np.int16)


def depthwise_pairs_primfunc(shape: ConvShape, source_dtype: str, biased: bool = False):
    """A depthwise conv on x86's `vpmaddwd` (two int16 products summed into each int32 lane): int32 acc [n, oh, ow,
    c] of codes x [n, h, w, c] (8-bit or int16, zero point 0) and int16 weights [J, kw, ROWS / 2, c, 2]
    (`depthwise_pairs_weights`). As in `depthwise_rows_primfunc`, a window of ROWS padded rows serves J output rows
    (`rows_per_window`); here its rows are widened to int16 as ROWS / 2 pairs interleaved per channel (`tcc_dw_pairs`
    [n, windows, w + pads, ROWS / 2, c, 2], from the padded copy `tcc_dw_pad`), so that one instruction sums 2 taps
    of a kernel column per channel: a 3 x 3 conv of stride 1 takes 2 products a tap for its 2 output rows (4 rows
    of 2 pairs, each against its own weights), where the int16 taps' `vpmaddwd` had one lane of each pair zero."""
    from tvm import te, tirx

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731
    oh, ow = shape.out_hw
    j_rows = rows_per_window(shape)
    (sh, sw), (_, dw) = shape.strides, shape.dilations
    pl, pr = shape.pads[1], shape.pads[3]
    step, windows, pairs = j_rows * sh, oh // j_rows, ROWS // 2
    x = te.placeholder([i64(d) for d in (shape.n, shape.h, shape.w, shape.c)], source_dtype, name="x")
    weights = te.placeholder([i64(d) for d in (j_rows, shape.kw, pairs, shape.c, 2)], "int16", name="weights")
    src = _column_padded(x, shape, (windows - 1) * step + ROWS, 0, source_dtype)
    rows = te.compute(
        [i64(d) for d in (shape.n, windows, shape.w + pl + pr, pairs, shape.c, 2)],
        lambda n, t, xx, p, c, r: src[n, xx, t * step + 2 * p + r, c].astype("int16"),
        name=DEPTHWISE_PAIRS_BLOCK,
    )
    kx = te.reduce_axis((i64(0), i64(shape.kw)), name="kx")
    p = te.reduce_axis((i64(0), i64(pairs)), name="p")
    r = te.reduce_axis((i64(0), i64(2)), name="r")
    out = te.compute(
        [i64(d) for d in (shape.n, oh, ow, shape.c)],
        lambda n, y, xx, c: te.sum(
            rows[n, tirx.floordiv(y, j_rows), xx * sw + kx * dw, p, c, r].astype("int32")
            * weights[tirx.floormod(y, j_rows), kx, p, c, r].astype("int32"),
            axis=[kx, p, r],
        ),
        name=DEPTHWISE_MADD_BLOCK,
    )
    func = reduction_primfunc([x, weights, out], shape.c, DEPTHWISE_MADD_BLOCK, biased)
    return func.with_attr("tcc.op_pattern", 4)
