"""The generic integer forms of the weighted kinds, last in the table: whatever no kernel variant takes (no
dot-product kernel on the target, a zero point, grouped convs, output channels no kernel divides, symbolic
shapes). The zero-point-free codes widened to int16 (exact for 8-bit codes minus an 8-bit zero point; int32 for
int16 codes with one), int16 x int16 products accumulated in int32 by Relax's own conv2d / matmul, then the bias
and the requantization (a kernel of its own, which Relax fuses into the producer). They compile for any target;
schedule.float_rules.WindowReduction schedules them (and RowReduction the matmuls it takes).
"""

from __future__ import annotations

import numpy as np

from tcc.quant.intgraph.qtypes import QNode, window_sums

from .. import choose
from ..codes import _Codes
from .base import Layer, Match, Variant


def _why(layer: Layer) -> str:
    """Why no kernel variant above takes the layer, as far as the common reasons go."""
    n = layer.node
    if layer.kernel is None:
        return "the target has no integer dot-product kernel"
    if layer.params.zp:
        return f"its input has zero point {layer.params.zp}"
    if None in layer.dims:
        return "its shapes are not static"
    if n.kind == "gemm":
        kernel = choose.codes_kernel(layer.kernel, layer.dtype)
        if len(layer.dims) != 2:
            return f"a linear layer on a rank-{len(layer.dims)} input"
        return "no kernel for its codes" if kernel is None else "its output features fit no kernel's lanes"
    groups = n.attrs["group"]
    shape = layer.conv_shape(int16=True)
    if shape is None:
        return f"{layer.dtype} codes"
    if groups == shape.c and shape.co == shape.c:
        return f"depthwise on {shape.c} channels (not a multiple of 8)"
    if groups != 1:
        return f"grouped ({groups} groups)"
    kernel = choose.codes_kernel(layer.kernel, layer.dtype)
    if kernel is None:
        return f"{layer.kernel.name} has no twin for {layer.dtype} codes"
    return choose.supports(shape, choose.narrow_kernel(shape, kernel)) or "no kernel variant takes it"


def match(layer: Layer) -> Match:
    return Match(kernel="-", why=_why(layer))


def emit_conv(low, n: QNode, x: _Codes, m: Match) -> list:
    """reference.conv: Relax's conv2d of the widened codes (NHWC, HWIO), int32 accumulators."""
    a = n.attrs
    assert n.weight is not None
    hwio = np.ascontiguousarray(n.weight.transpose(2, 3, 1, 0))
    wide = low.operand_dtype(x)
    acc = low.emit(
        low.relax.op.nn.conv2d(
            low.centered(x, wide),
            low.const(hwio, wide),
            strides=a["strides"],
            padding=a["pads"],
            dilation=a["dilations"],
            groups=a["group"],
            data_layout="NHWC",
            kernel_layout="HWIO",
            out_dtype="int32",
        )
    )
    return low.accumulated(n, acc, x.params)


def emit_pooled_conv(low, n: QNode, x: _Codes, m: Match) -> list:
    """reference.pooled_conv: the window sums (an all-ones depthwise conv), then the conv on them (int16 where the
    sums fit)."""
    op, g = low.relax.op, n.attrs["pool"]
    kh, kw = g["kernel"]
    sums = window_sums(x.params, kh * kw)
    total = low.sum_windows(x, g)
    assert n.weight is not None
    hwio = np.ascontiguousarray(n.weight.transpose(2, 3, 1, 0))
    wide = "int16" if sums.dtype in ("int8", "uint8", "int16") else "int32"
    acc = low.emit(
        op.nn.conv2d(
            low.cast(total, wide),
            low.const(hwio, wide),
            strides=n.attrs["strides"],
            padding=n.attrs["pads"],
            dilation=n.attrs["dilations"],
            groups=n.attrs["group"],
            data_layout="NHWC",
            kernel_layout="HWIO",
            out_dtype="int32",
        )
    )
    return low.accumulated(n, acc, sums)


def emit_gemm(low, n: QNode, x: _Codes, m: Match) -> list:
    """reference.gemm: Relax's matmul of the widened codes (flattened to [N, K] in the graph's order)."""
    op = low.relax.op
    wide = low.operand_dtype(x)
    xi = low.centered(x, wide)
    if low.rank(xi) != 2:
        xi = low.emit(op.reshape(low.nchw(xi), [xi.ty.shape[0], -1]))
    acc = low.emit(op.matmul(xi, low.const(n.weight, wide), out_dtype="int32"))
    return low.accumulated(n, acc, x.params)


ABOUT = "the generic integer form: int16 codes minus their zero point, int32 accumulators (Relax's own op)"
CONV = Variant("generic_conv", ("conv",), match, emit_conv, ABOUT, requantize="after")
POOLED_CONV = Variant("generic_pooled_conv", ("pooled_conv",), match, emit_pooled_conv, ABOUT, requantize="after")
GEMM = Variant("generic_gemm", ("gemm",), match, emit_gemm, ABOUT, requantize="after")
