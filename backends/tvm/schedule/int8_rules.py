"""The INT8 rules: the blocks of tcc's own INT8 kernels (tcc.backends.tvm.int8.compute, named in
int8/kernels.py) tiled in registers and tensorized with the target's dot-product intrinsics: dense convs
(`Int8DotConv`), depthwise convs as int16 taps (`Int8Depthwise`), dot products (`Int8DepthwiseDot`) or int16
pairs of rows (`Int8DepthwisePairs`), and
the input's quantization (`QuantizeInput`).
"""

from __future__ import annotations

from ..int8 import microkernel
from ..int8.intrinsics import (
    depthwise_dot_intrin,
    depthwise_intrin,
    depthwise_madd_intrin,
    ensure_registered,
    gather_rows_intrin,
    interleave_pairs_intrin,
    interleave_rows_intrin,
    partial_sum_intrin,
)
from ..int8.kernels import (
    CONV_BLOCK,
    DEPTHWISE_BLOCK,
    DEPTHWISE_DOT_BLOCK,
    DEPTHWISE_MADD_BLOCK,
    DEPTHWISE_PAD_BLOCK,
    DEPTHWISE_PAIRS_BLOCK,
    DEPTHWISE_ROWS_BLOCK,
    DOT_TILE_SCOPE,
    FLAT_ATTR,
    KERNEL_ATTR,
    KERNELS,
    MICROKERNEL_ATTR,
    PAD_BLOCK,
    QUANTIZE_BLOCK,
    ROWS_PADS_ATTR,
    SUM_BLOCK,
    TILE_SCOPE,
    VECTORS_ATTR,
    depthwise_rows_kernel,
)
from ..isa import target_has
from .loops import (
    Rule,
    attempt,
    block_domain,
    crop_of,
    fuse_epilogue,
    is_aarch64,
    is_x86,
    loop_extent,
    pad_by_rows,
    parallelize,
    vectorize_spatial,
)
from .tiles import largest_divisor, neon_epilogue_lanes

# AVX-512 INT8 dot convs whose register tile is under half the kernel's: rows of pixels join it up to this many
# accumulators (FastNet's 64 -> 8 down conv at 63 x 63: 3 pixels x 1 vector, 174 -> 79 us; host INT8 FastNet -13%,
# DDSNet -6.5%, Zen 5, interleaved; 20 and 28 the same or worse)
X86_ROW_TILE_ACCUMULATORS = 24
# A one-pixel ARMv7 depthwise tile (FastNet's odd widths: 127, 63, 31, 15) has its taps unrolled: its 3 x 3 / 5 x 5
# depthwise convs executed 35% fewer instructions (the loop's compare, branch and address arithmetic per tap); a
# two-pixel tile unrolled executed more (DDSNet +9%: its weights and inputs no longer fit the registers). Three- to
# nine-pixel tiles of odd widths with the taps unrolled: 0.6-2.6% more in all (measured).
# INT8 depthwise tile: pixels x 2 vectors (ARMv7 executed 5% fewer instructions than 1 or 4; with a row's taps
# unrolled and the tie-free requantization, DDSNet 4 pixels 120.3 M against 2's 118.2 M)
DEPTHWISE_PIXELS = 2
# AArch64's 32 registers: 4 pixels (DDSNet aarch64 104.0 -> 101.2 M instructions, aarch64-dotprod 66.8 -> 64.1 M;
# 8 pixels 102.3 / 63.7 M; 4 pixels x 16 channels 100.8 / 65.4 M; measured); with all nine taps unrolled and the
# tie-free requantization, 8 pixels (aarch64 79.4 -> 78.3 M, aarch64-dotprod 46.4 -> 45.4 M, FastNet's 25.8 -> 25.6
# M; 2 pixels 48.0 M)
DEPTHWISE_PIXELS_A64 = 8
# The dot depthwise tile (Int8DepthwiseDot): output rows of a window x pixels x channels. AArch64: 4 `sdot` lanes
# of 4 (with 16-lane epilogues and the bias in the accumulators, DDSNet aarch64-dotprod 30.36 M instructions with
# 4 / J pixels, 30.48 M with 8 / J, 31.42 M with 2 / J; FastNet 19.58 / 19.66 / 19.84 M; with 4-lane epilogues 8 / J
# was best); x86: 2 zmm vectors (DDSNet host INT8 x 0.964 against int16 taps; 16 to 64 channels, 4 / J to 16 / J
# pixels within 1%, measured)
DEPTHWISE_DOT_PIXELS = {"aarch64": 4, "x86_64": 8}
DEPTHWISE_DOT_CHANNELS = {"aarch64": 16, "x86_64": 32}
# The pairs depthwise tile (Int8DepthwisePairs), by vector lanes: (pixels x the window's output rows, channels)
DEPTHWISE_PAIRS_TILE = {8: (4, 16), 16: (8, 32)}
# The int16 padded input of an ARM INT8 depthwise conv on fewer channels than this is written by rows (pad_by_rows),
# not pixel by pixel behind a bounds test: FastNet's 8-channel 3 x 3 at 63 x 63 took ~25 instructions a pixel to
# pad (executed instructions, FastNet: aarch64-dotprod 16.31 -> 15.98 M, aarch64 36.00 -> 35.75 M, arm-a7 50.36 ->
# 50.19 M); by rows on every channel count, DDSNet's wider ones executed more (aarch64 73.16 -> 75.12 M, arm-a7
# 90.85 -> 93.40 M)
DEPTHWISE_PAD_BY_ROWS_CHANNELS = 16


class Int8DotConv(Rule):
    """The dense INT8 conv of backends/tvm/int8/kernels.py (block `tcc_dot_conv`, its kernel in an annotation)
    with its epilogue (bias, requantization): a register tile of pixels x vectors of output channels (the
    kernel's `tile`, shrunk to divisors of the layer) accumulated over the whole reduction, each step one call of
    the kernel's TensorIntrin per (pixel, vector); the epilogue applied to the tile on its way out; tiles of
    pixels in parallel. The padded input (block `tcc_dot_pad`) is written once beforehand; in the flat form its
    buffer is laid out as rows of (x, channel), so that a step reads consecutive codes."""

    def schedule(self, sch, blocks, simd) -> bool:
        names = [sch.get(b).name_hint for b in blocks]
        if CONV_BLOCK not in names:
            return False
        conv = sch.get_sblock(CONV_BLOCK)
        annotations = sch.get(conv).annotations
        kernel = KERNELS[str(annotations[KERNEL_ATTR])]
        channels = int(annotations[FLAT_ATTR])
        intrin = ensure_registered(kernel)
        if MICROKERNEL_ATTR in annotations:
            return self._microkernel(sch, names, conv, microkernel.Tile.decode(annotations[MICROKERNEL_ATTR]))
        if kernel.form == "dot":
            return self._dot(sch, names, conv, kernel, intrin, int(annotations[VECTORS_ATTR]), simd)
        for name in names[: names.index(CONV_BLOCK)]:
            if name != PAD_BLOCK:
                return False
            pad = sch.get_sblock(PAD_BLOCK)
            if channels:
                sch.transform_layout(pad, ("write", 0), lambda n, y, x, c: (n, y, x * channels + c))
                sch.fuse(*sch.get_loops(pad)[-2:])
            vectorize_spatial(sch, pad, simd)
        n, y, x, co, *reduce = sch.get_loops(conv)
        pixels = largest_divisor(loop_extent(sch, x), kernel.tile[0])
        vectors = int(annotations[VECTORS_ATTR])
        rows = 1
        if is_x86(self.target) and simd.lanes >= 16 and 2 * pixels * vectors <= kernel.tile[0] * kernel.tile[1]:
            # a narrow tile (an odd width's few pixels, few output channels) is latency-bound on its few
            # accumulator chains: pixels of several rows join it (AVX-512 only, where measured)
            rows = largest_divisor(loop_extent(sch, y), max(1, X86_ROW_TILE_ACCUMULATORS // (pixels * vectors)))
        y_out, *y_in = sch.split(y, [None, rows]) if rows > 1 else [y]
        x_out, x_in = sch.split(x, [None, pixels])
        c_out, c_mid, c_in = sch.split(co, [None, vectors, kernel.lanes])
        step = reduce[-2:] if kernel.pairs > 1 else reduce[-1:]  # (pairs,) group: inside the intrinsic
        sch.reorder(n, y_out, x_out, c_out, *reduce[: -len(step)], *y_in, x_in, c_mid, *step[:-1], c_in, step[-1])
        lanes = kernel.lanes if is_x86(self.target) else neon_epilogue_lanes(vectors * kernel.lanes)
        fuse_epilogue(sch, conv, names, names.index(CONV_BLOCK), c_out, unroll=True, lanes=lanes, scope=TILE_SCOPE)
        parallelize(sch, [n, y_out])
        init = sch.decompose_reduction(conv, reduce[0])
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(step[0] if kernel.pairs > 1 else c_in, intrin)
        for loop in (*y_in, x_in):
            sch.unroll(loop)
        sch.unroll(c_mid)
        return True

    @staticmethod
    def _microkernel(sch, names, conv, tile: microkernel.Tile) -> bool:
        """An ARM micro-kernel's tile (int8/microkernel.py): pixels x channels summed over the whole reduction by
        one call, its sums in registers; the epilogue applied to them vector by vector (one vector's requantization
        parameters at a time), through the crop where the conv is computed wider than its output (CROP_BLOCK: the
        crop's stores past the width skipped, the tiles whole)."""
        at = names.index(CONV_BLOCK)
        crop = crop_of(sch, conv, names, at)
        domain = block_domain(sch, sch.get_sblock(crop) if crop else conv)[:4]
        epilogue = [m for m in names[at + 1 :] if m != crop and block_domain(sch, sch.get_sblock(m)) == domain]
        if at or not epilogue or len(epilogue) + (crop is not None) != len(names) - 1:
            return False
        n, y, x, co, *_ = sch.get_loops(conv)
        x_out, x_in = sch.split(x, [None, tile.pixels])
        c_out, c_in = sch.split(co, [None, tile.channels])
        sch.reorder(n, y, x_out, c_out, x_in, c_in)
        lanes = neon_epilogue_lanes(tile.channels)
        fuse_epilogue(sch, conv, names, at, c_out, unroll=True, lanes=lanes, scope=TILE_SCOPE, vectors_outer=True)
        parallelize(sch, [n, y])
        init = sch.decompose_reduction(conv, x_in)
        sch.unroll(sch.get_loops(init)[-2])
        sch.vectorize(sch.get_loops(init)[-1])
        # a one-pixel tile's block has no pixel iterator: its loop of extent 1 is not part of the intrinsic
        sch.tensorize(x_in if tile.pixels > 1 else c_in, microkernel.tile_intrin(tile))
        sch.annotate(c_out, microkernel.IMPORT_PRAGMA, microkernel.llvm_ir(tile))
        return True

    @staticmethod
    def _dot(sch, names, conv, kernel, intrin, tile_channels, simd) -> bool:
        """The dot form: a tile of pixels x output channels, each (pixel, channel) 4 partial int32 lanes in
        registers over the whole reduction, one intrinsic call per 16 codes; then the lanes summed and the
        epilogue applied, 4 channels per vector."""
        at = names.index(CONV_BLOCK)
        if names[:at] not in ([], [PAD_BLOCK]) or names[at + 1 : at + 2] != [SUM_BLOCK] or tile_channels % 4:
            return False
        if names[:at]:
            vectorize_spatial(sch, sch.get_sblock(PAD_BLOCK), simd)
        total = sch.get_sblock(SUM_BLOCK)
        domain = block_domain(sch, total)
        epilogue = [m for m in names[at + 2 :] if block_domain(sch, sch.get_sblock(m)) == domain]
        if not epilogue or len(epilogue) != len(names) - at - 2:
            return False
        for name in epilogue[:-1]:  # one block: the chain bias / requantization / casts
            sch.compute_inline(sch.get_sblock(name))
        last = sch.get_sblock(epilogue[-1])
        n, y, x, co = sch.get_loops(last)
        pixels = largest_divisor(loop_extent(sch, x), kernel.tile[0])
        if pixels == 1:  # odd widths: operands as values (ensure_registered)
            intrin = ensure_registered(kernel, values=True)
        x_out, x_in = sch.split(x, [None, pixels])
        c_out, c_in = sch.split(co, [None, tile_channels])
        sch.reorder(n, y, x_out, c_out, x_in, c_in)
        parallelize(sch, [n, y])
        # per tile: the partial sums (registers), their sum by 4 channels (registers), the epilogue by vectors
        sch.compute_at(total, c_out, preserve_unit_loops=True)
        sch.set_scope(total, 0, TILE_SCOPE)
        sch.compute_at(conv, c_out, preserve_unit_loops=True)
        sch.set_scope(conv, 0, DOT_TILE_SCOPE)
        p_x, p_c, lane, *reduce = sch.get_loops(conv)[-8:]
        sch.reorder(*reduce[:-2], p_x, p_c, lane, *reduce[-2:])
        init = sch.decompose_reduction(conv, reduce[0])
        for loop in sch.get_loops(init)[-3:-1]:
            sch.unroll(loop)
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(lane, intrin)
        sch.unroll(p_x)
        sch.unroll(p_c)
        s_x, s_c = sch.get_loops(total)[-2:]
        s_c, s_vec = sch.split(s_c, [None, 4])
        sch.tensorize(s_vec, partial_sum_intrin(kernel.arch))
        sch.unroll(s_x)
        sch.unroll(s_c)
        c_in, vec = sch.split(c_in, [None, neon_epilogue_lanes(tile_channels)])
        sch.reorder(c_in, x_in, vec)  # vector by vector: one vector's requantization parameters at a time
        sch.unroll(c_in)
        sch.unroll(x_in)
        sch.vectorize(vec)
        return True


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
            # int16 pass, 2 or 6 pixels a tile, measured 2-4% slower in all on FastNet, even on DDSNet
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
            # are loaded once per row, not once per pixel (FastNet's stem BN: 8.0 M -> 7.0 M instructions;
            # DDSNet's two-pixel tiles: 0.5% more)
            sch.reorder(n, y, c_out, x_out, *taps, x_in, c_in)
            at = x_out
        else:
            sch.reorder(n, y, x_out, c_out, *taps, x_in, c_in)
            at = c_out
        fuse_epilogue(sch, conv, names, 1, at, unroll=True, lanes=neon_epilogue_lanes(width), scope=TILE_SCOPE)
        parallelize(sch, [n, y])
        init = sch.decompose_reduction(conv, taps[0])
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(c_in, intrin)
        sch.unroll(x_in)
        for tap in taps if one_pixel or is_aarch64(self.target) else taps[-1:]:
            sch.unroll(tap)
        return True


class DirectRowsUnscheduled(Exception):
    """A depthwise conv whose windows read the input itself (compute.depthwise_rows_primfunc, direct) that
    Int8DepthwiseDot could not schedule: those windows read past the input's edges, which only their interleave's
    masked loads (intrinsics.gather_rows_intrin) make right, so no generic schedule may take them instead (Rule
    falls back to one on TVM's RuntimeError and ValueError)."""


class Int8DepthwiseDot(Rule):
    """The depthwise conv on AArch64's `sdot` or AVX-512's `vpdpbusd` (compute.depthwise_rows_primfunc): a window's
    interleaved rows written just before the outputs that read them (x86: read straight from the input; AArch64:
    from its padded copy); the conv in register tiles of the window's output rows x pixels x channels (AArch64: 4
    `sdot` lanes of 4 channels; x86: zmm vectors of 16), accumulated over the kernel's columns, the epilogue fused
    into the write-back."""

    def schedule(self, sch, blocks, simd) -> bool:
        names = [sch.get(b).name_hint for b in blocks]
        if names[:2] == [DEPTHWISE_ROWS_BLOCK, DEPTHWISE_DOT_BLOCK]:
            try:
                return self._schedule(sch, names, 1, simd)
            except (RuntimeError, ValueError) as err:
                raise DirectRowsUnscheduled(f"{names[1]}: {err}") from err
        if names[:3] != [DEPTHWISE_PAD_BLOCK, DEPTHWISE_ROWS_BLOCK, DEPTHWISE_DOT_BLOCK]:
            return False
        # the padded copy: 16 codes a vector, its loops kept apart (fused, each vector's bounds test recomputed the
        # pixel from the fused index: two divisions)
        pad = sch.get_sblock(DEPTHWISE_PAD_BLOCK)
        n, x, *_, c = sch.get_loops(pad)
        sch.vectorize(sch.split(c, [None, 16])[1])
        parallelize(sch, [n, x])
        return self._schedule(sch, names, 2, simd)

    def _schedule(self, sch, names, conv_at, simd) -> bool:
        """The rows and the conv, the conv's block at names[conv_at] (1: the windows read the input itself)."""
        rows = sch.get_sblock(DEPTHWISE_ROWS_BLOCK)
        arch = "x86_64" if is_x86(self.target) else "aarch64"
        lanes = depthwise_rows_kernel(arch).lanes
        channels = block_domain(sch, rows)[3]
        tile = next(w for w in (DEPTHWISE_DOT_CHANNELS[arch], 16) if channels % w == 0)  # 16k (lowering)
        window_tiles(
            sch,
            names,
            conv_at,
            rows,
            DEPTHWISE_DOT_BLOCK,
            lanes,
            tile,
            DEPTHWISE_DOT_PIXELS[arch],
            simd.lanes if arch == "x86_64" else neon_epilogue_lanes(tile),
            depthwise_dot_intrin(arch),
        )
        window, _, c_rows, _ = sch.get_loops(rows)[-4:]  # (window, x, c, r) under the fused loop
        group = sch.split(c_rows, [None, 16])[1]
        if conv_at == 1:
            source = sch.get(rows).reads[0].source
            image = tuple(int(d) for d in source.shape[1:])
            pads = tuple(int(p) for p in str(sch.get(rows).annotations[ROWS_PADS_ATTR]).split(","))
            width, channels = (int(d) for d in sch.get(rows).writes[0].source.shape[2:4])
            intrin, ir = gather_rows_intrin(
                image, pads, (width, channels), str(source.dtype), target_has(self.target, "avx512vbmi")
            )
            sch.tensorize(group, intrin)
            sch.annotate(window, microkernel.IMPORT_PRAGMA, ir)
        else:
            sch.tensorize(group, interleave_rows_intrin(str(sch.get(rows).writes[0].source.dtype)))
        return True


def window_tiles(sch, names, conv_at, rows, conv_name, lanes, tile, pixels, epilogue_lanes, step) -> None:  # noqa: PLR0913
    """The depthwise conv of a window kernel (`names[conv_at]`, block `conv_name`: output [n, y, x, c], reduction
    over the kernel's columns then the rows of a lane: (kx, r) or (kx, pair, r)) in register tiles of the window's
    output rows x pixels (`pixels` / rows a window) x `tile` channels in vectors of `lanes`, accumulated over the
    columns and pairs, its step tensorized with the intrinsic `step`, the epilogue fused into the write-back in
    vectors of `epilogue_lanes`; the window's rows (block `rows`) computed just before the outputs that read them
    (the whole buffer is twice the input: DDSNet's 56 x 56 x 160, 1 MB, past a Cortex-A55's L2), their
    interleave left to the caller."""
    conv = sch.get_sblock(conv_name)
    n, y, x, c, kx, *inner = sch.get_loops(conv)
    per_window = loop_extent(sch, y) // block_domain(sch, rows)[1]
    t, j = sch.split(y, [None, per_window])
    c_out, c_vector, c_lane = sch.split(c, [None, tile // lanes, lanes])
    x_out, x_in = sch.split(x, [None, largest_divisor(loop_extent(sch, x), max(1, pixels // per_window))])
    sch.reorder(n, t, x_out, c_out, kx, *inner[:-1], j, x_in, c_vector, c_lane, inner[-1])
    fuse_epilogue(sch, conv, names, conv_at, c_out, unroll=True, lanes=epilogue_lanes, scope=TILE_SCOPE)
    rows_of = sch.fuse(n, t)
    sch.compute_at(rows, rows_of)
    if loop_extent(sch, rows_of) > 1:
        sch.parallel(rows_of)
    init = sch.decompose_reduction(conv, kx)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(c_lane, step)
    for loop in (kx, *inner[:-1], j, x_in, c_vector):
        sch.unroll(loop)


class Int8DepthwisePairs(Rule):
    """The depthwise conv on x86's `vpmaddwd` (compute.depthwise_pairs_primfunc): its padded copy written once
    beforehand; a window's int16 pairs of rows written just before the outputs that read them; the conv in register
    tiles of the window's output rows x pixels x channels (ymm or zmm vectors), accumulated over the kernel's columns
    and pairs, the epilogue fused into the write-back."""

    def schedule(self, sch, blocks, simd) -> bool:
        names = [sch.get(b).name_hint for b in blocks]
        if names[:3] != [DEPTHWISE_PAD_BLOCK, DEPTHWISE_PAIRS_BLOCK, DEPTHWISE_MADD_BLOCK]:
            return False
        rows = sch.get_sblock(DEPTHWISE_PAIRS_BLOCK)
        channels = block_domain(sch, rows)[4]
        lanes = 16 if target_has(self.target, "avx512bw") and channels % 16 == 0 else 8
        if channels % lanes:
            return False
        pad = sch.get_sblock(DEPTHWISE_PAD_BLOCK)
        n, x, *_, c = sch.get_loops(pad)
        sch.vectorize(sch.split(c, [None, next(v for v in (64, 32, 16, 8) if channels % v == 0)])[1])
        parallelize(sch, [n, x])
        pixels, tile = DEPTHWISE_PAIRS_TILE[lanes]
        tile = lanes * largest_divisor(channels // lanes, tile // lanes)
        window_tiles(
            sch, names, 2, rows, DEPTHWISE_MADD_BLOCK, lanes, tile, pixels, simd.lanes, depthwise_madd_intrin(lanes)
        )
        c_rows = sch.get_loops(rows)[-2]  # (window, x, pair, c, r) under the fused loop
        group = sch.split(c_rows, [None, lanes])[1]
        sch.tensorize(group, interleave_pairs_intrin(str(sch.get(pad).writes[0].source.dtype), lanes))
        return True


class QuantizeInput(Rule):
    """The graph input's quantization (int8.tir.quantize_input_primfunc, block `quantize`) with the NCHW -> NHWC
    transpose and the casts fused behind it: vectorized along the width, where the float input is contiguous,
    by 8 float vectors on ARMv7 (FastNet: 0.3% fewer instructions than 4, 16 or 2), by one on x86; the few
    channels (3 for RGB) unrolled; the codes stored with a stride of the channels. (Injective's vectors along the
    channels are 3 lanes wide and, on ARMv7, divide lane by lane.) AArch64 leaves the width's loop to LLVM's loop
    vectorizer, which stores the channels' codes interleaved (`st3`: 48 codes an instruction, where TVM's vectors
    stored them byte by byte; FastNet aarch64-dotprod 618.8 -> 358.7 K instructions, bit-exact; ARMv7's vectorizer
    left it scalar: arm-a7 FastNet 50.36 -> 54.82 M)."""

    def schedule(self, sch, blocks, simd) -> bool:
        names = [sch.get(b).name_hint for b in blocks]
        if QUANTIZE_BLOCK not in names:
            return False
        for b in blocks[:-1]:
            sch.compute_inline(b)
        last = blocks[-1]
        loops = sch.get_loops(last)
        few = len(loops) == 4 and loop_extent(sch, loops[-1]) < simd.lanes  # NHWC with fewer channels than a vector
        if few and is_aarch64(self.target):
            sch.unroll(loops[-1])
            parallelize(sch, loops[:2])
            return True
        width = None  # vectors along the width, when one divides it
        if few:
            # x86: one vector (FastNet at 256: 128-lane vectors took 46 us, host INT8 -4.3% with 16, Zen 5)
            widths = (simd.lanes,) if is_x86(self.target) else (8 * simd.lanes, 4 * simd.lanes, simd.lanes)
            width = next((w for w in widths if loop_extent(sch, loops[2]) % w == 0), None)
        if width is None:
            vectorize_spatial(sch, last, simd)
            return True
        n, y, x, c = loops
        x_out, x_in = sch.split(x, [None, width])
        sch.reorder(n, y, x_out, c, x_in)
        sch.vectorize(x_in)
        sch.unroll(c)
        parallelize(sch, [n, y])
        return True
