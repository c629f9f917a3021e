"""The INT8 dense convs' whole reduction in one assembly loop per register tile, on ARM: a 1 x 1 conv (the im2col'd
stem, the dense layers' pointwise convs, linear layers over tokens), a tile of pixels x output channels summed over
all its input channels by one call.

- **ARMv7, the dot form** (1 or 2 pixels x 4 channels, steps of 16 codes). The step intrinsic (intrinsics.py,
  `vmull.s8` + `vmlal.s8` + `vpadal.s16` per pixel and channel: 24 multiply instructions for a 2 x 4 tile) came out
  of LLVM with 11 more -- six 16-byte loads, three address additions (`vld1` has no offset addressing, and LLVM's
  loop strength reduction recomputes the pointers from one induction variable), a compare and a branch -- and the
  tile's zeroing and partial-lane sums around it. Here a step is the 24 multiplies, four loads (the two pixels by
  register post-increments: +stride, then 16 - stride; the four channels' 64 weight codes in two `vld1` of 32
  bytes) and `subs` + `bne`; the first step starts the partial lanes (`vpaddl`, no zeroing); the lanes are summed
  in registers and added to the tile's sums in memory (the TensorIntrin's C += A B). The same products in the
  same int16 lanes (codes 8 h + 2 l + j of a step on lane l) as the step intrinsic, summed in int32: bit for bit
  its sums. DDSNet arm-a7 INT8: 102.5 M -> 93.0 M executed instructions (docs/notes/arm-dot-microkernel.md).
  The products of several channels are held at once, each in its own register (`_Dot16Registers`: a channel
  pair's with 2 pixels, the second pair's weights loaded after the first pair's last use; all 4 channels' with 1),
  so that their multiply, accumulate and widen chains overlap on an in-order core: DDSNet arm-a7 INT8 239.7 M ->
  189.0 M estimated cycles, the same instructions (docs/notes/arm-cycle-estimate.md).
- **AArch64 with the dot product** (`sdot`; 1, 2 or 4 pixels x 1 to 4 vectors of 4 channels). The broadcast
  intrinsic read each pixel's 4 codes of a step with an `ld1r` (and an address addition); here each pixel's 16
  codes of 4 steps come in one `ldr q` at an immediate offset, and `sdot` by element takes the step's 4 of them,
  the weights of a step in one `ld1` of up to 4 registers, the sums loaded into the accumulators first (C += A B
  as it is: `sdot` adds into its lanes exactly). DDSNet aarch64-dotprod: 45.4 M -> 39.0 M (the stem through
  im2col rows of 16-code blocks).
- **AArch64 without it** (ARMv8.0: the dot form, 2 to 4 pixels x 4 channels): ARMv7's loop in `smull` / `smlal2`
  / `sadalp`, the pixels at immediate offsets, `saddlp` on the first step, `addp` for the lane sums, products in
  v8-v15 (4 channels at once up to 2 pixels, a pair beyond). One-pixel tiles keep LLVM's code (FastNet's executed
  more in the kernel).

The kernel is a function of LLVM IR (`llvm_ir`) that TVM links into the module (`pragma_import_llvm` on the
conv's loop) and inlines; the TensorIntrin (`tile_intrin`) calls it on a tile's input rows, packed weights
([steps, channels, codes of a step], `compute.pack_weights`'s layout) and int32 sums [pixels, channels] (on ARMv7
a part of a wider write-back's, its pixels a row apart: schedule.int8_rules.MICROKERNEL_CALLS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..asm import IMPORT_PRAGMA, addressable
from .kernels import TILE_SCOPE, ConvShape, DotKernel

__all__ = ["IMPORT_PRAGMA", "Tile", "addressable", "llvm_ir", "padded_width", "pads_im2col", "tile_intrin", "tile_of"]
MAX_PIXELS = {"armv7": 2, "aarch64": 4}  # accumulators, operands: ARMv7's 16 q registers, AArch64's 32
BLOCK = 16  # input codes per loop iteration (ARMv7: one step; AArch64: 4 steps of `sdot`)


@dataclass(frozen=True)
class Tile:
    """One micro-kernel: the ISA's form, pixels x channels of a register tile, the codes a step reads per
    channel (`group`), the input's pixel stride in bytes (AArch64's offsets are immediates), the pairs kernel
    (ARMv7: each 8-code half widened on its own)."""

    arch: str
    pixels: int
    channels: int
    group: int
    stride: int
    pairs: bool = False

    def encode(self) -> str:
        """The tile as a block annotation's string (`decode` reads it back)."""
        return f"{self.arch}:{self.pixels}:{self.channels}:{self.group}:{self.stride}:{int(self.pairs)}"

    @staticmethod
    def decode(text: str) -> Tile:
        arch, *numbers = str(text).split(":")
        pixels, channels, group, stride, pairs = map(int, numbers)
        return Tile(arch, pixels, channels, group, stride, bool(pairs))

    @property
    def name(self) -> str:
        if self.arch == "armv7":
            return f"tcc_neon_dot16_tile{self.pixels}x{self.channels}{'_pairs' if self.pairs else ''}"
        if self.group == 4:
            return f"tcc_a64_sdot_tile{self.pixels}x{self.channels}_stride{self.stride}"
        return f"tcc_a64_dot16_tile{self.pixels}x{self.channels}_stride{self.stride}{'_pairs' if self.pairs else ''}"


def padded_width(width: int, pixels: int = MAX_PIXELS["aarch64"]) -> int:
    """The width an im2col'd conv is computed over: rounded up to whole tiles of `pixels` (by default the most of
    `sdot`'s micro-kernel; its im2col copy holds zeros past the width, the conv's result is cropped, CROP_BLOCK). A
    width with no divisor up to 4 (FastNet's 127) left it one-pixel tiles, which load the tile's weights once per
    pixel."""
    return -(-width // pixels) * pixels


def pads_im2col(k: DotKernel, reduction: int) -> bool:
    """Whether an im2col copy of `reduction` codes a pixel is padded to whole tiles of ARMv7's dot-form
    micro-kernel (2 pixels; it takes two blocks of 16 codes at least, `tile_of`)."""
    return k.arch == "armv7" and k.form == "dot" and reduction % BLOCK == 0 and reduction >= 2 * BLOCK


def tile_of(k: DotKernel, shape: ConvShape) -> Tile | None:
    """The micro-kernel a conv takes, None where it takes none. The conv: 1 x 1, stride 1, no padding (a tile's
    pixels are consecutive rows of the input); whole blocks of 16 input channels, or for AArch64's `sdot` one block
    at least and then whole steps of 4. The kernels: the dot form (ARMv7, and AArch64 on tiles of 2 pixels or
    more) on two blocks at least (one step has no loop to save, and its block has no step iterator for the
    intrinsic to match); AArch64's `sdot`, on as many pixels as its loads can address (`_pixel_bases`)."""
    sdot = k.instruction == "sdot"
    if (shape.kh, shape.kw) != (1, 1) or tuple(shape.strides) != (1, 1) or any(shape.pads):
        return None
    if shape.c % (4 if sdot else BLOCK) or shape.c < BLOCK:
        return None
    if k.arch not in MAX_PIXELS:
        return None
    fitting = [p for p in range(MAX_PIXELS[k.arch], 0, -1) if shape.out_hw[1] % p == 0]
    if sdot:
        return next(
            t
            for p in fitting
            if _pixel_bases(t := Tile("aarch64", p, 4 * shape.tile_vectors(k), 4, shape.c)) is not None
        )
    pixels = fitting[0]
    if k.form == "dot" and k.arch == "armv7" and shape.c >= 32:
        return Tile("armv7", pixels, 4, 16, shape.c, k.safe)
    if k.arch != "aarch64" or (pixels - 1) * shape.c > 65520:  # AArch64's `ldr q` offsets: up to 65520
        return None
    if k.form == "dot" and shape.c >= 32 and pixels > 1:
        # one-pixel tiles (odd widths) keep LLVM's code: the micro-kernel executed more there
        # (docs/notes/arm-dot-microkernel.md)
        return Tile("aarch64", pixels, 4, 16, shape.c, k.safe)
    return None


# The dot form's instructions per ISA: widening multiply of the low halves, of the high halves, its accumulating
# twin, the lanes' first pairwise add, the accumulating one, the loop's branch (registers: `_Dot16Registers`)
_DOT16: dict[str, dict[str, Any]] = {
    "armv7": dict(
        mull="vmull.s8",
        mull_hi="vmull.s8",
        mlal_hi="vmlal.s8",
        start="vpaddl.s16",
        add="vpadal.s16",
        branch="bne",
    ),
    "aarch64": dict(
        mull="smull",
        mull_hi="smull2",
        mlal_hi="smlal2",
        start="saddlp",
        add="sadalp",
        branch="b.ne",
    ),
}


class _Dot16Registers:
    """The dot form's registers for a tile: pixel p's codes 0..7 / 8..15, channel c's weights likewise, the product
    (int16 lanes) of (p, c), (p, c)'s 4 partial lanes (int32), and `group`: the channels whose products are held at
    once, each in a register of its own so that their multiply-adds and widenings are independent chains. ARMv7
    (16 q registers): pixel p in q{p}, partial lanes q{8 + 4 p + c}; 2 pixels: one channel pair's weights at a
    time in q2 / q3 (the other pair's loaded after the first's last use, `_next_weights`), products q4-q7; 1
    pixel: the 4 channels' weights in q2-q5, products q6, q7, q12, q13. AArch64: v{p}, v{4 + c}, partial lanes
    v{16 + 4 p + c}, products in v8-v15 (4 channels at once up to 2 pixels, a pair beyond)."""

    def __init__(self, t: Tile):
        self.t = t
        self.group = 2 if t.pixels > 2 or (t.arch, t.pixels) == ("armv7", 2) else 4

    def a(self, half: str, p: int) -> str:
        if self.t.arch == "aarch64":
            return f"v{p}.{'8b' if half == 'lo' else '16b'}"
        return f"d{2 * p + (half == 'hi')}"

    def w(self, half: str, c: int) -> str:
        if self.t.arch == "aarch64":
            return f"v{4 + c}.{'8b' if half == 'lo' else '16b'}"
        slot = c % 2 if self.group == 2 else c
        return f"d{4 + 2 * slot + (half == 'hi')}"

    def prod(self, p: int, c: int) -> str:
        if self.t.arch == "aarch64":
            return f"v{8 + (4 * p + c if self.group == 4 else 4 * (c % 2) + p)}.8h"
        return f"q{4 + 2 * (c % 2) + p}" if self.group == 2 else f"q{(6, 7, 12, 13)[c]}"

    def acc(self, p: int, c: int) -> str:
        return f"v{16 + 4 * p + c}.4s" if self.t.arch == "aarch64" else f"q{8 + 4 * p + c}"


def _dot16_loads(t: Tile) -> list[str]:
    """A step's first loads: the pixels' 16 codes (ARMv7 by register post-increments, +stride then 16 - stride:
    `vld1` has no offset addressing; AArch64 at immediate offsets), the weight codes of the 4 channels (AArch64) or
    of the first 2 (ARMv7: its 16 q registers hold one pair's, `_next_weights` loads the other)."""
    if t.arch == "aarch64":
        return [
            *(f"ldr q{p}, [$0, #{p * t.stride}]" for p in range(t.pixels)),
            "add $0, $0, #16",
            "ld1 {v4.16b, v5.16b, v6.16b, v7.16b}, [$1], #64",
        ]
    pixels = ["vld1.8 {d0-d1}, [$0], $8", "vld1.8 {d2-d3}, [$0], $9"] if t.pixels == 2 else ["vld1.8 {d0-d1}, [$0]!"]
    return [*pixels, "vld1.8 {d4-d7}, [$1]!", *([] if t.pixels == 2 else ["vld1.8 {d8-d11}, [$1]!"])]


def _next_weights(t: Tile, first: int) -> list[str]:
    """ARMv7 with 2 pixels, after the first channel pair's last weight read: the second pair's 32 weight codes."""
    return ["vld1.8 {d4-d7}, [$1]!"] if t.arch == "armv7" and t.pixels == 2 and first == 0 else []


def _dot16_step(t: Tile, first: bool) -> list[str]:
    """One step of 16 codes: the loads, then per group of channels (`_Dot16Registers`) the products of its pixels
    and channels widened into the partial lanes (the first step starts them, so that no zeroing is needed). With one
    product register per pixel, as before, each channel's chain waited on the last: DDSNet's stem on arm-a7 took
    89 estimated cycles a step, 60 with a pair's 4 chains (docs/notes/arm-cycle-estimate.md)."""
    r, regs, ops = _Dot16Registers(t), range(t.pixels), _DOT16[t.arch]
    start = ops["start"] if first else ops["add"]

    def multiply(op: str, half: str, c: int, p: int) -> str:
        return f"{ops[op]} {r.prod(p, c)}, {r.a(half, p)}, {r.w(half, c)}"

    def widen(op: str, c: int, p: int) -> str:
        return f"{op} {r.acc(p, c)}, {r.prod(p, c)}"

    lines = _dot16_loads(t)
    for first_channel in range(0, 4, r.group):
        products = [(c, p) for c in range(first_channel, first_channel + r.group) for p in regs]
        if t.pairs:  # each half widened on its own: two -128 x -128 products would overflow an int16 lane
            lines += [multiply("mull", "lo", c, p) for c, p in products]
            lines += [widen(start, c, p) for c, p in products]
            lines += [multiply("mull_hi", "hi", c, p) for c, p in products]
            lines += _next_weights(t, first_channel)
            lines += [widen(ops["add"], c, p) for c, p in products]
        else:
            lines += [multiply("mull", "lo", c, p) for c, p in products]
            lines += [multiply("mlal_hi", "hi", c, p) for c, p in products]
            lines += _next_weights(t, first_channel)
            lines += [widen(start, c, p) for c, p in products]
    return lines


def _dot16_assembly(t: Tile) -> list[str]:
    """The dot form: the first step, the loop over the others (steps >= 2), then per pixel its 4 channels' lanes
    summed (ARMv7 `vpadd`, AArch64 `addp`) and added to its sums. Operands: $0 input, $1 weights, $2 steps, $3 sums
    (each advanced; $4 to $7 are the same, tied); ARMv7 also $8 the pixel stride, $9 16 - stride and with 2
    pixels $10 the sums' pixel stride in bytes (a tile's sums may be a part of a wider tile's: `tile_intrin`)."""
    lines = [
        *_dot16_step(t, first=True),
        "subs $2, $2, #1",
        "1:",
        *_dot16_step(t, first=False),
        "subs $2, $2, #1",
        f"{_DOT16[t.arch]['branch']} 1b",
    ]
    for p in range(t.pixels):
        if t.arch == "armv7":  # channel c's lanes: d{2 a}, d{2 a + 1} of q{a}, a = 8 + 4 p + c
            d = [2 * (8 + 4 * p + c) for c in range(4)]
            lines += [f"vpadd.i32 d{c}, d{d[c]}, d{d[c] + 1}" for c in range(4)]
            lines += [
                "vpadd.i32 d0, d0, d1",
                "vpadd.i32 d1, d2, d3",
                "vld1.32 {d2-d3}, [$3]",
                "vadd.i32 q0, q0, q1",
                "vst1.32 {d0-d1}, [$3], $10" if t.pixels > 1 else "vst1.32 {d0-d1}, [$3]!",
            ]
        else:
            a = [_Dot16Registers(t).acc(p, c) for c in range(4)]
            lines += [
                f"addp v0.4s, {a[0]}, {a[1]}",
                f"addp v1.4s, {a[2]}, {a[3]}",
                "addp v0.4s, v0.4s, v1.4s",
                "ld1 {v1.4s}, [$3]",
                "add v0.4s, v0.4s, v1.4s",
                "st1 {v0.4s}, [$3], #16",
            ]
    return lines


def _sdot_assembly(t: Tile) -> list[str]:
    """AArch64: the sums loaded into the accumulators, the loop over blocks of 16 input channels (4 steps), the
    sums stored. Registers: pixel p's 16 codes in v{p}, a step's weights (vector v: 4 channels x 4 codes) in
    v{4 + v} or v{8 + v} (steps alternate), (pixel p, vector v)'s sums in v{16 + p V + v}. Operands: $0 input,
    $1 weights, $2 blocks, $3 sums (each advanced; $4 to $7 are the same, tied)."""
    vectors = t.channels // 4
    acc = lambda p: ", ".join(f"v{16 + p * vectors + v}.4s" for v in range(vectors))  # noqa: E731
    bases, at = _pixel_bases(t)
    lines = [f"ld1 {{{acc(p)}}}, [$3], #{16 * vectors}" for p in range(t.pixels)]
    lines += [f"add {reg}, $0, #{offset}" for reg, offset in bases[1:]]
    lines += [f"sub $3, $3, #{16 * vectors * t.pixels}", "1:"]
    lines += [f"ldr q{p}, {at(p)}" for p in range(t.pixels)]
    lines += [f"add {reg}, {reg}, #16" for reg, _ in bases]
    for step in range(4):
        w = 4 + 4 * (step % 2)
        lines.append(f"ld1 {{{', '.join(f'v{w + v}.16b' for v in range(vectors))}}}, [$1], #{16 * vectors}")
        lines += [
            f"sdot v{16 + p * vectors + v}.4s, v{w + v}.16b, v{p}.4b[{step}]"
            for v in range(vectors)
            for p in range(t.pixels)
        ]
    lines += ["subs $2, $2, #1", "b.ne 1b"]
    lines += _sdot_tail(t, vectors)
    lines += [f"st1 {{{acc(p)}}}, [$3], #{16 * vectors}" for p in range(t.pixels)]
    return lines


BASE_REGISTERS = ("x9", "x10", "x11")  # the pixels' further input pointers (clobbered by the kernel)


def _loads(t: Tile) -> list[tuple[int, int]]:
    """(size, offset in the pixel's codes) of each load per pixel of the `sdot` tile: a block's 16 codes, then the
    tail's steps (`_sdot_tail`)."""
    return [(16, 0)] + {0: [], 1: [(4, 0)], 2: [(8, 0)], 3: [(8, 0), (4, 8)]}[t.stride % BLOCK // 4]


def _pixel_bases(t: Tile):
    """([(register, offset from $0)], at) for the `sdot` tile's input loads, or None where its pixels cannot be
    addressed: pixel p's codes at p * stride, from $0 where every load's immediate offset allows, else from a
    further pointer ($0 + the offset of the first pixel it serves, an `add` immediate below 4096; three at most): a
    stride that is no multiple of 16 (a tail of steps) leaves `ldr q` only `ldur`'s 255 bytes. at(p, extra): the
    address operand of pixel p's codes plus `extra` bytes."""
    bases, of = [("$0", 0)], {}
    for p in range(t.pixels):
        offset = p * t.stride
        fits = [
            b
            for b, (_, o) in enumerate(bases)
            if all(addressable(offset - o + extra, size) for size, extra in _loads(t))
        ]
        if not fits:
            if len(bases) > len(BASE_REGISTERS) or offset > 4095:
                return None
            bases.append((BASE_REGISTERS[len(bases) - 1], offset))
            fits = [len(bases) - 1]
        of[p] = fits[0]

    def at(p: int, extra: int = 0) -> str:
        reg, o = bases[of[p]]
        return f"[{reg}, #{p * t.stride - o + extra}]"

    return bases, at


def _sdot_tail(t: Tile, vectors: int) -> list[str]:
    """The steps of 4 codes after the last whole block (a reduction of 16 b + 4 s codes, s = 1 to 3: an im2col'd
    stem's window, 7 x 7 x 3 = 147 codes in 148, not 160): each pixel's codes of those steps loaded on their own
    (1: `ldr s`, 2: `ldr d`, 3: `ldr d` and an `ldr s` into v{12 + p}), no load past the reduction."""
    steps = t.stride % BLOCK // 4
    _, at = _pixel_bases(t)
    lines = []
    for p in range(t.pixels):
        lines.append(f"ldr {'s' if steps == 1 else 'd'}{p}, {at(p)}")
        if steps == 3:
            lines.append(f"ldr s{12 + p}, {at(p, 8)}")
    for step in range(steps):
        w = 4 + 4 * (step % 2)
        lines.append(f"ld1 {{{', '.join(f'v{w + v}.16b' for v in range(vectors))}}}, [$1], #{16 * vectors}")
        lines += [
            f"sdot v{16 + p * vectors + v}.4s, v{w + v}.16b, "
            + (f"v{p}.4b[{step}]" if step < 2 else f"v{12 + p}.4b[0]")
            for v in range(vectors)
            for p in range(t.pixels)
        ]
    return lines


def llvm_ir(t: Tile) -> str:
    """The kernel as LLVM IR: i32 f(ptr sums, ptr input, ptr weights, i32 count, i32 stride, i32 row), returning 0;
    count: steps of 16 codes (ARMv7) or blocks of 16 input channels (AArch64), stride: the input's pixel stride,
    row: the sums' pixel stride (ARMv7; AArch64's are the tile's own, compact)."""
    asm = _sdot_assembly(t) if t.group == 4 else _dot16_assembly(t)
    if t.arch == "armv7":  # the count as it is; the pixel stride and its way back in registers
        # through q13 (d27) with 1 pixel (products q12, q13), all 16 q registers with 2
        regs, count, operands = (
            [f"d{i}" for i in range(28 if t.pixels == 1 else 32)],
            "i32 %count",
            "i32 %stride, i32 %back" + (", i32 %row_bytes" if t.pixels > 1 else ""),
        )
        prologue = "  %back = sub i32 16, %stride\n" + ("  %row_bytes = shl i32 %row, 2\n" if t.pixels > 1 else "")
        constraints = "=r,=r,=r,=r,0,1,2,3,r,r" + (",r" if t.pixels > 1 else "")
    else:  # a 64-bit count; the stride is in the offsets
        regs, count, operands = [f"v{i}" for i in range(32)] + list(BASE_REGISTERS), "i64 %blocks", ""
        prologue, constraints = "  %blocks = zext i32 %count to i64\n", "=r,=r,=r,=r,0,1,2,3"
    clobbers = ",".join([f"~{{{r}}}" for r in regs] + ["~{memory}", "~{cc}"])
    args = ", ".join(a for a in ("ptr %input, ptr %weights", count, "ptr %sums", operands) if a)
    text = "\\0A".join(asm)  # LLVM IR's escaped newline
    return (
        f"define i32 @{t.name}(ptr %sums, ptr %input, ptr %weights, i32 %count, i32 %stride, i32 %row) #0 {{\n"
        "entry:\n"
        f"{prologue}"
        f'  %r = call {{ ptr, ptr, {count.split()[0]}, ptr }} asm sideeffect "{text}", '
        f'"{constraints},{clobbers}"({args})\n'
        "  ret i32 0\n"
        "}\n"
        "attributes #0 = { alwaysinline nounwind }\n"
    )


_registered: set[str] = set()


def tile_intrin(t: Tile) -> str:
    """Register (once per process) the TensorIntrin of a tile over all its input codes (a 1 x 1 conv's input
    channels: its pixel stride): sums[p, c] += sum over (g, e) of input[p, group g + e] * weights[g, c, e];
    returns its name."""
    name = f"{t.name}_k{t.stride}"
    if name not in _registered:
        from tvm.s_tir import TensorIntrin  # deferred: TVM loads where a PrimFunc is built

        desc, impl = (_tile_func(t, t.stride, call) for call in (False, True))
        TensorIntrin.register(name, desc, impl, override=True)
        _registered.add(name)
    return name


def _tile_func(t: Tile, K: int, call: bool):
    """The TensorIntrin's description (call False: the sums as the conv's block computes them) or its
    implementation (the kernel's call). A one-pixel tile's block has no pixel iterator (a unit loop is not one)."""
    from tvm.script import tirx as T  # deferred: TVM loads where a PrimFunc is built

    P, C, G, S, fn = t.pixels, t.channels, t.group, K // t.group, t.name
    strided = t.arch == "armv7"  # ARMv7's sums may be a part of a wider tile's (the kernel's `row`)

    @T.prim_func(s_tir=True)
    def func(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (P, K), "int8", offset_factor=1)
        B = T.match_buffer(b, (S, C, G), "int8", offset_factor=1)
        row = T.int64()
        if strided:
            Acc = T.match_buffer(c, (P, C), "int32", offset_factor=1, scope=TILE_SCOPE, strides=[row, 1])
        else:
            Acc = T.match_buffer(c, (P, C), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(Acc[0:P, 0:C], A[0:P, 0:K], B[0:S, 0:C, 0:G])
            T.writes(Acc[0:P, 0:C])
            if call:
                T.evaluate(
                    T.call_extern(
                        "int32",
                        fn,
                        Acc.access_ptr("rw"),
                        A.access_ptr("r"),
                        B.access_ptr("r"),
                        T.int32(K // 16),
                        T.int32(K),
                        T.Cast("int32", row) if strided else T.int32(C),
                    )
                )
            elif P == 1:
                for ch, g, e in T.grid(C, S, G):
                    with T.sblock("update"):
                        vc, vg, ve = T.axis.remap("SRR", [ch, g, e])
                        Acc[0, vc] = Acc[0, vc] + T.Cast("int32", A[0, vg * G + ve]) * T.Cast("int32", B[vg, vc, ve])
            else:
                for p, ch, g, e in T.grid(P, C, S, G):
                    with T.sblock("update"):
                        vp, vc, vg, ve = T.axis.remap("SSRR", [p, ch, g, e])
                        Acc[vp, vc] = Acc[vp, vc] + T.Cast("int32", A[vp, vg * G + ve]) * T.Cast("int32", B[vg, vc, ve])

    return func
