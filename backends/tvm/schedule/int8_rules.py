"""The INT8 rules of the dot-product kernels and of the input: the dense convs of tcc's dot-product kernels
(tcc.backends.tvm.int8.compute, named in int8/kernels.py) tiled in registers and tensorized with the kernel's step
(`Int8DotConv`: the dot conv, digits, window digits and linear-rows variants of int8/variants/), and the input's
quantization (`QuantizeInput`). The depthwise variants' rules are their own modules' (int8/variants/).
"""

from __future__ import annotations

from ..int8 import microkernel
from ..int8.intrinsics import ensure_registered, partial_sum_intrin
from ..int8.kernels import (
    CONV_BLOCK,
    DOT_TILE_SCOPE,
    FLAT_ATTR,
    KERNEL_ATTR,
    KERNELS,
    MICROKERNEL_ATTR,
    PAD_BLOCK,
    QUANTIZE_BLOCK,
    SUM_BLOCK,
    TILE_SCOPE,
    VECTORS_ATTR,
)
from .loops import (
    Rule,
    WriteBack,
    block_domain,
    crop_of,
    fuse_epilogue,
    is_aarch64,
    is_x86,
    loop_extent,
    parallelize,
    vectorize_spatial,
)
from .tiles import largest_divisor, neon_epilogue_lanes

# AVX-512 INT8 dot convs whose register tile is under half the kernel's: rows of pixels join it up to this many
# accumulators (a narrow tile is latency-bound on its few accumulator chains; 24 was best measured:
# docs/notes/x86-int8-zen5.md)
X86_ROW_TILE_ACCUMULATORS = 24


# ARMv7's micro-kernel tiles are 4 channels wide (its 16 q registers); up to this many calls fill one write-back,
# whose requantization then runs on 16-lane vectors, its codes narrowed and stored 16 at a time: FastNet arm-a7 INT8
# 110.6 M -> 104.7 M estimated cycles, DDSNet 186.8 M -> 180.2 M (2 calls: 109.4 M; 8: 104.2 M and 184.6 M;
# docs/notes/arm-cycle-estimate.md, part 7)
MICROKERNEL_CALLS = {"armv7": 4}


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
        fuse_epilogue(
            sch, conv, names, names.index(CONV_BLOCK), c_out, WriteBack(unroll=True, lanes=lanes, scope=TILE_SCOPE)
        )
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
        one call (ARMv7: by MICROKERNEL_CALLS calls, each on 4 of the tile's channels), its sums in registers; the
        epilogue applied to them vector by vector (one vector's requantization parameters at a time), through the
        crop where the conv is computed wider than its output (CROP_BLOCK: the crop's stores past the width
        skipped, the tiles whole)."""
        at = names.index(CONV_BLOCK)
        crop = crop_of(sch, conv, names, at)
        domain = block_domain(sch, sch.get_sblock(crop) if crop else conv)[:4]
        epilogue = [m for m in names[at + 1 :] if m != crop and block_domain(sch, sch.get_sblock(m)) == domain]
        if at or not epilogue or len(epilogue) + (crop is not None) != len(names) - 1:
            return False
        n, y, x, co, *_ = sch.get_loops(conv)
        x_out, x_in = sch.split(x, [None, tile.pixels])
        calls = largest_divisor(loop_extent(sch, co) // tile.channels, MICROKERNEL_CALLS.get(tile.arch, 1))
        c_out, c_mid, c_in = sch.split(co, [None, calls, tile.channels])
        sch.reorder(n, y, x_out, c_out, c_mid, x_in, c_in)
        lanes = neon_epilogue_lanes(tile.channels * calls)
        fuse_epilogue(sch, conv, names, at, c_out, WriteBack(True, lanes, TILE_SCOPE, vectors_outer=True))
        parallelize(sch, [n, y])
        init = sch.decompose_reduction(conv, x_in)
        sch.unroll(sch.get_loops(init)[-2])
        sch.vectorize(sch.get_loops(init)[-1])
        # a one-pixel tile's block has no pixel iterator: its loop of extent 1 is not part of the intrinsic
        sch.tensorize(x_in if tile.pixels > 1 else c_in, microkernel.tile_intrin(tile))
        sch.unroll(c_mid)
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
            # x86: one vector (wider vectors were slower: docs/notes/x86-int8-zen5.md)
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
