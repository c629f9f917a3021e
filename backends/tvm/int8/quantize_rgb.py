"""The graph input's quantization on ARMv7 for an RGB image: its three float planes (NCHW) to 8-bit codes channels
last, one assembly loop per image row (8 pixels an iteration), in place of `tir.quantize_input_primfunc` with the
transpose fused behind it.

That PrimFunc's vectors run along the width, where the planes are contiguous, and TVM stores their codes lane by
lane with a stride of the channels (a `vst1.8` lane store and an address addition a code), and writes its clamps as
compare-and-select: FastNet's 256 x 256 input took 4.54 M estimated Cortex-A7 cycles, 23 a code. Here each row's
codes of 8 pixels leave in one `vst3.8` (interleaved), the clamps are `vmax` / `vmin`, and the rounding's last
steps are integer: FastNet's input 1.3 M estimated cycles (docs/notes/arm-cycle-estimate.md, part 7).

The arithmetic is `tir.exact_quotient`'s, operation for operation on the same NEON float unit: x clamped to
+-QUOTIENT_CLAMP s, q = x r, two corrections q' = fma(fma(-q, s, x), r, q); then v + 1.5 * 2^23, whose low 16 bits
are rint(v) (|v| <= 1024, the magic number's low bits zero), the zero point added in int16 and the code saturated
to the type (`vqmovun.s16` / `vqmovn.s16`): clamp(rint(v) + zp, lo, hi) = rint(clamp(v, lo - zp, hi - zp)) + zp
where lo / hi are the type's bounds (`applies`). NEON flushes subnormals to zero, as the PrimFunc's vectors do. A
NaN gives the zero point's code (the PrimFunc's compare-and-select gives the lowest; the reference leaves it
undefined)."""

from __future__ import annotations

import numpy as np

from tcc.quant.intgraph.qtypes import QParams

from ..asm import IMPORT_PRAGMA
from .tir import QUOTIENT_CLAMP, exact_quotient_applies

CHANNELS = 3  # RGB: the stores' interleave (`vst3.8`)
PIXELS = 8  # a loop iteration's pixels: two float vectors of each channel
MAGIC = np.float32(1.5 * 2.0**23)  # v + MAGIC holds rint(v) in its low bits (tir.quantize_input_primfunc)

# registers: a wave's three float vectors (q0-q2), their quotients (q3-q5) and residuals (q6-q8); q9 holds the
# first wave's codes (d19) and its half of channel 1 (d18); the constants -bound, bound, 1 / s, s, MAGIC in
# q11-q15, the zero point (int16) in q10
_CONSTANTS = ("q11", "q12", "q13", "q14", "q15")


def applies(shape, p: QParams) -> bool:
    """Whether the kernel takes an input of `shape` quantized with `p`: one static RGB image (NCHW) whose width is
    whole loop iterations, 8-bit codes clamped only to their type's bounds, the quotient's bounds
    (tir.exact_quotient_applies)."""
    if len(shape) != 4 or not all(isinstance(d, (int, np.integer)) for d in shape):
        return False
    n, c, _, w = (int(d) for d in shape)
    if n != 1 or c != CHANNELS or w % PIXELS or p.dtype not in ("uint8", "int8"):
        return False
    info = np.iinfo(p.dtype)
    return p.lo == info.min and p.hi == info.max and exact_quotient_applies(p)


def _constants(p: QParams) -> list[str]:
    """The loop's constants into their registers, through r12 (the zero point last: the loop reloads it)."""
    s = np.float32(p.scale)
    bound = s * np.float32(QUOTIENT_CLAMP)
    values = (-bound, bound, np.float32(1) / s, s, MAGIC)
    lines = []
    for reg, value in zip(_CONSTANTS, values):
        bits = int(np.float32(value).view(np.uint32))
        lines += [f"movw r12, #{bits & 0xFFFF}", f"movt r12, #{bits >> 16}", f"vdup.32 {reg}, r12"]
    if p.zp:
        lines += [f"movw r12, #{p.zp & 0xFFFF}", "vdup.16 q10, r12"]
    return lines


def _wave(sources: tuple[str, str, str]) -> list[str]:
    """Three float vectors (4 pixels of a channel each, from the plane pointers `sources`) to v + MAGIC, each step
    on the three at once (independent chains on an in-order core)."""
    x, q, e = ("q0", "q1", "q2"), ("q3", "q4", "q5"), ("q6", "q7", "q8")
    low, high, recip, s, magic = _CONSTANTS
    lines = [f"vld1.32 {{d{2 * k}-d{2 * k + 1}}}, [{src}]!" for k, src in enumerate(sources)]
    steps = (
        lambda k: f"vmax.f32 {x[k]}, {x[k]}, {low}",
        lambda k: f"vmin.f32 {x[k]}, {x[k]}, {high}",
        lambda k: f"vmul.f32 {q[k]}, {x[k]}, {recip}",  # q = x r
        lambda k: f"vmov {e[k]}, {x[k]}",
        lambda k: f"vfms.f32 {e[k]}, {q[k]}, {s}",  # fma(-q, s, x)
        lambda k: f"vfma.f32 {q[k]}, {e[k]}, {recip}",  # q' = fma(residual, r, q)
        lambda k: f"vfms.f32 {x[k]}, {q[k]}, {s}",  # the second correction (x no longer needed)
        lambda k: f"vfma.f32 {q[k]}, {x[k]}, {recip}",
        lambda k: f"vadd.f32 {q[k]}, {q[k]}, {magic}",
    )
    return lines + [step(k) for step in steps for k in range(3)]


def assembly(p: QParams) -> list[str]:
    """The loop: operands $0 the codes (advanced 24 a pass), $1 / $2 / $3 the R / G / B planes (advanced 32 bytes),
    $4 the passes left. Wave 1: channel 0 and the first half of channel 1; wave 2: the rest."""
    narrow = "vqmovn.s16" if p.dtype == "int8" else "vqmovun.s16"
    zp = lambda reg: [f"vadd.i16 {reg}, {reg}, q10"] if p.zp else []  # noqa: E731
    return [
        *_constants(p),
        "1:",
        *_wave(("$1", "$1", "$2")),
        "vmovn.i32 d12, q3",  # channel 0: the low 16 bits, rint(v)
        "vmovn.i32 d13, q4",
        "vmovn.i32 d18, q5",  # channel 1's first 4 pixels, kept for wave 2
        *zp("q6"),
        f"{narrow} d19, q6",
        *_wave(("$2", "$3", "$3")),
        "vmov d0, d18",
        "vmovn.i32 d1, q3",
        "vmovn.i32 d2, q4",
        "vmovn.i32 d3, q5",
        *zp("q0"),
        *zp("q1"),
        f"{narrow} d20, q0",
        f"{narrow} d21, q1",
        "vst3.8 {d19, d20, d21}, [$0]!",
        *(["vdup.16 q10, r12"] if p.zp else []),  # d20 / d21 overwrote the zero point
        "subs $4, $4, #1",
        "bne 1b",
    ]


def kernel_name(p: QParams) -> str:
    bits = int(np.float32(p.scale).view(np.uint32))
    return f"tcc_neon_quantize_rgb_{p.dtype}_{bits:08x}_{p.zp & 0xFFFF:04x}"


def llvm_ir(p: QParams) -> str:
    """The kernel as LLVM IR: i32 f(ptr codes, ptr row, i32 plane, i32 passes), row: the R plane's row, plane: the
    planes' distance in floats; returns 0."""
    clobbers = ",".join([f"~{{d{i}}}" for i in range(32)] + ["~{r12}", "~{memory}", "~{cc}"])
    text = "\\0A".join(assembly(p))
    return (
        f"define i32 @{kernel_name(p)}(ptr %codes, ptr %row, i32 %plane, i32 %passes) #0 {{\n"
        "entry:\n"
        "  %green = getelementptr float, ptr %row, i32 %plane\n"
        "  %blue = getelementptr float, ptr %green, i32 %plane\n"
        '  %r = call { ptr, ptr, ptr, ptr, i32 } asm sideeffect "'
        f'{text}", "=r,=r,=r,=r,=r,0,1,2,3,4,{clobbers}"(ptr %codes, ptr %row, ptr %green, ptr %blue, i32 %passes)\n'
        "  ret i32 0\n"
        "}\n"
        "attributes #0 = { alwaysinline nounwind }\n"
    )


def quantize_rgb_primfunc(shape, p: QParams):
    """x [1, 3, h, w] float32 -> codes [1, h, w, 3] (p.dtype): the kernel once per row (`applies` must hold)."""
    from tvm.script import tirx as T  # deferred: TVM loads where a PrimFunc is built

    _, _, h, w = (int(d) for d in shape)
    name, passes, ir = kernel_name(p), w // PIXELS, llvm_ir(p)

    @T.prim_func(s_tir=True)
    def quantize(
        x: T.Buffer((1, CHANNELS, h, w), "float32"),  # type: ignore[valid-type]
        codes: T.Buffer((1, h, w, CHANNELS), p.dtype),  # type: ignore[valid-type]
    ):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})
        with T.sblock("root"):
            for y in T.serial(h, annotations={IMPORT_PRAGMA: ir}):
                T.evaluate(
                    T.call_extern(
                        "int32",
                        name,
                        codes.access_ptr("w", offset=y * w * CHANNELS),
                        x.access_ptr("r", offset=y * w),
                        T.int32(h * w),
                        T.int32(passes),
                    )
                )

    return quantize.without_attr("global_symbol")
