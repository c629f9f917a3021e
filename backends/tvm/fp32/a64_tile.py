"""An FP32 dense conv's register tile on AArch64 in assembly, scheduled for the in-order Cortex-A53 and A55: a tile of
pixels x output channels summed over the conv's whole window (rows x columns x input channels) by one call.

LLVM's code for WindowReduction's tile (8 pixels x 8 channels, one input value broadcast against two vectors of
weights per step) ran at 2.3-2.7 estimated A53 cycles per instruction: unrolled by two steps, it put an
accumulator's next `fmla` 7 instructions after its last (the A53 model's `fmla` latency is 10) and each scalar
input's load right before its use. Here, per 4 steps of the window's run (its columns x input channels, contiguous
in NHWC): each pixel's 4 inputs in one `ldr q` (the A55: two `ldr d`) and `fmla` by element on their lanes; the
loads of a run placed for the core's issue (RUN_FORMS: the A53's all first, the A55's in 64-bit halves between
the `fmla`s); the `fmla`s in pixel-major order (an accumulator every `pixels x vectors` instructions). The weights
stay in HWIO: the step's vectors at the tile's first channel, `out_channels` floats a step further on (`ld1`, post-
incremented). Steps past the last whole 4 (a 7 x 3 run: 21) load one input a pixel (`ldr s`).

The summation order is TOPI's, (row, column, input channel) with one fused multiply-add a step, as WindowReduction's
vectorized code computes it: the same sums up to FMA contraction. The kernel is a function of LLVM IR (`llvm_ir`)
that TVM links into the module (`pragma_import_llvm`) and inlines; the TensorIntrin (`tile_intrin`) calls it on the
tile's input window, its weights and its sums [pixels, channels] (C += A B)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..asm import IMPORT_PRAGMA, addressable

__all__ = ["IMPORT_PRAGMA", "RUN_FORMS", "FloatTile", "assembly", "llvm_ir", "tile_intrin"]

MAX_ACCUMULATORS = 16  # v0-v15; the pixels' inputs take v16-v23, a run's 4 steps of weights v24-v31
MAX_PIXELS = 8
# rows left, input pointer, runs of 4 left, weight step, row step, a weight vector's upper half
SCRATCH = ("x9", "x10", "x11", "x12", "x13", "x14")


@dataclass(frozen=True)
class FloatTile:
    """One kernel: `pixels` x `vectors` (4 channels each) of sums over a window of `rows` x `cols` x `channels`
    floats, pixels `stride` columns apart; the input's rows `row_stride` floats apart, the weights' steps
    `out_channels` apart (HWIO); `core`: the core whose issue rules its runs of 4 are written for (RUN_FORMS)."""

    pixels: int
    vectors: int
    rows: int
    cols: int
    channels: int
    stride: int
    row_stride: int
    out_channels: int
    core: str = "cortex-a53"

    @property
    def run(self) -> int:
        """Floats of one window row: its columns' input channels, contiguous."""
        return self.cols * self.channels

    @property
    def pixel_bytes(self) -> int:
        return 4 * self.stride * self.channels

    @property
    def name(self) -> str:
        return (
            f"tcc_a64_f32_tile{self.pixels}x{4 * self.vectors}_w{self.rows}x{self.cols}x{self.channels}"
            f"_s{self.stride}_r{self.row_stride}_o{self.out_channels}_{self.core.replace('-', '_')}"
        )

    def fits(self) -> bool:
        """Whether the kernel can take this tile: its accumulators fit, and every pixel's loads reach their inputs
        by an immediate offset from one pointer (`ldr q` for the runs of 4, `ldr s` for the last steps)."""
        if self.pixels > MAX_PIXELS or self.vectors > 2 or self.pixels * self.vectors > MAX_ACCUMULATORS:
            return False
        if (self.rows == 1) != (self.cols == 1):  # a 1 x k window: a unit loop the TensorIntrin does not describe
            return False
        offsets = [p * self.pixel_bytes for p in range(self.pixels)]
        run_loads = RUN_FORMS[self.core].loads  # (size, offset) of a pixel's loads in a run of 4
        if self.run >= 4 and not all(addressable(o + extra, size) for o in offsets for size, extra in run_loads):
            return False
        return all(addressable(o + 4 * s, 4) for o in offsets for s in range(self.run % 4))


def _load(size: int, reg: str, base: str, offset: int) -> str:
    """A load at an immediate offset: `ldr` where the offset scales, `ldur` (unscaled, [-256, 255]) else."""
    return f"{'ldr' if offset % size == 0 and offset >= 0 else 'ldur'} {reg}, [{base}, #{offset}]"


def _move(reg: str, value: int) -> list[str]:
    """A 32-bit constant into a register."""
    return [f"movz {reg}, #{value & 0xFFFF}"] + ([f"movk {reg}, #{value >> 16}, lsl #16"] if value >> 16 else [])


class _Registers:
    """The tile's registers: sums (p, v) in v{p V + v}, pixel p's inputs in v16 + p, step s's weights (s = 0-3 of a
    run) in v{24 + s V}."""

    def __init__(self, t: FloatTile):
        self.t = t

    def acc(self, p: int, v: int) -> int:
        return p * self.t.vectors + v

    def weights(self, step: int) -> str:
        """The load of a step's weight vectors, the pointer moved on to the next step's."""
        first = 24 + step * self.t.vectors
        return "ld1 {" + ", ".join(f"v{first + v}.4s" for v in range(self.t.vectors)) + "}, [$2], x12"

    def weight_halves(self, step: int) -> list[str]:
        """The load of a step's weight vectors in 64-bit halves (the upper through x14), the pointer moved on."""
        first = 24 + step * self.t.vectors
        lines = []
        for v in range(self.t.vectors):
            lines += [f"ldr d{first + v}, [$2, #{16 * v}]", f"ldr x14, [$2, #{16 * v + 8}]"]
            lines.append(f"ins v{first + v}.d[1], x14")
        return [*lines, "add $2, $2, x12"]

    def step(self, step: int, lane: int) -> list[str]:
        """One step's multiply-adds, pixel by pixel: input lane `lane` times the step's weight vectors."""
        first = 24 + step * self.t.vectors
        return [
            f"fmla v{self.acc(p, v)}.4s, v{first + v}.4s, v{16 + p}.s[{lane}]"
            for p in range(self.t.pixels)
            for v in range(self.t.vectors)
        ]


def _bunched_run(t: FloatTile, r: _Registers) -> list[str]:
    """A run of 4 steps for the Cortex-A53: every load first (two steps' weights, the pixels' inputs in one `ldr q`
    each, the other two steps' weights), then the 4 steps' multiply-adds. In-order, a load behind an `fmla` waits
    until it would write back after it (the A53 model: 5 cycles, a load's 4 against the `fmla`'s 10), so the loads
    come together, once a run."""
    lines = [r.weights(0), r.weights(1)]
    lines += [_load(16, f"q{16 + p}", "x10", p * t.pixel_bytes) for p in range(t.pixels)]
    lines += ["add x10, x10, #16", r.weights(2), r.weights(3)]
    for step in range(4):
        lines += r.step(step, step)
    return lines


def _paired_run(t: FloatTile, r: _Registers) -> list[str]:
    """A run of 4 steps for the Cortex-A55, whose 128-bit loads issue alone for 2 cycles and whose 64-bit loads pair
    with a Q-form `fmla` (slot 0, one a cycle): the pixels' inputs in two `ldr d` each (steps 0-1, then 2-3, loaded
    as step 1 frees each pixel's register), steps 2 and 3's weights in 64-bit halves (`ldr d`, `ldr x`, `ins`)
    between step 0's `fmla`s; steps 0 and 1's weights in `ld1` as on the A53."""
    lines = [r.weights(0), r.weights(1)]
    lines += [_load(8, f"d{16 + p}", "x10", p * t.pixel_bytes) for p in range(t.pixels)]
    halves, step0 = [line for step in (2, 3) for line in r.weight_halves(step)], r.step(0, 0)
    for i, fmla in enumerate(step0):
        lines += [fmla, *halves[i : i + 1]]
    lines += halves[len(step0) :]
    step1 = r.step(1, 1)
    for p in range(t.pixels):
        lines += step1[p * t.vectors : (p + 1) * t.vectors]
        lines.append(_load(8, f"d{16 + p}", "x10", p * t.pixel_bytes + 8))
    return [*lines, "add x10, x10, #16", *r.step(2, 0), *r.step(3, 1)]


@dataclass(frozen=True)
class RunForm:
    """How a core's runs of 4 steps are written: the function, a pixel's loads in them as (size, offset), and
    whether a 1 x 1 conv whose width whole tiles divide takes the kernel (else it keeps WindowReduction's code)."""

    write: Callable[[FloatTile, _Registers], list[str]]
    loads: tuple[tuple[int, int], ...]
    pointwise: bool


# the cores (LLVM's mcpu of the target) the kernel is written for, and the form of their runs of 4
RUN_FORMS: Mapping[str, RunForm] = MappingProxyType(
    {
        "cortex-a53": RunForm(_bunched_run, ((16, 0),), pointwise=True),
        # DDSNet's 1 x 1 convs executed 2-3% more estimated cycles in the kernel than in LLVM's tile, and 1-4% more
        # instructions (docs/notes/arm-cycle-estimate.md): there the A55 keeps LLVM's code
        "cortex-a55": RunForm(_paired_run, ((8, 0), (8, 8)), pointwise=False),
    }
)


def _runs_of_four(t: FloatTile, r: _Registers) -> list[str]:
    """The loop over a row's runs of 4 steps in the core's form (each moves the input pointer on by 16 bytes)."""
    body = RUN_FORMS[t.core].write(t, r)
    return [f"mov x11, #{t.run // 4}", "2:", *body, "subs x11, x11, #1", "b.ne 2b"]


def assembly(t: FloatTile) -> list[str]:
    """The kernel: the sums loaded, per window row the runs of 4 steps and the last steps, the sums stored.
    Operands: $0 sums, $1 the window's first input, $2 the tile's first weight (each clobbered: tied)."""
    r = _Registers(t)
    sums = [(r.acc(p, v), 16 * r.acc(p, v)) for p in range(t.pixels) for v in range(t.vectors)]
    lines = [f"ldr q{a}, [$0, #{offset}]" for a, offset in sums]
    lines += _move("x12", 4 * t.out_channels) + _move("x13", 4 * t.row_stride)
    if t.rows > 1:
        lines += [f"mov x9, #{t.rows}", "1:"]
    lines.append("mov x10, $1")
    if t.run >= 4:
        lines += _runs_of_four(t, r)
    for step in range(t.run % 4):
        lines.append(r.weights(step))
        lines += [_load(4, f"s{16 + p}", "x10", p * t.pixel_bytes + 4 * step) for p in range(t.pixels)]
        lines += r.step(step, 0)
    if t.rows > 1:
        lines += ["add $1, $1, x13", "subs x9, x9, #1", "b.ne 1b"]
    return lines + [f"str q{a}, [$0, #{offset}]" for a, offset in sums]


def llvm_ir(t: FloatTile) -> str:
    """The kernel as LLVM IR: i32 f(ptr sums, ptr input, ptr weights), returning 0."""
    text = "\\0A".join(assembly(t))  # LLVM IR's escaped newline
    used = [x for x in SCRATCH if re.search(rf"\b{x}\b", text)]  # LLVM keeps the others for the code around
    clobbers = ",".join([f"~{{v{i}}}" for i in range(32)] + [f"~{{{x}}}" for x in used] + ["~{memory}", "~{cc}"])
    return (
        f"define i32 @{t.name}(ptr %sums, ptr %input, ptr %weights) #0 {{\n"
        "entry:\n"
        f'  %r = call {{ ptr, ptr, ptr }} asm sideeffect "{text}", "=r,=r,=r,0,1,2,{clobbers}"'
        "(ptr %sums, ptr %input, ptr %weights)\n"
        "  ret i32 0\n"
        "}\n"
        "attributes #0 = { alwaysinline nounwind }\n"
    )


_registered: set[str] = set()


def tile_intrin(t: FloatTile) -> str:
    """Register (once per process) the TensorIntrin of the tile: sums[p, c] += sum over (y, x, i) of
    input[y, p stride + x, i] * weights[y, x, i, c]; returns its name."""
    if t.name not in _registered:
        from tvm.s_tir import TensorIntrin  # deferred: TVM loads where a PrimFunc is built

        TensorIntrin.register(t.name, _tile_func(t, call=False), _tile_func(t, call=True), override=True)
        _registered.add(t.name)
    return t.name


def _tile_func(t: FloatTile, call: bool):
    """The TensorIntrin's description (call False: the sums as TOPI's NHWC conv block computes them) or its
    implementation (the kernel's call)."""
    from tvm.script import tirx as T  # deferred: TVM loads where a PrimFunc is built

    P, F, KH, KW, C, S, O = t.pixels, 4 * t.vectors, t.rows, t.cols, t.channels, t.stride, t.out_channels
    span = (P - 1) * S + KW

    @T.prim_func(s_tir=True)
    def func(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (KH, span, C), "float32", strides=(t.row_stride, C, 1), offset_factor=1)
        B = T.match_buffer(b, (KH, KW, C, F), "float32", strides=(KW * C * O, C * O, O, 1), offset_factor=1)
        Acc = T.match_buffer(c, (P, F), "float32", offset_factor=1)
        with T.sblock("root"):
            T.reads(Acc[0:P, 0:F], A[0:KH, 0:span, 0:C], B[0:KH, 0:KW, 0:C, 0:F])
            T.writes(Acc[0:P, 0:F])
            if call:
                T.evaluate(T.call_extern("int32", t.name, Acc.access_ptr("rw"), A.access_ptr("r"), B.access_ptr("r")))
            elif KH == KW == 1:  # the conv's unit window loops fused into its channels' (A64FloatConv)
                for p, f, rc in T.grid(P, F, C):
                    with T.sblock("update"):
                        vp, vf, vc = T.axis.remap("SSR", [p, f, rc])
                        Acc[vp, vf] = Acc[vp, vf] + A[0, vp * S, vc] * B[0, 0, vc, vf]
            else:
                for p, f, ry, rx, rc in T.grid(P, F, KH, KW, C):
                    with T.sblock("update"):
                        vp, vf, vy, vx, vc = T.axis.remap("SSRRR", [p, f, ry, rx, rc])
                        Acc[vp, vf] = Acc[vp, vf] + A[vy, vp * S + vx, vc] * B[vy, vx, vc, vf]

    return func
