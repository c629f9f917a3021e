"""Empirical bias correction (Nagel et al. 2019, section 4.2; NNCF's fast bias correction, AIMET's empirical one):
a calibration step after the scales and the weight codes are final.

Quantization moves the mean of a layer's output: weight rounding errors do not average out against inputs that
are never negative (a ReLU's output: E[dW x] = dW E[x] != 0), and clipping the input at its threshold always
lowers it. Each layer's bias absorbs its own shift, measured on the calibration data: for output channel o,

    shift_o = E[(A w^T)_o] - E[(A_q (s * codes)^T)_o]        A: FP32 input rows, A_q: quantized at the input's scale

over the im2col rows that tcc.quant.scales.cos_search samples from the calibration batch (the bias is on both sides and
cancels). Like NNCF's fast bias correction, each layer is measured on its FP32 input, so its correction removes
its own shift and no other: correcting every layer from the quantized network's inputs at once (measured here)
counts a shift made upstream again downstream, and the corrections diverge within three iterations.

The corrected float bias (bias + shift) is what the integer graph quantizes to int32 at s_in * s_w.
"""

from __future__ import annotations

import numpy as np

from ..intgraph.layers import grouped_weight


def layer_shift(
    layer, w: np.ndarray, codes: np.ndarray, s_w: np.ndarray, rows: np.ndarray, quantized_rows: np.ndarray
) -> np.ndarray:
    """The per-output-channel shift of one layer (tcc.quant.collect.stats.Layer): weights w (float), their codes and
    per-channel scales s_w, FP32 input rows [R, G, K] and the same rows quantized."""
    wg = grouped_weight(layer, w).astype(np.float64)  # [G, O, K]
    qg = grouped_weight(layer, codes).astype(np.float64) * np.asarray(s_w, np.float64).reshape(wg.shape[:2])[..., None]
    mean_a = rows.astype(np.float64).mean(axis=0)  # [G, K]
    mean_q = quantized_rows.astype(np.float64).mean(axis=0)
    shift = np.einsum("gk,gok->go", mean_a, wg) - np.einsum("gk,gok->go", mean_q, qg)
    return shift.reshape(-1)
