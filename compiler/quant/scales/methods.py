"""Calibration methods: a histogram of |x| (bin counts over [0, bin_width * len(counts))) -> a clipping threshold.

    minmax      the largest |x| seen
    percentile  the |x| below which `percentile` % of the values lie (99.99 by default), interpolated in its bin
    kl          TensorRT-style entropy calibration: over 2048 bins of |x|, every threshold from bin 128 up is
                tried; the reference distribution P is the histogram up to the threshold with every value above it
                folded into the last bin, the candidate Q is that histogram merged into 128 levels (the levels of
                a signed 8-bit code 0..127) and expanded back over the non-empty bins; both are smoothed and the
                threshold with the smallest KL(P || Q) wins.

Thresholds become scales with `quantizer.scale_for_threshold`. `kl_divergences` is vectorised over all
thresholds at once (cumulative sums, no Python loop over thresholds); the test suite checks it against a literal
loop implementation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

METHODS = ("minmax", "percentile", "kl", "kl+cos")
# `auto`: the method chosen per model among CANDIDATES, each judged on held-back samples (tcc.quant.choose); kl+cos
# first, so a tie keeps it. No one method wins everywhere: KL clips the wide activations after squeeze-excite gates
# and hard-swish that min-max keeps (docs/notes/method-choice.md)
AUTO = "auto"
CANDIDATES = ("kl+cos", "minmax", "percentile")
# auto tries the percentile method at the run's percentile (99.99 by default) and here too: ORT's and TensorRT's
# default, whose wider clip keeps the rare large values of a few crops (FlexibleUNet's lowest crops: its 1st
# percentile of 256 crops' cosine 0.50 at 99.99, 0.58 at 99.999; docs/notes/dense-prediction.md)
WIDE_PERCENTILE = 99.999
SMOOTH_EPS = 1e-4


@dataclass(frozen=True)
class Threshold:
    value: float  # the clipping threshold (largest magnitude kept)
    kl: float | None = None  # KL(P || Q) at the chosen threshold (kl only)
    bin: int | None = None  # number of histogram bins kept (kl only)


def minmax_threshold(counts: np.ndarray, bin_width: float, amax: float | None = None) -> Threshold:
    if amax is not None:
        return Threshold(float(amax))
    nz = np.flatnonzero(counts)
    return Threshold(float((nz[-1] + 1) * bin_width) if len(nz) else 0.0)


def percentile_threshold(
    counts: np.ndarray, bin_width: float, percentile: float = 99.99, amax: float | None = None
) -> Threshold:
    """The |x| at `percentile` % of the mass, linearly interpolated inside its bin, never above amax."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return Threshold(0.0)
    cdf = np.cumsum(counts)
    target = total * percentile / 100.0
    i = int(np.searchsorted(cdf, target, side="left"))
    i = min(i, len(counts) - 1)
    below = cdf[i - 1] if i else 0.0
    frac = (target - below) / counts[i] if counts[i] else 1.0
    t = (i + min(max(frac, 0.0), 1.0)) * bin_width
    if amax is not None:
        t = min(t, float(amax))
    return Threshold(float(t))


def kl_divergences(
    counts: np.ndarray, num_levels: int = 128, start: int | None = None, chunk: int = 64, eps: float = SMOOTH_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds in bins, KL(P || Q) for each) for every bin count i = start .. len(counts).

    For bin count i: P = counts[:i] with counts[i:].sum() added to P[i-1]; the i bins are split evenly into
    `num_levels` groups (bin j -> level floor(j * num_levels / i), so group sizes differ by at most one; MXNet's
    "i // L bins each, the remainder to the last group" makes the last group up to L - 1 bins wide, and KL then
    prefers thresholds just below multiples of L, clipping far too much on real activations); Q spreads each
    group's count evenly over its non-empty bins. Rows where P (or Q) has no mass get +inf.
    """
    h = np.asarray(counts, dtype=np.float64)
    nb = len(h)
    start = num_levels if start is None else start
    if nb < start:
        return np.array([nb]), np.array([0.0])
    csum = np.concatenate([[0.0], np.cumsum(h)])
    nzc = np.concatenate([[0], np.cumsum(h != 0)])
    total = csum[-1]
    all_i = np.arange(start, nb + 1)
    out = np.empty(len(all_i))
    for c0, (ii, inside, level_at) in zip(range(0, len(all_i), chunk), _chunks(nb, num_levels, start, chunk)):
        rows = np.arange(len(ii))
        ncol = int(ii[-1])  # columns >= i are outside row i; trim to the widest row of the chunk
        hh = h[:ncol]
        # bin j of the first i goes to level floor(j * L / i): group k is [ceil(k i / L), ceil((k+1) i / L))
        bounds = (np.arange(num_levels + 1)[None, :] * ii[:, None] + num_levels - 1) // num_levels
        gsum = csum[bounds[:, 1:]] - csum[bounds[:, :-1]]
        gnz = nzc[bounds[:, 1:]] - nzc[bounds[:, :-1]]
        gavg = gsum / np.maximum(gnz, 1)
        hnz = inside & (hh[None, :] != 0)
        p = hh[None, :] * inside
        p[rows, ii - 1] += total - csum[ii]
        # smoothing (on counts, MXNet/TensorRT): empty bins of the first i get eps, the others give it up evenly;
        # it keeps each row's mass, so the normalisers are the raw sums
        pz = inside & (p == 0)
        n_pz = pz.sum(axis=1, keepdims=True)
        p += np.where(pz, eps, -eps * n_pz / np.maximum(ii[:, None] - n_pz, 1) * inside)
        n_qz = ii[:, None] - hnz.sum(axis=1, keepdims=True)
        # Q: a level's nonzero bins share one value (the level's mean, smoothed), an empty bin holds eps; its
        # logarithm is taken once per level and spread over the bins (the same floats as a log per bin)
        q_level = gavg + -eps * n_qz / np.maximum(ii[:, None] - n_qz, 1)
        psum = np.full(len(ii), total)
        qsum = csum[ii] + np.where(nzc[ii] == 0, eps * ii, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            lq = np.where(hnz, np.log(q_level).take(level_at), np.where(inside, np.log(eps), 0.0))
            lp = np.log(np.where(inside, p, 1.0))
            kl = ((p * (lp - lq)).sum(axis=1)) / psum - np.log(psum) + np.log(qsum)
        kl[~np.isfinite(kl) | (psum <= 0)] = np.inf
        out[c0 : c0 + chunk] = kl
    return all_i, out


@functools.lru_cache(maxsize=4)
def _chunks(nb: int, num_levels: int, start: int, chunk: int) -> tuple:
    """Per chunk of kl_divergences' rows, what depends on the shape alone (every tensor's histogram has the same):
    the thresholds i, the bins inside each row (j < i), and each bin's level as a flat index into the chunk's
    [rows, levels] array (row * L + floor(j * L / i))."""
    out = []
    all_i = np.arange(start, nb + 1)
    for c0 in range(0, len(all_i), chunk):
        ii = all_i[c0 : c0 + chunk]
        j = np.arange(int(ii[-1]))
        group = np.minimum(j[None, :] * num_levels // ii[:, None], num_levels - 1)
        level_at = np.arange(len(ii))[:, None] * num_levels + group
        level_at = level_at.astype(np.min_scalar_type(len(ii) * num_levels))  # small: cached for every tensor
        for a in (ii, level_at):
            a.flags.writeable = False
        inside = j[None, :] < ii[:, None]
        inside.flags.writeable = False
        out.append((ii, inside, level_at))
    return tuple(out)


def kl_threshold(counts: np.ndarray, bin_width: float, num_levels: int = 128, amax: float | None = None) -> Threshold:
    """TensorRT entropy calibration on a histogram of |x|; the threshold is the upper edge of the last kept bin."""
    counts = np.asarray(counts)
    if counts.sum() == 0:
        return Threshold(0.0, 0.0, 0)
    nz = np.flatnonzero(counts)
    if nz[-1] + 1 <= num_levels:  # the whole range fits in num_levels bins: no clipping can help
        return Threshold(float((nz[-1] + 1) * bin_width), 0.0, int(nz[-1] + 1))
    ii, kl = kl_divergences(counts, num_levels)
    best = int(np.argmin(kl))  # first minimum: the smallest threshold among equals
    t = ii[best] * bin_width
    if amax is not None:
        t = min(t, float(amax))
    return Threshold(float(t), float(kl[best]), int(ii[best]))


def threshold(
    method: str,
    counts: np.ndarray,
    bin_width: float,
    amax: float | None = None,
    percentile: float = 99.99,
    num_levels: int = 128,
) -> Threshold:
    if method == "minmax":
        return minmax_threshold(counts, bin_width, amax)
    if method == "percentile":
        return percentile_threshold(counts, bin_width, percentile, amax)
    if method in ("kl", "kl+cos"):
        return kl_threshold(counts, bin_width, num_levels, amax)
    raise ValueError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
