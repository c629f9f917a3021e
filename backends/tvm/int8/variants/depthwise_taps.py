"""The depthwise conv on int16 taps, a tap an int16 x int16 product summed into int32 (`vmlal.s16` on ARMv7, `smlal`
on AArch64, `vpmaddwd` on x86): the kernel variant `depthwise_taps`, in one place. The depthwise convs the row
variants do not take (strided or tall kernels, 8k channels that are not 16k, any channels on ARM) and int16 codes.

- takes (`match`): a depthwise conv on 8-bit or int16 codes at zero point 0, on a target with a dot-product kernel:
  8k channels on x86, any number on ARM (computed on whole vectors of 8: zero filters past the layer's channels,
  whose codes a strided slice drops after the requantization);
- compute (`depthwise_primfunc`): the codes widened to int16 once, with the padding, then the taps;
- intrinsic: ARM's widening multiply-accumulate of 8 channels (`depthwise_intrin`); x86 none (LLVM's vectorizer);
- schedule rule `Int8Depthwise` on ARM; on x86 schedule.float_rules.WindowReduction takes it (its padding inlined);
  the requantization in the tile's epilogue.
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx
from tvm.script import tirx as T

from tcc.quant.intgraph.qtypes import QNode

from ...schedule.loops import (
    Rule,
    WriteBack,
    attempt,
    block_domain,
    fuse_epilogue,
    is_aarch64,
    loop_extent,
    pad_by_rows,
    parallelize,
    vectorize_spatial,
)
from ...schedule.tiles import largest_divisor, neon_epilogue_lanes
from .. import compute
from ..codes import _Codes
from ..intrin_funcs import Operand, step_func
from ..intrinsics import register, registered
from ..kernels import DEPTHWISE_PAD_BLOCK, TILE_SCOPE, ConvShape
from .base import Layer, Match, Variant, widened, widens

DEPTHWISE_BLOCK = "tcc_dw_conv"  # the conv (its padded int16 input: DEPTHWISE_PAD_BLOCK)
DEPTHWISE_LANES = 8  # channels a tap's vector holds: two d (ARMv7) or one q (AArch64) register of int16 codes


def whole_vectors(channels: int) -> int:
    """The channels a depthwise conv of `channels` computes on ARM: the next multiple of DEPTHWISE_LANES where that
    is at most a quarter more work (DDS-U-Net's 36 -> 40 ... 190 -> 192 leave the generic conv: its arm-a7 INT8
    255.0 M -> 246.0 M instructions); else its own, and the generic conv takes it (FastNet's 4-channel branch on
    8 executed 0.2-0.35% more on arm-a7, aarch64 and aarch64-dotprod: docs/notes/segmentation.md)."""
    wide = -(-channels // DEPTHWISE_LANES) * DEPTHWISE_LANES
    return wide if 4 * (wide - channels) <= channels else channels


# ---------------------------------------------------------------------------------------------------- compute
def depthwise_primfunc(shape: ConvShape, source_dtype: str, biased: bool = False, channels: int | None = None):
    """A depthwise conv (groups = channels) on 8-bit codes: int32 acc [n, oh, ow, c] of x [n, h, w, c] and int16
    weights [kh, kw, channels]. The codes are widened to int16 once, with the padding (zero), into a buffer of their
    own, so that each tap is an int16 x int16 product summed into int32 (`vmlal.s16` on ARM, `vpmaddwd` on x86),
    where widening in the loop made LLVM multiply 32-bit lanes (`vmovl` twice and `vmla.i32`). `channels` (default
    c): the accumulators' channels; more than c (whole vectors: 36 channels as 5 vectors, not 4 and a scalar tail)
    reads zero codes there (and the caller's zero weights)."""

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731
    oh, ow = shape.out_hw
    (sh, sw), (dh, dw) = shape.strides, shape.dilations
    pt, pl, pb, pr = shape.pads
    wide = shape.c if channels is None else channels
    x = te.placeholder([i64(d) for d in (shape.n, shape.h, shape.w, shape.c)], source_dtype, name="x")
    weights = te.placeholder([i64(d) for d in (shape.kh, shape.kw, wide)], "int16", name="weights")

    def padded(n, y, xx, c):
        inside = tirx.all(y >= pt, y < pt + shape.h, xx >= pl, xx < pl + shape.w, *([c < shape.c] * (wide > shape.c)))
        return tirx.if_then_else(inside, x[n, y - pt, xx - pl, c].astype("int16"), tirx.const(0, "int16"))

    src = te.compute(
        [i64(d) for d in (shape.n, shape.h + pt + pb, shape.w + pl + pr, wide)], padded, name=DEPTHWISE_PAD_BLOCK
    )
    ky = te.reduce_axis((i64(0), i64(shape.kh)), name="ky")
    kx = te.reduce_axis((i64(0), i64(shape.kw)), name="kx")
    out = te.compute(
        [i64(d) for d in (shape.n, oh, ow, wide)],
        lambda n, y, xx, c: te.sum(
            src[n, y * sh + ky * dh, xx * sw + kx * dw, c].astype("int32") * weights[ky, kx, c].astype("int32"),
            axis=[ky, kx],
        ),
        name=DEPTHWISE_BLOCK,
    )
    return compute.reduction_primfunc([x, weights, out], wide, DEPTHWISE_BLOCK, biased).with_attr("tcc.op_pattern", 4)


# ---------------------------------------------------------------------------------------------------- intrinsics
# C[8] += A[8] * B[8] on int16 codes: two vmlal.s16 (ARMv7), two smlal (AArch64)
DEPTHWISE_NEON = {
    "arm": ("tcc_dw_neon_s16", "llvm.arm.neon.vmulls"),
    "aarch64": ("tcc_dw_a64_s16", "llvm.aarch64.neon.smull"),
}


def depthwise_intrin(target) -> str | None:
    """The TensorIntrin of a depthwise tap (8 channels) for a target, registered; None: LLVM's vectorizer. On
    ARMv7 LLVM hoisted the widened weights out of the pixel loop (int32, spilled) and multiplied 32-bit lanes;
    the intrinsic keeps the widening multiply-accumulate. On AArch64 LLVM 22 failed on the vectorized int16 conv
    ("Do not know how to split the result of this operator")."""
    triple = str(target.attrs.get("mtriple", ""))
    arch = next((a for a in DEPTHWISE_NEON if triple.startswith(a)), None)
    if arch is None:
        return None
    name, mull = DEPTHWISE_NEON[arch]
    if not registered(name):
        codes, lanes = Operand((8,), "int16"), Operand((8,), "int32", TILE_SCOPE)

        @T.macro
        def desc(A, B, C):
            for i in T.serial(8):
                with T.sblock("update"):
                    vi = T.axis.remap("S", [i])
                    C[vi] = C[vi] + T.Cast("int32", A[vi]) * T.Cast("int32", B[vi])

        def product(half, a, b):  # the widening multiply of one half of the 8 channels (low / high: d registers)
            return T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(mull), half(a, dtype="int16x4"), half(b, dtype="int16x4"), dtype="int32x4"
            )

        @T.macro
        def impl(A, B, C):
            a = T.meta_var(A.vload([0], "int16x8"))  # one q load each; the halves are its d registers
            b = T.meta_var(B.vload([0], "int16x8"))
            C[T.ramp(0, 1, 4)] = C.vload([0], "int32x4") + product(T.vectorlow, a, b)
            C[T.ramp(4, 1, 4)] = C.vload([4], "int32x4") + product(T.vectorhigh, a, b)

        register(name, step_func(codes, codes, lanes, desc), step_func(codes, codes, lanes, impl))
    return name


# ---------------------------------------------------------------------------------------------------- schedule
# The depthwise tile: pixels x 2 vectors, the pixels the best measured (executed instructions): ARMv7 2
# (docs/notes/tie-free-requantization.md), AArch64's 32 registers 8 (docs/notes/aarch64-dot-kernels.md,
# docs/notes/tie-free-requantization.md). A one-pixel ARMv7 tile (odd widths) has its taps unrolled (the loop's
# compare, branch and address arithmetic per tap); a two-pixel one unrolled executed more (its weights and inputs
# no longer fit the registers: docs/notes/fastnet-odd-widths.md).
DEPTHWISE_PIXELS = 2
DEPTHWISE_PIXELS_A64 = 8
# The int16 padded input of an ARM INT8 depthwise conv on fewer channels than this is written by rows (pad_by_rows),
# not pixel by pixel behind a bounds test (~25 instructions a pixel on 8 channels); by rows on every channel count,
# wider layers executed more (docs/notes/aarch64-dot-kernels.md)
DEPTHWISE_PAD_BY_ROWS_CHANNELS = 16


class Int8Depthwise(Rule):
    """The INT8 depthwise conv of backends/tvm/int8/kernels.py (block `tcc_dw_conv`, its int16 padded input
    `tcc_dw_pad` written once beforehand, vectorized; by rows on few channels, DEPTHWISE_PAD_BY_ROWS_CHANNELS) with
    its epilogue, on ARMv7: a register tile of pixels x two vectors of int32 channels, accumulated over the taps
    (the NEON widening intrinsic), the epilogue fused into its write-back; on AArch64 the same with more pixels a
    tile. x86 leaves it to `WindowReduction`."""

    def schedule(self, sch, blocks, simd) -> bool:
        names = [sch.get(b).name_hint for b in blocks]
        if names[:2] != [DEPTHWISE_PAD_BLOCK, DEPTHWISE_BLOCK]:
            return False
        intrin = depthwise_intrin(self.target)
        if intrin is None:
            # x86: WindowReduction's schedule (the padding inlined, up to 6 pixels a tile) -- this one's separate
            # int16 pass was slower (docs/notes/host-int8-requantization.md)
            return False
        pad = sch.get_sblock(DEPTHWISE_PAD_BLOCK)
        few = block_domain(sch, pad)[-1] < DEPTHWISE_PAD_BY_ROWS_CHANNELS
        if not (few and attempt(lambda: pad_by_rows(sch, pad, simd))):
            vectorize_spatial(sch, pad, simd)
        conv = sch.get_sblock(DEPTHWISE_BLOCK)
        n, y, x, c, *taps = sch.get_loops(conv)
        width = 8
        if loop_extent(sch, c) % width:
            return False
        c_out, c_in = sch.split(c, [None, width])
        pixels = largest_divisor(
            loop_extent(sch, x), DEPTHWISE_PIXELS_A64 if is_aarch64(self.target) else DEPTHWISE_PIXELS
        )
        one_pixel = pixels == 1  # ARMv7, a width with no divisor <= DEPTHWISE_PIXELS (FastNet's)
        x_out, x_in = sch.split(x, [None, pixels])
        if one_pixel and all(loop_extent(sch, tap) == 1 for tap in taps):
            # 1 x 1 (a BN after a ReLU): channels outside pixels, so that a vector's requantization parameters
            # are loaded once per row, not once per pixel (one-pixel tiles only: docs/notes/fastnet-odd-widths.md)
            sch.reorder(n, y, c_out, x_out, *taps, x_in, c_in)
            at = x_out
        else:
            sch.reorder(n, y, x_out, c_out, *taps, x_in, c_in)
            at = c_out
        fuse_epilogue(
            sch, conv, names, 1, at, WriteBack(unroll=True, lanes=neon_epilogue_lanes(width), scope=TILE_SCOPE)
        )
        parallelize(sch, [n, y])
        init = sch.decompose_reduction(conv, taps[0])
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(c_in, intrin)
        sch.unroll(x_in)
        for tap in taps if one_pixel or is_aarch64(self.target) else taps[-1:]:
            sch.unroll(tap)
        return True


# ---------------------------------------------------------------------------------------------------- the variant
def match(layer: Layer) -> Match | None:
    # x86 (LLVM's vectors, WindowReduction's schedule) takes whole vectors only
    shape = layer.depthwise_shape(DEPTHWISE_LANES if layer.x86 else 1)
    if shape is None:
        return None
    wide = whole_vectors(shape.c)
    if wide % DEPTHWISE_LANES or not widens(shape.c, wide, layer.pooled):
        return None
    more = f" computed on {wide} (zero filters, sliced off)" if wide > shape.c else ""
    return Match(
        kernel="tcc_dw_conv",
        why=f"depthwise {shape.kh} x {shape.kw} / {shape.strides[0]} on {shape.c} channels{more} ({layer.dtype}): "
        "int16 taps",
        shape=shape,
    )


def emit(low, n: QNode, x: _Codes, m: Match) -> list:
    """The conv as one call of `depthwise_primfunc` on int16 weights [kh, kw, channels], requantized in its
    kernel; on whole vectors (`whole_vectors`) where the layer's channels are not (weighted.widened: zero filters),
    its own channels kept after (a strided slice in the write-back, where a partial last vector scalarized the NEON
    requantization)."""
    shape = m.shape
    assert shape is not None
    wide = whole_vectors(shape.c)
    computed = widened(n, wide) if wide > shape.c else n
    assert computed.weight is not None
    bias = low.bias(computed)
    weights = np.ascontiguousarray(computed.weight[:, 0].transpose(1, 2, 0))  # [kh, kw, channels]
    out = low.depthwise_call(
        computed,
        x,
        shape,
        depthwise_primfunc(shape, x.expr.ty.dtype, bias is not None, wide),
        "tcc_dw_conv",
        low.const(weights, "int16"),
        bias,
        wide,
    )
    return out if wide == shape.c else low.kept_channels(out, shape.c)


ABOUT = "a depthwise conv on int16 taps (ARM: `vmlal.s16` / `smlal`; x86: LLVM's vectors)"
VARIANT = Variant(
    "depthwise_taps", ("conv",), match, emit, ABOUT, (depthwise_primfunc,), (depthwise_intrin,), Int8Depthwise
)
