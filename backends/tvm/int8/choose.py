"""Which integer dot-product kernel (kernels.py) a target and a layer of the INT8 lowering take: the target's
kernel from its ISA (`TARGET_KERNELS`, `kernel_for`, `dot_kernel`), whether the input's quantization divides by
multiply-adds (`reciprocal_division`), and per layer whether the kernel takes the conv (`supports`), the twin the
layer's codes need (`codes_kernel`), its narrower twin (`narrow_kernel`), its one-product-per-lane twin for weights
that would overflow (`layer_kernel`) and, on ARM, the dot or broadcast form with or without an im2col copy
(`dot_form`). The twins are fields of the kernel records; the variants (variants/) call these per layer."""

from __future__ import annotations

import numpy as np

from ..isa import target_has, tvm_target
from . import microkernel
from .kernels import KERNELS, ConvShape, DotKernel

# The target's kernel: the first row whose triple and LLVM features the target has (x86 from its CPU's features: the
# host build is -mcpu=native, this machine's ISA; ARMv7 from the triple; AArch64 from whether its CPU / mattr has
# ARMv8.2's dot product, `dotprod`: Cortex-A55 and later, else ARMv8.0's widening multiply-accumulates, Cortex-A53)
TARGET_KERNELS = (
    ("arm", ("neon",), "tcc_dot_neon_s8"),
    ("aarch64", ("neon", "dotprod"), "tcc_dot_a64_sdot"),
    ("aarch64", ("neon",), "tcc_dot_a64_s8"),
    ("x86_64", ("avx512vnni", "avx512bw"), "tcc_dot_avx512_vnni"),
    ("x86_64", ("avxvnni", "avx2"), "tcc_dot_avx_vnni"),
    ("x86_64", ("avx512bw",), "tcc_dot_avx512_madd"),
    ("x86_64", ("avx2",), "tcc_dot_avx2_madd"),
)
IM2COL_MAX_CHANNELS = 15  # a dot form conv on fewer input channels reads an im2col copy of its input
IM2COL_MAX_BYTES = 4 << 20  # AArch64 `sdot`: the largest im2col copy a conv of ragged width reads (dot_form)


def kernel_for(target) -> DotKernel | None:
    """The dot-product kernel of a TVM target (TARGET_KERNELS; None: the generic integer conv)."""
    triple = str(target.attrs.get("mtriple", ""))
    return next(
        (
            KERNELS[name]
            for prefix, features, name in TARGET_KERNELS
            if triple.startswith(prefix) and all(target_has(target, f) for f in features)
        ),
        None,
    )


def reciprocal_division(target) -> bool:
    """Whether float32 division is better done by multiply-adds (int8.tir.exact_quotient): ARMv7 NEON has no
    vector division (one scalar vdiv.f32 per element) but VFPv4's fused multiply-add; x86 and AArch64 divide
    vectors exactly."""
    return (
        str(target.attrs.get("mtriple", "")).startswith("arm")
        and target_has(target, "neon")
        and target_has(target, "vfp4")
    )


def supports(shape: ConvShape, k: DotKernel) -> str | None:
    """Why the kernel cannot take this conv (None: it can)."""
    if shape.co % k.lanes:
        return f"{shape.co} output channels are not a multiple of {k.lanes} lanes"
    if shape.flat(k) and shape.dilations != (1, 1):
        return "a dilated conv whose input channels are not a multiple of the step"
    return None


def codes_kernel(k: DotKernel | None, dtype: str) -> DotKernel | None:
    """The kernel a layer on codes of `dtype` takes: the target's `k`, or for int16 codes a kernel that reads them
    (`k` itself, or its int16 twin; None where there is none: ARM's s8 kernels leave them to the generic conv)."""
    if k is None or dtype != "int16" or k.act_dtype == "int16":
        return k
    return None if k.int16_twin is None else KERNELS[k.int16_twin]


def narrow_kernel(shape: ConvShape, k: DotKernel) -> DotKernel:
    """`k`, or its narrower twins until one's lanes divide the layer's output channels (x86: a layer whose output
    channels fill only part of the kernel's vector, FastNet's 4-channel branches, took the generic int16 conv, 4x
    slower than their FP32 twins; docs/notes/vnni-narrow-twins.md). The VNNI twins' vpdpbusd ymm / xmm: AVX512-VL
    (EVEX) or AVX-VNNI (VEX) encoded."""
    while shape.co % k.lanes and k.narrow is not None:
        k = KERNELS[k.narrow]
    return k


def layer_kernel(k: DotKernel, packed: np.ndarray) -> DotKernel:
    """`k`, or its safe twin (one product per 16-bit lane) where the packed weights put two -128 codes on one
    16-bit lane (both products (-128) x (-128) = 2^15 overflow int16)."""
    if k.safe_twin is None:
        return k
    if k.form == "dot":  # a step's 16 codes: vmull on 0..7, vmlal on 8..15: lanes m and m + 8 share
        pairs: np.ndarray = packed.reshape(-1, 2, 8)
    else:
        pairs = packed.reshape(-1, k.pairs, k.lanes, k.group)  # (pairs, lanes, group) innermost
    if np.any((pairs == -128).all(axis=1)):
        return KERNELS[k.safe_twin]
    return k


def dot_form(shape: ConvShape, k: DotKernel) -> tuple[DotKernel, bool]:
    """The kernel a layer takes and whether it reads an im2col copy of its input. ARMv7: the dot form (16 codes of
    one pixel against 16 of one output channel per step, no broadcast) where the reduction runs in 16s: input
    channels a multiple of 16, or few input channels (a stem on RGB) through im2col, where the broadcast form
    takes the copy instead if the output width is odd; else the broadcast form. AArch64's `sdot`: its own kernel,
    through im2col (rows of whole 16-code blocks: its micro-kernel takes them) where the input channels are few or
    the output width is no multiple of 4 pixels."""
    few = shape.c <= IM2COL_MAX_CHANNELS and shape.kh * shape.kw > 1 and shape.n == 1  # im2col: one image
    if k.instruction == "sdot":  # im2col rows for its micro-kernel (microkernel.py): few input channels, or
        # a width that whole 4-pixel tiles do not cover (the copy's width is padded, microkernel.padded_width; fewer
        # instructions than one-pixel tiles: docs/notes/aarch64-dot-kernels.md); a copy past IM2COL_MAX_BYTES keeps
        # the direct form (a large layer's would outgrow the caches and memory)
        oh, ow = shape.out_hw
        ragged = shape.kh * shape.kw > 1 and shape.n == 1 and ow % microkernel.MAX_PIXELS["aarch64"] != 0
        copy = oh * microkernel.padded_width(ow) * shape.kh * shape.kw * shape.c
        return k, few or (ragged and copy <= IM2COL_MAX_BYTES)
    if k.form_twin is None:
        return k, False
    twin = KERNELS[k.form_twin]
    dot, broadcast = (k, twin) if k.form == "dot" else (twin, k)
    if shape.c % dot.group == 0:
        return dot, False
    if few:
        # a width with no divisor <= the dot form's pixel tile (FastNet's 127 and 31) leaves it one pixel of 4
        # channels, a sum of partial lanes per output: there the broadcast form (1 pixel x 16 channels, no lane
        # sums) on the same im2col copy executes fewer instructions (docs/notes/fastnet-odd-widths.md); where the
        # micro-kernel takes the copy it is padded to whole 2-pixel tiles instead, which executes more but takes
        # fewer cycles on the in-order core (FastNet's stem, arm-a7: docs/notes/arm-cycle-estimate.md, part 7)
        one_pixel = all(shape.out_hw[1] % p for p in range(2, dot.tile[0] + 1))
        return (broadcast if one_pixel and not microkernel.pads_im2col(dot, shape.window_codes(dot)) else dot), True
    return broadcast, False


def dot_kernel(target: str | None):
    """The integer dot-product kernel for a target of the registry (None: none, the generic form)."""
    return None if target is None else kernel_for(tvm_target(target))
