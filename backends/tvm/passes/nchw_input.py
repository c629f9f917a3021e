"""The first conv reads the NCHW graph input itself: a Relax pass for x86 host FP32 modules (before legalization).

After ConvertLayout (schedule.LAYOUT) the graph input, NCHW, reaches the first conv through a transpose to
NHWC: one kernel that writes the image channels-last (3 floats a pixel, DDSNet: ~44 us a call), then the conv's
own padding pass over that copy. Here such a conv (`permute_dims(x, [0, 2, 3, 1])` -> NHWC / HWIO conv2d, one
group) becomes one PrimFunc that pads x in its own NCHW layout (rows contiguous in and out: tvm_schedule pads it
by rows, vectorized) and convolves the padded planes into NHWC: the transpose kernel is gone. The sum runs over
(ky, kx, c_in) in the order of TOPI's NHWC conv, the one WindowReduction schedules either way: outputs are
bit-identical to the module without the pass; only where the input values are read from changes.
The PrimFunc declares FuseOps' out-elementwise-fusable pattern, so the bias and activation still fuse into it.
"""

from __future__ import annotations

from tvm import relax, te, tirx, topi

from ..int8.compute import cropped
from ..schedule.tiles import float_pixel_tile
from .concat import static_shape
from .relax_rewrite import OUT_ELEMWISE_FUSABLE, call_rewrite_pass

PAD_BLOCK = "tcc_nchw_pad"
CONV_BLOCK = "conv2d_nhwc"
NCHW_TO_NHWC = [0, 2, 3, 1]


def output_shape(x_shape, w_shape, strides, padding, dilation) -> list[int]:
    """NHWC output shape of the conv of an NCHW x with HWIO weights (padding: top, left, bottom, right)."""
    n, _, h, w = x_shape
    kh, kw, _, co = w_shape
    (sh, sw), (dh, dw) = strides, dilation
    top, left, bottom, right = padding
    return [n, (h + top + bottom - (kh - 1) * dh - 1) // sh + 1, (w + left + right - (kw - 1) * dw - 1) // sw + 1, co]


def nchw_input_conv_primfunc(x_shape, w_shape, strides, padding, dilation, width_tile: int = 1):
    """conv2d of an NCHW input x with HWIO weights into NHWC: x zero-padded as NCHW (block PAD_BLOCK), then
    TOPI's NHWC sum (block CONV_BLOCK) over (ky, kx, c_in) reading the padded planes. padding: top, left,
    bottom, right. A width that `width_tile` (the schedule's register tile, in pixels) does not divide is
    computed rounded up to a multiple of it, from more zero columns on the right, and cropped (block CROP_BLOCK):
    whole tiles accumulate without a predicate (FastNet's 127-wide stem: 486 -> 249 us, AVX-512 EPYC)."""
    c = x_shape[1]
    kh, kw = w_shape[:2]
    (sh, sw), (dh, dw) = strides, dilation
    top, left, bottom, right = padding
    out_shape = output_shape(x_shape, w_shape, strides, padding, dilation)
    extra = -out_shape[2] % width_tile  # output columns past the width
    last = x_shape[3] + left + right - 1  # the padded planes' last column: the extra columns read no further

    def i64(*values):  # Relax's extents are int64 (int32 ones make FuseTIR see two different buffers)
        return [tirx.IntImm("int64", int(v)) for v in values]

    x = te.placeholder(i64(*x_shape), "float32", name="x")
    weight = te.placeholder(i64(*w_shape), "float32", name="w")
    padded = topi.nn.pad(x, i64(0, 0, top, left), i64(0, 0, bottom, right), name=PAD_BLOCK)
    ry, rx, rc = (te.reduce_axis(i64(0, k), name=name) for k, name in ((kh, "ry"), (kw, "rx"), (c, "rc")))
    out = te.compute(
        i64(*out_shape[:2], out_shape[2] + extra, out_shape[3]),
        lambda b, y, xx, f: te.sum(
            padded[b, rc, y * sh + ry * dh, te.min(xx * sw + rx * dw, last) if extra else xx * sw + rx * dw]
            * weight[ry, rx, rc, f],
            axis=[ry, rx, rc],
        ),
        name=CONV_BLOCK,
    )
    func = te.create_prim_func([x, weight, cropped(out, out_shape[2])]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", OUT_ELEMWISE_FUSABLE)


def _float_shape(expr) -> list[int] | None:
    """The static shape of a float32 tensor expression, else None."""
    return static_shape(expr.ty) if getattr(expr.ty, "dtype", None) == "float32" else None


def conv_reads_nchw_input(target):
    """The module pass for `target` (see the module's docstring); convs of any other form are left as they are."""

    def rewrite(mutator_, call):
        a = call.attrs
        if (
            (a.data_layout, a.kernel_layout, a.out_layout) != ("NHWC", "HWIO", "NHWC")
            or int(a.groups) != 1
            or a.out_dtype not in (None, "float32")
        ):
            return None
        data, weight = call.args
        producer = mutator_.lookup_binding(data) if isinstance(data, relax.Var) else None
        if (
            not isinstance(producer, relax.Call)
            or getattr(producer.op, "name", None) != "relax.permute_dims"
            or producer.attrs.axes is None
            or [int(i) for i in producer.attrs.axes] != NCHW_TO_NHWC
        ):
            return None
        x = producer.args[0]
        x_shape, w_shape, out_shape = _float_shape(x), _float_shape(weight), _float_shape(call)
        if x_shape is None or w_shape is None or out_shape is None or len(x_shape) != 4:
            return None
        geometry = ([int(s) for s in a.strides], [int(p) for p in a.padding], [int(d) for d in a.dilation])
        if output_shape(x_shape, w_shape, *geometry) != out_shape:  # not the conv this PrimFunc computes
            return None
        func = nchw_input_conv_primfunc(x_shape, w_shape, *geometry, width_tile=float_pixel_tile(w_shape[3], target))
        gv = mutator_.builder_.add_func(func, "tcc_nchw_input_conv")
        return relax.call_tir(gv, [x, weight], relax.TensorType(out_shape, "float32"))

    return call_rewrite_pass("relax.nn.conv2d", rewrite, "TccConvReadsNchwInput", relax.transform.DeadCodeElimination())
