"""Dense outputs (a segmenter's [N, C, H, W] logits): which outputs are dense, the class mask they draw, and how two
masks of the same pixels agree, the numbers an INT8 segmenter is judged by (tcc.quant.report) and `tcc predict`,
`tcc slide --segment` and training draw masks with (tcc.segmentation).

    masks = class_masks(logits)                        # [N, H, W]: argmax over C (C == 1: the logit above 0)
    agreement = MaskAgreement.measure(fp32, int8)      # .pixels (fraction agreeing), .dice (per class), .worst()
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError


def is_dense(logits: np.ndarray) -> bool:
    """A segmentation output: [N, C, H, W] with a spatial extent (a classifier's is [N, C] or [N, C, 1, 1])."""
    return np.ndim(logits) == 4 and np.shape(logits)[2] * np.shape(logits)[3] > 1


def classes_of(logits: np.ndarray) -> int:
    """The classes a dense output tells apart: C, or 2 for a single logit per pixel (foreground where above 0)."""
    return max(2, int(np.shape(logits)[1]))


def class_masks(logits: np.ndarray) -> np.ndarray:
    """[N, H, W] class indices (int64) of dense logits [N, C, H, W]: the argmax over C (the first of equal ones, as
    torch.argmax), or for C == 1 the pixels whose logit is above 0 (a sigmoid above 0.5)."""
    logits = np.asarray(logits)
    if not is_dense(logits):
        raise DataError(f"an output of shape {list(logits.shape)} is not dense: masks need [N, C, H, W]")
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).astype(np.int64)
    return logits.argmax(axis=1)


def dice(reference: np.ndarray, other: np.ndarray, classes: int) -> list[float | None]:
    """Per class, Dice = 2 |R n O| / (|R| + |O|) of the pixels each mask gives the class, over all pixels of all
    samples; None for a class neither mask has (nothing to agree on)."""
    ref, got = np.asarray(reference).ravel(), np.asarray(other).ravel()
    both = np.bincount(ref[ref == got], minlength=classes)[:classes]
    sizes = np.bincount(ref, minlength=classes)[:classes] + np.bincount(got, minlength=classes)[:classes]
    return [round(float(2 * b / s), 6) if s else None for b, s in zip(both, sizes)]


@dataclass(frozen=True)
class MaskAgreement:
    """How a dense output's mask agrees with a reference's (an INT8 model's with its FP32 model's)."""

    pixels: float  # the fraction of pixels given the same class
    dice: tuple[float | None, ...]  # per class (dice())

    @classmethod
    def measure(cls, reference: np.ndarray, other: np.ndarray) -> MaskAgreement:
        """Of two dense outputs [N, C, H, W] of the same inputs."""
        ref, got = class_masks(reference), class_masks(other)
        return cls(round(float(np.mean(ref == got)), 6), tuple(dice(ref, got, classes_of(reference))))

    @property
    def lowest_dice(self) -> float | None:
        """The lowest Dice of a class present in either mask (None where none is)."""
        worst = self.worst()
        return worst[1] if worst else None

    def worst(self) -> tuple[int, float] | None:
        """(class, Dice) of the class with the lowest Dice; None where no class is present."""
        present = [(c, d) for c, d in enumerate(self.dice) if d is not None]
        return min(present, key=lambda cd: cd[1]) if present else None
