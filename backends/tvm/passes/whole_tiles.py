"""A dense FP32 conv whose width no register tile of the AArch64 assembly kernel divides, computed over a width
that one does and cropped: a Relax pass for AArch64 modules (before legalization).

The kernel (fp32/a64_tile.py, schedule/float_tile.py) takes tiles of up to 8 pixels of a row; FastNet's widths (127,
63, 31 after its `valid` 3 x 3 / 2 convs) have no divisor near 8, and one- or three-pixel tiles leave too few
accumulators for the `fmla` latency. Such a conv (NHWC / HWIO, one group, undilated) becomes one PrimFunc: the
input padded with the conv's own padding and, on the right, the zero columns the extra outputs read; TOPI's NHWC
sum over (ky, kx, c_in) into the wider width; cropped (CROP_BLOCK), so that the tiles write back through the crop.
The sums are the same as the unpadded conv's; the PrimFunc declares FuseOps' out-elementwise-fusable pattern, so the
bias and activation still fuse into it.
"""

from __future__ import annotations

from tvm import relax, te, tirx, topi

from ..int8.compute import cropped
from ..schedule.float_tile import ConvGeometry, choose_tile, core_of
from .concat import static_shape
from .nchw_input import CONV_BLOCK, output_shape
from .relax_rewrite import OUT_ELEMWISE_FUSABLE, call_rewrite_pass

PAD_BLOCK = "pad_temp"
MAX_EXTRA = 0.25  # computed columns past the width, at most this share of it


def _i64(*values):  # Relax's extents are int64 (int32 ones make FuseTIR see two different buffers)
    return [tirx.IntImm("int64", int(v)) for v in values]


def wider_conv_primfunc(x_shape, w_shape, strides, padding, width: int):
    """conv2d of an NHWC x with HWIO weights computed `width` outputs wide (at least the conv's), cropped to the
    conv's: x padded (block PAD_BLOCK: top, left, bottom, right, and the columns the extra outputs read), TOPI's
    NHWC sum (block CONV_BLOCK), the crop."""
    n, h, w, c = x_shape
    kh, kw, _, co = w_shape
    sh, sw = strides
    top, left, bottom, right = padding
    oh, ow = output_shape([n, c, h, w], w_shape, strides, padding, (1, 1))[1:3]
    right += max(0, (width - 1) * sw + kw - (w + left + right))
    x = te.placeholder(_i64(*x_shape), "float32", name="x")
    weight = te.placeholder(_i64(*w_shape), "float32", name="w")
    padded = topi.nn.pad(x, _i64(0, top, left, 0), _i64(0, bottom, right, 0), name=PAD_BLOCK)
    ry, rx, rc = (te.reduce_axis(_i64(0, k), name=name) for k, name in ((kh, "ry"), (kw, "rx"), (c, "rc")))
    out = te.compute(
        _i64(n, oh, width, co),
        lambda b, y, xx, f: te.sum(padded[b, y * sh + ry, xx * sw + rx, rc] * weight[ry, rx, rc, f], axis=[ry, rx, rc]),
        name=CONV_BLOCK,
    )
    func = te.create_prim_func([x, weight, cropped(out, ow)]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", OUT_ELEMWISE_FUSABLE)


def whole_tile_width(x_shape, w_shape, strides, padding, core: str = "cortex-a53") -> int | None:
    """The width to compute the conv over for whole kernel tiles, or None where it already has them or where no
    tile comes within MAX_EXTRA more columns."""
    n, h, w, c = x_shape
    kh, kw, _, co = w_shape
    top, left, bottom, right = padding
    ow = output_shape([n, c, h, w], w_shape, strides, padding, (1, 1))[2]

    def geometry(width: int) -> ConvGeometry:
        padded = max(w + left + right, (width - 1) * strides[1] + kw)
        return ConvGeometry(kh, kw, c, strides[1], padded * c, width, co)

    if choose_tile(geometry(ow), core) is not None:
        return None
    return next((wd for wd in range(ow + 1, int(ow * (1 + MAX_EXTRA)) + 1) if choose_tile(geometry(wd), core)), None)


def conv_width_to_whole_tiles(target):
    """The module pass for `target`'s core (see the module's docstring); convs of any other form are left as they
    are."""
    core = core_of(target)

    def rewrite(mutator_, call):
        a = call.attrs
        if (
            (a.data_layout, a.kernel_layout, a.out_layout) != ("NHWC", "HWIO", "NHWC")
            or int(a.groups) != 1
            or a.out_dtype not in (None, "", "float32")
            or any(int(d) != 1 for d in a.dilation)
        ):
            return None
        data, weight = call.args
        x_shape, w_shape = static_shape(data.ty), static_shape(weight.ty)
        if x_shape is None or w_shape is None or getattr(data.ty, "dtype", None) != "float32":
            return None
        strides, padding = [int(s) for s in a.strides], [int(p) for p in a.padding]
        width = whole_tile_width(x_shape, w_shape, strides, padding, core)
        if width is None:
            return None
        func = wider_conv_primfunc(x_shape, w_shape, strides, padding, width)
        gv = mutator_.builder_.add_func(func, "tcc_whole_tile_conv")
        return relax.call_tir(gv, [data, weight], call.ty)

    return call_rewrite_pass(
        "relax.nn.conv2d", rewrite, "TccConvWidthToWholeTiles", relax.transform.DeadCodeElimination()
    )
