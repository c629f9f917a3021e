"""int16 codes on AArch64's 8-bit dot-product kernels as two 8-bit digits: the kernel variants `digits_conv` (a
dense conv) and `digits_rows` (a linear layer over rows). x = 256 hi + lo with hi = x >> 8 (int8) and lo = x & 255
(uint8, shifted to s8 by the kernel's offset): two calls of the kernel (dot_conv.dot_call), acc = (acc_hi << 8) +
acc_lo, exact. On AArch64 `sdot` has no 16-bit form: the generic conv's `smlal` did a quarter of its products per
instruction. x86 has its int16-pair twin instead (choose.codes_kernel); ARMv7 keeps the generic conv (its dot form
twice cost what LLVM's `vmlal.s16` does once). Measured on MobileViT-XXS with 111 of its 178 activations widened:
docs/notes/w8a16-what-if.md.

- takes: int16 codes at zero point 0 on an AArch64 target, a dense conv (or a linear layer) the kernel takes, and
  weights and bias that keep every partial sum inside int32 (`digits_fit`);
- compute, intrinsics, schedule: the dot conv's (dot_conv.py), twice; the requantization in the tile's epilogue.
"""

from __future__ import annotations

import numpy as np

from tcc.quant.intgraph.fixed_point import INT32_MAX
from tcc.quant.intgraph.qtypes import QNode

from .. import choose
from ..codes import _Codes
from .base import Layer
from .dot_conv import DotMatch, dot_call, dot_match, dot_variant, on_rows, rows_shape


def digits_fit(weight: np.ndarray, bias) -> bool:
    """Whether a layer of OIHW `weight` codes (and `bias`) keeps every partial sum of its two-digit form in int32:
    per output channel sum |w| (2^15 + 256) + |bias| (the high digit's products << 8, the low digit's, the kernel's
    shift and the bias)."""
    sums = np.abs(weight.astype(np.int64)).reshape(len(weight), -1).sum(axis=1)
    extra = np.abs(np.asarray(bias, np.int64)) if bias is not None else 0
    return bool(np.max(sums * (2**15 + 256) + extra) <= INT32_MAX)


def takes_digits(layer: Layer) -> bool:
    """Whether the layer's codes go to the target's kernel as two 8-bit digits: int16 codes on AArch64."""
    return layer.dtype == "int16" and layer.kernel is not None and layer.kernel.arch == "aarch64"


def _match(layer: Layer, shape, weight: np.ndarray, what: str) -> DotMatch | None:
    assert layer.kernel is not None
    if not digits_fit(weight, layer.node.bias):
        return None
    # the digits are 8-bit codes: the target's own kernel
    return dot_match(layer, shape, layer.kernel, weight, f"{what} on int16 codes: two 8-bit digits, two calls")


def match_conv(layer: Layer) -> DotMatch | None:
    if not takes_digits(layer) or layer.node.attrs["group"] != 1:
        return None
    assert layer.kernel is not None
    shape = layer.conv_shape(int16=True)
    if shape is None or choose.supports(shape, choose.narrow_kernel(shape, layer.kernel)) is not None:
        return None
    return _match(layer, shape, layer.weight, f"dense {shape.kh} x {shape.kw}, {shape.c} -> {shape.co} channels")


def digits_call(low, n: QNode, x: _Codes, codes, m: DotMatch) -> list:
    """reference.conv on int16 `codes` as two calls of the 8-bit kernel, requantized in the second's epilogue."""
    op = low.relax.op
    high = low.cast(low.emit(op.right_shift(codes, low.const(8, "int16"))), "int8")
    low_digit = low.cast(low.emit(op.bitwise_and(codes, low.const(255, "int16"))), "uint8")
    acc_high, c_high, _ = dot_call(low, high, m.weight, m.plan)
    # (acc_high << 8) + acc_low: the low digit's accumulators start from the bias
    acc_low, c_low, started = dot_call(low, low_digit, m.weight, m.plan, lambda c: low.bias(n, c_high * 256 + c))
    acc = low.emit(op.add(low.emit(op.left_shift(acc_high, low.const(8, "int32"))), acc_low))
    return low.accumulated(n, acc, x.params, c_high * 256 + c_low, in_kernel=True, started=started)


def emit_conv(low, n: QNode, x: _Codes, m: DotMatch) -> list:
    return digits_call(low, n, x, x.expr, m)


def match_rows(layer: Layer) -> DotMatch | None:
    found = rows_shape(layer, layer.kernel) if takes_digits(layer) else None
    if found is None:
        return None
    shape, weight = found
    return _match(layer, shape, weight, f"linear over {shape.w} rows, {shape.c} -> {shape.co}")


def emit_rows(low, n: QNode, x: _Codes, m: DotMatch) -> list:
    return on_rows(low, n, x, m, lambda codes: digits_call(low, n, x, codes, m))


ABOUT_CONV = "AArch64: a dense conv on int16 codes as two 8-bit digits, two calls of the dot kernel"
ABOUT_ROWS = "AArch64: a linear layer over rows of int16 codes as two 8-bit digits on the dot kernel"
CONV = dot_variant("digits_conv", "conv", match_conv, emit_conv, ABOUT_CONV)
ROWS = dot_variant("digits_rows", "gemm", match_rows, emit_rows, ABOUT_ROWS)
