"""The TFLite lowering's values and layout helpers: a graph tensor as a TFLite tensor (its index, whether it is
stored channels last, its codes' parameters), the tensor types, and TFLite's SAME padding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tcc.quant.intgraph.qtypes import QParams

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
NHWC, NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
FUSED = {(0.0, None): "RELU", (0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1"}  # TFLite's fused activations
FLOAT_LOWEST = float(np.finfo(np.float32).min)


@dataclass(frozen=True)
class Value:
    index: int  # the TFLite tensor
    nhwc: bool  # a 4-D tensor channels-last (else in the graph's own axis order)
    q: QParams | None = None  # int8 codes: their parameters


def code_type(q: QParams | None) -> str:
    """The TFLite type of a tensor: float32, or its codes' (int8; int16 in the 16x8 mode)."""
    return "float32" if q is None else "int16" if q.bits > 8 else "int8"


def to_nhwc(shape) -> list[int]:
    return [shape[0], shape[2], shape[3], shape[1]] if len(shape) == 4 else list(shape)


def same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int, int]:
    """TFLite's SAME: output ceil(size / s), padding (total // 2 before, the rest after)."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return out, total // 2, total - total // 2
