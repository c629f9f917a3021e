"""The scale of a tensor a normalization reads, chosen by the cosine of the normalized output (kl+cos).

Layer norms and instance norms (tcc.intops.IntOp.normalizes): the cosine fine search's counterpart for the tensors
they read.

A normalization divides by the standard deviation of the values it normalizes, so a range clipped, or a step too
coarse, at its input moves every value of the row. No layer reads such a tensor (the residual stream of a ViT feeds a
LayerNorm and the next residual add), so the layers' search (tcc.quant.scales.cos_search) never sees it and KL's
threshold stayed: on DeiT-Tiny that cost the output cosine 0.0097, more than every other tensor together
(docs/notes/dense-prediction.md, "The tensors a normalization reads").

The search: on rows sampled from the calibration data (`rows`: one row is what one normalization statistic covers,
a token's channels for a layer norm, a channel's positions for an instance norm, COLUMNS of them at most), the
thresholds of GRID times the
largest |value| seen (every STRIDE-th, then the neighbours of the best) and the coarse one, each judged by the
cosine of (x - mean) / sqrt(var + eps) with x quantized at that threshold against the same with x in float, over all
rows together. The best wins; the coarse threshold keeps a tie, so the search never lowers the cosine it measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..table.quantizer import cosine as _cos
from ..table.quantizer import fake_quant, scale_for_threshold
from .cos_search import scan_grid

GRID = np.linspace(0.3, 1.0, 71)  # thresholds as fractions of the largest |value| (DeiT's best: 0.85 to 0.95)
STRIDE = 4  # the grid scanned coarse to fine, as the layers' activation grid (SearchSettings.stride)
VALUES = 1 << 18  # values sampled per tensor over the whole data at most (row_budget; a DeiT token's 192 channels:
# 1,365 rows)
COLUMNS = 1024  # values of one row at most: an instance norm's row is a channel's positions (9,216 at 96 x 96), of
# which 1,024 drawn at random estimate its mean and spread, so that 256 channels are sampled rather than 28


@dataclass(frozen=True)
class NormInput:
    """A tensor a normalization reads: the axes the statistics are taken over, and the normalization's epsilon."""

    tensor: str
    axes: tuple[int, ...]
    eps: float


def norm_inputs(graph) -> list[NormInput]:
    """Each tensor a normalization of the integer graph (tcc.quant.intgraph.match.IntGraph) reads, once, in the
    graph's order (the first normalization of a tensor read by several decides its axes)."""
    found: dict[str, NormInput] = {}
    for node in graph.nodes:
        axes = node.op.normalizes(graph.view(node)) if node.op.normalizes is not None else None
        if axes and node.inputs[0] not in found:
            found[node.inputs[0]] = NormInput(node.inputs[0], axes, float(node.attrs.get("epsilon", 1e-5)))
    return list(found.values())


def row_budget(shape: tuple[int, ...], axes: tuple[int, ...], rows_wanted: int) -> int:
    """The rows sampled over the whole data for a tensor of `shape`: `rows_wanted` (a layer's count), fewer where
    they would hold more than VALUES values."""
    k = min(int(np.prod([shape[a] for a in axes])), COLUMNS)
    return min(rows_wanted, max(1, VALUES // max(k, 1)))


def rows(x: np.ndarray, axes: tuple[int, ...], count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `count` rows of batch `x` drawn at random ([R, K] float32; K the values one statistic covers, or
    COLUMNS of them drawn at random, the same for every row, where it covers more)."""
    moved = np.moveaxis(x, axes, tuple(range(x.ndim - len(axes), x.ndim)))
    flat = moved.reshape(-1, int(np.prod([x.shape[a] for a in axes])))
    picked = flat[np.sort(rng.choice(len(flat), size=min(len(flat), count), replace=False))]
    if picked.shape[1] > COLUMNS:
        picked = picked[:, np.sort(rng.choice(picked.shape[1], size=COLUMNS, replace=False))]
    return picked.astype(np.float32)


def _normalized(x: np.ndarray, eps: float) -> np.ndarray:
    x = x.astype(np.float64)
    centered = x - x.mean(axis=1, keepdims=True)
    return centered / np.sqrt((centered * centered).mean(axis=1, keepdims=True) + eps)


def norm_search(sampled: np.ndarray, eps: float, coarse: float, amax: float, signed: bool, bits: int = 8):
    """(scale, (cosine at the coarse scale, at the chosen one)) for a tensor whose rows `sampled` a normalization
    reads; `coarse`: the method's scale, `amax`: the largest |value| seen (the grid's top)."""
    reference = _normalized(sampled, eps)

    def cosine(scale: float) -> float:
        return _cos(reference, _normalized(fake_quant(sampled, scale, bits, signed), eps))

    before = cosine(coarse)
    scales = [float(scale_for_threshold(t, bits, signed)) for t in GRID * amax]
    scored: dict[int, float] = {}
    k = scan_grid(cosine, np.array(scales), STRIDE, scored)
    if scored[k] > before:
        return scales[k], (before, scored[k])
    return float(coarse), (before, before)
