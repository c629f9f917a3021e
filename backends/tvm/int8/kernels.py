"""Integer dot-product micro-kernels for tcc's INT8 convolutions: one per instruction set, chosen from the target.

The generic integer conv (backends/tvm/int8/lower.py: int16 codes, int32 products) leaves LLVM to multiply 32-bit
lanes: `vpmulld` on x86 (8 products per instruction, slower than the float FMA), `vmlal.s16` on ARMv7. The CPUs
have better instructions, each summing several 8- or 16-bit products into one 32-bit lane:

| kernel (tcc_dot_) | instruction (per accumulator vector)           | lanes | products / lane / step | codes read |
|-------------------|------------------------------------------------|-------|------------------------|------------|
| `avx512_vnni`     | `vpdpbusd` zmm                                 | 16    | 4                      | u8 x s8    |
| `avx_vnni`        | `vpdpbusd` ymm                                 | 8     | 4                      | u8 x s8    |
| `vnni_xmm`        | `vpdpbusd` xmm (4 output channels)             | 4     | 4                      | u8 x s8    |
| `avx512_madd`     | `vpmaddwd` zmm + `vpaddd`                      | 16    | 2                      | s16 x s16  |
| `avx2_madd`       | `vpmaddwd` ymm + `vpaddd`                      | 8     | 2                      | s16 x s16  |
| `sse2_madd`       | `vpmaddwd` xmm + `vpaddd` (4 output channels)  | 4     | 2                      | s16 x s16  |
| `neon_s8`         | `vmull.s8` + `vmlal.s8` + `vpadal.s16` (ARMv7) | 4     | 4 (2 x 2)              | s8 x s8    |
| `neon_s8_pairs`   | `vmull.s8` + `vpadal.s16` (ARMv7)              | 4     | 2                      | s8 x s8    |
| `a64_sdot`        | `sdot` (ARMv8.2 dotprod: Cortex-A55, A76)      | 4     | 4                      | s8 x s8    |
| `a64_s8`          | `smull` + `smlal` + `sadalp` (ARMv8.0: A53)    | 4     | 4 (2 x 2)              | s8 x s8    |
| `a64_s8_pairs`    | `smull` + `sadalp` (ARMv8.0)                   | 4     | 2                      | s8 x s8    |
| `a64_dot16`       | `smull` + `smlal2` + `sadalp`, dot form        | 4     | 16 (4 partial lanes)   | s8 x s8    |

Every one is exact: `vpdpbusd` adds its four u8 x s8 products into int32 without saturation (unlike
`vpmaddubsw`, which saturates int16 on 255 x (127 + 127): why no `vpmaddubsw` kernel), `vpmaddwd` sums two
16-bit products into int32, `sdot` four s8 x s8 products into int32, and on ARMv7 (and ARMv8.0) an int16 lane
holds two s8 x s8 products, which fit unless both are (-128) x (-128): a layer whose weights pair two -128 codes
on one lane takes `neon-s8-pairs` (`a64-s8-pairs`: one product per lane) instead -- decided per layer from its
weight codes (`layer_kernel`).

A kernel reads its activation codes in its own type; the lowering converts them on the way (the conversion fuses
into the producing layer): int16 for `vpmaddwd`; u8 for `vpdpbusd`, s8 codes shifted by +128; s8 on ARM, u8 codes
shifted by -128. A shift by o adds o * sum(w) to every output of the channel, which the bias takes back
(`bias_correction`), and the padding holds the shifted zero code, so that the identity holds at the borders too.

The conv (`conv_primfunc`) is a TE compute whose reduction is split into steps of the kernel's shape: the
weights are packed [C_out / lanes, kh, kw, groups of the reduction, (pairs,) lanes, group] (`pack_weights`), so
that one step of one vector of output channels reads `lanes x group` consecutive weights and a `group` of
consecutive input channels of one pixel (broadcast to every lane). Where the input channels are not a multiple of
the step (a stem on RGB), the step runs along the flattened (x, channel) row of the input instead, which is
contiguous for a window (the weights past the window are zero, the input one pixel wider). tcc's schedule rule
(backends/tvm/schedule/int8_rules.py, `Int8DotConv`) tiles pixels x output channels in registers and tensorizes the step
with the kernel's TensorIntrin (intrinsics.ensure_registered).

On ARM a 1 x 1 conv of the dot form (and AArch64's `sdot`) runs its whole reduction in one assembly loop
(microkernel.py): LLVM's code for ARMv7's step intrinsic spent 11 instructions on loads, pointers and the loop per
24 multiplies.

This module holds the kernels' table (`DotKernel`, `KERNELS`: each record names its related kernels -- its narrower,
int16, safe and form twins), the names of the shared blocks and annotations that the schedule rules look for, and a
dense conv's shape (`ConvShape`); which kernel a target and a layer take is choose.py's, the convs' TE computes and
the weight packing compute.py's, the TensorIntrins intrinsics.py's; which variant of the lowering a layer takes
(the dot conv, digits, depthwise rows, ...) is decided in variants/.
"""

from __future__ import annotations

from dataclasses import dataclass

CONV_BLOCK = "tcc_dot_conv"  # the TE compute's name: the block tcc's schedule rule looks for
PAD_BLOCK = "tcc_dot_pad"
# a depthwise conv's padded input (variants/depthwise_taps.py: int16; the windows' padded copy, variants/windows.py);
# the block names of each variant's own computes are its module's
DEPTHWISE_PAD_BLOCK = "tcc_dw_pad"
QUANTIZE_BLOCK = "quantize"  # the graph input's quantization (int8.tir.quantize_input_primfunc)
SUM_BLOCK = "tcc_dot_sum"  # the dot form's sum of a tile's partial lanes
# A reduction computed over a width rounded up to whole register tiles (tcc's own PrimFuncs: the NCHW-input float
# stem, the im2col'd INT8 stem on AArch64's `sdot`), whose result this block crops to the output's width: the tile
# accumulates without a predicate, only the crop's stores have one (schedule.float_pixel_tile,
# microkernel.padded_width; measured: docs/notes/avx512-host-fp32.md, docs/notes/aarch64-dot-kernels.md)
CROP_BLOCK = "tcc_crop"
# The register tiles of the INT8 schedules (accumulators, partial sums) and their intrinsics' operands: "global"
# scope, not "local". Both are stack arrays to LLVM, which keeps them in registers; but TVM 0.27's LowerTVMBuiltin
# leaves only small "global" allocations on the stack and serves every "local" one with a TVMBackendAllocWorkspace
# / FreeWorkspace pair, per tile and row inside the parallel loop, behind a pointer LLVM cannot promote to
# registers (docs/notes/int8-tiles-off-workspace.md).
TILE_SCOPE = "global"
# Except the ARMv7 dot form's tile (2 pixels x 4 channels x 4 partial lanes, `Int8DotConv._dot`): in registers
# that tile and its operands need all 16 q registers and LLVM spills; behind the workspace pointer it stays a load
# and a store per step, fewer instructions, at one workspace pair per row. Its partial sums (4 lanes per channel
# summed, `partial_sum_intrin`) are a stack array in registers, and on one-pixel tiles its intrinsic's operands are
# values (`ensure_registered`); measured: docs/notes/int8-tiles-off-workspace.md. The 1 x 1 convs of two steps or more
# take the assembly tile instead (microkernel.py: its registers are its own); this is the others' (padded or
# strided 1 x 1 convs, k x k convs on 16 channels or more).
DOT_TILE_SCOPE = "local"
KERNEL_ATTR = "tcc.dot_kernel"  # block annotations: the kernel's name,
FLAT_ATTR = "tcc.dot_flat_channels"  # in the flat form the input channels (0: the direct form),
VECTORS_ATTR = "tcc.dot_tile_vectors"  # and the vectors of output channels per register tile
MICROKERNEL_ATTR = "tcc.dot_microkernel"  # an ARM assembly tile (microkernel.py): `Tile.encode()`


@dataclass(frozen=True)
class DotKernel:
    """One dot-product kernel: its step's shape and types, how a target gets it, and its relations to the other
    kernels (by name, each a key of KERNELS): choose.py follows them, a layer at a time."""

    name: str  # the TensorIntrin's name
    lanes: int  # int32 accumulators per vector: output channels per step
    group: int  # consecutive input codes per product pair / quad, read as one broadcast
    pairs: int  # groups summed per 16-bit lane before they widen into the accumulator (ARM), else 1
    act_dtype: str  # the activation codes as the kernel reads them
    weight_dtype: str
    tile: tuple[int, int]  # (pixels, vectors of output channels) per register tile; dot form: output channels
    features: str  # what the target must have, for the docs and the manifest
    form: str = "broadcast"  # or "dot": lanes along the reduction (`dot_conv_primfunc`)
    arch: str = "x86_64"  # the instruction set's (targets.Platform.arch): which requantization form it takes
    instruction: str = ""  # what its step executes: the key of its implementation (intrinsics.STEPS)
    narrow: str | None = None  # x86: the twin of half the lanes, for output channels that fill part of a vector
    int16_twin: str | None = None  # x86: the twin that reads int16 codes (`vpmaddwd`) where this one reads 8-bit ones
    safe_twin: str | None = None  # ARM: the twin of one product per 16-bit lane, for weights that pair two -128 codes
    safe: bool = False  # ARM: one product per 16-bit lane (each half of a step widened on its own)
    form_twin: str | None = None  # ARM: the same instructions' other form (broadcast <-> dot)
    depthwise_rows: bool = False  # its instruction takes the depthwise convs too, 4 rows a lane (variants/)

    @property
    def step(self) -> int:
        """Reduction elements per step."""
        return self.group * self.pairs

    def act_offset(self, source_dtype: str) -> int:
        """What the lowering adds to codes of `source_dtype` (int8 / uint8) to give the kernel its type."""
        if self.act_dtype == "uint8" and source_dtype == "int8":
            return 128
        if self.act_dtype == "int8" and source_dtype == "uint8":
            return -128
        return 0


# fmt: off
# The register tiles (`tile`) are the best measured: AVX-512 VNNI 6 x 4 (docs/notes/x86-int8-zen5.md), ARMv7's
# broadcast form 2 x 4 (docs/notes/fastnet-odd-widths.md), AArch64's `sdot` 6 x 4 and dot form 4 x 4
# (docs/notes/aarch64-dot-kernels.md)
KERNELS = {
    k.name: k
    for k in (
        DotKernel("tcc_dot_avx512_vnni", 16, 4, 1, "uint8", "int8", (6, 4), "avx512vnni", instruction="vpdpbusd",
                  narrow="tcc_dot_avx_vnni", int16_twin="tcc_dot_avx512_madd", depthwise_rows=True),
        DotKernel("tcc_dot_avx_vnni", 8, 4, 1, "uint8", "int8", (6, 2), "avxvnni", instruction="vpdpbusd",
                  narrow="tcc_dot_vnni_xmm", int16_twin="tcc_dot_avx2_madd"),
        DotKernel("tcc_dot_vnni_xmm", 4, 4, 1, "uint8", "int8", (4, 1), "avx512vnni + avx512vl, or avxvnni",
                  instruction="vpdpbusd", int16_twin="tcc_dot_sse2_madd"),
        DotKernel("tcc_dot_avx512_madd", 16, 2, 1, "int16", "int16", (6, 2), "avx512bw", instruction="vpmaddwd",
                  narrow="tcc_dot_avx2_madd"),
        DotKernel("tcc_dot_avx2_madd", 8, 2, 1, "int16", "int16", (4, 2), "avx2", instruction="vpmaddwd",
                  narrow="tcc_dot_sse2_madd"),
        DotKernel("tcc_dot_sse2_madd", 4, 2, 1, "int16", "int16", (4, 1), "sse2", instruction="vpmaddwd"),
        DotKernel("tcc_dot_neon_s8", 4, 2, 2, "int8", "int8", (2, 4), "ARMv7 NEON", arch="armv7",
                  instruction="mull+padal", safe_twin="tcc_dot_neon_s8_pairs", form_twin="tcc_dot_neon_dot16"),
        DotKernel("tcc_dot_neon_s8_pairs", 4, 2, 1, "int8", "int8", (2, 4), "ARMv7 NEON", arch="armv7",
                  instruction="mull+padal", safe=True, form_twin="tcc_dot_neon_dot16_pairs"),
        DotKernel("tcc_dot_neon_dot16", 4, 16, 1, "int8", "int8", (2, 4), "ARMv7 NEON", arch="armv7", form="dot",
                  instruction="dot16", safe_twin="tcc_dot_neon_dot16_pairs", form_twin="tcc_dot_neon_s8"),
        DotKernel("tcc_dot_neon_dot16_pairs", 4, 16, 1, "int8", "int8", (2, 4), "ARMv7 NEON", arch="armv7",
                  form="dot", instruction="dot16", safe=True, form_twin="tcc_dot_neon_s8_pairs"),
        DotKernel("tcc_dot_a64_sdot", 4, 4, 1, "int8", "int8", (6, 4), "ARMv8.2 dotprod", arch="aarch64",
                  instruction="sdot", depthwise_rows=True),
        DotKernel("tcc_dot_a64_s8", 4, 2, 2, "int8", "int8", (4, 4), "AArch64 AdvSIMD", arch="aarch64",
                  instruction="mull+padal", safe_twin="tcc_dot_a64_s8_pairs", form_twin="tcc_dot_a64_dot16"),
        DotKernel("tcc_dot_a64_s8_pairs", 4, 2, 1, "int8", "int8", (4, 4), "AArch64 AdvSIMD", arch="aarch64",
                  instruction="mull+padal", safe=True, form_twin="tcc_dot_a64_dot16_pairs"),
        DotKernel("tcc_dot_a64_dot16", 4, 16, 1, "int8", "int8", (4, 4), "AArch64 AdvSIMD", arch="aarch64",
                  form="dot", instruction="dot16", safe_twin="tcc_dot_a64_dot16_pairs", form_twin="tcc_dot_a64_s8"),
        DotKernel("tcc_dot_a64_dot16_pairs", 4, 16, 1, "int8", "int8", (4, 4), "AArch64 AdvSIMD", arch="aarch64",
                  form="dot", instruction="dot16", safe=True, form_twin="tcc_dot_a64_s8_pairs"),
    )
}
# fmt: on


def depthwise_rows_kernel(arch: str) -> DotKernel:
    """The dot kernel of an instruction set whose instruction takes the depthwise convs on 4 rows a lane (its lanes
    and code type are theirs)."""
    return next(k for k in KERNELS.values() if k.depthwise_rows and k.arch == arch)


@dataclass(frozen=True)
class ConvShape:
    """A dense (groups = 1) conv in NHWC: what the kernel's compute and the weight packing need."""

    n: int
    h: int
    w: int
    c: int  # input channels
    co: int
    kh: int
    kw: int
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    dilations: tuple[int, int]

    @property
    def out_hw(self) -> tuple[int, int]:
        (sh, sw), (dh, dw) = self.strides, self.dilations
        pt, pl, pb, pr = self.pads
        return (
            (self.h + pt + pb - dh * (self.kh - 1) - 1) // sh + 1,
            (self.w + pl + pr - dw * (self.kw - 1) - 1) // sw + 1,
        )

    def window_codes(self, k: DotKernel) -> int:
        """One pixel's window (kh, kw, c) in whole groups of the kernel's codes: an im2col copy's row."""
        return -(-self.kh * self.kw * self.c // k.group) * k.group

    def flat(self, k: DotKernel) -> bool:
        """Steps along the flattened (x, channel) row of the window: input channels not a multiple of the step."""
        return self.c % k.step != 0 and k.form != "dot"

    def steps(self, k: DotKernel) -> int:
        """Steps per kernel row (flat) or per kernel tap (direct)."""
        return -(-self.kw * self.c // k.step) if self.flat(k) else self.c // k.step

    def tile_channels(self, k: DotKernel) -> int:
        """Output channels per register tile of the dot form: the kernel's, or the largest multiple of 4 dividing
        the layer's."""
        return max(d for d in range(4, k.tile[1] + 1, 4) if self.co % d == 0)

    def tile_vectors(self, k: DotKernel) -> int:
        """Vectors of output channels per register tile: the kernel's, or the largest divisor of the layer's."""
        vectors = self.co // k.lanes
        return max(d for d in range(1, min(vectors, k.tile[1]) + 1) if vectors % d == 0)

    def extra_columns(self, k: DotKernel) -> int:
        """Pixels added right of the padded input so that a flat step past the window stays inside."""
        if not self.flat(k):
            return 0
        over = self.steps(k) * k.step - self.kw * self.c
        return -(-over // self.c)
