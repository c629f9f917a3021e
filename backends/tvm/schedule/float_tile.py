"""`A64FloatConv`: an FP32 dense conv on AArch64 as register tiles of the assembly kernel (fp32/a64_tile.py), each
tile's whole window summed by one call; its producers (padding) passes of their own, its epilogue (bias,
activation, residual add) fused into the tile's write-back. Convs the kernel does not take keep WindowReduction.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import ir, sym, tirx

from ..fp32 import a64_tile
from . import loops

# (vectors of 4 channels, most pixels) of the tiles tried, best first: 8 pixels x 8 channels loads 16 registers per
# 64 `fmla` (8 pixels' inputs, 4 steps x 2 weight vectors), 8 x 4 loads 12 per 32; fewer than 8 accumulators wait
# on the `fmla` latency (the A53 model's 10 cycles)
TILES = ((2, 8), (1, 8))
MIN_ACCUMULATORS = 8


def takes(target) -> bool:
    """Whether the target's FP32 dense convs take the kernel (`A64FloatConv`, passes/whole_tiles.py)."""
    return loops.is_aarch64(target) and core_of(target) in a64_tile.RUN_FORMS


def core_of(target) -> str:
    """The target's core, LLVM's mcpu (RUN_FORMS' keys)."""
    return str(target.attrs.get("mcpu", ""))


@dataclass(frozen=True)
class ConvGeometry:
    """An NHWC conv with HWIO weights as its block computes it: the window, the column stride, the input's row
    length in floats, the output's width and channels."""

    rows: int
    cols: int
    channels: int
    stride: int
    row_stride: int
    width: int
    out_channels: int


def _loads(value) -> tuple | None:
    """(sum, input, weight) loads of `sum + input * weight`, else None."""
    if not isinstance(value, tirx.Add) or not isinstance(value.b, tirx.Mul):
        return None
    parts = (value.a, value.b.a, value.b.b)
    return parts if all(isinstance(p, ir.TensorLoad) for p in parts) else None


def _linear(expr, outer, inner) -> int | None:
    """The coefficient of `outer` in `expr` where expr = outer * c + inner exactly, else None."""
    coefficients = sym.detect_linear_equation(expr, [outer, inner])
    if len(coefficients) != 3 or any(not isinstance(c, tirx.IntImm) for c in coefficients):
        return None
    c_outer, c_inner, base = (int(c) for c in coefficients)
    return c_outer if c_inner == 1 and base == 0 and c_outer >= 1 else None


def conv_geometry(sch, conv) -> ConvGeometry | None:
    """The geometry of block `conv` when it is TOPI's NHWC / HWIO float32 conv of one group, undilated: sums
    out[n, y, x, f] += input[n, y S + ry, x S + rx, rc] * weight[ry, rx, rc, f]; else None."""
    block = sch.get(conv)
    ivs = [iv.var for iv in block.iter_vars]
    store = block.body
    if len(ivs) != 7 or not isinstance(store, tirx.BufferStore) or store.buffer.dtype != "float32":
        return None
    loads = _loads(store.value)
    if loads is None or not loads[0].source.same_as(store.buffer):
        return None
    n, y, x, f, ry, rx, rc = ivs
    _, data, weight = loads
    if len(weight.indices) != 4 or len(data.indices) != 4:
        return None
    if not all(i.same_as(v) for i, v in zip(weight.indices, (ry, rx, rc, f))):
        return None
    i_n, i_y, i_x, i_c = data.indices
    stride = _linear(i_x, x, rx)
    if not (i_n.same_as(n) and i_c.same_as(rc)) or stride is None or _linear(i_y, y, ry) is None:
        return None
    kh, kw, c, o = (int(d) for d in weight.source.shape)
    shape = [int(d) for d in data.source.shape]
    _, _, width, out_channels, *_ = loops.block_domain(sch, conv)
    if out_channels != o:
        return None
    return ConvGeometry(kh, kw, c, stride, shape[2] * shape[3], width, o)


def choose_tile(g: ConvGeometry, core: str = "cortex-a53") -> a64_tile.FloatTile | None:
    """The first of TILES whose channels divide the conv's and whose pixels (the most of them dividing its width)
    give MIN_ACCUMULATORS at least and fit the kernel's loads; None: none does."""
    for vectors, most in TILES:
        pixels = next(p for p in range(min(most, g.width), 0, -1) if g.width % p == 0)
        if g.out_channels % (4 * vectors) or pixels * vectors < MIN_ACCUMULATORS:
            continue
        tile = a64_tile.FloatTile(
            pixels, vectors, g.rows, g.cols, g.channels, g.stride, g.row_stride, g.out_channels, core
        )
        if tile.fits():
            return tile
    return None


class A64FloatConv(loops.Rule):
    """An AArch64 FP32 dense conv (`conv_geometry`) whose tile the assembly kernel takes (`choose_tile`): tiles of
    pixels x channels, rows in parallel, each tile's sums over the whole window by one kernel call."""

    def schedule(self, sch, blocks, simd) -> bool:
        if not takes(self.target):
            return False
        reductions = [b for b in blocks if loops.is_reduction(sch, b)]
        if len(reductions) != 1:
            return False
        conv = reductions[0]
        geometry = conv_geometry(sch, conv)
        tile = choose_tile(geometry, core_of(self.target)) if geometry else None
        if tile is None:
            return False
        names = [sch.get(b).name_hint for b in blocks]
        at = names.index(sch.get(conv).name_hint)
        widened = loops.crop_of(sch, conv, names, at) is not None
        if tile.rows == tile.cols == 1 and not widened and not a64_tile.RUN_FORMS[tile.core].pointwise:
            return False
        for b in blocks[:at]:  # padding, written once as a pass of its own
            loops.vectorize_spatial(sch, b, simd)
        n, y, x, co, *window = sch.get_loops(conv)
        x_out, x_in = sch.split(x, [None, tile.pixels])
        c_out, c_in = sch.split(co, [None, 4 * tile.vectors])
        sch.reorder(n, y, x_out, c_out, x_in, c_in, *window)
        done = loops.fuse_epilogue(sch, conv, names, at, c_out, loops.WriteBack(True, 4, "global", vectors_outer=True))
        loops.parallelize(sch, [n, y])
        init = sch.decompose_reduction(conv, x_in)
        if tile.rows == tile.cols == 1:  # as the TensorIntrin describes a 1 x 1 window
            sch.fuse(*sch.get_loops(conv)[-3:])
        sch.unroll(sch.get_loops(init)[-2])
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(x_in, a64_tile.tile_intrin(tile))
        sch.annotate(c_out, a64_tile.IMPORT_PRAGMA, a64_tile.llvm_ir(tile))
        for name in names[at + 1 :]:  # consumers that could not be fused into the write-back
            if name in done:
                loops.attempt(lambda name=name: loops.vectorize_spatial(sch, sch.get_sblock(name), simd))
        return True
