"""The schedule primitives tcc's rules share: loop extents and the target's ISA family, rows in parallel,
injective blocks vectorized, padding written by rows, epilogues fused into a tile's write-back, and `Rule`,
the rules' common base (a dlight ScheduleRule on static-shaped PrimFuncs).
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import ir, s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.schedule import ScheduleError

from ..isa import Simd, simd_of


def loop_extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def static_loops(sch, blocks) -> bool:
    """Every loop around the blocks has a constant extent (a function with symbolic shapes keeps TVM's default)."""
    return all(isinstance(sch.get(loop).extent, tirx.IntImm) for b in blocks for loop in sch.get_loops(b))


def is_reduction(sch, block) -> bool:
    return any(iv.iter_type == tirx.IterVar.CommReduce for iv in sch.get(block).iter_vars)


def parallelize(sch, loops) -> None:
    """Run the fused outer loops in parallel (rows of the output); a single iteration is left serial."""
    if loops:
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        if loop_extent(sch, fused) > 1:
            sch.parallel(fused)


def is_x86(target) -> bool:
    return str(target.attrs.get("mtriple", "")).startswith(("x86_64", "i686"))


def is_aarch64(target) -> bool:
    return str(target.attrs.get("mtriple", "")).startswith("aarch64")


def unroll_short_reduction(sch, reduce, limit: int) -> None:
    """Unroll the innermost reduction loops while their steps in all stay within `limit`."""
    steps = 1
    for loop in reversed(reduce):
        steps *= loop_extent(sch, loop)
        if steps > limit:
            return
        sch.unroll(loop)


def vectorize_spatial(sch, block, simd: Simd) -> None:
    """An injective block: split its innermost loop by the vector width (when it divides), vectorize that, run the
    fused outer loops in parallel. A concat along the innermost axis is also partitioned at its input
    boundaries, so that each part copies one input without a per-element select. The width is a vector
    register's worth of the block's element type (16 int8 lanes where float32 has 4), or the float width where
    that does not divide the axis and the boundaries."""
    loops = sch.get_loops(block)
    if not loops:
        return
    lanes = simd.lanes * 4 // max(1, sch.get(block).writes[0].source.dtype.bits // 8)
    if len(loops) > 1 and loop_extent(sch, loops[-1]) % lanes and _elementwise(sch, block):
        # one run over the whole tensor: an innermost axis of 3 channels was vectorized 3 lanes wide, lane by lane
        # (the u8 -> s8 shift of an RGB input's codes on ARMv7: 2.8 M estimated cycles for FastNet's)
        loops = [*loops[:-2], sch.fuse(*loops[-2:])]
    inner = loops[-1]
    extent = loop_extent(sch, inner)
    cuts = _concat_cuts(sch, block, extent)
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
    parallelize(sch, loops[:-1])


def _elementwise(sch, block) -> bool:
    """Whether every buffer the block reads and writes is indexed by its iterators in order, over the whole
    buffer (its loops fused read and write contiguous runs)."""
    b = sch.get(block)
    ivs = b.iter_vars
    for region in [*b.reads, *b.writes]:
        if len(region.region) != len(ivs):
            return False
        for rng, iv, dim in zip(region.region, ivs, region.source.shape):
            whole = isinstance(dim, tirx.IntImm) and int(dim) == int(iv.dom.extent)
            if not (rng.min.same_as(iv.var) and int(rng.extent) == 1 and whole):
                return False
    return True


def pad_by_rows(sch, block, simd: Simd) -> None:
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
        if loop_extent(sch, run) % simd.lanes == 0:
            sch.vectorize(sch.split(run, [None, simd.lanes])[1])
    parallelize(sch, loops[:row])


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
    return sorted({c for c in cuts if 0 < c < extent}) or None


def crop_of(sch, red, names, red_at) -> str | None:
    """The block right after the reduction `red` when it copies part of it: the same indices into a smaller
    domain (CROP_BLOCK; a strided slice from 0 of a conv computed over more channels, channel_pad.py), or None."""
    if red_at + 1 >= len(names):
        return None
    block = sch.get(sch.get_sblock(names[red_at + 1]))
    store = block.body
    ivs = [iv.var for iv in block.iter_vars]
    if (
        not isinstance(store, tirx.BufferStore)
        or not isinstance(store.value, ir.TensorLoad)
        or not store.value.source.same_as(sch.get(red).writes[0].source)
        or len(store.indices) != len(ivs)
        or len(store.value.indices) != len(ivs)
        or any(not i.same_as(v) or not j.same_as(v) for i, j, v in zip(store.indices, store.value.indices, ivs))
    ):
        return None
    kept, computed = block_domain(sch, sch.get_sblock(names[red_at + 1])), block_domain(sch, red)[: len(ivs)]
    return names[red_at + 1] if kept != computed and all(k <= c for k, c in zip(kept, computed)) else None


def block_domain(sch, block) -> list[int]:
    """The extents of a block's iterators."""
    return [int(iv.dom.extent) for iv in sch.get(block).iter_vars]


def _inline_consumers(sch, block, domain) -> None:
    """reverse_compute_inline the chain of elementwise consumers into `block` (bias add, ReLU, division), as long
    as each is the only reader of what `block` writes and iterates over the same `domain`."""
    while True:
        consumers = sch.get_consumers(block)
        if (
            len(consumers) != 1
            or block_domain(sch, consumers[0]) != domain
            or not attempt(lambda: sch.reverse_compute_inline(consumers[0]))  # noqa: B023 (called at once)
        ):
            return


@dataclass(frozen=True)
class WriteBack:
    """How `fuse_epilogue` writes a register tile back. unroll: the write-back's outer loops unrolled too, so that
    every access to the tile has a constant index and LLVM keeps the whole tile in registers (a loop over it puts it
    on the stack: a store and a load per accumulator, which a short reduction -- a depthwise conv's 9 taps -- does
    not amortize), in vectors of `lanes` (ARM: up to 16, `neon_epilogue_lanes`; 0: one vector); scope: the tile's
    storage scope; vectors_outer: those vectors outside the pixels (a vector's requantization parameters loaded
    once per tile)."""

    unroll: bool = False
    lanes: int = 0
    scope: str = "local"
    vectors_outer: bool = False


def fuse_epilogue(sch, red, names, red_at, at_loop, write: WriteBack = WriteBack()) -> set[str]:
    """Accumulate the reduction `red` in a register tile (cache_write to `write.scope`) written back under
    `at_loop` as `write` says, with its epilogue -- the blocks over the same output domain -- fused into that
    write-back, as one block where it is a chain (swish: x * sigmoid(x) reads x twice); a consumer over a larger
    domain (squeeze-excite's broadcast multiply) stays a block of its own. Returns the names of the blocks still at
    the root, the write-back not among them."""
    n_spatial = len(sch.get(red).writes[0].region)
    domain = block_domain(sch, red)[:n_spatial]
    crop = crop_of(sch, red, names, red_at)
    if crop is not None:  # the epilogue runs on the kept part: the tile is written back through the crop
        domain = block_domain(sch, sch.get_sblock(crop))
    epilogue = [n for n in names[red_at + 1 :] if block_domain(sch, sch.get_sblock(n)) == domain and n != crop]
    for name in epilogue[:-1]:
        attempt(lambda name=name: sch.compute_inline(sch.get_sblock(name)))
    acc = sch.cache_write(red, 0, write.scope)
    if crop is not None:
        sch.compute_inline(acc)
        acc = sch.get_sblock(crop)
    _inline_consumers(sch, acc, domain)
    sch.reverse_compute_at(acc, at_loop)
    loops = sch.get_loops(acc)
    at = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(sch.get(at_loop)))
    # the write-back's own loops: none when the tile is one element (19 channels, a vector of 1), and then
    # loops[-1] is `at_loop` itself, around the reduction: vectorizing it computed every channel's sum wrongly
    own = loops[at + 1 :]
    lanes = write.lanes
    if write.unroll and lanes and own and loop_extent(sch, own[-1]) > lanes and loop_extent(sch, own[-1]) % lanes == 0:
        own = [*own[:-1], *sch.split(own[-1], [None, lanes])]  # one register per vector
        if write.vectors_outer:
            sch.reorder(own[-2], *own[:-2])
            own = [own[-2], *own[:-2], own[-1]]
    if own:
        sch.vectorize(own[-1])
    if write.unroll:
        for loop in own[:-1]:
            sch.unroll(loop)
    return {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))} - {sch.get(acc).name_hint}


def attempt(fn) -> bool:
    try:
        fn()
        return True
    except ScheduleError:
        return False


def reads_var(region, var) -> bool:
    """Whether a buffer region's indices involve `var`."""
    return any(v.same_as(var) for rng in region.region for v in tirx.analysis.undefined_vars(rng.min))


class Rule(dl.ScheduleRule):
    """A rule on static-shaped PrimFuncs: `schedule(sch, blocks, simd)` returns whether it applied."""

    def apply(self, func, target, _tunable):
        if not isinstance(func, tirx.PrimFunc):
            return None
        sch = s_tir.Schedule(func)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
        if not blocks or not static_loops(sch, blocks):
            return None
        self.target = target
        try:
            return sch if self.schedule(sch, blocks, simd_of(target)) else None
        except (RuntimeError, ValueError):  # TVM's errors: a primitive it cannot apply here; the default stays
            return None
