"""The windows that the two depthwise forms of several rows a lane share (depthwise_rows.py: 4 rows a lane for
`sdot` / `vpdpbusd`; depthwise_pairs.py: 2 rows a lane for `vpmaddwd`): a window of ROWS padded input rows serves
`rows_per_window` output rows, its rows read from the input padded column-major (`column_padded`); the step's
description (`lane_rows_desc`: each channel's rows of one kernel column against their weights, summed into its
int32 lane) and the conv's register tiles over the windows (`window_tiles`)."""

from __future__ import annotations

from dataclasses import dataclass

from tvm import te, tirx
from tvm.script import tirx as T

from ...schedule.loops import WriteBack, block_domain, fuse_epilogue, loop_extent
from ...schedule.tiles import largest_divisor
from ..intrin_funcs import Operand, step_func
from ..kernels import DEPTHWISE_PAD_BLOCK, TILE_SCOPE, ConvShape

ROWS = 4  # the rows of one window: a kernel of up to 4 rows (3 x 3: 2 output rows per interleaved window)


def rows_per_window(shape: ConvShape) -> int:
    """Output rows one window of ROWS interleaved input rows serves (`depthwise_rows_primfunc`): as many as fit
    (3 x 3, stride 1: 2), fewer until they divide the output's height; 0 where the kernel does not fit a window
    (taller than ROWS, or dilated)."""
    (sh, _), (dh, _) = shape.strides, shape.dilations
    if shape.kh > ROWS or dh != 1:
        return 0
    j = 1 + (ROWS - shape.kh) // sh
    while shape.out_hw[0] % j:
        j -= 1
    return j


def column_padded(x, shape: ConvShape, height: int, offset: int, dtype: str):
    """`x` [n, h, w, c] shifted by `offset` to `dtype` and padded with the shifted zero, column-major (block
    DEPTHWISE_PAD_BLOCK [n, w + pads, height, c]): a window's rows of one column are consecutive blocks of c codes."""

    pt, pl, pb, pr = shape.pads

    def padded(n, xx, y, c):
        inside = tirx.all(y >= pt, y < pt + shape.h, xx >= pl, xx < pl + shape.w)
        code = (x[n, y - pt, xx - pl, c].astype("int16") + tirx.const(offset, "int16")).astype(dtype)
        return tirx.if_then_else(inside, code, tirx.const(offset, dtype))

    dims = (shape.n, shape.w + pl + pr, height, shape.c)
    return te.compute([tirx.IntImm("int64", d) for d in dims], padded, name=DEPTHWISE_PAD_BLOCK)


def lane_rows_operands(lanes: int, rows: int, act: str, weight: str) -> tuple[Operand, Operand, Operand]:
    """A depthwise step's buffers: A [lanes, rows] codes, B [lanes, rows] weights, C [lanes] int32."""
    return Operand((lanes, rows), act), Operand((lanes, rows), weight), Operand((lanes,), "int32", TILE_SCOPE)


def lane_rows_desc(lanes: int, rows: int, act: str, weight: str):
    """A depthwise step's description: C[lanes] += sum over r < rows of A[lane, r] * B[lane, r] (each channel's
    rows of one kernel column against their weights, summed into its int32 lane)."""

    @T.macro
    def desc(A, B, C):
        for lane, r in T.grid(lanes, rows):
            with T.sblock("update"):
                vl, vr = T.axis.remap("SR", [lane, r])
                C[vl] = C[vl] + T.Cast("int32", A[vl, vr]) * T.Cast("int32", B[vl, vr])

    return step_func(*lane_rows_operands(lanes, rows, act, weight), desc)


@dataclass(frozen=True)
class WindowTile:
    """A window kernel's register tile (`window_tiles`): the conv's block, the lanes of a vector, the channels and
    pixels of a tile (pixels / output rows a window, per row), the epilogue's vector lanes, the step's intrinsic."""

    conv: str
    lanes: int
    channels: int
    pixels: int
    epilogue_lanes: int
    step: str


def window_tiles(sch, names, conv_at: int, rows, tile: WindowTile) -> None:
    """The depthwise conv of a window kernel (`names[conv_at]`, block `tile.conv`: output [n, y, x, c], reduction
    over the kernel's columns then the rows of a lane: (kx, r) or (kx, pair, r)) in register tiles of the window's
    output rows x pixels x channels in vectors, accumulated over the columns and pairs, its step tensorized, the
    epilogue fused into the write-back; the window's rows (block `rows`) computed just before the outputs that
    read them (the whole buffer is twice the input: DDSNet's 56 x 56 x 160, 1 MB, past a Cortex-A55's L2), their
    interleave left to the caller."""
    conv = sch.get_sblock(tile.conv)
    n, y, x, c, kx, *inner = sch.get_loops(conv)
    per_window = loop_extent(sch, y) // block_domain(sch, rows)[1]
    t, j = sch.split(y, [None, per_window])
    c_out, c_vector, c_lane = sch.split(c, [None, tile.channels // tile.lanes, tile.lanes])
    x_out, x_in = sch.split(x, [None, largest_divisor(loop_extent(sch, x), max(1, tile.pixels // per_window))])
    sch.reorder(n, t, x_out, c_out, kx, *inner[:-1], j, x_in, c_vector, c_lane, inner[-1])
    fuse_epilogue(sch, conv, names, conv_at, c_out, WriteBack(unroll=True, lanes=tile.epilogue_lanes, scope=TILE_SCOPE))
    rows_of = sch.fuse(n, t)
    sch.compute_at(rows, rows_of)
    if loop_extent(sch, rows_of) > 1:
        sch.parallel(rows_of)
    init = sch.decompose_reduction(conv, kx)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(c_lane, tile.step)
    for loop in (kx, *inner[:-1], j, x_in, c_vector):
        sch.unroll(loop)
