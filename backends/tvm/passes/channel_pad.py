"""Output channels to whole vectors: a Relax pass for AVX-512 host FP32 modules (before legalization).

A heavy conv whose output channels no zmm vector (16 floats) divides -- DDSNet's third transition, 240 -> 120
channels -- is tiled in ymm vectors (schedule.tiles.x86_register_tile), half the work per multiply-add: 115 us for 120
channels against 57 us for 128 (one 1x1 conv at 14 x 14, alone, AVX-512 EPYC); one with an odd number of zmm
vectors (112 channels) gets one-vector tiles, one with no whole vector (ShuffleNet's 58, 116) ragged ones. Here
such a conv computes more channels where the register tiles' cost model says that is cheaper per real channel
(`padded_channels`), from weights padded with zero filters, and a strided slice keeps the real ones: the schedule
writes the tile back through the slice (tvm_schedule's crop), fused with the bias and activation after it. The
padded filters' outputs are never stored: the kept channels are the same sums in the same order, bit for bit.
DDSNet's third transition 93 -> 51 us, its second 192 -> 178 us (ORT: 51 and 158 us); ShuffleNet V2 11.8 -> 2.5 ms.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from ..isa import Simd, simd_of
from ..schedule.tiles import INLINE_PADDING_MAX_WORK, x86_tile_cost
from .concat import static_shape
from .relax_rewrite import call_rewrite_pass


def padded_channels(channels: int, width: int, work: int, simd: Simd) -> int | None:
    """The channel count a conv of `channels` outputs, `width` pixels a row and `work` multiply-adds an output
    computes instead, or None to keep it: the next multiple of one or two vectors whose best register tile
    (schedule.tiles.x86_tile_cost) costs less per real channel, at most a quarter more work. DDSNet's 112 channels
    (7 zmm: only one-vector tiles) and 120 (ymm tiles) -> 128; ShuffleNet's 58 and 116 (no whole vector) -> 64
    and 128; MobileNetV2's 144 (9 zmm: 3-vector tiles) stays."""
    base = x86_tile_cost(channels, width, work, simd)
    best = None
    for wide in sorted({channels - channels % -simd.lanes, channels - channels % -(2 * simd.lanes)}):
        if wide == channels or 4 * (wide - channels) > channels:
            continue
        wide_cost = x86_tile_cost(wide, width, work, simd)
        assert wide_cost is not None  # whole vectors divide `wide`
        cost = wide_cost * wide / channels
        if (base is None or cost < base) and (best is None or cost < best[0]):
            best = cost, wide
    return best[1] if best else None


def conv_channels_to_whole_vectors(target):
    """The module pass for `target`: AVX-512 only (16 float lanes); any other target gets no rewrite."""
    simd = simd_of(target)

    def rewrite(mutator_, call):
        a = call.attrs
        data, weight = call.args
        weight = mutator_.lookup_binding(weight) if isinstance(weight, relax.Var) else weight
        if (
            simd.lanes < 16
            or (a.data_layout, a.kernel_layout, a.out_layout) != ("NHWC", "HWIO", "NHWC")
            or int(a.groups) != 1
            or a.out_dtype not in (None, "", "float32")
            or not isinstance(weight, tvm.ir.GenericConst)
        ):
            return None
        w = weight.value.numpy()
        out_shape = static_shape(call.ty)
        if w.dtype != np.float32 or w.ndim != 4 or out_shape is None or len(out_shape) != 4:
            return None
        kh, kw, c_in, c_out = w.shape
        if kh * kw * c_in <= INLINE_PADDING_MAX_WORK:  # light: bound by its loads, not by the vector width
            return None
        wide = padded_channels(c_out, out_shape[2], kh * kw * c_in, simd)
        if wide is None:
            return None
        padded = relax.const(np.pad(w, [(0, 0), (0, 0), (0, 0), (0, wide - c_out)]))
        conv = mutator_.builder_.emit(
            relax.op.nn.conv2d(
                data,
                padded,
                strides=a.strides,
                padding=a.padding,
                dilation=a.dilation,
                groups=1,
                data_layout="NHWC",
                kernel_layout="HWIO",
                out_layout="NHWC",
                out_dtype=a.out_dtype,
            )
        )
        return relax.op.strided_slice(conv, axes=[3], begin=[0], end=[c_out])

    return call_rewrite_pass("relax.nn.conv2d", rewrite, "TccConvChannelsToWholeVectors")
