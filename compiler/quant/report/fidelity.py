"""An INT8 model's fidelity to its FP32 model in one line, and the floor below which it is reported as bad: every INT8
build and `tcc calibrate` measure it (mean and worst per-sample output cosine, top-1 agreement; for a segmenter's
dense output, the share of pixels whose class agrees and each class's Dice, INT8 mask against FP32 mask) and never
pass a bad one silently: below the floor a FidelityWarning names the fix, or, where the floor is required
(`--require-cos`), a FidelityError (exit 2) stops the command before it writes anything.

    fidelity = Fidelity.measure(fp32_out, int8_out, "16 held-back samples")
    print(fidelity.line()); judge(fidelity, FidelityFloor(cosine=0.999, required=True))
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...dense import MaskAgreement, is_dense
from ...errors import TccError
from ..collect.stats import per_sample_cosine

# samples an INT8 build judges its fidelity on: the integer reference takes about 0.4 s a DDSNet sample at 224 px
JUDGE_SAMPLES = 8
BATCH = 4  # the reference's int64 codes of a few samples at a time (the quality report's batch)
FIX = (
    "Fix: --min-cos C keeps the nodes that lose it in float (or, on TVM's targets, widens them to 16 bits); more, "
    "or more varied, calibration data (--data, --calib-size) moves the ranges"
)


class FidelityError(TccError):
    """The INT8 model is below the required floor (`--require-cos`): nothing is written. Exit code 2."""

    exit_code = 2


class FidelityWarning(UserWarning):
    """The INT8 model is below the floor: said, not refused (the command line prints it as a WARNING line)."""


@dataclass(frozen=True)
class FidelityFloor:
    """Below it an INT8 model is reported as bad: a mean output cosine under `cosine`, or (`top1`) for a classifier's
    [N, C] output a sample whose top-1 class changed, for a dense output fewer than `pixels` of the pixels keeping
    their class. `required` (`--require-cos`): an error, not a warning."""

    cosine: float = 0.99
    top1: bool = True
    required: bool = False
    pixels: float = 0.99

    def __post_init__(self) -> None:
        if not 0.0 < self.cosine <= 1.0:
            raise ValueError(f"the fidelity floor is a cosine in (0, 1], not {self.cosine}")


@dataclass(frozen=True)
class Fidelity:
    """What was measured: per-sample cosines of the INT8 output against FP32 on `samples` samples (`judged_on` says
    which), how many kept their top-1 class (None: the output has no class axis of its own), and for a dense
    output the masks' agreement (tcc.dense.MaskAgreement: pixels, per-class Dice; None for other outputs)."""

    cosine_mean: float
    cosine_min: float
    top1_kept: int | None
    samples: int
    judged_on: str
    masks: MaskAgreement | None = None

    @classmethod
    def measure(cls, fp32: np.ndarray, int8: np.ndarray, judged_on: str) -> Fidelity:
        fp32, int8 = np.asarray(fp32), np.asarray(int8)
        cos = per_sample_cosine(fp32, int8)
        top1 = int(np.sum(fp32.argmax(axis=1) == int8.argmax(axis=1))) if fp32.ndim == 2 else None
        masks = MaskAgreement.measure(fp32, int8) if is_dense(fp32) else None
        return cls(round(float(cos.mean()), 6), round(float(cos.min()), 6), top1, len(fp32), judged_on, masks)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Fidelity:
        """The record `to_json` wrote (a manifest's, a report's)."""
        masks = MaskAgreement(doc["pixel_agreement"], tuple(doc["dice"])) if "pixel_agreement" in doc else None
        return cls(doc["cosine_mean"], doc["cosine_min"], doc["top1_kept"], doc["samples"], doc["judged_on"], masks)

    def line(self) -> str:
        top1 = f", top-1 kept on {self.top1_kept} of {self.samples}" if self.top1_kept is not None else ""
        return (
            f"INT8 fidelity vs FP32 on {self.judged_on}: output cosine mean {self.cosine_mean:.6f}, worst "
            f"{self.cosine_min:.6f}{top1}{self._mask_words()}"
        )

    def _mask_words(self) -> str:
        if self.masks is None:
            return ""
        worst = self.masks.worst()
        dice = f", Dice (INT8 mask vs FP32 mask) lowest {worst[1]:.4f} (class {worst[0]})" if worst else ""
        return f"; pixels of the same class {100 * self.masks.pixels:.2f}%{dice}"

    def shortfall(self, floor: FidelityFloor) -> str | None:
        """What falls below `floor`, or None."""
        short = []
        if self.cosine_mean < floor.cosine:
            short.append(f"mean cosine {self.cosine_mean:.6f} < {floor.cosine:g}")
        if floor.top1 and self.top1_kept is not None and self.top1_kept < self.samples:
            short.append(f"top-1 changed on {self.samples - self.top1_kept} of {self.samples} samples")
        if floor.top1 and self.masks is not None and self.masks.pixels < floor.pixels:
            short.append(f"{100 * self.masks.pixels:.2f}% of the pixels keep their class < {100 * floor.pixels:g}%")
        return "; ".join(short) or None

    def to_json(self, floor: FidelityFloor | None = None) -> dict[str, Any]:
        """The manifest's (and quality report's) record; with `floor`, the floor and what fell below it."""
        doc: dict[str, Any] = {
            "judged_on": self.judged_on,
            "samples": self.samples,
            "cosine_mean": self.cosine_mean,
            "cosine_min": self.cosine_min,
            "top1_kept": self.top1_kept,
        }
        if self.masks is not None:
            doc.update(pixel_agreement=self.masks.pixels, dice=list(self.masks.dice))
        if floor is not None:
            doc.update(
                floor={"cosine": floor.cosine, "top1": floor.top1, "pixels": floor.pixels},
                below_floor=self.shortfall(floor),
            )
        return doc


def warning_text(shortfall: str) -> str:
    return f"INT8 fidelity below the floor ({shortfall}). {FIX}"


def judge(fidelity: Fidelity, floor: FidelityFloor) -> None:
    """Below `floor`: a FidelityError where it is required, else a FidelityWarning; above it, nothing."""
    short = fidelity.shortfall(floor)
    if short is None:
        return
    if floor.required:
        raise FidelityError(
            f"{fidelity.line()}; required: mean cosine >= {floor.cosine:g}"
            + (" and every top-1 kept" if floor.top1 and fidelity.top1_kept is not None else "")
            + (f" and {100 * floor.pixels:g}% of pixels" if floor.top1 and fidelity.masks is not None else "")
            + f" (--require-cos). Nothing written. {FIX}"
        )
    warnings.warn(FidelityWarning(warning_text(short)), stacklevel=3)


def measure_int8(module: Any, qgraph: Any, x: np.ndarray, judged_on: str) -> Fidelity:
    """The integer reference (the table's integer graph, bit for bit what the exact backends run) against the
    PyTorch FP32 lowering `module` on `x`."""
    from ...lower.torch_run import torch_run  # deferred for start-up: loads torch
    from ..intgraph.reference import Reference

    outs = []
    for start in range(0, len(x), BATCH):
        got = Reference().run(qgraph, x[start : start + BATCH])
        outs.append(got[0] if isinstance(got, list) else got)
    return Fidelity.measure(torch_run(module, x), np.concatenate(outs), judged_on)
