"""Weight rounding chosen per layer on the calibration data (AdaRound, Nagel et al., ICML 2020), solved exactly by
coordinate descent instead of AdaRound's relaxed gradient descent: a calibration step after the scales are fixed.

Rounding each weight to its nearest code minimises the weight's own error, not the layer's. Each weight may take
the code below or above w / s (AdaRound's choice), picked to minimise the layer's output error on the calibration
rows (tcc.quant.scales.cos_search samples im2col rows of every layer's FP32 input):

    f(codes) = || A_q (s * codes)^T - A w^T ||^2      A: FP32 input rows, A_q: the same rows quantized at the
                                                      layer's input scale, so the rounding also absorbs the
                                                      input's quantization error (as BRECQ / QDrop do)

f is quadratic in the error e = s * codes - w: f = e^T H e + 2 e^T g + const with H = A_q^T A_q and
g = A_q^T (A_q - A) w, per output channel. From nearest rounding, a sweep visits every weight and flips it to its
other code where that lowers f (the change is 2 d r_k + d^2 H_kk for a step d, with r = H e + g kept up to date),
for all output channels at once. Sweeps repeat until none flips (f never rises) or `sweeps` is reached; the result
depends only on the data, so it is deterministic. A time budget stops between layers, and the table records which
layers it reached.

The codes are stored as one bit per weight (the code above floor(w / s) or not) in the calibration table, and
every backend reads them through tcc.quant.table.weight_codes.
"""

from __future__ import annotations

import numpy as np

from ..intgraph.layers import grouped_weight, ungrouped_weight
from ..table.weight_codes import code_range


def optimise(
    a: np.ndarray, a_q: np.ndarray, wg: np.ndarray, s_w: np.ndarray, bits: int, narrow: bool, sweeps: int = 8
) -> tuple[np.ndarray, float, float]:
    """Codes [G, O, K] (float array of integers) of grouped weights wg [G, O, K] at per-channel scales s_w [G, O]
    minimising the layer's output error on rows a (FP32) / a_q (quantized) [G, R, K]; with the relative output
    error before and after (||error|| / ||A w^T||)."""
    lo, hi = code_range(bits, narrow)
    a64, aq64 = a.astype(np.float64), a_q.astype(np.float64)
    w64 = wg.astype(np.float64)
    s = s_w.astype(np.float64)[..., None]  # [G, O, 1]
    ratio = wg.astype(np.float32) / s_w.astype(np.float32)[..., None]  # in float32, as quantize() divides
    h = np.matmul(aq64.transpose(0, 2, 1), aq64)  # [G, K, K]
    cross = np.matmul(aq64.transpose(0, 2, 1), aq64 - a64)  # [G, K, K]
    g = np.matmul(w64, cross.transpose(0, 2, 1))  # [G, O, K]: (cross @ w)
    base = np.floor(ratio).astype(np.float64)
    codes = np.clip(np.rint(ratio), lo, hi).astype(np.float64)
    other = np.where(codes > base, base, base + 1)  # the other of floor / floor + 1
    other = np.clip(other, lo, hi)
    e = s * codes - w64
    r = np.matmul(e, h) + g  # [G, O, K]; h symmetric
    y_fp = np.matmul(a64, w64.transpose(0, 2, 1))  # [G, R, O]
    norm = float(np.sqrt((y_fp * y_fp).sum())) or 1.0

    def error(c):
        d = np.matmul(aq64, (s * c).transpose(0, 2, 1)) - y_fp
        return float(np.sqrt((d * d).sum())) / norm

    before = error(codes)
    diag = np.einsum("gkk->gk", h)  # [G, K]
    for _ in range(sweeps):
        flips = 0
        for k in range(codes.shape[2]):
            step = (other[:, :, k] - codes[:, :, k]) * s[:, :, 0]  # [G, O]
            gain = 2 * step * r[:, :, k] + step * step * diag[:, k][:, None]
            take = (gain < -1e-12 * np.abs(r[:, :, k] * step)) & (step != 0)
            if not take.any():
                continue
            flips += int(take.sum())
            d = np.where(take, step, 0.0)
            codes[:, :, k], other[:, :, k] = (
                np.where(take, other[:, :, k], codes[:, :, k]),
                np.where(take, codes[:, :, k], other[:, :, k]),
            )
            r += d[:, :, None] * h[:, k, :][:, None, :]
        if not flips:
            break
    return codes, before, error(codes)


def layer_codes(
    layer,
    w: np.ndarray,
    rows: np.ndarray,
    quantized_rows: np.ndarray,
    s_w: np.ndarray,
    bits: int,
    narrow: bool,
    sweeps: int = 8,
):
    """(codes in the weight's own layout, relative error before, after) of one layer (tcc.quant.collect.stats.Layer)."""
    a = np.ascontiguousarray(rows.transpose(1, 0, 2))  # [G, R, K]
    aq = np.ascontiguousarray(quantized_rows.transpose(1, 0, 2))
    wg = grouped_weight(layer, w)
    codes, before, after = optimise(a, aq, wg, np.asarray(s_w, np.float32).reshape(wg.shape[:2]), bits, narrow, sweeps)
    return ungrouped_weight(layer, codes, w.shape).astype(np.int32), before, after
