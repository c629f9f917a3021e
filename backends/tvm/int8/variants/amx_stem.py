"""Intel AMX-INT8 for a conv on few input channels (a stem on RGB), the kernel variant `amx_stem`: `tdpbusd` adds
to each int32 of a 16 x 16 tile (16 pixels x 16 output channels) the dot product of up to 64 u8 codes with 64 s8
weights, one instruction, where AVX-512's `vpdpbusd` sums 4 per lane (Sapphire Rapids and later; LLVM's
`amx-int8`, `amx-tile`).

No im2col copy: a tile's rows may start anywhere in memory, so one kernel row of 16 windows is one tile load from
the padded input, row r at the window's first code (its pixel x stride x channels), kw x c codes long (rounded up
to 4: the codes past it multiply zero weights). The conv is then kh products per tile of output channels: DDSNet's
7 x 7 x 3 stem, 7 of 24 codes. A product's time grows with its codes (measured on a Xeon of this class: 7.5 ns
for 24 codes, 15.9 ns for 64), so this costs about as much as 3 products of an im2col copy's 148 codes, without
writing and reading the copy (1.9 MB for DDSNet's stem).

The PrimFunc (`conv_primfunc`) is written out as loops and marked scheduled, as the im2col copy is: the input
padded once into rows (with the shifted zero code), the tile configuration loaded per task, and per output row,
tile of 16 pixels (the last one ending at the row's end, overlapping the one before: the same sums written twice
where the width is no multiple of 16) and group of up to 4 tiles of output channels: the accumulators started
from the bias (a tile load of stride 0), kh products, the stores. Nothing fuses into it (op pattern opaque).

The lowering takes it (`match`) for a stem the dot kernel would take whose accumulators a max pool alone reads
(lower.py's `pooled_accs`, which requantizes after pooling), on 8-bit codes, and then the kernel pools too
(`emit_pooled`): output rows go to a ring of the pool's kh rows (L2),
and each pooled row is taken from the ring as soon as its last row is computed, so the conv's int32 output (3.2 MB
for DDSNet's stem at 224) is never written out and read back. The rows run in `POOL_PARTS` parallel parts.

Linux hands AMX's 8 KB of tile state to a process only on request (arch_prctl ARCH_REQ_XCOMP_PERM, once per
process, kernel 5.16 and later): the PrimFunc asks on every call (a system call, under a microsecond) and fails
with a clear error where the kernel refuses, instead of dying on the first tile instruction (SIGILL). Whether a
build takes AMX is decided from the target's CPU (`available`): the host target is -mcpu=native.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import sys
from dataclasses import dataclass

import numpy as np
from tvm.script import tirx as T

from tcc.quant.intgraph.qtypes import QNode

from ...isa import target_has
from .. import choose, compute
from ..codes import _Codes
from ..kernels import ConvShape
from .base import Layer, Match, Variant
from .dot_conv import conv_shape as dot_conv_shape

TILE_PIXELS = 16  # rows of a tile of accumulators
TILE_CHANNELS = 16  # int32 lanes of a tile row: 64 bytes
TILE_CODES = 64  # the most codes one product sums per accumulator (a tile row of 64 bytes)
GROUP = 4  # codes per int32 of the weights' tile (`tdpbusd` takes them in fours)
POOL_PARTS = 4  # a pooled conv's rows in parallel parts (each computes one conv row of the part before again)
ACCUMULATOR_TILES = 4  # tmm0-3: 64 output channels; tmm4: the windows; tmm5-7: the weights, in turn
# arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): Linux x86-64's system call number and arguments
SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 158, 0x1023, 18


def available(target) -> bool:
    """Whether a build for the LLVM target takes AMX: its CPU has AMX-INT8 (and the tile registers), and this
    machine's OS hands the tile state to a process (the x86 targets build for this machine's CPU, `native`, and
    check the module here)."""
    return (
        str(target.attrs.get("mtriple", "")).startswith("x86_64")
        and target_has(target, "amx-int8")
        and target_has(target, "amx-tile")
        and os_grants()
    )


@functools.cache
def os_grants() -> bool:
    """Whether Linux gives this process AMX's tile state (arch_prctl ARCH_REQ_XCOMP_PERM; the grant lasts for the
    process); False on other systems and CPUs."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0


def row_codes(shape: ConvShape) -> int:
    """The codes one window row's product reads: kw x c, rounded up to `GROUP`."""
    return -(-shape.kw * shape.c // GROUP) * GROUP


def supports(shape: ConvShape) -> str | None:
    """Why `conv_primfunc` cannot take this conv (None: it can)."""
    if shape.n != 1:
        return "a batch of more than one image"
    if shape.dilations != (1, 1):
        return "a dilated conv"
    if shape.co % TILE_CHANNELS:
        return f"{shape.co} output channels are not a multiple of {TILE_CHANNELS}"
    if row_codes(shape) > TILE_CODES:
        return f"a window row of {shape.kw} x {shape.c} codes is longer than a tile row ({TILE_CODES})"
    if shape.out_hw[1] < TILE_PIXELS:
        return f"an output width under {TILE_PIXELS} pixels"
    return None


def pack_weights(w_oihw: np.ndarray, shape: ConvShape) -> np.ndarray:
    """OIHW weight codes as the weights' tiles: [kh, co / 16, row_codes / 4, 16 x 4], the channel's four codes
    of (kx, c) order side by side in its int32 column (`tdpbusd`'s layout), zeros past kw x c."""
    co, rows = shape.co, row_codes(shape)
    w = np.zeros((shape.kh, co, rows), np.int8)
    w[:, :, : shape.kw * shape.c] = np.asarray(w_oihw).transpose(2, 0, 3, 1).reshape(shape.kh, co, -1)
    return np.ascontiguousarray(
        w.reshape(shape.kh, co // TILE_CHANNELS, TILE_CHANNELS, rows // GROUP, GROUP)
        .transpose(0, 1, 3, 2, 4)
        .reshape(shape.kh, co // TILE_CHANNELS, rows // GROUP, TILE_CHANNELS * GROUP)
    )


@dataclass(frozen=True)
class _Geometry:
    """conv_primfunc's numbers, from the conv's shape and its max pool's geometry (`pool`: kernel, strides, pads,
    out_hw; a 1 x 1 / 1 pool over the conv's output where there is none): the input's rows padded, the tiles, the
    weights' tiles, the pool's rows in parallel parts."""

    shape: ConvShape
    pool: dict

    @property
    def codes(self) -> int:  # the codes of a window row's product
        return row_codes(self.shape)

    @property
    def hp(self) -> int:  # padded input rows
        return self.shape.h + self.shape.pads[0] + self.shape.pads[2]

    @property
    def row(self) -> int:  # codes of a padded input row
        return (self.shape.w + self.shape.pads[1] + self.shape.pads[3]) * self.shape.c

    @property
    def slack(self) -> int:  # a window row's last product reads up to its codes past the row's end (zero weights)
        return TILE_CODES

    @property
    def x_tiles(self) -> int:  # tiles of pixels an output row
        return -(-self.shape.out_hw[1] // TILE_PIXELS)

    @property
    def per_group(self) -> int:  # accumulator tiles a group
        c_tiles = self.shape.co // TILE_CHANNELS
        return max(d for d in range(1, ACCUMULATOR_TILES + 1) if c_tiles % d == 0)

    @property
    def groups(self) -> int:
        return self.shape.co // TILE_CHANNELS // self.per_group

    @property
    def wshape(self) -> tuple[int, int, int, int]:  # the weights' tiles (`pack_weights`)
        return (self.shape.kh, self.shape.co // TILE_CHANNELS, self.codes // GROUP, TILE_CHANNELS * GROUP)

    @property
    def parts(self) -> int:  # the pooled rows' parallel parts
        return min(self.pool["out_hw"][0], POOL_PARTS)

    @property
    def per_part(self) -> int:
        return -(-self.pool["out_hw"][0] // self.parts)


def _geometry(shape: ConvShape, pool: dict | None) -> _Geometry:
    oh, ow = shape.out_hw
    return _Geometry(shape, pool or {"kernel": (1, 1), "strides": (1, 1), "pads": (0, 0, 0, 0), "out_hw": (oh, ow)})


def _tile_config_macro(g: _Geometry):
    codes = g.codes

    @T.macro
    def load_tile_config():
        """palette 1; tmm0-3 16 rows of 16 int32, tmm4 16 rows of a window row's codes, tmm5-7 its codes / 4 rows
        of 16 x 4 weights (per tile: bytes a row, 16-bit, at 16 + 2 t; rows at 48 + t)"""
        cfg = T.alloc_buffer((64,), "uint8", scope="local")
        for e in range(64):
            cfg[e] = T.uint8(0)
        cfg[0] = T.uint8(1)
        for t in range(8):
            cfg[16 + 2 * t] = T.Select(t == 4, T.uint8(codes), T.uint8(TILE_CHANNELS * 4))
            cfg[48 + t] = T.Select(t <= 4, T.uint8(TILE_PIXELS), T.uint8(codes // GROUP))
        T.evaluate(T.call_llvm_intrin("void", "llvm.x86.ldtilecfg", T.address_of(cfg[0])))

    return load_tile_config


def _conv_row_macro(g: _Geometry):
    x_tiles, groups, per_group, row = g.x_tiles, g.groups, g.per_group, g.row
    shape = g.shape
    ow, kh, (sh, sw), c, co = shape.out_hw[1], shape.kh, shape.strides, shape.c, shape.co

    @T.macro
    def conv_row(rows, weights, bias, dst, yy, slot):
        """output row yy into dst[slot, ow, co]: per tile of 16 pixels (the last ending at the row's end) and
        group of accumulator tiles, the bias (a tile load of stride 0), kh products, the stores"""
        for xt, g in T.grid(x_tiles, groups):
            x0 = T.meta_var(T.min(xt * TILE_PIXELS, ow - TILE_PIXELS))
            for t in T.unroll(per_group):
                T.evaluate(
                    T.call_llvm_intrin(
                        "void",
                        "llvm.x86.tileloadd64",
                        T.int8(t),
                        T.address_of(bias[(g * per_group + t) * TILE_CHANNELS]),
                        T.int64(0),
                    )
                )
            for ky in range(kh):
                T.evaluate(
                    T.call_llvm_intrin(
                        "void",
                        "llvm.x86.tileloadd64",
                        T.int8(4),
                        T.address_of(rows[(yy * sh + ky) * row + x0 * sw * c]),
                        T.int64(sw * c),
                    )
                )
                for t in T.unroll(per_group):
                    T.evaluate(
                        T.call_llvm_intrin(
                            "void",
                            "llvm.x86.tileloadd64",
                            T.int8(5 + t % 3),
                            T.address_of(weights[ky, g * per_group + t, 0, 0]),
                            T.int64(TILE_CHANNELS * GROUP),
                        )
                    )
                    T.evaluate(T.call_llvm_intrin("void", "llvm.x86.tdpbusd", T.int8(t), T.int8(4), T.int8(5 + t % 3)))
            for t in T.unroll(per_group):
                T.evaluate(
                    T.call_llvm_intrin(
                        "void",
                        "llvm.x86.tilestored64",
                        T.int8(t),
                        T.address_of(dst[slot, x0, (g * per_group + t) * TILE_CHANNELS]),
                        T.int64(co * 4),
                    )
                )

    return conv_row


def _prologue_macro(pad_code: int, g: _Geometry):
    h, w, c = g.shape.h, g.shape.w, g.shape.c
    padded_rows = compute.padded_rows_macro(g.shape, "uint8", pad_code, g.slack)

    @T.macro
    def prologue(rows, x):
        """the OS asked for the tile state (once per process, but cheap to ask again), the input padded into rows"""
        granted = T.call_extern(
            "int64", "syscall", T.int64(SYS_ARCH_PRCTL), T.int64(ARCH_REQ_XCOMP_PERM), T.int64(XFEATURE_XTILEDATA)
        )
        T.Assert(
            granted == T.int64(0),
            "the OS refused this process AMX's tile state (arch_prctl "
            "ARCH_REQ_XCOMP_PERM, Linux 5.16 or later): this module was built on a machine whose OS did",
        )
        padded_rows(rows, T.decl_buffer((h * w * c,), "uint8", data=x.data))

    return prologue


def _inputs(g: _Geometry) -> tuple:
    """The PrimFuncs' parameters but the output, as TVMScript annotations: the codes, the weights, the bias."""
    h, w, c = g.shape.h, g.shape.w, g.shape.c
    return T.Buffer((1, h, w, c), "uint8"), T.Buffer(g.wshape, "int8"), T.Buffer((g.shape.co,), "int32")


def _conv(g: _Geometry, prologue, load_tile_config, conv_row):
    """The conv's PrimFunc: per output row (rows in parallel) the tile configuration and the row's tiles."""
    co, (oh, ow), (X, W, B) = g.shape.co, g.shape.out_hw, _inputs(g)
    hp, row, slack = g.hp, g.row, g.slack

    @T.prim_func(s_tir=True)
    def amx_conv(x: X, weights: W, bias: B, out: T.Buffer((1, oh, ow, co), "int32")):  # type: ignore[valid-type]
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})
        with T.sblock("root"):
            rows = T.sblock_alloc_buffer((hp * row + slack,), "uint8")
            acc = T.decl_buffer((oh, ow, co), "int32", data=out.data)
            prologue(rows, x)
            for yy in T.parallel(oh):
                load_tile_config()
                conv_row(rows, weights, bias, acc, yy, yy)
                T.evaluate(T.call_llvm_intrin("void", "llvm.x86.tilerelease"))

    return amx_conv


def _conv_max_pool(g: _Geometry, prologue, load_tile_config, conv_row):
    """The conv's PrimFunc with its max pool: per part of the pooled rows (in parallel) the conv's rows in a ring of
    the pool's window rows, each pooled row taken from the ring as soon as its last row is computed."""
    co, (oh, ow), (X, W, B) = g.shape.co, g.shape.out_hw, _inputs(g)
    hp, row, slack = g.hp, g.row, g.slack
    (pkh, pkw), (psh, psw), (ppt, ppl, _, _) = g.pool["kernel"], g.pool["strides"], g.pool["pads"]
    (ph, pw), parts, per_part = g.pool["out_hw"], g.parts, g.per_part
    lowest = -(2**31)

    @T.prim_func(s_tir=True)
    def amx_conv_max_pool(x: X, weights: W, bias: B, out: T.Buffer((1, ph, pw, co), "int32")):  # type: ignore[valid-type]
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})
        with T.sblock("root"):
            rows = T.sblock_alloc_buffer((hp * row + slack,), "uint8")
            prologue(rows, x)
            for part in T.parallel(parts):
                # the pool's window rows of the conv, kept while a pooled row needs them: output row r in slot
                # r % pkh (a pooled row reads pkh consecutive rows); each part computes the rows its first pooled
                # row shares with the part before again
                ring = T.alloc_buffer((pkh, ow, co), "int32")
                best = T.alloc_buffer((co,), "int32", scope="local")
                load_tile_config()
                for i in range(per_part):
                    py = T.meta_var(part * per_part + i)
                    if py < ph:
                        first = T.meta_var(T.max(py * psh - ppt, 0))
                        last = T.meta_var(T.min(py * psh - ppt + pkh, oh))
                        start = T.meta_var(T.Select(i == 0, first, T.min((py - 1) * psh - ppt + pkh, oh)))
                        for yy in range(start, last):
                            conv_row(rows, weights, bias, ring, yy, yy % pkh)
                        for px in range(pw):
                            for e in T.vectorized(co):
                                best[e] = T.int32(lowest)
                            for ty in range(first, last):
                                for tx in range(T.max(px * psw - ppl, 0), T.min(px * psw - ppl + pkw, ow)):
                                    for e in T.vectorized(co):
                                        best[e] = T.max(best[e], ring[ty % pkh, tx, e])
                            for e in T.vectorized(co):
                                out[0, py, px, e] = best[e]
                T.evaluate(T.call_llvm_intrin("void", "llvm.x86.tilerelease"))

    return amx_conv_max_pool


def conv_primfunc(shape: ConvShape, pad_code: int, pool: dict | None = None):
    """x [1, h, w, c] u8 (the shifted codes), weights (`pack_weights`), bias [co] int32 (the accumulators' start)
    -> int32 acc [1, oh, ow, co], the padding `pad_code`; or, with `pool` (a max pool's geometry: kernel, strides,
    pads, out_hw), the accumulators max-pooled, [1, ph, pw, co]. See the module's docstring."""
    assert supports(shape) is None, supports(shape)
    g = _geometry(shape, pool)
    macros = (_prologue_macro(pad_code, g), _tile_config_macro(g), _conv_row_macro(g))
    func = _conv(g, *macros) if pool is None else _conv_max_pool(g, *macros)
    return func.without_attr("global_symbol")


# ---------------------------------------------------------------------------------------------------- the variant
def match(layer: Layer) -> Match | None:
    """A conv the dot kernel would take on few input channels (a stem, not 1 x 1) whose int32 accumulators a max
    pool alone reads (no requantization fuses into its kernel), on 8-bit codes, where the CPU has AMX-INT8 and the
    kernel reads u8 codes."""
    shape = dot_conv_shape(layer)
    if (
        shape is None
        or layer.kernel is None
        or not (layer.amx and layer.pooled)
        or shape.c > choose.IM2COL_MAX_CHANNELS
        or shape.kh * shape.kw <= 1
        or layer.dtype not in ("int8", "uint8")
        or layer.kernel.act_dtype != "uint8"
        or supports(shape) is not None
    ):
        return None
    return Match(
        kernel="amx_tdpbusd",
        why=f"a {shape.kh} x {shape.kw} stem on {shape.c} channels read by a max pool alone: AMX tiles, pooled as "
        "they are computed",
        shape=shape,
    )


def emit(low, n: QNode, x: _Codes, m: Match) -> list:
    """The conv on AMX tiles (`conv_primfunc`) of u8 codes (s8 shifted by +128, the bias taking it back). Its max
    pool (`emit_pooled`) calls the kernel that pools the accumulators as it computes them; the conv's own call stays
    only where something else reads its codes (the self-check's exposed layers)."""
    shape = m.shape
    assert shape is not None and n.weight is not None
    op, dtype = low.relax.op, str(x.expr.ty.dtype)
    offset = low.kernel.act_offset(dtype)
    codes = x.expr
    if offset:
        codes = low.cast(low.emit(op.add(low.cast(codes, "int16"), low.const(offset, "int16"))), "uint8")
    bias = low.bias(n, compute.bias_correction(n.weight, offset))
    args = [
        codes,
        low.const(pack_weights(n.weight, shape), "int8"),
        low.const((np.zeros(shape.co, np.int64) if bias is None else bias).reshape(-1), "int32"),
    ]
    low.amx_pools[n.outputs[0]] = shape, offset, args
    func = low.bb.add_func(conv_primfunc(shape, offset), "tcc_amx_conv")
    acc = low.emit(low.relax.call_tir(func, args, low.relax.TensorType([shape.n, *shape.out_hw, shape.co], "int32")))
    return low.accumulated(n, acc, x.params, started=True)


def emit_pooled(low, pool: dict, stem: tuple):
    """The max pool (geometry `pool`) of an AMX stem's accumulators (`stem`: what `emit` kept in low.amx_pools): the
    kernel that pools them as it computes them."""
    shape, offset, args = stem
    func = low.bb.add_func(conv_primfunc(shape, offset, pool), "tcc_amx_conv_max_pool")
    out = low.relax.TensorType([shape.n, *pool["out_hw"], shape.co], "int32")
    return low.emit(low.relax.call_tir(func, args, out))


VARIANT = Variant(
    "amx_stem",
    ("conv",),
    match,
    emit,
    "x86 AMX-INT8: a stem on few input channels whose max pool alone reads it, on `tdpbusd` tiles, pooled as it goes",
    compute=(conv_primfunc, pack_weights),
    requantize="after",
)
