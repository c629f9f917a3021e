"""The float rules: `WindowReduction` (convs, pools, dense layers as register-blocked micro-kernels),
`RowReduction` (a reduction along each row: softmax, layer norm) and `Injective` (what is left).
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import tirx

from .loops import (
    Rule,
    WriteBack,
    attempt,
    block_domain,
    crop_of,
    fuse_epilogue,
    is_reduction,
    is_x86,
    loop_extent,
    pad_by_rows,
    parallelize,
    reads_var,
    unroll_short_reduction,
    vectorize_spatial,
)
from .tiles import (
    INLINE_PADDING_MAX_WORK,
    channels_per_tile,
    largest_divisor,
    pixel_limit,
    streaming_simd,
    x86_register_tile,
)

# x86 only: the innermost reduction loops of at most this many steps in all are unrolled (a 3 x 3 depthwise conv's
# or pool's 9 taps, the stem's 3 input channels; 21, the stem's 7 x 3, was slower: docs/notes/host-fp32-vs-ort.md).
# ARM keeps its loops: its FP32 instruction counts are a reference.
X86_UNROLLED_TAPS = 9
# x86 float max pools: a tile of one pixel x up to this many vectors of channels, not X pixels x 2 vectors (faster on
# DDSNet's 3 x 3 / s2 max pool: docs/notes/host-fp32-vs-ort.md)
X86_POOL_VECTORS = 8


def _broadcasts(sch, red) -> bool:
    """Whether the reduction `red` reads a value that is the same for all its innermost outputs (a dense conv's
    input pixel, a matmul's row element: broadcast against a vector of weights), unlike a depthwise conv or a
    pool, which load a new vector of inputs for each vector of outputs."""
    block = sch.get(red)
    inner = block.iter_vars[len(block.writes[0].region) - 1].var
    out = block.writes[0].source
    return any(not r.source.same_as(out) and not reads_var(r, inner) for r in block.reads)


@dataclass(frozen=True)
class _Window:
    """What WindowReduction reads off its reduction before it schedules: the block and the blocks' names (its place
    among them), its spatial and reduction loops, the operations per output (`work`), whether it is float32,
    broadcasts one input against a vector of weights (a dense conv), is cropped after (CROP_BLOCK), and a float
    max pool's window on x86 (its own tile)."""

    red: object
    names: list
    red_at: int
    spatial: list
    reduce: list
    work: int
    floats: bool
    broadcast: bool
    cropped: bool
    max_pool: bool


@dataclass(frozen=True)
class _Tile:
    """WindowReduction's register tile: `f` channels (in vectors of `vector` lanes where several are unrolled, 0: one
    vector type) x `x` pixels (None: no pixel loop to tile), and whether it is a max pool's one-pixel tile."""

    f: int
    x: int | None
    vector: int
    pool_tile: bool


def _window(sch, blocks) -> _Window | None:
    """The one reduction of `blocks` whose output index is its spatial iterators in order, read off; None: not one."""
    reductions = [b for b in blocks if is_reduction(sch, b)]
    if len(reductions) != 1:
        return None
    red = reductions[0]
    loops = sch.get_loops(red)
    ivs = sch.get(red).iter_vars
    kinds = [iv.iter_type == tirx.IterVar.CommReduce for iv in ivs]
    n_spatial = kinds.index(True)
    if len(loops) != len(ivs) or any(not k for k in kinds[n_spatial:]) or n_spatial == 0:
        return None
    update = sch.get(red)
    if len(update.writes[0].region) != n_spatial or any(
        not r.min.same_as(iv.var) for r, iv in zip(update.writes[0].region, ivs)
    ):
        return None
    names = [sch.get(b).name_hint for b in blocks]
    red_at = names.index(update.name_hint)
    work = 1  # multiply-adds (or max / add) per output element
    for loop in loops[n_spatial:]:
        work *= loop_extent(sch, loop)
    floats = update.writes[0].source.dtype == "float32"  # INT8 modules' pools keep their tiles
    max_pool = work <= X86_UNROLLED_TAPS and isinstance(update.body.value, tirx.Max) and floats
    return _Window(
        red,
        names,
        red_at,
        loops[:n_spatial],
        loops[n_spatial:],
        work,
        floats,
        _broadcasts(sch, red),
        crop_of(sch, red, names, red_at) is not None,
        max_pool,
    )


class WindowReduction(Rule):
    """One reduction block S..S R..R whose output index is its spatial iterators in order (the innermost one
    contiguous: channels in NHWC, the output features of a dense layer), with injective producers (padding)
    and consumers (bias, activation, the average's division)."""

    def schedule(self, sch, blocks, simd) -> bool:
        w = _window(sch, blocks)
        if w is None:
            return False
        avx512 = is_x86(self.target) and simd.lanes >= 16
        simd = streaming_simd(w.work, simd, w.floats and not w.broadcast)
        if not self._producers(sch, blocks[: w.red_at], w, simd):
            return False
        tile = self._tile(sch, w, simd)
        channels = w.spatial[-1]
        c_out, c_in = sch.split(channels, [None, tile.f])
        if tile.x is not None:
            x_out, x_in = sch.split(w.spatial[-2], [None, tile.x])
            outer = w.spatial[:-2]
            sch.reorder(*outer, x_out, c_out, *w.reduce, x_in, c_in)
            sch.unroll(x_in)
        else:
            outer = w.spatial[:-1]
            sch.reorder(*outer, c_out, *w.reduce, c_in)
        if tile.vector and tile.f > tile.vector:
            c_vectors, c_in = sch.split(c_in, [None, tile.vector])
            sch.unroll(c_vectors)
        sch.vectorize(c_in)
        if is_x86(self.target):
            unroll_short_reduction(sch, w.reduce, X86_UNROLLED_TAPS)
        # AVX-512, a light float reduction's tile of pixels (a depthwise conv, an average pool; a max pool's tile is
        # one pixel): its write-back unrolled as well, so that the tile stays in registers (its loop over pixels
        # kept it on the stack: docs/notes/x86-int8-zen4.md); AVX2 keeps its write-back until measured there
        light_tile = avx512 and w.floats and not w.broadcast and tile.x is not None and not tile.pool_tile
        unroll = tile.f > tile.vector > 0 or (light_tile and not tile.vector)
        done = fuse_epilogue(sch, w.red, w.names, w.red_at, c_out, WriteBack(unroll=unroll, lanes=tile.vector))
        parallelize(sch, outer)
        init = sch.decompose_reduction(w.red, w.reduce[0])
        sch.vectorize(sch.get_loops(init)[-1])
        for name in w.names[w.red_at + 1 :]:  # consumers that could not be fused into the write-back
            if name in done:
                attempt(lambda name=name: vectorize_spatial(sch, sch.get_sblock(name), simd))
        return True

    def _producers(self, sch, before, w: _Window, simd) -> bool:
        """The reduction's producers (padding), each inlined or written as a pass of its own; False: one is a
        reduction. A plain copy is inlined, and so is real padding in front of a light reduction (depthwise conv,
        pooling: ~9 operations per output), where a separate pass over the input cost more than the reduction; in
        front of a heavy one (the 7 x 7 x 3 stem) it stays a pass of its own (x86: by rows, pad_by_rows), as in front
        of a cropped one, whose tiles would otherwise test the bounds of every input they read (measured:
        docs/notes/host-fp32-vs-ort.md)."""
        for b in before:
            if is_reduction(sch, b):
                return False
            if "if_then_else" in str(sch.get(b).body) and (w.work > INLINE_PADDING_MAX_WORK or w.cropped):
                if not (is_x86(self.target) and attempt(lambda b=b: pad_by_rows(sch, b, simd))):
                    vectorize_spatial(sch, b, simd)
            else:
                sch.compute_inline(b)
        return True

    def _tile(self, sch, w: _Window, simd) -> _Tile:
        """The register tile: channels_per_tile's channels (integer reductions too: int32 vectors of odd lanes ran
        4x slower, docs/notes/host-int8-requantization.md), x86_register_tile's on AVX-512 float convs, a float max
        pool's one pixel x whole vectors on x86, else as many pixels as the accumulators allow."""
        x86 = is_x86(self.target)
        nc = loop_extent(sch, w.spatial[-1])
        f = channels_per_tile(nc, simd)
        pool_f = None
        if x86 and w.max_pool:  # a float max pool's window: one pixel x as many whole vectors of channels as fit
            vectors = range(min(X86_POOL_VECTORS, simd.accumulators), 0, -1)
            pool_f = next((v * simd.lanes for v in vectors if nc % (v * simd.lanes) == 0), None)
        pool_tile, f = pool_f is not None, pool_f or f
        tiled = len(w.spatial) >= 2 and loop_extent(sch, w.spatial[-2]) > 1
        if not tiled:
            return _Tile(f, None, 0, pool_tile)
        width = loop_extent(sch, w.spatial[-2])
        # AVX-512 only: measured there; AVX2's tiles stay as they were until measured on that class
        heavy = w.work > INLINE_PADDING_MAX_WORK or w.broadcast
        wide = x86 and simd.lanes >= 16 and w.floats and heavy and not pool_tile
        register = x86_register_tile(nc, width, w.work, simd) if wide else None
        if register is not None:
            f, x = register
            # one vector of a tile of several (their loop unrolled): LLVM splits a wider vector type badly (48
            # floats, three zmm: docs/notes/avx512-host-fp32.md)
            return _Tile(f, x, next(v for v in (simd.lanes, simd.lanes // 2, simd.lanes // 4) if f % v == 0), False)
        limit = pixel_limit(f, simd)
        x = 1 if pool_tile else largest_divisor(width, limit)
        if x86 and not pool_tile and 2 * x < limit:
            # a width with no divisor near the tile (FastNet's 127, 63, 31): a full tile whose last one runs past
            # the row, predicated, not one-pixel tiles (docs/notes/avx512-host-fp32.md); ARM keeps exact tiles (its
            # counts are references)
            x = limit
        return _Tile(f, x, 0, pool_tile)


def _along_rows(sch, block, n: int) -> bool:
    """Whether the reduction `block` sums (or maximizes) one axis of extent `n` that is the last, contiguous axis
    of what it reads along it: a layer norm's mean and variance, a softmax's maximum and sum."""
    b = sch.get(block)
    reduce = [iv for iv in b.iter_vars if iv.iter_type == tirx.IterVar.CommReduce]
    if len(reduce) != 1 or int(reduce[0].dom.extent) != n or b.writes[0].source.dtype != "float32":
        return False
    var, out = reduce[0].var, b.writes[0].source
    reads = [r for r in b.reads if not r.source.same_as(out)]
    along = [r for r in reads if r.region[-1].min.same_as(var)]
    # the rest are the row's own values (a variance reads the mean): not indexed by the reduced axis at all
    return bool(along) and not any(reads_var(r, var) for r in reads if r not in along)


class RowReduction(Rule):
    """Float functions whose reductions run along the last, contiguous axis, and whose result is elementwise over
    the rows they reduce: layer norm (a mean, a variance, the normalization), softmax (tcc's own, softmax.py: the
    maximum, the exponentials, their sum, times its reciprocal). One row at a time, rows in parallel: each reduction
    as a vector of partial results (rfactor by the vector width; the lanes combined at the end of the row), the
    per-row steps as scalars, the elementwise steps vectorized, a tensor read by two steps (the exponentials) in a
    row-sized buffer. x86 only (ARM's FP32 instruction counts stay references). Without it a mean over 64 channels
    ran as scalar sums of one element a step (WindowReduction tiles output channels: a mean has one).
    MobileViT-XXS, one thread, AVX-512 EPYC: its first attention softmax (4 x 4 x 256 rows of 256) 1.04 ms ->
    0.33 ms a call, a layer norm's mean and centring (4 x 256 rows of 64) 24 -> 4.4 us."""

    def schedule(self, sch, blocks, simd) -> bool:
        if not is_x86(self.target) or len(blocks) < 2 or is_reduction(sch, blocks[-1]):
            return False
        last = blocks[-1]
        full = block_domain(sch, last)
        if len(full) < 2:
            return False
        n, rows = full[-1], full[:-1]
        reductions = [b for b in blocks if is_reduction(sch, b)]
        if not reductions or not all(_along_rows(sch, r, n) for r in reductions):
            return False
        if any(
            block_domain(sch, b)[: len(sch.get(b).writes[0].region)] not in (full, rows, rows + [1]) for b in blocks
        ):
            return False
        for b in reversed(blocks[:-1]):  # elementwise steps over the whole tensor with one reader: into it
            if not is_reduction(sch, b) and block_domain(sch, b) == full and len(sch.get_consumers(b)) == 1:
                attempt(lambda b=b: sch.compute_inline(b))
        # at least two vectors a row (one vector: its partials' loop vanishes and LLVM's storage pass fails)
        lanes = next((w for w in (simd.lanes, simd.lanes // 2, 4) if n % w == 0 and n >= 2 * w), None)
        partials = []
        if lanes is not None:
            for reduction in reductions:
                sch.split(sch.get_loops(reduction)[-1], [None, lanes])
                partials.append(
                    sch.rfactor(sch.get_loops(reduction)[-1], factor_axis=len(sch.get(reduction).writes[0].region))
                )
        row = sch.fuse(*sch.get_loops(last)[:-1])
        if lanes is not None:
            sch.vectorize(sch.split(sch.get_loops(last)[-1], [None, lanes])[1])
        rest = [b for b in sch.get_child_blocks(sch.get_sblock("root")) if not sch.get(b).same_as(sch.get(last))]
        for b in reversed(rest):
            sch.compute_at(b, row)
        sch.parallel(row)
        if lanes is None:
            return True
        for partial in partials:  # its lanes outside, the row's vectors inside: one vector of partial results
            sch.vectorize([loop for loop in sch.get_loops(partial)[1:-1] if loop_extent(sch, loop) == lanes][-1])
        for b in rest:
            if not is_reduction(sch, b) and block_domain(sch, b) == full:  # a row buffer (the exponentials)
                sch.vectorize(sch.split(sch.get_loops(b)[-1], [None, lanes])[1])
        return True


class Injective(Rule):
    """Only spatial blocks (concat, transpose, reshape, pad, elementwise): producers inlined into the last
    block where possible, then vectorized along the innermost axis."""

    def schedule(self, sch, blocks, simd) -> bool:
        if any(is_reduction(sch, b) for b in blocks):
            return False
        for b in blocks[:-1]:
            attempt(lambda b=b: sch.compute_inline(b))
        for b in sch.get_child_blocks(sch.get_sblock("root")):
            vectorize_spatial(sch, b, simd)
        return True
