"""LiteRT's int8 kernels of unary ops (LOGISTIC, TANH, GELU, ELU, LEAKY_RELU) as tcc's `tflite` rules reproduce them:
the float32 function each kernel's LUTPopulate samples into its table.

Which ONNX ops have such a kernel, by which builtin, and what attributes it takes is the integer op table's
(tcc.intops.TFLITE_LOOKUPS: what the `tflite` lowering takes of the lookup kind). How the kernels compute is here,
beside the integer reference and gemmlowp's fixed point (tcc.quant.intgraph.gemmlowp), not beside the TFLite
lowering (tcc.backends.tflite.lower): the quantizer makes each lookup's table with these functions
(tcc.quant.intgraph.node_constants.tflite_table), so that the integer reference equals LiteRT bit for bit, and
tcc.quant may not import a backend.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...intops import TFLITE_LOOKUPS


@functools.cache
def _libm(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The C library's float32 function `name` (erfcf, expm1f, tanhf), elementwise: the very function LiteRT's
    kernels call through libm to fill their tables, so a table made here equals LiteRT's bit for bit on this
    machine (numpy's own float32 functions may differ from libm's in the last place)."""
    fn = getattr(ctypes.CDLL(ctypes.util.find_library("m")), name)
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return lambda x: np.array([fn(float(v)) for v in np.asarray(x, np.float32).reshape(-1)], np.float32).reshape(
        np.shape(x)
    )


def _gelu32(x: np.ndarray, a: dict) -> np.ndarray:
    """LiteRT's GeluTransform / GeluTransformApproximate (reference/gelu.h), in float32 as its LUTPopulate calls
    them: 0.5f * x * erfcf(x * -M_SQRT1_2), or 0.5f * x * (1 + tanhf(sqrt(2 / pi) * (x + 0.044715f x x x)))."""
    x = np.asarray(x, np.float32)
    f = np.float32
    if a.get("approximate", "none") == "tanh":
        inner = x + f(0.044715) * x * x * x
        return (f(0.5) * x * (f(1) + _libm("tanhf")(f(math.sqrt(2 / math.pi)) * inner))).astype(np.float32)
    return (f(0.5) * x * _libm("erfcf")(x * f(-math.sqrt(0.5)))).astype(np.float32)


# ONNX op -> the float32 function its kernel samples (dequantize, f, rescale in float32, round half away from zero);
# LEAKY_RELU has none: its kernel is integer arithmetic (the zero-point-free code times one of two fixed-point
# multipliers, by its sign). LiteRT's optimized int8 ELU is its table; its reference kernels have no ELU (the
# table serves predictions: tcc.intops.TFLITE_LOOKUPS refuses an int8 ELU)
LUTS: dict[str, Callable[[np.ndarray, dict], np.ndarray]] = {
    "Sigmoid": lambda x, a: (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32),
    "Tanh": lambda x, a: np.tanh(x).astype(np.float32),
    "Gelu": _gelu32,
    "Elu": lambda x, a: np.where(x < 0, _libm("expm1f")(x), x).astype(np.float32),
}


@dataclass(frozen=True)
class TfliteUnary:
    """One of LiteRT's int8 kernels of a unary op: its builtin (tcc.intops.TFLITE_LOOKUPS) and `lut`, the float32
    function its table samples, None where the kernel is integer arithmetic instead (LEAKY_RELU)."""

    builtin: str
    lut: Callable[[np.ndarray, dict], np.ndarray] | None = None


TFLITE_UNARY: dict[str, TfliteUnary] = {op: TfliteUnary(k.builtin, LUTS.get(op)) for op, k in TFLITE_LOOKUPS.items()}
if not set(LUTS) <= set(TFLITE_LOOKUPS):  # a table for an op the tflite lowering does not take
    raise TypeError(f"LiteRT tables for {sorted(set(LUTS) - set(TFLITE_LOOKUPS))}: not in tcc.intops.TFLITE_LOOKUPS")
