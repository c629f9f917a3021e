"""Default CPU schedules for the TVM backend: tcc's own dlight rules for channels-last conv nets.

TVM 0.27's Relax legalizes conv2d, pooling and concat to TOPI compute definitions and ships no CPU schedule for
them: compiled untuned they are plain scalar loop nests (DDSNet 29x slower than ONNX Runtime, measured), and
MetaSchedule needs minutes of tuning per model on the machine itself (impossible for an ARM board built here).
These rules give every such function a good schedule without search, for any CPU the target registry knows:

- the graph is converted to NHWC (`LAYOUT`), so every conv, depthwise conv and pool reads and writes channels
  innermost: one vector register holds `lanes` consecutive channels of one pixel;
- `WindowReduction` schedules each reduction (conv2d, group/depthwise conv2d, max/avg pool, global mean, dense)
  as a register-blocked micro-kernel: an output tile of X pixels x F channels (X * F / lanes accumulators, chosen
  to fit the target's vector registers) is accumulated in registers over the whole reduction (ky, kx, c_in),
  broadcasting one input value (or loading one vector of inputs, depthwise) against one vector of weights per
  step; the bias / ReLU / average epilogue is fused into the write-back of the tile; rows run in parallel;
- `Injective` vectorizes what is left (concat, transposes, padding, elementwise) along its contiguous axis.

Vectorization runs across output channels, never along a reduction, so every output element is summed in the
same order whatever the vector width: host and ARM builds of one model differ only by FMA contraction.
A function no rule matches keeps TVM's default lowering; one MetaSchedule has tuned (`--tune`) is left alone.

Like TVM's own dlight, each rule is one `dlight.ScheduleRule` class at module level (`Rule` is their common
base), so a rule can be imported, applied and tested alone; `default_schedule_pass()` applies them in order,
`layout_passes()` converts the layout. This module imports TVM: only TVM code paths import it
(backends/tvm_compile.py, backends/tvm_tune.py).
"""
from __future__ import annotations

from tvm import ir, relax, s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.schedule import ScheduleError

from .int8 import microkernel
from .int8.intrinsics import (
    depthwise_dot_intrin,
    depthwise_intrin,
    ensure_registered,
    interleave_rows_intrin,
    partial_sum_intrin,
)
from .int8.kernels import (
    CONV_BLOCK,
    DEPTHWISE_BLOCK,
    DEPTHWISE_DOT_BLOCK,
    DEPTHWISE_DOT_KERNELS,
    DEPTHWISE_PAD_BLOCK,
    DEPTHWISE_ROWS_BLOCK,
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
from .isa import Simd, simd_of

# Relax ConvertLayout: conv2d as NHWC data / HWIO weights; pooling, concat and elementwise ops follow the data.
LAYOUT = {"relax.nn.conv2d": ["NHWC", "HWIO"]}
# AVX-512 INT8 dot convs whose register tile is under half the kernel's: rows of pixels join it up to this many
# accumulators (FastNet's 64 -> 8 down conv at 63 x 63: 3 pixels x 1 vector, 174 -> 79 us; host INT8 FastNet -13%,
# DDSNet -6.5%, Zen 5, interleaved; 20 and 28 the same or worse)
X86_ROW_TILE_ACCUMULATORS = 24
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
# A one-pixel ARMv7 depthwise tile (FastNet's odd widths: 127, 63, 31, 15) has its taps unrolled: its 3 x 3 / 5 x 5
# depthwise convs executed 35% fewer instructions (the loop's compare, branch and address arithmetic per tap); a
# two-pixel tile unrolled executed more (DDSNet +9%: its weights and inputs no longer fit the registers). Three- to
# nine-pixel tiles of odd widths with the taps unrolled: 0.6-2.6% more in all (measured).
# ARM INT8 epilogues: vectors of up to 16 int32 lanes (int8/register_split.py splits the NEON requantization's
# calls by register), so that 16 codes narrow with the saturating narrowings (was one vector of 4; up to 8 lanes:
# DDSNet aarch64-dotprod 30.57 M instructions against 30.36 M, FastNet 19.50 against 19.58 M; up to 32: the same)
NEON_EPILOGUE_LANES = (16, 8, 4)
# The int16 padded input of an ARM INT8 depthwise conv on fewer channels than this is written by rows (_pad_by_rows),
# not pixel by pixel behind a bounds test: FastNet's 8-channel 3 x 3 at 63 x 63 took ~25 instructions a pixel to
# pad (executed instructions, FastNet: aarch64-dotprod 16.31 -> 15.98 M, aarch64 36.00 -> 35.75 M, arm-a7 50.36 ->
# 50.19 M); by rows on every channel count, DDSNet's wider ones executed more (aarch64 73.16 -> 75.12 M, arm-a7
# 90.85 -> 93.40 M)
DEPTHWISE_PAD_BY_ROWS_CHANNELS = 16
INLINE_PADDING_MAX_WORK = 32  # reductions of at most this many steps per output read their padding inline
# x86 only: the innermost reduction loops of at most this many steps in all are unrolled (a 3 x 3 depthwise conv's
# or pool's 9 taps, the stem's 3 input channels): DDSNet host FP32 0.3-0.7% faster (interleaved, idle AVX2 EPYC);
# 21 steps (the stem's 7 x 3) was 3% slower. ARM keeps its loops: its FP32 instruction counts are a reference.
X86_UNROLLED_TAPS = 9
# x86 float max pools: a tile of one pixel x up to this many vectors of channels, not X pixels x 2 vectors (DDSNet's
# 3 x 3 / s2 max pool on 112 x 112 x 64: 0.19 ms against 0.26 ms, interleaved; see the README)
X86_POOL_VECTORS = 8
# x86 heavy float convs (_x86_register_tile): weights up to this many bytes stay in L1 across a row of tiles;
# beyond it a weight load (from L2) counts as this many broadcast loads from L1
X86_L1_WEIGHTS = 32 * 1024
X86_L2_LOAD_COST = 4


# ---------------------------------------------------------------------------------------------------- helpers
def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def _static(sch, blocks) -> bool:
    """Every loop around the blocks has a constant extent (a function with symbolic shapes keeps TVM's default)."""
    return all(isinstance(sch.get(loop).extent, tirx.IntImm) for b in blocks for loop in sch.get_loops(b))


def _is_reduction(sch, block) -> bool:
    return any(iv.iter_type == tirx.IterVar.CommReduce for iv in sch.get(block).iter_vars)


def _parallel(sch, loops) -> None:
    """Run the fused outer loops in parallel (rows of the output); a single iteration is left serial."""
    if loops:
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        if _extent(sch, fused) > 1:
            sch.parallel(fused)


def _is_x86(target) -> bool:
    return str(target.attrs.get("mtriple", "")).startswith(("x86_64", "i686"))


def _is_aarch64(target) -> bool:
    return str(target.attrs.get("mtriple", "")).startswith("aarch64")


def _unroll_short_reduction(sch, reduce, limit: int) -> None:
    """Unroll the innermost reduction loops while their steps in all stay within `limit`."""
    steps = 1
    for loop in reversed(reduce):
        steps *= _extent(sch, loop)
        if steps > limit:
            return
        sch.unroll(loop)


def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def _channel_tile(channels: int, simd: Simd, half_width: bool = True) -> int:
    """Output channels per register tile: two vectors, one, or -- on AVX-512, `half_width` -- one half-width vector
    (a ymm register, 8 lanes: AVX-512VL gives 32 of them) before a ragged width that no vector divides. DDSNet's
    third transition (120 channels) got 30-lane tiles, 7x slower than 8-lane ones (0.73 ms against 0.11 ms, one
    thread, AVX-512 EPYC); narrower ISAs keep their widths (their instruction counts are references)."""
    widths = (2 * simd.lanes, simd.lanes) + ((simd.lanes // 2,) if half_width and simd.lanes >= 16 else ())
    return next((t for t in widths if channels % t == 0), _largest_divisor(channels, 2 * simd.lanes))


def _streaming_simd(work: int, simd: Simd, floats: bool) -> Simd:
    """The vectors a reduction of `work` steps per output runs in: on AVX-512, a light float reduction (depthwise
    conv, pool) streams a new input vector per tap and output, in half-width (ymm) vectors, whose loads from a
    channel window of a concat buffer split fewer cache lines (DDSNet's depthwise convs: 90 -> 72 us, interleaved,
    AVX-512 EPYC)."""
    return Simd(simd.lanes // 2, simd.registers) if work <= INLINE_PADDING_MAX_WORK and simd.lanes >= 16 and floats \
        else simd


def _pixel_limit(channel_tile: int, simd: Simd) -> int:
    """The most pixels a register tile of `channel_tile` channels takes (its accumulators fit the registers)."""
    return max(1, min(8, simd.accumulators // -(-channel_tile // simd.lanes)))


def float_pixel_tile(channels: int, target) -> int:
    """The pixels of WindowReduction's register tile for a dense float conv of `channels` output channels on
    `target`: a PrimFunc that computes its width rounded up to a multiple of it (and crops, CROP_BLOCK) runs whole
    tiles only. On AVX-512, 8: every tile _x86_register_tile can choose (at
    most 8 pixels, the largest divisor of the width under its limit) divides it."""
    simd = simd_of(target)
    return 8 if simd.lanes >= 16 else _pixel_limit(_channel_tile(channels, simd), simd)


def _broadcasts(sch, red) -> bool:
    """Whether the reduction `red` reads a value that is the same for all its innermost outputs (a dense conv's
    input pixel, a matmul's row element: broadcast against a vector of weights), unlike a depthwise conv or a
    pool, which load a new vector of inputs for each vector of outputs."""
    block = sch.get(red)
    inner = block.iter_vars[len(block.writes[0].region) - 1].var
    out = block.writes[0].source
    return any(not r.source.same_as(out) and not _uses(r, inner) for r in block.reads)


def _x86_register_tile(channels: int, width: int, work: int, simd: Simd) -> tuple[int, int] | None:
    """(channels, pixels) of a heavy float conv's register tile on AVX-512 (x86_tile_cost's choice), or None where
    no whole vector divides the channels."""
    best = _x86_tiles(channels, width, work, simd)
    return best[1:] if best else None


def x86_tile_cost(channels: int, width: int, work: int, simd: Simd) -> float | None:
    """A heavy float conv's loads per lane of multiply-add on AVX-512 with its best register tile (None: no whole
    vector divides the channels), what channel_pad.py weighs padded channel counts by."""
    best = _x86_tiles(channels, width, work, simd)
    return best[0][0] if best else None


def _x86_tiles(channels: int, width: int, work: int, simd: Simd):
    """((cost, -lanes), channels, pixels) of the best register tile: whole vectors of channels (zmm, ymm or xmm)
    times pixels, at the least cost in loads per lane of multiply-add. Each of the `work` steps broadcasts one
    input per pixel and loads one weight vector per vector of channels: a tile of p pixels x v vectors does p v
    multiply-adds for p + v loads. When the layer's weights outgrow L1 (X86_L1_WEIGHTS), every row of tiles
    streams them from L2 once per tile of pixels whatever the channel tile: a weight load then counts
    X86_L2_LOAD_COST. Pixels divide the width (or, with no divisor near the limit, fill the tile, the last one
    predicated). Measured on DDSNet (AVX-512 EPYC, per kernel): its third transition (120 channels, 240 steps) 7
    pixels x 1 ymm -> 7 x 3 ymm, 112 -> 91 us; the second (112 channels) stays at 7 x 1 zmm: 2 x 7 zmm ran 192 ->
    220 us."""
    weight_cost = 1 if work * channels * 4 <= X86_L1_WEIGHTS else X86_L2_LOAD_COST
    best = None
    for lanes in ((simd.lanes, simd.lanes // 2, simd.lanes // 4) if simd.lanes >= 16 else (simd.lanes,)):
        for v in range(1, simd.registers):
            limit = min(8, (simd.registers - v - 1) // v)  # the accumulators, v weights and a broadcast input
            if limit < 1:
                break
            if channels % (v * lanes):
                continue
            x = _largest_divisor(width, limit)
            # a width with no divisor near the limit: full tiles, the last one predicated, which keeps LLVM from
            # holding the accumulators in registers (FastNet's stem ran 2x its unpredicated time): counted twice
            predicated = 2 * x < limit
            x = limit if predicated else x
            cost = ((x + v * weight_cost) / (x * v * lanes) * (2 if predicated else 1), -lanes)
            if best is None or cost < best[0]:
                best = cost, v * lanes, x
    return best


def _vectorize_spatial(sch, block, simd: Simd) -> None:
    """An injective block: split its innermost loop by the vector width (when it divides), vectorize that, run the
    fused outer loops in parallel. A concat along the innermost axis is also partitioned at its input
    boundaries, so that each part copies one input without a per-element select. The width is a vector
    register's worth of the block's element type (16 int8 lanes where float32 has 4), or the float width where
    that does not divide the axis and the boundaries."""
    loops = sch.get_loops(block)
    if not loops:
        return
    inner = loops[-1]
    extent = _extent(sch, inner)
    cuts = _concat_cuts(sch, block, extent)
    lanes = simd.lanes * 4 // max(1, sch.get(block).writes[0].source.dtype.bits // 8)
    width = next((w for w in (lanes, simd.lanes) if extent % w == 0 and all(c % w == 0 for c in cuts or ())), None)
    if width is not None:
        outer, vec = sch.split(inner, [None, width])
        sch.vectorize(vec)
        if cuts:  # the parts, in vectors (split needs loops from 0: partition the outer loop, not the lanes)
            sizes = [(b - a) // width for a, b in zip([0, *cuts], cuts)]
            sch.loop_partition(outer, [*sizes, None])
    elif extent <= 4 * simd.lanes and not cuts:
        sch.vectorize(inner)
    elif cuts:
        sch.loop_partition(inner, [b - a for a, b in zip([0, *cuts], cuts)] + [None])
    _parallel(sch, loops[:-1])


def _pad_by_rows(sch, block, simd: Simd) -> None:
    """A padding block as two condition-free passes per row of its innermost padded axis: the row filled with
    the pad value, then its in-bounds part copied from the input (with the unpadded axes inside it fused: one
    contiguous run), each vectorized where the vector width divides it; rows in parallel. Vectorized as it is,
    an NHWC padding's innermost loop is the few channels of one pixel, each element behind the bounds test
    (DDSNet's 3-channel 230 x 230 stem input: ~120 us of the stem's 2.7 ms, measured)."""
    b = sch.get(block)
    written, read = b.writes[0].source.shape, b.reads[0].source.shape
    loops = sch.get_loops(block)
    padded = [i for i, (w, r) in enumerate(zip(written, read)) if int(w) != int(r)]
    if len(loops) != len(written) or len(read) != len(written) or not padded:
        raise ScheduleError("not a padding")
    row = padded[-1]
    fill = sch.decompose_padding(block, loops[row])
    for part in (fill, block):
        inner = sch.get_loops(part)[row:]
        run = sch.fuse(*inner) if len(inner) > 1 else inner[0]
        if _extent(sch, run) % simd.lanes == 0:
            sch.vectorize(sch.split(run, [None, simd.lanes])[1])
    _parallel(sch, loops[:row])


def _concat_cuts(sch, block, extent: int) -> list[int] | None:
    """The input boundaries of a concat along its innermost axis, or None if the block is not one. The concat
    may be inlined into an elementwise consumer (INT8: the cast / add / cast that shifts u8 codes to s8, which
    kept the select per element: scalar code), so its selects are looked for anywhere in the block's value."""
    b = sch.get(block)
    if not isinstance(b.body, tirx.BufferStore):
        return None
    var = b.iter_vars[-1].var
    cuts = []

    def visit(e):  # TOPI's concat: nested if_then_else(boundary <= axis, this input, the earlier ones)
        if isinstance(e, ir.Call) and getattr(e.op, "name", "").endswith(".if_then_else"):  # prim. in TVM 0.27
            cond = e.args[0]
            if isinstance(cond, tirx.LE) and cond.b.same_as(var) and isinstance(cond.a, tirx.IntImm):
                cuts.append(int(cond.a.value))
            for arg in e.args[1:]:
                visit(arg)
        elif isinstance(e, tirx.Cast):
            visit(e.value)
        elif isinstance(e, (tirx.Add, tirx.Sub, tirx.Mul, tirx.Min, tirx.Max)):
            visit(e.a)
            visit(e.b)

    visit(b.body.value)
    return sorted(set(c for c in cuts if 0 < c < extent)) or None


def _crop_of(sch, red, names, red_at) -> str | None:
    """The block right after the reduction `red` when it copies part of it: the same indices into a smaller
    domain (CROP_BLOCK; a strided slice from 0 of a conv computed over more channels, channel_pad.py), or None."""
    if red_at + 1 >= len(names):
        return None
    block = sch.get(sch.get_sblock(names[red_at + 1]))
    store = block.body
    ivs = [iv.var for iv in block.iter_vars]
    if (not isinstance(store, tirx.BufferStore) or not isinstance(store.value, ir.TensorLoad)
            or not store.value.source.same_as(sch.get(red).writes[0].source)
            or len(store.indices) != len(ivs) or len(store.value.indices) != len(ivs)
            or any(not i.same_as(v) or not j.same_as(v) for i, j, v in zip(store.indices, store.value.indices, ivs))):
        return None
    kept, computed = _domain(sch, sch.get_sblock(names[red_at + 1])), _domain(sch, red)[:len(ivs)]
    return names[red_at + 1] if kept != computed and all(k <= c for k, c in zip(kept, computed)) else None


def _domain(sch, block) -> list[int]:
    """The extents of a block's iterators."""
    return [int(iv.dom.extent) for iv in sch.get(block).iter_vars]


def _inline_consumers(sch, block, domain) -> None:
    """reverse_compute_inline the chain of elementwise consumers into `block` (bias add, ReLU, division), as long
    as each is the only reader of what `block` writes and iterates over the same `domain`."""
    while True:
        consumers = sch.get_consumers(block)
        if (len(consumers) != 1 or _domain(sch, consumers[0]) != domain
                or not _try(lambda: sch.reverse_compute_inline(consumers[0]))):
            return


def _fuse_epilogue(sch, red, names, red_at, at_loop, unroll: bool = False, lanes: int = 0,
                   scope: str = "local", vectors_outer: bool = False) -> set[str]:
    """Accumulate the reduction `red` in a register tile (cache_write to `scope`) written back under `at_loop`,
    with its epilogue -- the blocks over the same output domain -- fused into that write-back, as one block
    where it is a chain (swish: x * sigmoid(x) reads x twice); a consumer over a larger domain (squeeze-excite's
    broadcast multiply) stays a block of its own. Returns the names of the blocks still at the root, the
    write-back not among them.
    unroll: unroll the write-back's outer loops too, so that every access to the tile has a constant index and
    LLVM keeps the whole tile in registers (a loop over it puts it on the stack: a store and a load per
    accumulator, which a short reduction -- a depthwise conv's 9 taps -- does not amortize), in vectors of
    `lanes` (ARM: up to 16, `_neon_epilogue_lanes`), vectors_outer: those vectors outside the pixels (a vector's
    requantization parameters loaded once per tile)."""
    n_spatial = len(sch.get(red).writes[0].region)
    domain = _domain(sch, red)[:n_spatial]
    crop = _crop_of(sch, red, names, red_at)
    if crop is not None:  # the epilogue runs on the kept part: the tile is written back through the crop
        domain = _domain(sch, sch.get_sblock(crop))
    epilogue = [n for n in names[red_at + 1:] if _domain(sch, sch.get_sblock(n)) == domain and n != crop]
    for name in epilogue[:-1]:
        _try(lambda name=name: sch.compute_inline(sch.get_sblock(name)))
    acc = sch.cache_write(red, 0, scope)
    if crop is not None:
        sch.compute_inline(acc)
        acc = sch.get_sblock(crop)
    _inline_consumers(sch, acc, domain)
    sch.reverse_compute_at(acc, at_loop)
    loops = sch.get_loops(acc)
    at = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(sch.get(at_loop)))
    # the write-back's own loops: none when the tile is one element (19 channels, a vector of 1), and then
    # loops[-1] is `at_loop` itself, around the reduction: vectorizing it computed every channel's sum wrongly
    own = loops[at + 1:]
    if unroll and lanes and own and _extent(sch, own[-1]) > lanes and _extent(sch, own[-1]) % lanes == 0:
        own = [*own[:-1], *sch.split(own[-1], [None, lanes])]  # one register per vector
        if vectors_outer:
            sch.reorder(own[-2], *own[:-2])
            own = [own[-2], *own[:-2], own[-1]]
    if own:
        sch.vectorize(own[-1])
    if unroll:
        for loop in own[:-1]:
            sch.unroll(loop)
    return {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))} - {sch.get(acc).name_hint}


def _neon_epilogue_lanes(channels: int) -> int:
    """The vector width of an ARM INT8 epilogue over `channels` (NEON_EPILOGUE_LANES)."""
    return next(w for w in (*NEON_EPILOGUE_LANES, 1) if channels % w == 0)


def _try(fn) -> bool:
    try:
        fn()
        return True
    except ScheduleError:
        return False


# ---------------------------------------------------------------------------------------------------- rules
class Rule(dl.ScheduleRule):
    """A rule on static-shaped PrimFuncs: `schedule(sch, blocks, simd)` returns whether it applied."""

    def apply(self, func, target, _tunable):
        if not isinstance(func, tirx.PrimFunc):
            return None
        sch = s_tir.Schedule(func)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
        if not blocks or not _static(sch, blocks):
            return None
        self.target = target
        try:
            return sch if self.schedule(sch, blocks, simd_of(target)) else None
        except (RuntimeError, ValueError):  # TVM's errors: a primitive it cannot apply here; the default stays
            return None


class WindowReduction(Rule):
    """One reduction block S..S R..R whose output index is its spatial iterators in order (the innermost one
    contiguous: channels in NHWC, the output features of a dense layer), with injective producers (padding)
    and consumers (bias, activation, the average's division)."""

    def schedule(self, sch, blocks, simd) -> bool:
        reductions = [b for b in blocks if _is_reduction(sch, b)]
        if len(reductions) != 1:
            return False
        red = reductions[0]
        loops = sch.get_loops(red)
        ivs = sch.get(red).iter_vars
        kinds = [iv.iter_type == tirx.IterVar.CommReduce for iv in ivs]
        n_spatial = kinds.index(True)
        if len(loops) != len(ivs) or any(not k for k in kinds[n_spatial:]) or n_spatial == 0:
            return False
        write = sch.get(red).writes[0].region
        if len(write) != n_spatial or any(not r.min.same_as(iv.var) for r, iv in zip(write, ivs)):
            return False
        names = [sch.get(b).name_hint for b in blocks]
        red_at = names.index(sch.get(red).name_hint)
        before = blocks[:red_at]
        work = 1  # multiply-adds (or max / add) per output element
        for loop in loops[n_spatial:]:
            work *= _extent(sch, loop)
        floats = sch.get(red).writes[0].source.dtype == "float32"  # INT8 modules' pools keep their tiles
        broadcast = _broadcasts(sch, red)
        simd = _streaming_simd(work, simd, floats and not broadcast)
        cropped = _crop_of(sch, red, names, red_at) is not None
        for b in before:
            if _is_reduction(sch, b):
                return False
            # padding: a plain copy is inlined; so is real padding in front of a light reduction (depthwise
            # conv, pooling: ~9 operations per output), where a separate padding pass over the input cost
            # more than the reduction (measured: DDSNet depthwise -18%, max pool -50%); in front of a heavy
            # one (DDSNet's 7x7x3 stem: +35% inlined) it stays a pass of its own (x86: by rows, _pad_by_rows),
            # as in front of a cropped one, whose tiles would otherwise test the bounds of every input they read
            if "if_then_else" in str(sch.get(b).body) and (work > INLINE_PADDING_MAX_WORK or cropped):
                if not (_is_x86(self.target) and _try(lambda b=b: _pad_by_rows(sch, b, simd))):
                    _vectorize_spatial(sch, b, simd)
            else:
                sch.compute_inline(b)
        spatial, reduce = loops[:n_spatial], loops[n_spatial:]
        channels = spatial[-1]
        nc = _extent(sch, channels)
        f = _channel_tile(nc, simd)  # integer reductions too: 23-lane int32 vectors (184 channels) ran 4x slower
        update = sch.get(red)
        pool_tile = (_is_x86(self.target) and work <= X86_UNROLLED_TAPS and isinstance(update.body.value, tirx.Max)
                     and update.writes[0].source.dtype == "float32")  # INT8 modules keep theirs
        if pool_tile:  # a float max pool's window: one pixel x as many whole vectors of channels as fit
            pool_f = next((v * simd.lanes for v in range(min(X86_POOL_VECTORS, simd.accumulators), 0, -1)
                           if nc % (v * simd.lanes) == 0), None)
            pool_tile, f = pool_f is not None, pool_f or f
        tiled = n_spatial >= 2 and _extent(sch, spatial[-2]) > 1
        # AVX-512 only: measured there; AVX2's tiles stay as they were until measured on that class
        tile = (_x86_register_tile(nc, _extent(sch, spatial[-2]), work, simd)
                if (tiled and _is_x86(self.target) and simd.lanes >= 16 and floats
                    and (work > INLINE_PADDING_MAX_WORK or broadcast) and not pool_tile) else None)
        vector = 0  # the lanes of one vector of a tile of several (their loop unrolled): LLVM splits a wider
        # vector type badly (48 floats, three zmm: DDSNet's first transition 0.46 -> 15 ms)
        if tile is not None:
            f, x = tile
            vector = next(w for w in (simd.lanes, simd.lanes // 2, simd.lanes // 4) if f % w == 0)
        c_out, c_in = sch.split(channels, [None, f])
        if tiled:
            width = spatial[-2]
            if tile is None:
                limit = _pixel_limit(f, simd)
                x = 1 if pool_tile else _largest_divisor(_extent(sch, width), limit)
                if _is_x86(self.target) and not pool_tile and 2 * x < limit:
                    # a width with no divisor near the tile (FastNet's 127, 63, 31): a full tile whose last one
                    # runs past the row, predicated, not one-pixel tiles (FastNet host FP32 1.657 -> 1.599 ms, its
                    # stem 520 -> 475 us, interleaved, AVX-512 EPYC); ARM keeps exact tiles (its counts are
                    # references)
                    x = limit
            x_out, x_in = sch.split(width, [None, x])
            outer = spatial[:-2]
            sch.reorder(*outer, x_out, c_out, *reduce, x_in, c_in)
            sch.unroll(x_in)
        else:
            outer = spatial[:-1]
            sch.reorder(*outer, c_out, *reduce, c_in)
        if vector and f > vector:
            c_vectors, c_in = sch.split(c_in, [None, vector])
            sch.unroll(c_vectors)
        sch.vectorize(c_in)
        if _is_x86(self.target):
            _unroll_short_reduction(sch, reduce, X86_UNROLLED_TAPS)
        done = _fuse_epilogue(sch, red, names, red_at, c_out, unroll=f > vector > 0, lanes=vector)
        _parallel(sch, outer)
        init = sch.decompose_reduction(red, reduce[0])
        sch.vectorize(sch.get_loops(init)[-1])
        after = names[red_at + 1:]
        for name in after:  # consumers that could not be fused into the write-back
            if name in done:
                _try(lambda name=name: _vectorize_spatial(sch, sch.get_sblock(name), simd))
        return True


class Int8DotConv(Rule):
    """The dense INT8 conv of backends/tvm_int8_kernels.py (block `tcc_dot_conv`, its kernel in an annotation)
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
        for name in names[:names.index(CONV_BLOCK)]:
            if name != PAD_BLOCK:
                return False
            pad = sch.get_sblock(PAD_BLOCK)
            if channels:
                sch.transform_layout(pad, ("write", 0), lambda n, y, x, c: (n, y, x * channels + c))
                sch.fuse(*sch.get_loops(pad)[-2:])
            _vectorize_spatial(sch, pad, simd)
        n, y, x, co, *reduce = sch.get_loops(conv)
        pixels = _largest_divisor(_extent(sch, x), kernel.tile[0])
        vectors = int(annotations[VECTORS_ATTR])
        rows = 1
        if _is_x86(self.target) and simd.lanes >= 16 and 2 * pixels * vectors <= kernel.tile[0] * kernel.tile[1]:
            # a narrow tile (an odd width's few pixels, few output channels) is latency-bound on its few
            # accumulator chains: pixels of several rows join it (AVX-512 only, where measured)
            rows = _largest_divisor(_extent(sch, y), max(1, X86_ROW_TILE_ACCUMULATORS // (pixels * vectors)))
        y_out, *y_in = sch.split(y, [None, rows]) if rows > 1 else [y]
        x_out, x_in = sch.split(x, [None, pixels])
        c_out, c_mid, c_in = sch.split(co, [None, vectors, kernel.lanes])
        step = reduce[-2:] if kernel.pairs > 1 else reduce[-1:]  # (pairs,) group: inside the intrinsic
        sch.reorder(n, y_out, x_out, c_out, *reduce[:-len(step)], *y_in, x_in, c_mid, *step[:-1], c_in, step[-1])
        lanes = kernel.lanes if _is_x86(self.target) else _neon_epilogue_lanes(vectors * kernel.lanes)
        _fuse_epilogue(sch, conv, names, names.index(CONV_BLOCK), c_out, unroll=True, lanes=lanes,
                       scope=TILE_SCOPE)
        _parallel(sch, [n, y_out])
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
        crop = _crop_of(sch, conv, names, at)
        domain = _domain(sch, sch.get_sblock(crop) if crop else conv)[:4]
        epilogue = [m for m in names[at + 1:] if m != crop and _domain(sch, sch.get_sblock(m)) == domain]
        if at or not epilogue or len(epilogue) + (crop is not None) != len(names) - 1:
            return False
        n, y, x, co, *_ = sch.get_loops(conv)
        x_out, x_in = sch.split(x, [None, tile.pixels])
        c_out, c_in = sch.split(co, [None, tile.channels])
        sch.reorder(n, y, x_out, c_out, x_in, c_in)
        lanes = _neon_epilogue_lanes(tile.channels)
        _fuse_epilogue(sch, conv, names, at, c_out, unroll=True, lanes=lanes, scope=TILE_SCOPE, vectors_outer=True)
        _parallel(sch, [n, y])
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
        if names[:at] not in ([], [PAD_BLOCK]) or names[at + 1:at + 2] != [SUM_BLOCK] or tile_channels % 4:
            return False
        if names[:at]:
            _vectorize_spatial(sch, sch.get_sblock(PAD_BLOCK), simd)
        total = sch.get_sblock(SUM_BLOCK)
        domain = _domain(sch, total)
        epilogue = [m for m in names[at + 2:] if _domain(sch, sch.get_sblock(m)) == domain]
        if not epilogue or len(epilogue) != len(names) - at - 2:
            return False
        for name in epilogue[:-1]:  # one block: the chain bias / requantization / casts
            sch.compute_inline(sch.get_sblock(name))
        last = sch.get_sblock(epilogue[-1])
        n, y, x, co = sch.get_loops(last)
        pixels = _largest_divisor(_extent(sch, x), kernel.tile[0])
        if pixels == 1:  # odd widths: operands as values (ensure_registered)
            intrin = ensure_registered(kernel, values=True)
        x_out, x_in = sch.split(x, [None, pixels])
        c_out, c_in = sch.split(co, [None, tile_channels])
        sch.reorder(n, y, x_out, c_out, x_in, c_in)
        _parallel(sch, [n, y])
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
        c_in, vec = sch.split(c_in, [None, _neon_epilogue_lanes(tile_channels)])
        sch.reorder(c_in, x_in, vec)  # vector by vector: one vector's requantization parameters at a time
        sch.unroll(c_in)
        sch.unroll(x_in)
        sch.vectorize(vec)
        return True


class Int8Depthwise(Rule):
    """The INT8 depthwise conv of backends/tvm_int8_kernels.py (block `tcc_dw_conv`, its int16 padded input
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
        few = _domain(sch, pad)[-1] < DEPTHWISE_PAD_BY_ROWS_CHANNELS
        if not (few and _try(lambda: _pad_by_rows(sch, pad, simd))):
            _vectorize_spatial(sch, pad, simd)
        conv = sch.get_sblock(DEPTHWISE_BLOCK)
        n, y, x, c, *taps = sch.get_loops(conv)
        width = 8
        if _extent(sch, c) % width:
            return False
        c_out, c_in = sch.split(c, [None, width])
        pixels = _largest_divisor(_extent(sch, x), DEPTHWISE_PIXELS_A64 if _is_aarch64(self.target) else
                                  DEPTHWISE_PIXELS)
        one_pixel = pixels == 1  # ARMv7, a width with no divisor <= DEPTHWISE_PIXELS (FastNet's)
        x_out, x_in = sch.split(x, [None, pixels])
        if one_pixel and all(_extent(sch, tap) == 1 for tap in taps):
            # 1 x 1 (a BN after a ReLU): channels outside pixels, so that a vector's requantization parameters
            # are loaded once per row, not once per pixel (FastNet's stem BN: 8.0 M -> 7.0 M instructions;
            # DDSNet's two-pixel tiles: 0.5% more)
            sch.reorder(n, y, c_out, x_out, *taps, x_in, c_in)
            at = x_out
        else:
            sch.reorder(n, y, x_out, c_out, *taps, x_in, c_in)
            at = c_out
        _fuse_epilogue(sch, conv, names, 1, at, unroll=True, lanes=_neon_epilogue_lanes(width), scope=TILE_SCOPE)
        _parallel(sch, [n, y])
        init = sch.decompose_reduction(conv, taps[0])
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(c_in, intrin)
        sch.unroll(x_in)
        for tap in (taps if one_pixel or _is_aarch64(self.target) else taps[-1:]):
            sch.unroll(tap)
        return True


class Int8DepthwiseDot(Rule):
    """The depthwise conv on AArch64's `sdot` or AVX-512's `vpdpbusd` (compute.depthwise_rows_primfunc): its
    input padded once, a window's interleaved rows written just before the outputs that read them; the conv in
    register tiles of the window's output rows x pixels x channels (AArch64: 4 `sdot` lanes of 4 channels; x86:
    zmm vectors of 16), accumulated over the kernel's columns, the epilogue fused into the write-back."""

    def schedule(self, sch, blocks, simd) -> bool:
        names = [sch.get(b).name_hint for b in blocks]
        if names[:3] != [DEPTHWISE_PAD_BLOCK, DEPTHWISE_ROWS_BLOCK, DEPTHWISE_DOT_BLOCK]:
            return False
        # the padded copy: 16 codes a vector, its loops kept apart (fused, each vector's bounds test recomputed
        # the pixel from the fused index: two divisions)
        n, x, y, c = sch.get_loops(sch.get_sblock(DEPTHWISE_PAD_BLOCK))
        sch.vectorize(sch.split(c, [None, 16])[1])
        _parallel(sch, [n, x])
        rows = sch.get_sblock(DEPTHWISE_ROWS_BLOCK)
        windows = _domain(sch, rows)[1]
        conv = sch.get_sblock(DEPTHWISE_DOT_BLOCK)
        n, y, x, c, kx, r = sch.get_loops(conv)
        per_window = _extent(sch, y) // windows
        t, j = sch.split(y, [None, per_window])
        arch = "x86_64" if _is_x86(self.target) else "aarch64"
        lanes = KERNELS[DEPTHWISE_DOT_KERNELS[arch]].lanes
        tile = next(w for w in (DEPTHWISE_DOT_CHANNELS[arch], 16) if _extent(sch, c) % w == 0)  # 16k (lowering)
        c_out, c_quad, c_lane = sch.split(c, [None, tile // lanes, lanes])
        pixels = _largest_divisor(_extent(sch, x), DEPTHWISE_DOT_PIXELS[arch] // per_window)
        x_out, x_in = sch.split(x, [None, pixels])
        sch.reorder(n, t, x_out, c_out, kx, j, x_in, c_quad, c_lane, r)
        lanes = simd.lanes if arch == "x86_64" else _neon_epilogue_lanes(tile)
        _fuse_epilogue(sch, conv, names, 2, c_out, unroll=True, lanes=lanes, scope=TILE_SCOPE)
        rows_of = sch.fuse(n, t)
        # one window's interleaved rows at a time, just before the outputs that read them (the whole buffer is
        # twice the input: DDSNet's 56 x 56 x 160, 1 MB, past a Cortex-A55's L2)
        sch.compute_at(rows, rows_of)
        if _extent(sch, rows_of) > 1:
            sch.parallel(rows_of)
        c_rows = sch.get_loops(rows)[-2]  # (window, x, c, r) under the fused loop
        codes = sch.get(rows).writes[0].source.dtype
        sch.tensorize(sch.split(c_rows, [None, 16])[1], interleave_rows_intrin(str(codes)))
        init = sch.decompose_reduction(conv, kx)
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(c_lane, depthwise_dot_intrin(arch))
        for loop in (kx, j, x_in, c_quad):
            sch.unroll(loop)
        return True


class QuantizeInput(Rule):
    """The graph input's quantization (tvm_int8.quantize_input_primfunc, block `quantize`) with the NCHW -> NHWC
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
        few = len(loops) == 4 and _extent(sch, loops[-1]) < simd.lanes  # NHWC with fewer channels than a vector
        if few and _is_aarch64(self.target):
            sch.unroll(loops[-1])
            _parallel(sch, loops[:2])
            return True
        width = None  # vectors along the width, when one divides it
        if few:
            # x86: one vector (FastNet at 256: 128-lane vectors took 46 us, host INT8 -4.3% with 16, Zen 5)
            widths = (simd.lanes,) if _is_x86(self.target) else (8 * simd.lanes, 4 * simd.lanes, simd.lanes)
            width = next((w for w in widths if _extent(sch, loops[2]) % w == 0), None)
        if width is None:
            _vectorize_spatial(sch, last, simd)
            return True
        n, y, x, c = loops
        x_out, x_in = sch.split(x, [None, width])
        sch.reorder(n, y, x_out, c, x_in)
        sch.vectorize(x_in)
        sch.unroll(c)
        _parallel(sch, [n, y])
        return True


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
    return bool(along) and not any(_uses(r, var) for r in reads if r not in along)


def _uses(region, var) -> bool:
    """Whether a buffer region's indices involve `var`."""
    return any(v.same_as(var) for rng in region.region for v in tirx.analysis.undefined_vars(rng.min))


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
        if not _is_x86(self.target) or len(blocks) < 2 or _is_reduction(sch, blocks[-1]):
            return False
        last = blocks[-1]
        full = _domain(sch, last)
        if len(full) < 2:
            return False
        n, rows = full[-1], full[:-1]
        reductions = [b for b in blocks if _is_reduction(sch, b)]
        if not reductions or not all(_along_rows(sch, r, n) for r in reductions):
            return False
        if any(_domain(sch, b)[:len(sch.get(b).writes[0].region)] not in (full, rows, rows + [1]) for b in blocks):
            return False
        for b in reversed(blocks[:-1]):  # elementwise steps over the whole tensor with one reader: into it
            if not _is_reduction(sch, b) and _domain(sch, b) == full and len(sch.get_consumers(b)) == 1:
                _try(lambda b=b: sch.compute_inline(b))
        # at least two vectors a row (one vector: its partials' loop vanishes and LLVM's storage pass fails)
        lanes = next((w for w in (simd.lanes, simd.lanes // 2, 4) if n % w == 0 and n >= 2 * w), None)
        partials = []
        if lanes is not None:
            for reduction in reductions:
                sch.split(sch.get_loops(reduction)[-1], [None, lanes])
                partials.append(sch.rfactor(sch.get_loops(reduction)[-1],
                                            factor_axis=len(sch.get(reduction).writes[0].region)))
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
            sch.vectorize([loop for loop in sch.get_loops(partial)[1:-1] if _extent(sch, loop) == lanes][-1])
        for b in rest:
            if not _is_reduction(sch, b) and _domain(sch, b) == full:  # a row buffer (the exponentials)
                sch.vectorize(sch.split(sch.get_loops(b)[-1], [None, lanes])[1])
        return True


class Injective(Rule):
    """Only spatial blocks (concat, transpose, reshape, pad, elementwise): producers inlined into the last
    block where possible, then vectorized along the innermost axis."""

    def schedule(self, sch, blocks, simd) -> bool:
        if any(_is_reduction(sch, b) for b in blocks):
            return False
        for b in blocks[:-1]:
            _try(lambda b=b: sch.compute_inline(b))
        for b in sch.get_child_blocks(sch.get_sblock("root")):
            _vectorize_spatial(sch, b, simd)
        return True


def default_schedule_pass():
    """The module pass applying tcc's rules (dlight ApplyDefaultSchedule: Int8DotConv, Int8DepthwiseDot,
    Int8Depthwise, RowReduction, WindowReduction, QuantizeInput, then Injective) to every PrimFunc not yet
    scheduled."""
    return dl.ApplyDefaultSchedule(Int8DotConv(), Int8DepthwiseDot(), Int8Depthwise(), RowReduction(),
                                   WindowReduction(), QuantizeInput(), Injective())


def layout_passes():
    """Relax passes that put the graph in tcc's CPU layout (before legalization)."""
    return [relax.transform.ConvertLayout(LAYOUT), relax.transform.Normalize()]
