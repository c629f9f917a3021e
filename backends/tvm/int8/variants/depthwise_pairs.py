"""The depthwise conv on x86's `vpmaddwd` (two int16 products summed into each int32 lane) with 2 rows of a
channel in one lane: the kernel variant `depthwise_pairs`, in one place (docs/notes/int8-without-byte-dot-products.md).

- takes (`match`): on x86, a depthwise conv that `depthwise_rows` leaves (no VNNI, int16 codes, or channels not a
  multiple of 16), 8k channels, a kernel of 2 or 3 rows whose window of 4 rows serves 2 output rows or more (stride
  1), not dilated. Strided ones keep the int16 taps (one output row a window: each row interleaved twice for 3 taps
  of 4 products was slower, DDSNet's 3 x 3 / 2 at 56 x 56 x 64);
- compute (`depthwise_pairs_primfunc`, weights `depthwise_pairs_weights`): the windows of 4 padded rows
  (windows.py) widened to int16 as 2 pairs interleaved per channel, the conv on them;
- intrinsics: the step (`depthwise_madd_intrin`: one `vpmaddwd` and one `vpaddd`), the interleave
  (`interleave_pairs_intrin`);
- schedule rule `Int8DepthwisePairs`; the requantization in the tile's epilogue.
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx
from tvm.script import tirx as T

from tcc.quant.intgraph.qtypes import QNode

from ...isa import target_has
from ...schedule.loops import Rule, block_domain, parallelize
from ...schedule.tiles import largest_divisor
from .. import compute
from ..codes import _Codes
from ..intrin_funcs import Operand, copy_func, store_func
from ..intrinsics import register, registered
from ..kernels import DEPTHWISE_PAD_BLOCK, ConvShape
from .base import Layer, Match, Variant
from .depthwise_rows import depthwise_rows_weights
from .windows import ROWS, WindowTile, column_padded, lane_rows_desc, lane_rows_operands, rows_per_window, window_tiles

# The blocks: the windows of ROWS rows as int16 pairs of rows, a channel's 2 rows one 32-bit lane, and the conv on
# them (one `vpmaddwd` sums 2 taps of a column per channel)
DEPTHWISE_PAIRS_BLOCK = "tcc_dw_pairs"
DEPTHWISE_MADD_BLOCK = "tcc_dw_madd"


# ---------------------------------------------------------------------------------------------------- compute
def depthwise_pairs_weights(w_oihw: np.ndarray, shape: ConvShape) -> np.ndarray:
    """Depthwise weight codes [C, 1, kh, kw] as `depthwise_pairs_primfunc` reads them: int16 [J, kw, ROWS / 2, C,
    2], `depthwise_rows_weights`' window rows as pairs, a pair's two weights of a channel adjacent."""
    rows = depthwise_rows_weights(w_oihw, shape)  # [J, kw, C, ROWS]
    j_rows, kw, c, _ = rows.shape
    return np.ascontiguousarray(rows.reshape(j_rows, kw, c, ROWS // 2, 2).transpose(0, 1, 3, 2, 4)).astype(np.int16)


def depthwise_pairs_primfunc(shape: ConvShape, source_dtype: str, biased: bool = False):
    """A depthwise conv on x86's `vpmaddwd` (two int16 products summed into each int32 lane): int32 acc [n, oh, ow,
    c] of codes x [n, h, w, c] (8-bit or int16, zero point 0) and int16 weights [J, kw, ROWS / 2, c, 2]
    (`depthwise_pairs_weights`). As in `depthwise_rows_primfunc`, a window of ROWS padded rows serves J output rows
    (`rows_per_window`); here its rows are widened to int16 as ROWS / 2 pairs interleaved per channel (`tcc_dw_pairs`
    [n, windows, w + pads, ROWS / 2, c, 2], from the padded copy `tcc_dw_pad`), so that one instruction sums 2 taps
    of a kernel column per channel: a 3 x 3 conv of stride 1 takes 2 products a tap for its 2 output rows (4 rows
    of 2 pairs, each against its own weights), where the int16 taps' `vpmaddwd` had one lane of each pair zero."""

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731
    oh, ow = shape.out_hw
    j_rows = rows_per_window(shape)
    (sh, sw), (_, dw) = shape.strides, shape.dilations
    pl, pr = shape.pads[1], shape.pads[3]
    step, windows, pairs = j_rows * sh, oh // j_rows, ROWS // 2
    x = te.placeholder([i64(d) for d in (shape.n, shape.h, shape.w, shape.c)], source_dtype, name="x")
    weights = te.placeholder([i64(d) for d in (j_rows, shape.kw, pairs, shape.c, 2)], "int16", name="weights")
    src = column_padded(x, shape, (windows - 1) * step + ROWS, 0, source_dtype)
    rows = te.compute(
        [i64(d) for d in (shape.n, windows, shape.w + pl + pr, pairs, shape.c, 2)],
        lambda n, t, xx, p, c, r: src[n, xx, t * step + 2 * p + r, c].astype("int16"),
        name=DEPTHWISE_PAIRS_BLOCK,
    )
    kx = te.reduce_axis((i64(0), i64(shape.kw)), name="kx")
    p = te.reduce_axis((i64(0), i64(pairs)), name="p")
    r = te.reduce_axis((i64(0), i64(2)), name="r")
    out = te.compute(
        [i64(d) for d in (shape.n, oh, ow, shape.c)],
        lambda n, y, xx, c: te.sum(
            rows[n, tirx.floordiv(y, j_rows), xx * sw + kx * dw, p, c, r].astype("int32")
            * weights[tirx.floormod(y, j_rows), kx, p, c, r].astype("int32"),
            axis=[kx, p, r],
        ),
        name=DEPTHWISE_MADD_BLOCK,
    )
    func = compute.reduction_primfunc([x, weights, out], shape.c, DEPTHWISE_MADD_BLOCK, biased)
    return func.with_attr("tcc.op_pattern", 4)


# ---------------------------------------------------------------------------------------------------- intrinsics
# x86 without VNNI: the depthwise step on int16 pairs of rows (`depthwise_pairs_primfunc`), by its lanes
DEPTHWISE_MADD = {8: "llvm.x86.avx2.pmadd.wd", 16: "llvm.x86.avx512.pmaddw.d.512"}


def depthwise_madd_intrin(lanes: int) -> str:
    """The TensorIntrin of the depthwise pairs step, registered: L channels x 2 rows of int16 codes against their
    L x 2 int16 weights, each channel's 2 products summed into its int32 lane: one `vpmaddwd` (ymm: L = 8, zmm: 16)
    and one `vpaddd`."""
    name = f"tcc_dw_madd{lanes}"
    if not registered(name):
        madd, half = DEPTHWISE_MADD[lanes], f"int16x{2 * lanes}"

        def update(A, B, C):
            return C.vload([0], f"int32x{lanes}") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(madd), A.vload([0, 0], half), B.vload([0, 0], half), dtype=f"int32x{lanes}"
            )

        impl = store_func(*lane_rows_operands(lanes, 2, "int16", "int16"), update)
        register(name, lane_rows_desc(lanes, 2, "int16", "int16"), impl)
    return name


def interleave_pairs_intrin(dtype: str, lanes: int) -> str:
    """The TensorIntrin widening 2 rows of L codes of `dtype` (a row stride apart) to int16 and interleaving them
    per channel, L x 2 (`depthwise_pairs_primfunc`'s windows), registered: two loads, one shuffle, one
    widening."""
    name = f"tcc_interleave_pairs{lanes}_{dtype}"
    if not registered(name):
        order = [r * lanes + c for c in range(lanes) for r in range(2)]

        rows, pairs = Operand((2, lanes), dtype, strides=(None, 1)), Operand((lanes, 2), "int16")

        @T.macro
        def desc(S, D):
            for c, r in T.grid(lanes, 2):
                with T.sblock("copy"):
                    vc, vr = T.axis.remap("SS", [c, r])
                    D[vc, vr] = T.Cast("int16", S[vr, vc])

        @T.macro
        def impl(S, D):
            D[T.int64(0), T.ramp(T.int64(0), T.int64(1), 2 * lanes)] = T.Cast(
                f"int16x{2 * lanes}",
                T.Shuffle([S.vload([T.int64(r), T.int64(0)], f"{dtype}x{lanes}") for r in range(2)], order),
            )

        register(name, copy_func(rows, pairs, desc), copy_func(rows, pairs, impl))
    return name


# ---------------------------------------------------------------------------------------------------- schedule
# The pairs depthwise tile (Int8DepthwisePairs), by vector lanes: (pixels x the window's output rows, channels)
DEPTHWISE_PAIRS_TILE = {8: (4, 16), 16: (8, 32)}


class Int8DepthwisePairs(Rule):
    """The depthwise conv on x86's `vpmaddwd` (`depthwise_pairs_primfunc`): its padded copy written once
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
        step = depthwise_madd_intrin(lanes)
        window_tiles(sch, names, 2, rows, WindowTile(DEPTHWISE_MADD_BLOCK, lanes, tile, pixels, simd.lanes, step))
        c_rows = sch.get_loops(rows)[-2]  # (window, x, pair, c, r) under the fused loop
        group = sch.split(c_rows, [None, lanes])[1]
        sch.tensorize(group, interleave_pairs_intrin(str(sch.get(pad).writes[0].source.dtype), lanes))
        return True


# ---------------------------------------------------------------------------------------------------- the variant
def match(layer: Layer) -> Match | None:
    if not layer.x86:
        return None
    shape = layer.depthwise_shape()
    if shape is None or shape.kh < 2 or rows_per_window(shape) < 2:
        return None
    return Match(
        kernel="tcc_dw_madd",
        why=f"depthwise {shape.kh} x {shape.kw} on {shape.c} channels ({layer.dtype}): 2 rows a lane for "
        f"`vpmaddwd`, {rows_per_window(shape)} output rows a window",
        shape=shape,
    )


def emit(low, n: QNode, x: _Codes, m: Match) -> list:
    """The conv as one call of `depthwise_pairs_primfunc`, requantized in its kernel."""
    shape = m.shape
    assert shape is not None and n.weight is not None
    bias = low.bias(n)
    func = depthwise_pairs_primfunc(shape, x.expr.ty.dtype, bias is not None)
    weights = low.const(depthwise_pairs_weights(n.weight, shape), "int16")
    return low.depthwise_call(n, x, shape, func, "tcc_dw_madd", weights, bias)


ABOUT = "a depthwise conv on x86 `vpmaddwd`, 2 rows of a channel as an int16 pair in one lane"
COMPUTE = (depthwise_pairs_primfunc, depthwise_pairs_weights)
INTRINSICS = (depthwise_madd_intrin, interleave_pairs_intrin)
VARIANT = Variant("depthwise_pairs", ("conv",), match, emit, ABOUT, COMPUTE, INTRINSICS, Int8DepthwisePairs)
