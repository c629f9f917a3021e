"""The quantizer of the DDSNet paper's equation (8): the single definition used everywhere in tcc.

    F(theta, delta, N_I) = clamp(-N_I/2, N_I/2 - 1, round(theta / delta))   signed
                           clamp(0,      N_I - 1,   round(theta / delta))   unsigned

with N_I = 2**bits (256 for 8 bits) and zero point 0 (symmetric). `round` is round-half-to-even, the rounding of
ONNX QuantizeLinear, so `fake_quant` here equals a QuantizeLinear -> DequantizeLinear pair in ONNX Runtime bit
for bit. A threshold T (the largest magnitude kept) becomes the scale T / (N_I/2 - 1) (signed: T -> 127) or
T / (N_I - 1) (unsigned: T -> 255).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

TINY = np.float32(1e-12)  # the smallest scale handed out: an all-zero tensor still gets a valid (positive) scale


def qrange(bits: int = 8, signed: bool = True) -> tuple[int, int]:
    """Integer bounds of equation (8) for N_I = 2**bits."""
    n = 1 << bits
    return (-(n // 2), n // 2 - 1) if signed else (0, n - 1)


def scale_for_threshold(threshold: npt.ArrayLike, bits: int = 8, signed: bool = True) -> np.ndarray:
    """The scale that maps `threshold` (scalar or per-channel array) onto the largest positive code."""
    top = qrange(bits, signed)[1]
    t = np.asarray(threshold, dtype=np.float64)
    scale: np.ndarray = np.maximum(t / top, TINY).astype(np.float32)
    return scale


def _bshape(scale: npt.ArrayLike, x: np.ndarray, axis: int | None) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float32)
    if s.ndim == 0 or axis is None:
        return s
    shape = [1] * x.ndim
    shape[axis] = -1
    return s.reshape(shape)


def quantize(
    x: npt.ArrayLike, scale: npt.ArrayLike, bits: int = 8, signed: bool = True, axis: int | None = None
) -> np.ndarray:
    """Equation (8): integer codes (int32 array) of x at `scale` (per-tensor, or per-channel along `axis`)."""
    xf = np.asarray(x, dtype=np.float32)
    lo, hi = qrange(bits, signed)
    q = np.rint(xf / _bshape(scale, xf, axis))
    codes: np.ndarray = np.clip(q, lo, hi).astype(np.int32)
    return codes


def dequantize(q: npt.ArrayLike, scale: npt.ArrayLike, axis: int | None = None) -> np.ndarray:
    codes = np.asarray(q)
    values: np.ndarray = (codes.astype(np.float32) * _bshape(scale, codes, axis)).astype(np.float32)
    return values


def fake_quant(
    x: npt.ArrayLike,
    scale: npt.ArrayLike,
    bits: int = 8,
    signed: bool = True,
    axis: int | None = None,
    zero_point: int = 0,
) -> np.ndarray:
    """dequantize(quantize(x)): the float value an integer backend sees (float32, like ORT's Q/DQ pair); with a
    zero point, codes round(x / s) + zero_point clamped to the code range (u8 with zero point 128, int8 with -128)."""
    xf = np.asarray(x, dtype=np.float32)
    s = _bshape(scale, xf, axis)
    lo, hi = qrange(bits, signed)
    seen: np.ndarray
    if zero_point:
        seen = ((np.clip(np.rint(xf / s) + zero_point, lo, hi) - zero_point) * s).astype(np.float32)
    else:
        seen = (np.clip(np.rint(xf / s), lo, hi) * s).astype(np.float32)
    return seen


def cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cosine similarity of two tensors taken as flat vectors (1.0 for two zero tensors)."""
    u = np.asarray(a, dtype=np.float64).ravel()
    v = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(u), np.linalg.norm(v)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(u @ v / (na * nb))
