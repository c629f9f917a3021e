"""Fake quantization with a straight-through estimator: the float value that an integer kernel's codes stand for in
the forward pass, the gradient passed through unchanged where the code was not clamped and zero where it was
(the clipped straight-through estimator of PyTorch's FakeQuantize), and to a learned scale LSQ's gradient (Esser et
al., Learned Step Size Quantization, 2020).

    y = fake_quant(x, scale, zero_point, lo, hi, "half_even")      # (clamp(round(x / s) + zp, lo, hi) - zp) * s

`scale` is a float or a tensor broadcast against x (one per output channel of a weight). Rounding is the target's
(tcc.quant.table.rules): half to even (ONNX QuantizeLinear, the integer reference's requantization) or half away
from zero (TFLite's QUANTIZE and its gemmlowp requantization).
"""

from __future__ import annotations

import torch


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


ROUNDING = {"half_even": torch.round, "half_away": round_half_away}


def rounding_of(rule: str) -> str:
    """The fake quantization's rounding for a rules rounding name (tcc.quant.table.rules.ROUNDINGS): the
    requantizations that round half to even, and the rest (gemmlowp, single_half_away, tflite_int64) half away
    (tflite_int64 rounds half up: it differs from half away only on negative ties, which a ReLU output never has)."""
    return "half_even" if rule == "half_even" else "half_away"


def fake_quant(x: torch.Tensor, scale, zero_point: int, lo: int, hi: int, rounding: str = "half_even") -> torch.Tensor:
    """(clamp(round(x / s) + zp, lo, hi) - zp) * s. Gradients: to x, 1 where the code is not clamped, else 0; to
    a scale that is a tensor with gradients, LSQ's (round(x / s) - x / s inside, the clamped code outside)."""
    v = x / scale
    v = v + (ROUNDING[rounding](v) - v).detach()  # rounds forward, passes the gradient straight through
    return (torch.clamp(v + zero_point, lo, hi) - zero_point) * scale
