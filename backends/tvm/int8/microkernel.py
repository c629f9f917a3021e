"""The ARMv7 dot form's whole reduction in one assembly loop: a register tile of 1 or 2 pixels x 4 output channels
of a 1 x 1 conv (the im2col'd stem, the dense layers' pointwise convs, linear layers over tokens), summed over all
its steps of 16 codes.

Why assembly: the dot form's step (intrinsics.py, `vmull.s8` + `vmlal.s8` + `vpadal.s16` per pixel and channel:
24 multiply instructions for a 2 x 4 tile) came out of LLVM with 11 more -- six 16-byte loads, three address
additions (`vld1` has no offset addressing, and LLVM's loop strength reduction recomputes the pointers from one
induction variable), a compare and a branch -- and the tile's zeroing and partial-lane sums around it. Here a
step is the 24 multiplies, four loads (the two pixels by register post-increments: +stride, then 16 - stride; the
four channels' 64 weight codes in two `vld1` of 32 bytes) and `subs` + `bne`; the first step starts the partial lanes
(`vpaddl`, no zeroing); the lanes are summed in registers and added to the tile's sums in memory (the
TensorIntrin's C += A B). DDSNet arm-a7 INT8: 102.5 M -> 93.0 M executed instructions
(docs/notes/arm-dot-microkernel.md). Bit for bit the same integer sums as the step
intrinsic: the same products in the same int16 lanes (codes 8 h + 2 l + j of a step on lane l), summed in int32.

The kernel is a function of LLVM IR (`llvm_ir`) that TVM links into the module (`pragma_import_llvm` on the
conv's loop) and inlines; the TensorIntrin (`tile_intrin`) calls it on a tile's input rows, packed weights
([steps, 4, 16] as `compute.pack_weights` lays out the dot form) and int32 sums [pixels, 4]."""
from __future__ import annotations

from .kernels import TILE_SCOPE, DotKernel

CHANNELS = 4  # output channels per tile: the dot form's (ConvShape.tile_channels on ARMv7)
IMPORT_PRAGMA = "pragma_import_llvm"


def function_name(pixels: int, pairs: bool) -> str:
    return f"tcc_neon_dot16_tile{pixels}x{CHANNELS}{'_pairs' if pairs else ''}"


def applies(k: DotKernel, shape, pixels: int) -> bool:
    """Whether a conv (a `kernels.ConvShape`) takes the micro-kernel: ARMv7's dot form, 1 x 1, stride 1, no padding
    (a tile's pixels are consecutive rows of the input), 1 or 2 pixels a tile, at least 2 steps (one step of 16
    input channels has no loop to save: its block has no step iterator either)."""
    return (k.form == "dot" and k.arch == "armv7" and (shape.kh, shape.kw) == (1, 1)
            and tuple(shape.strides) == (1, 1) and not any(shape.pads) and pixels in (1, 2)
            and shape.c % 16 == 0 and shape.c >= 32)


def _step(pixels: int, pairs: bool, first: bool) -> list[str]:
    """One step of 16 codes: the loads, then per channel and pixel the products widened into the partial lanes
    (the first step starts them with `vpaddl`, so that no zeroing is needed)."""
    acc = lambda p, c: 8 + 4 * p + c  # noqa: E731
    add = "vpaddl.s16" if first else "vpadal.s16"
    if pixels == 2:
        lines = ["vld1.8 {d0-d1}, [$0], $8", "vld1.8 {d2-d3}, [$0], $9"]
    else:
        lines = ["vld1.8 {d0-d1}, [$0]!"]
    lines += ["vld1.8 {d4-d7}, [$1]!", "vld1.8 {d8-d11}, [$1]!"]
    for c in range(CHANNELS):
        lo, hi = 4 + 2 * c, 5 + 2 * c  # channel c's weights: codes 0..7, 8..15
        if pairs:  # each half widened on its own: two -128 x -128 products would overflow an int16 lane
            for p in range(pixels):
                lines += [f"vmull.s8 q{6 + p}, d{2 * p}, d{lo}", f"{add} q{acc(p, c)}, q{6 + p}"]
            for p in range(pixels):
                lines += [f"vmull.s8 q{6 + p}, d{2 * p + 1}, d{hi}", f"vpadal.s16 q{acc(p, c)}, q{6 + p}"]
        else:
            lines += [f"vmull.s8 q{6 + p}, d{2 * p}, d{lo}" for p in range(pixels)]
            lines += [f"vmlal.s8 q{6 + p}, d{2 * p + 1}, d{hi}" for p in range(pixels)]
            lines += [f"{add} q{acc(p, c)}, q{6 + p}" for p in range(pixels)]
    return lines


def _assembly(pixels: int, pairs: bool) -> list[str]:
    """The first step, the loop over the others (steps >= 2) and the lane sums. Registers: pixel p's 16 codes in
    q{p}, channel c's 16 weights in q{2 + c}, products in q6 / q7, (pixel p, channel c)'s 4 partial lanes in
    q{8 + 4 p + c}. Operands: $0 input, $1 weights, $2 steps, $3 sums (each advanced; $4 to $7 are the same,
    tied), $8 the pixel stride, $9 16 - stride."""
    lines = [*_step(pixels, pairs, first=True), "subs $2, $2, #1", "1:", *_step(pixels, pairs, first=False),
             "subs $2, $2, #1", "bne 1b"]
    for p in range(pixels):  # channel c's lanes: d{2 a}, d{2 a + 1} of q{a}, a = 8 + 4 p + c
        d = [2 * (8 + 4 * p + c) for c in range(CHANNELS)]
        lines += [f"vpadd.i32 d{c}, d{d[c]}, d{d[c] + 1}" for c in range(CHANNELS)]
        lines += ["vpadd.i32 d0, d0, d1", "vpadd.i32 d1, d2, d3",
                  "vld1.32 {d2-d3}, [$3]", "vadd.i32 q0, q0, q1", "vst1.32 {d0-d1}, [$3]!"]
    return lines


def llvm_ir(pixels: int, pairs: bool) -> str:
    """The kernel as LLVM IR: i32 f(ptr sums, ptr input, ptr weights, i32 steps, i32 stride), returning 0."""
    asm = "\\0A".join(_assembly(pixels, pairs))
    clobbers = ",".join([f"~{{d{i}}}" for i in range(16 + 8 * pixels)] + ["~{memory}", "~{cc}"])
    return (
        f"define i32 @{function_name(pixels, pairs)}(ptr %sums, ptr %input, ptr %weights, i32 %steps, "
        "i32 %stride) #0 {\n"
        "entry:\n"
        "  %back = sub i32 16, %stride\n"
        f"  %r = call {{ ptr, ptr, i32, ptr }} asm sideeffect \"{asm}\", \"=r,=r,=r,=r,0,1,2,3,r,r,{clobbers}\""
        "(ptr %input, ptr %weights, i32 %steps, ptr %sums, i32 %stride, i32 %back)\n"
        "  ret i32 0\n"
        "}\n"
        "attributes #0 = { alwaysinline nounwind }\n")


_registered: set[str] = set()


def tile_intrin(pixels: int, steps: int, pairs: bool) -> str:
    """Register (once per process) the TensorIntrin of a tile of `pixels` x 4 channels over `steps` steps of 16
    codes: sums[p, c] += sum over (g, e) of input[p, 16 g + e] * weights[g, c, e]; returns its name."""
    name = f"{function_name(pixels, pairs)}_s{steps}"
    if name in _registered:
        return name
    from tvm.s_tir import TensorIntrin

    P, S, fn = pixels, steps, function_name(pixels, pairs)

    desc, impl = (_tile_func(P, S, fn, call) for call in (False, True))
    TensorIntrin.register(name, desc, impl, override=True)
    _registered.add(name)
    return name


def _tile_func(P: int, S: int, fn: str, call: bool):
    """The TensorIntrin's description (call False: the sums as the conv's block computes them) or its
    implementation (the kernel's call). A one-pixel tile's block has no pixel iterator (a unit loop is not one)."""
    from tvm.script import tirx as T

    C, K = CHANNELS, S * 16

    @T.prim_func(s_tir=True)
    def func(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (P, K), "int8", offset_factor=1)
        B = T.match_buffer(b, (S, C, 16), "int8", offset_factor=1)
        Acc = T.match_buffer(c, (P, C), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(Acc[0:P, 0:C], A[0:P, 0:K], B[0:S, 0:C, 0:16])
            T.writes(Acc[0:P, 0:C])
            if call:
                T.evaluate(T.call_extern("int32", fn, Acc.access_ptr("rw"), A.access_ptr("r"), B.access_ptr("r"),
                                         T.int32(S), T.int32(K)))
            elif P == 1:
                for ch, g, e in T.grid(C, S, 16):
                    with T.sblock("update"):
                        vc, vg, ve = T.axis.remap("SRR", [ch, g, e])
                        Acc[0, vc] = Acc[0, vc] + T.Cast("int32", A[0, vg * 16 + ve]) * T.Cast("int32", B[vg, vc, ve])
            else:
                for p, ch, g, e in T.grid(P, C, S, 16):
                    with T.sblock("update"):
                        vp, vc, vg, ve = T.axis.remap("SSRR", [p, ch, g, e])
                        Acc[vp, vc] = Acc[vp, vc] + T.Cast("int32", A[vp, vg * 16 + ve]) * T.Cast(
                            "int32", B[vg, vc, ve])
    return func
