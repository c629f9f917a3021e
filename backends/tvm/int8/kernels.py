"""Integer dot-product micro-kernels for tcc's INT8 convolutions: one per instruction set, chosen from the target.

The generic integer conv (backends/tvm_int8.py: int16 codes, int32 products) leaves LLVM to multiply 32-bit
lanes: `vpmulld` on x86 (8 products per instruction, slower than the float FMA), `vmlal.s16` on ARMv7. The CPUs
have better instructions, each summing several 8- or 16-bit products into one 32-bit lane:

| kernel (tcc_dot_) | instruction (per accumulator vector)           | lanes | products / lane / step | codes read |
|-------------------|------------------------------------------------|-------|------------------------|------------|
| `avx512_vnni`     | `vpdpbusd` zmm                                 | 16    | 4                      | u8 x s8    |
| `avx_vnni`        | `vpdpbusd` ymm                                 | 8     | 4                      | u8 x s8    |
| `avx512_madd`     | `vpmaddwd` zmm + `vpaddd`                      | 16    | 2                      | s16 x s16  |
| `avx2_madd`       | `vpmaddwd` ymm + `vpaddd`                      | 8     | 2                      | s16 x s16  |
| `sse2_madd`       | `vpmaddwd` xmm + `vpaddd` (4 output channels)  | 4     | 2                      | s16 x s16  |
| `neon_s8`         | `vmull.s8` + `vmlal.s8` + `vpadal.s16` (ARMv7) | 4     | 4 (2 x 2)              | s8 x s8    |
| `neon_s8_pairs`   | `vmull.s8` + `vpadal.s16` (ARMv7)              | 4     | 2                      | s8 x s8    |

Every one is exact: `vpdpbusd` adds its four u8 x s8 products into int32 without saturation (unlike
`vpmaddubsw`, which saturates int16 on 255 x (127 + 127): why no `vpmaddubsw` kernel), `vpmaddwd` sums two
16-bit products into int32, and on ARMv7 an int16 lane holds two s8 x s8 products, which fit unless both are
(-128) x (-128): a layer whose weights pair two -128 codes on one lane takes `neon-s8-pairs` (one product per
lane) instead -- decided per layer from its weight codes (`layer_kernel`).

A kernel reads its activation codes in its own type; the lowering converts them on the way (the conversion fuses
into the producing layer): int16 for `vpmaddwd`; u8 for `vpdpbusd`, s8 codes shifted by +128; s8 on ARM, u8 codes
shifted by -128. A shift by o adds o * sum(w) to every output of the channel, which the bias takes back
(`bias_correction`), and the padding holds the shifted zero code, so that the identity holds at the borders too.

The conv (`conv_primfunc`) is a TE compute whose reduction is split into steps of the kernel's shape: the
weights are packed [C_out / lanes, kh, kw, groups of the reduction, (pairs,) lanes, group] (`pack_weights`), so
that one step of one vector of output channels reads `lanes x group` consecutive weights and a `group` of
consecutive input channels of one pixel (broadcast to every lane). Where the input channels are not a multiple of
the step (a stem on RGB), the step runs along the flattened (x, channel) row of the input instead, which is
contiguous for a window (the weights past the window are zero, the input one pixel wider). tcc's schedule rule
(backends/tvm_schedule.py, `Int8DotConv`) tiles pixels x output channels in registers and tensorizes the step
with the kernel's TensorIntrin (registered here, `ensure_registered`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..isa import target_has

CONV_BLOCK = "tcc_dot_conv"  # the TE compute's name: the block tcc's schedule rule looks for
PAD_BLOCK = "tcc_dot_pad"
DEPTHWISE_BLOCK = "tcc_dw_conv"  # the depthwise conv's (`depthwise_primfunc`), and its padded int16 input
DEPTHWISE_PAD_BLOCK = "tcc_dw_pad"
QUANTIZE_BLOCK = "quantize"  # the graph input's quantization (tvm_int8.quantize_input_primfunc)
# The register tiles of the INT8 schedules (accumulators, partial sums) and their intrinsics' operands: "global"
# scope, not "local". Both are stack arrays to LLVM, which keeps them in registers; but TVM 0.27's LowerTVMBuiltin
# leaves only small "global" allocations on the stack and serves every "local" one with a TVMBackendAllocWorkspace
# / FreeWorkspace pair, per tile and row inside the parallel loop (DDSNet INT8 on arm-a7: ~13,000 runtime calls,
# ~3 M instructions per inference), behind a pointer LLVM cannot promote to registers.
TILE_SCOPE = "global"
# Except the ARMv7 dot form's tile (2 pixels x 4 channels x 4 partial lanes, `Int8DotConv._dot`): in registers
# that tile and its operands need all 16 q registers and LLVM spills (measured: DDSNet's dot convs 98 M -> 121 M
# instructions; a 1 x 4 or 1 x 8 tile 108 M / 182 M); behind the workspace pointer it stays a load and a store per
# step, fewer instructions, at one workspace pair per row. Its partial sums (4 lanes per channel summed,
# `partial_sum_intrin`) are a stack array in registers (FastNet -1.0 M instructions, DDSNet -3.6 M), and on
# one-pixel tiles its intrinsic's operands are values (`ensure_registered`).
DOT_TILE_SCOPE = "local"
KERNEL_ATTR = "tcc.dot_kernel"  # block annotations: the kernel's name,
FLAT_ATTR = "tcc.dot_flat_channels"  # in the flat form the input channels (0: the direct form),
VECTORS_ATTR = "tcc.dot_tile_vectors"  # and the vectors of output channels per register tile


@dataclass(frozen=True)
class DotKernel:
    name: str  # the TensorIntrin's name
    lanes: int  # int32 accumulators per vector: output channels per step
    group: int  # consecutive input codes per product pair / quad, read as one broadcast
    pairs: int  # groups summed per 16-bit lane before they widen into the accumulator (ARM), else 1
    act_dtype: str  # the activation codes as the kernel reads them
    weight_dtype: str
    tile: tuple[int, int]  # (pixels, vectors of output channels) per register tile; dot form: output channels
    features: str  # what the target must have, for the docs and the manifest
    form: str = "broadcast"  # or "dot": lanes along the reduction (`dot_conv_primfunc`)

    @property
    def step(self) -> int:
        """Reduction elements per step."""
        return self.group * self.pairs

    def act_offset(self, source_dtype: str) -> int:
        """What the lowering adds to codes of `source_dtype` (int8 / uint8) to give the kernel its type."""
        if self.act_dtype == "uint8" and source_dtype == "int8":
            return 128
        if self.act_dtype == "int8" and source_dtype == "uint8":
            return -128
        return 0


KERNELS = {k.name: k for k in (
    DotKernel("tcc_dot_avx512_vnni", 16, 4, 1, "uint8", "int8", (6, 2), "avx512vnni"),
    DotKernel("tcc_dot_avx_vnni", 8, 4, 1, "uint8", "int8", (6, 2), "avxvnni"),
    DotKernel("tcc_dot_avx512_madd", 16, 2, 1, "int16", "int16", (6, 2), "avx512bw"),
    DotKernel("tcc_dot_avx2_madd", 8, 2, 1, "int16", "int16", (4, 2), "avx2"),
    DotKernel("tcc_dot_sse2_madd", 4, 2, 1, "int16", "int16", (4, 1), "sse2"),  # the AVX2 kernel's narrow twin
    # ARMv7 broadcast form: 2 pixels x 4 vectors (16 output channels); 2 x 2 executed 3.5% more on FastNet (one
    # pixel per tile on its odd widths: the broadcast input amortized over fewer channels), 0.1% on DDSNet;
    # 2 x 8: FastNet 5.6% more (spills; measured)
    DotKernel("tcc_dot_neon_s8", 4, 2, 2, "int8", "int8", (2, 4), "ARMv7 NEON"),
    DotKernel("tcc_dot_neon_s8_pairs", 4, 2, 1, "int8", "int8", (2, 4), "ARMv7 NEON"),
    DotKernel("tcc_dot_neon_dot16", 4, 16, 1, "int8", "int8", (2, 4), "ARMv7 NEON", "dot"),
    DotKernel("tcc_dot_neon_dot16_pairs", 4, 16, 1, "int8", "int8", (2, 4), "ARMv7 NEON", "dot"),
)}
# x86: the kernel for a layer whose output channels fill only part of the target kernel's vector, half as wide
# (FastNet's 4-channel branches: 8 -> 4 1 x 1 convs took the generic int16 conv, 4x slower than their FP32 twins)
NARROW = {"tcc_dot_avx512_madd": "tcc_dot_avx2_madd", "tcc_dot_avx2_madd": "tcc_dot_sse2_madd"}
# the kernel for weights that put two -128 codes on one int16 lane
NEON_SAFE = {"tcc_dot_neon_s8": "tcc_dot_neon_s8_pairs", "tcc_dot_neon_dot16": "tcc_dot_neon_dot16_pairs"}
IM2COL_MAX_CHANNELS = 15  # a dot form conv on fewer input channels reads an im2col copy of its input


def kernel_for(target) -> DotKernel | None:
    """The dot-product kernel of a TVM target (None: the generic integer conv). x86 from LLVM's features of the
    target's CPU (the host build is -mcpu=native: this machine's ISA), ARMv7 from the triple."""
    def has(feature: str) -> bool:
        return target_has(target, feature)

    triple = str(target.attrs.get("mtriple", ""))
    if triple.startswith("arm"):
        return KERNELS["tcc_dot_neon_s8"] if has("neon") else None
    if not triple.startswith("x86_64"):
        return None
    if has("avx512vnni") and has("avx512bw"):
        return KERNELS["tcc_dot_avx512_vnni"]
    if has("avxvnni") and has("avx2"):
        return KERNELS["tcc_dot_avx_vnni"]
    if has("avx512bw"):
        return KERNELS["tcc_dot_avx512_madd"]
    if has("avx2"):
        return KERNELS["tcc_dot_avx2_madd"]
    return None


def reciprocal_division(target) -> bool:
    """Whether float32 division is better done by multiply-adds (tvm_int8.exact_quotient): ARMv7 NEON has no
    vector division (one scalar vdiv.f32 per element) but VFPv4's fused multiply-add; x86 and AArch64 divide
    vectors exactly."""
    return str(target.attrs.get("mtriple", "")).startswith("arm") and target_has(target, "neon") \
        and target_has(target, "vfp4")


# ---------------------------------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class ConvShape:
    """A dense (groups = 1) conv in NHWC: what the kernel's compute and the weight packing need."""

    n: int
    h: int
    w: int
    c: int  # input channels
    co: int
    kh: int
    kw: int
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    dilations: tuple[int, int]

    @property
    def out_hw(self) -> tuple[int, int]:
        (sh, sw), (dh, dw) = self.strides, self.dilations
        pt, pl, pb, pr = self.pads
        return ((self.h + pt + pb - dh * (self.kh - 1) - 1) // sh + 1,
                (self.w + pl + pr - dw * (self.kw - 1) - 1) // sw + 1)

    def flat(self, k: DotKernel) -> bool:
        """Steps along the flattened (x, channel) row of the window: input channels not a multiple of the step."""
        return self.c % k.step != 0 and k.form != "dot"

    def steps(self, k: DotKernel) -> int:
        """Steps per kernel row (flat) or per kernel tap (direct)."""
        return -(-self.kw * self.c // k.step) if self.flat(k) else self.c // k.step

    def tile_channels(self, k: DotKernel) -> int:
        """Output channels per register tile of the dot form: the kernel's, or the largest multiple of 4 dividing
        the layer's."""
        return max(d for d in range(4, k.tile[1] + 1, 4) if self.co % d == 0)

    def tile_vectors(self, k: DotKernel) -> int:
        """Vectors of output channels per register tile: the kernel's, or the largest divisor of the layer's."""
        vectors = self.co // k.lanes
        return max(d for d in range(1, min(vectors, k.tile[1]) + 1) if vectors % d == 0)

    def extra_columns(self, k: DotKernel) -> int:
        """Pixels added right of the padded input so that a flat step past the window stays inside."""
        if not self.flat(k):
            return 0
        over = self.steps(k) * k.step - self.kw * self.c
        return -(-over // self.c)


def supports(shape: ConvShape, k: DotKernel) -> str | None:
    """Why the kernel cannot take this conv (None: it can)."""
    if shape.co % k.lanes:
        return f"{shape.co} output channels are not a multiple of {k.lanes} lanes"
    if shape.flat(k) and shape.dilations != (1, 1):
        return "a dilated conv whose input channels are not a multiple of the step"
    return None


def narrow_kernel(shape: ConvShape, k: DotKernel) -> DotKernel:
    """`k`, or its narrower twins (`NARROW`) until one's lanes divide the layer's output channels."""
    while shape.co % k.lanes and k.name in NARROW:
        k = KERNELS[NARROW[k.name]]
    return k


def layer_kernel(k: DotKernel, packed: np.ndarray) -> DotKernel:
    """`k`, or its one-product-per-lane twin where the packed weights put two -128 codes on one 16-bit lane
    (both products (-128) x (-128) = 2^15 overflow int16)."""
    if k.name not in NEON_SAFE:
        return k
    if k.form == "dot":  # a step's 16 codes: vmull on 0..7, vmlal on 8..15: lanes m and m + 8 share
        pairs = packed.reshape(-1, 2, 8)
    else:
        pairs = packed.reshape(-1, k.pairs, k.lanes, k.group)  # (pairs, lanes, group) innermost
    if np.any((pairs == -128).all(axis=1)):
        return KERNELS[NEON_SAFE[k.name]]
    return k


DOT_TWINS = {"tcc_dot_neon_s8": "tcc_dot_neon_dot16", "tcc_dot_neon_s8_pairs": "tcc_dot_neon_dot16_pairs"}


def dot_form(shape: ConvShape, k: DotKernel) -> tuple[DotKernel, bool]:
    """The kernel a layer takes and whether it reads an im2col copy of its input. ARMv7: the dot form (16 codes of
    one pixel against 16 of one output channel per step, no broadcast) where the reduction runs in 16s: input
    channels a multiple of 16, or few input channels (a stem on RGB) through im2col, where the broadcast form
    takes the copy instead if the output width is odd; else the broadcast form."""
    twins = {**DOT_TWINS, **{v: k for k, v in DOT_TWINS.items()}}
    if k.name not in twins:
        return k, False
    dot, broadcast = (k, KERNELS[twins[k.name]]) if k.form == "dot" else (KERNELS[twins[k.name]], k)
    if shape.c % dot.group == 0:
        return dot, False
    if shape.c <= IM2COL_MAX_CHANNELS and shape.kh * shape.kw > 1:
        # a width with no divisor <= the dot form's pixel tile (FastNet's 127 and 31) leaves it one pixel of 4
        # channels, a sum of partial lanes per output: there the broadcast form (1 pixel x 16 channels, no lane
        # sums) on the same im2col copy executed 15% fewer instructions (FastNet's stem, ARMv7: 25.2 M -> 21.5 M;
        # DDSNet's even-width stem: its total 3% more), and on FastNet's dense layers of odd widths (16 input
        # channels and more) its total 4.5% more (measured)
        one_pixel = all(shape.out_hw[1] % p for p in range(2, dot.tile[0] + 1))
        return (broadcast if one_pixel else dot), True
    return broadcast, False


def im2col_shape(shape: ConvShape, k: DotKernel) -> ConvShape:
    """The 1 x 1 conv on the im2col copy: one pixel's window (kh, kw, c) padded to a multiple of the step."""
    oh, ow = shape.out_hw
    reduction = -(-shape.kh * shape.kw * shape.c // k.group) * k.group
    return ConvShape(shape.n, oh, ow, reduction, shape.co, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1))


def im2col_weights(w_oihw: np.ndarray, reduction: int) -> np.ndarray:
    """[C_out, C_in, kh, kw] weights as the 1 x 1 conv on the im2col copy: [C_out, reduction, 1, 1], (ky, kx, c)
    order, zeros past the window."""
    co = len(w_oihw)
    w = np.zeros((co, reduction), np.int64)
    flat = np.asarray(w_oihw, np.int64).transpose(0, 2, 3, 1).reshape(co, -1)
    w[:, :flat.shape[1]] = flat
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
        row[:, :, :kw * ci] = w.reshape(co, kh, kw * ci)
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


def conv_primfunc(shape: ConvShape, k: DotKernel, pad_code: int):
    """The conv as a TE compute in the kernel's steps: int32 acc [n, oh, ow, co] of x [n, h, w, c] (the kernel's
    activation type, NHWC) and the packed weights, padded with `pad_code` (the shifted zero)."""
    from tvm import te, tirx

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731  (Relax's shapes are int64)
    oh, ow = shape.out_hw
    (sh, sw), (dh, dw) = shape.strides, shape.dilations
    pt, pl, pb, pr = shape.pads
    x = te.placeholder([i64(d) for d in (shape.n, shape.h, shape.w, shape.c)], k.act_dtype, name="x")
    flat = shape.flat(k)
    m = shape.tile_vectors(k)
    wshape = [shape.co // (k.lanes * m), shape.kh, *(() if flat else (shape.kw,)), shape.steps(k), m,
              *((k.pairs,) if k.pairs > 1 else ()), k.lanes, k.group]
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
        return te.sum(a.astype("int32") * w.astype("int32"),
                      axis=[ky, *(() if flat else (kx,)), g, *((h,) if h is not None else ()), j])

    out = te.compute([i64(d) for d in (shape.n, oh, ow, shape.co)], acc, name=CONV_BLOCK,
                     attrs={KERNEL_ATTR: k.name, FLAT_ATTR: shape.c if flat else 0, VECTORS_ATTR: m})
    func = te.create_prim_func([x, weights, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 4)  # kOutEWiseFusable: the bias add and requantization fuse after it


SUM_BLOCK = "tcc_dot_sum"  # the dot form's sum of a tile's partial lanes


def dot_conv_primfunc(shape: ConvShape, k: DotKernel, pad_code: int):
    """The dot form (input channels a multiple of 16): int32 partial sums [n, oh, ow, co, 4], lane l holding the
    products of codes 16 g + 8 h + 2 l + j (h, j in 0, 1: what vmull.s8 / vmlal.s8 / vpadal.s16 add into it),
    then acc [n, oh, ow, co] = the sum of the 4 lanes (`SUM_BLOCK`). Weights as `pack_weights` lays them out."""
    from tvm import te, tirx

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731
    oh, ow = shape.out_hw
    (sh, sw), (dh, dw) = shape.strides, shape.dilations
    pt, pl, pb, pr = shape.pads
    t = shape.tile_channels(k)
    x = te.placeholder([i64(d) for d in (shape.n, shape.h, shape.w, shape.c)], k.act_dtype, name="x")
    weights = te.placeholder([i64(d) for d in (shape.co // t, shape.kh, shape.kw, shape.c // 16, t, 16)],
                             k.weight_dtype, name="weights")
    src = _padded(x, shape, pad_code, k.act_dtype) if any((pt, pl, pb, pr)) else x
    ky, kx = te.reduce_axis((i64(0), i64(shape.kh)), name="ky"), te.reduce_axis((i64(0), i64(shape.kw)), name="kx")
    g = te.reduce_axis((i64(0), i64(shape.c // 16)), name="g")
    h, j = te.reduce_axis((i64(0), i64(2)), name="h"), te.reduce_axis((i64(0), i64(2)), name="j")

    def partial(n, y, xx, co, lane):
        e = h * 8 + lane * 2 + j
        a = src[n, y * sh + ky * dh, xx * sw + kx * dw, g * 16 + e]
        return te.sum(a.astype("int32") * weights[co // i64(t), ky, kx, g, co % i64(t), e].astype("int32"),
                      axis=[ky, kx, g, h, j])

    part = te.compute([i64(d) for d in (shape.n, oh, ow, shape.co, 4)], partial, name=CONV_BLOCK,
                      attrs={KERNEL_ATTR: k.name, FLAT_ATTR: 0, VECTORS_ATTR: t})
    out = te.compute([i64(d) for d in (shape.n, oh, ow, shape.co)],
                     lambda n, y, xx, co: part[n, y, xx, co, i64(0)] + part[n, y, xx, co, i64(1)]
                     + part[n, y, xx, co, i64(2)] + part[n, y, xx, co, i64(3)], name=SUM_BLOCK)
    func = te.create_prim_func([x, weights, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 4)


def _padded(x, shape: ConvShape, pad_code: int, dtype: str, extra: int = 0):
    from tvm import te, tirx

    pt, pl, pb, pr = shape.pads

    def padded(n, y, xx, c):
        inside = tirx.all(y >= pt, y < pt + shape.h, xx >= pl, xx < pl + shape.w)
        return tirx.if_then_else(inside, x[n, y - pt, xx - pl, c], tirx.const(pad_code, dtype))

    dims = (shape.n, shape.h + pt + pb, shape.w + pl + pr + extra, shape.c)
    return te.compute([tirx.IntImm("int64", d) for d in dims], padded, name=PAD_BLOCK)


def im2col_primfunc(shape: ConvShape, reduction: int, dtype: str, pad_code: int):
    """x [1, h, w, c] -> [1, oh, ow, reduction]: per output pixel its window's codes in (ky, kx, c) order, then
    zeros; the padding holds `pad_code`. Written out as loops (and marked scheduled): the input padded once into
    rows of (x, c), each input row copied by 64-code vectors, then each window row copied as one run of kw * c
    codes, no division per element."""
    from tvm.script import tirx as T

    n, h, w, c = shape.n, shape.h, shape.w, shape.c
    oh, ow = shape.out_hw
    (sh, sw), (dh, dw) = shape.strides, shape.dilations
    pt, pl, pb, pr = shape.pads
    kh, kw = shape.kh, shape.kw
    hp, row = h + pt + pb, (w + pl + pr) * c
    run, window, body = kw * c, kh * kw * c, w * c
    assert n == 1 and dh == 1 and dw == 1

    @T.prim_func(s_tir=True)
    def im2col(x: T.Buffer((1, h, w, c), dtype), col: T.Buffer((1, oh, ow, reduction), dtype)):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})
        with T.sblock("root"):
            rows = T.sblock_alloc_buffer((hp, row), dtype)
            flat = T.decl_buffer((h * w * c,), dtype, data=x.data)
            for y in T.parallel(hp):
                if pt <= y and y < pt + h:  # a padded input row: its codes copied by vectors, no select
                    for e in range(pl * c):
                        rows[y, e] = T.Cast(dtype, pad_code)
                    for v in range(body // 64):
                        for e in T.vectorized(64):
                            rows[y, pl * c + v * 64 + e] = flat[(y - pt) * (w * c) + v * 64 + e]
                    for e in range(body % 64):
                        rows[y, pl * c + body // 64 * 64 + e] = flat[(y - pt) * (w * c) + body // 64 * 64 + e]
                    for e in range(pr * c):
                        rows[y, (pl + w) * c + e] = T.Cast(dtype, pad_code)
                else:
                    for e in range(row):
                        rows[y, e] = T.Cast(dtype, pad_code)
            for yy in T.parallel(oh):
                for xx, ky in T.grid(ow, kh):
                    for e in T.vectorized(run):
                        col[0, yy, xx, ky * run + e] = rows[yy * sh + ky, xx * sw * c + e]
                if reduction > window:
                    for xx in range(ow):
                        for e in T.vectorized(reduction - window):
                            col[0, yy, xx, window + e] = T.Cast(dtype, 0)

    return im2col.without_attr("global_symbol")


def depthwise_primfunc(shape: ConvShape, source_dtype: str):
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

    src = te.compute([i64(d) for d in (shape.n, shape.h + pt + pb, shape.w + pl + pr, shape.c)], padded,
                     name=DEPTHWISE_PAD_BLOCK)
    ky = te.reduce_axis((i64(0), i64(shape.kh)), name="ky")
    kx = te.reduce_axis((i64(0), i64(shape.kw)), name="kx")
    out = te.compute([i64(d) for d in (shape.n, oh, ow, shape.c)],
                     lambda n, y, xx, c: te.sum(src[n, y * sh + ky * dh, xx * sw + kx * dw, c].astype("int32")
                                                * weights[ky, kx, c].astype("int32"), axis=[ky, kx]),
                     name=DEPTHWISE_BLOCK)
    func = te.create_prim_func([x, weights, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 4)


# ---------------------------------------------------------------------------------------------------- intrinsics
def _desc(k: DotKernel):
    """C[lanes] += sum over (pairs, group) of A[...] * B[..., lane, ...], as the conv's step computes it."""
    from tvm.script import tirx as T

    if k.form == "dot":
        @T.prim_func(s_tir=True)
        def desc_dot(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (16,), "int8", offset_factor=1)
            B = T.match_buffer(b, (16,), "int8", offset_factor=1)
            C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=DOT_TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:4], A[0:16], B[0:16])
                T.writes(C[0:4])
                for lane, hh, jj in T.grid(4, 2, 2):
                    with T.sblock("update"):
                        vl, vh, vj = T.axis.remap("SRR", [lane, hh, jj])
                        C[vl] = C[vl] + T.Cast("int32", A[vh * 8 + vl * 2 + vj]) * T.Cast(
                            "int32", B[vh * 8 + vl * 2 + vj])
        return desc_dot

    L, J, H = k.lanes, k.group, k.pairs
    a_t, w_t = k.act_dtype, k.weight_dtype
    if H == 1:
        @T.prim_func(s_tir=True)
        def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (J,), a_t, offset_factor=1)
            B = T.match_buffer(b, (L, J), w_t, offset_factor=1)
            C = T.match_buffer(c, (L,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:L], A[0:J], B[0:L, 0:J])
                T.writes(C[0:L])
                for i, kk in T.grid(L, J):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, kk])
                        C[vi] = C[vi] + T.Cast("int32", A[vk]) * T.Cast("int32", B[vi, vk])
        return desc

    @T.prim_func(s_tir=True)
    def desc_pairs(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (H * J,), a_t, offset_factor=1)
        B = T.match_buffer(b, (H, L, J), w_t, offset_factor=1)
        C = T.match_buffer(c, (L,), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:L], A[0:H * J], B[0:H, 0:L, 0:J])
            T.writes(C[0:L])
            for hh, i, kk in T.grid(H, L, J):
                with T.sblock("update"):
                    vi, vh, vk = T.axis.remap("SRR", [i, hh, kk])
                    C[vi] = C[vi] + T.Cast("int32", A[vh * J + vk]) * T.Cast("int32", B[vh, vi, vk])
    return desc_pairs


def _impl(k: DotKernel, values: bool = False):
    """values: the dot form's 16-code operands as values (`dot_intrin`), else local buffers."""
    from tvm.script import tirx as T

    L, J, H = k.lanes, k.group, k.pairs
    operand = T.meta_var if values else (lambda v: v)  # TVMScript: an assigned expression is a local buffer
    if k.name in ("tcc_dot_sse2_madd", "tcc_dot_avx2_madd", "tcc_dot_avx512_madd"):
        madd = {4: "llvm.x86.sse2.pmadd.wd", 8: "llvm.x86.avx2.pmadd.wd", 16: "llvm.x86.avx512.pmaddw.d.512"}[L]

        @T.prim_func(s_tir=True)
        def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (J,), "int16", offset_factor=1)
            B = T.match_buffer(b, (L, J), "int16", offset_factor=1)
            C = T.match_buffer(c, (L,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:L], A[0:J], B[0:L, 0:J])
                T.writes(C[0:L])
                pair = T.meta_var(T.reinterpret(A.vload([0], "int16x2"), dtype="int32"))
                pairs = T.meta_var(T.reinterpret(T.broadcast(pair, L), dtype=f"int16x{2 * L}"))
                C[T.ramp(0, 1, L)] = C.vload([0], f"int32x{L}") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(madd), pairs, B.vload([0, 0], f"int16x{2 * L}"),
                    dtype=f"int32x{L}")
        return impl
    if k.name in ("tcc_dot_avx512_vnni", "tcc_dot_avx_vnni"):
        dpbusd = "llvm.x86.avx512.vpdpbusd.512" if L == 16 else "llvm.x86.avx512.vpdpbusd.256"

        @T.prim_func(s_tir=True)
        def impl_vnni(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (J,), "uint8", offset_factor=1)
            B = T.match_buffer(b, (L, J), "int8", offset_factor=1)
            C = T.match_buffer(c, (L,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:L], A[0:J], B[0:L, 0:J])
                T.writes(C[0:L])
                quad = T.meta_var(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"))
                # LLVM 22's vpdpbusd takes byte vectors (TVM's own dot_16x4_vnni still passes i32 ones)
                C[T.ramp(0, 1, L)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(dpbusd), C.vload([0], f"int32x{L}"),
                    T.reinterpret(T.broadcast(quad, L), dtype=f"uint8x{4 * L}"), B.vload([0, 0], f"int8x{4 * L}"),
                    dtype=f"int32x{L}")
        return impl_vnni
    if k.form == "dot":  # 16 codes x 16 weights: vmull.s8 (0..7), vmlal.s8 (8..15), vpadal.s16 into 4 lanes
        @T.prim_func(s_tir=True)
        def impl_dot(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (16,), "int8", offset_factor=1)
            B = T.match_buffer(b, (16,), "int8", offset_factor=1)
            C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=DOT_TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:4], A[0:16], B[0:16])
                T.writes(C[0:4])
                va = operand(A.vload([0], "int8x16"))
                vb = operand(B.vload([0], "int8x16"))
                C[T.ramp(0, 1, 4)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadals"), C.vload([0], "int32x4"),
                    T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vmulls"),
                                            T.vectorlow(va, dtype="int8x8"), T.vectorlow(vb, dtype="int8x8"),
                                            dtype="int16x8")
                    + T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vmulls"),
                                              T.vectorhigh(va, dtype="int8x8"), T.vectorhigh(vb, dtype="int8x8"),
                                              dtype="int16x8"),
                    dtype="int32x4")

        @T.prim_func(s_tir=True)
        def impl_dot_pairs(a: T.handle, b: T.handle, c: T.handle) -> None:  # each half widened on its own
            A = T.match_buffer(a, (16,), "int8", offset_factor=1)
            B = T.match_buffer(b, (16,), "int8", offset_factor=1)
            C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=DOT_TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:4], A[0:16], B[0:16])
                T.writes(C[0:4])
                va = operand(A.vload([0], "int8x16"))
                vb = operand(B.vload([0], "int8x16"))
                C[T.ramp(0, 1, 4)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadals"),
                    T.call_llvm_pure_intrin(
                        T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadals"), C.vload([0], "int32x4"),
                        T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vmulls"),
                                                T.vectorlow(va, dtype="int8x8"), T.vectorlow(vb, dtype="int8x8"),
                                                dtype="int16x8"), dtype="int32x4"),
                    T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vmulls"),
                                            T.vectorhigh(va, dtype="int8x8"), T.vectorhigh(vb, dtype="int8x8"),
                                            dtype="int16x8"),
                    dtype="int32x4")
        return impl_dot_pairs if k.name.endswith("_pairs") else impl_dot
    # ARMv7 NEON: products of an s8 pair broadcast to 4 lanes against 4 channels x 2 codes, 2 per int16 lane
    # (vmull.s8, then vmlal.s8 for the second pair), pairwise-added into the int32 accumulators (vpadal.s16)
    if H == 1:
        @T.prim_func(s_tir=True)
        def impl_pairs(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (J,), "int8", offset_factor=1)
            B = T.match_buffer(b, (L, J), "int8", offset_factor=1)
            C = T.match_buffer(c, (L,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:L], A[0:J], B[0:L, 0:J])
                T.writes(C[0:L])
                a01 = T.meta_var(T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int8x2"), dtype="int16"), 4),
                                    dtype="int8x8"))
                prod = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vmulls"), a01,
                                               B.vload([0, 0], "int8x8"), dtype="int16x8")
                C[T.ramp(0, 1, 4)] = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadals"),
                                                             C.vload([0], "int32x4"), prod, dtype="int32x4")
        return impl_pairs

    @T.prim_func(s_tir=True)
    def impl_neon(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "int8", offset_factor=1)
        B = T.match_buffer(b, (2, 4, 2), "int8", offset_factor=1)
        C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:2, 0:4, 0:2])
            T.writes(C[0:4])
            a01 = T.meta_var(T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int8x2"), dtype="int16"), 4),
                                dtype="int8x8"))
            a23 = T.meta_var(T.reinterpret(T.broadcast(T.reinterpret(A.vload([2], "int8x2"), dtype="int16"), 4),
                                dtype="int8x8"))
            b = T.meta_var(B.vload([0, 0, 0], "int8x16"))  # one load; its halves: the two d registers of a q
            prod = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vmulls"), a01,
                                           T.vectorlow(b, dtype="int8x8"), dtype="int16x8") + \
                T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vmulls"), a23,
                                        T.vectorhigh(b, dtype="int8x8"), dtype="int16x8")
            C[T.ramp(0, 1, 4)] = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadals"),
                                                         C.vload([0], "int32x4"), prod, dtype="int32x4")
    return impl_neon


DEPTHWISE_NEON = "tcc_dw_neon_s16"  # C[8] += A[8] * B[8] on int16 codes: two vmlal.s16 (ARMv7)


def depthwise_intrin(target) -> str | None:
    """The TensorIntrin of a depthwise tap (8 channels) for a target, registered; None: LLVM's vectorizer. On
    ARMv7 LLVM hoisted the widened weights out of the pixel loop (int32, spilled) and multiplied 32-bit lanes;
    the intrinsic keeps the widening multiply-accumulate."""
    if not str(target.attrs.get("mtriple", "")).startswith("arm"):
        return None
    if DEPTHWISE_NEON not in _registered:
        from tvm.s_tir import TensorIntrin
        from tvm.script import tirx as T

        @T.prim_func(s_tir=True)
        def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (8,), "int16", offset_factor=1)
            B = T.match_buffer(b, (8,), "int16", offset_factor=1)
            C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:8], A[0:8], B[0:8])
                T.writes(C[0:8])
                for i in T.serial(8):
                    with T.sblock("update"):
                        vi = T.axis.remap("S", [i])
                        C[vi] = C[vi] + T.Cast("int32", A[vi]) * T.Cast("int32", B[vi])

        @T.prim_func(s_tir=True)
        def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (8,), "int16", offset_factor=1)
            B = T.match_buffer(b, (8,), "int16", offset_factor=1)
            C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:8], A[0:8], B[0:8])
                T.writes(C[0:8])
                a = T.meta_var(A.vload([0], "int16x8"))  # one q load each; the halves are its d registers
                b = T.meta_var(B.vload([0], "int16x8"))
                C[T.ramp(0, 1, 4)] = C.vload([0], "int32x4") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.arm.neon.vmulls"), T.vectorlow(a, dtype="int16x4"),
                    T.vectorlow(b, dtype="int16x4"), dtype="int32x4")
                C[T.ramp(4, 1, 4)] = C.vload([4], "int32x4") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.arm.neon.vmulls"), T.vectorhigh(a, dtype="int16x4"),
                    T.vectorhigh(b, dtype="int16x4"), dtype="int32x4")

        TensorIntrin.register(DEPTHWISE_NEON, desc, impl, override=True)
        _registered.add(DEPTHWISE_NEON)
    return DEPTHWISE_NEON


PARTIAL_SUM_NEON = "tcc_dot_neon_sum4"  # 4 channels' 4 partial lanes summed: 6 vpadd.i32


def partial_sum_intrin() -> str:
    """The TensorIntrin summing the dot form's partial lanes of 4 output channels into one vector (registered);
    LLVM's own reduction of a [4, 4] tile transposed it element by element (vtrn / vext / vorr)."""
    if PARTIAL_SUM_NEON not in _registered:
        from tvm.s_tir import TensorIntrin
        from tvm.script import tirx as T

        @T.prim_func(s_tir=True)
        def desc(p: T.handle, o: T.handle) -> None:
            P = T.match_buffer(p, (4, 4), "int32", offset_factor=1, scope=DOT_TILE_SCOPE)
            O = T.match_buffer(o, (4,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(P[0:4, 0:4])
                T.writes(O[0:4])
                for i in T.serial(4):
                    with T.sblock("sum"):
                        vi = T.axis.remap("S", [i])
                        O[vi] = P[vi, 0] + P[vi, 1] + P[vi, 2] + P[vi, 3]

        @T.prim_func(s_tir=True)
        def impl(p: T.handle, o: T.handle) -> None:
            P = T.match_buffer(p, (4, 4), "int32", offset_factor=1, scope=DOT_TILE_SCOPE)
            O = T.match_buffer(o, (4,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(P[0:4, 0:4])
                T.writes(O[0:4])
                p0 = T.meta_var(P.vload([0, 0], "int32x4"))
                p1 = T.meta_var(P.vload([1, 0], "int32x4"))
                p2 = T.meta_var(P.vload([2, 0], "int32x4"))
                p3 = T.meta_var(P.vload([3, 0], "int32x4"))
                O[T.ramp(0, 1, 2)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"),
                    T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"),
                                            T.vectorlow(p0, dtype="int32x2"), T.vectorhigh(p0, dtype="int32x2"),
                                            dtype="int32x2"),
                    T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"),
                                            T.vectorlow(p1, dtype="int32x2"), T.vectorhigh(p1, dtype="int32x2"),
                                            dtype="int32x2"), dtype="int32x2")
                O[T.ramp(2, 1, 2)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"),
                    T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"),
                                            T.vectorlow(p2, dtype="int32x2"), T.vectorhigh(p2, dtype="int32x2"),
                                            dtype="int32x2"),
                    T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"),
                                            T.vectorlow(p3, dtype="int32x2"), T.vectorhigh(p3, dtype="int32x2"),
                                            dtype="int32x2"), dtype="int32x2")

        TensorIntrin.register(PARTIAL_SUM_NEON, desc, impl, override=True)
        _registered.add(PARTIAL_SUM_NEON)
    return PARTIAL_SUM_NEON


_registered: set[str] = set()


def ensure_registered(k: DotKernel, values: bool = False) -> str:
    """Register the kernel's TensorIntrin (once per process); returns its name. values: the dot form's variant
    whose operands are values, for one-pixel tiles (odd widths): there LLVM keeps them in registers (FastNet:
    -1.3 M instructions and a workspace pair per row fewer), where on two-pixel tiles, with an operand shared by
    a pixel's channel vectors, it copies registers instead (DDSNet +45 M)."""
    name = f"{k.name}_values" if values else k.name
    if name not in _registered:
        from tvm.s_tir import TensorIntrin

        TensorIntrin.register(name, _desc(k), _impl(k, values), override=True)
        _registered.add(name)
    return name
