"""What `tcc predict` writes for a dense output: per image its mask PNG at the image's own size, the overlay on
the image, and the pixels per class (tcc.segmentation.masks).

    results = write_predictions(logits, Source("slide.png", image=True), Path("out/masks"), labels, force=False)
    # [{"mask": "out/masks/slide.mask.png", "overlay": "out/masks/slide.overlay.png", "shape": [H, W],
    #   "pixels": {"background": ..., "tumour": ...}}]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..dense import class_masks, classes_of
from ..errors import DataError
from ..files import check_replaceable
from .masks import pixel_counts, resized, write_mask, write_overlay


@dataclass(frozen=True)
class Source:
    """Where the predicted batch came from: an image file (masks at its size, an overlay on it) or an array."""

    path: Path
    image: bool


def write_predictions(
    logits: np.ndarray, source: Source, out: Path, labels: list[str] | None, force: bool
) -> list[dict[str, Any]]:
    """Each sample's mask (and, for an image, its overlay) written into `out`, named after the source; every path
    checked (an existing file refused without `force`) before any is written."""
    masks, classes = class_masks(logits), classes_of(logits)
    rgb = _image_rgb(source.path) if source.image else None
    stems = [source.path.stem] if len(masks) == 1 else [f"{source.path.stem}.{i}" for i in range(len(masks))]
    planned = [(out / f"{s}.mask.png", out / f"{s}.overlay.png" if rgb is not None else None) for s in stems]
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: not a directory (--masks names the folder the masks go to)")
    for mask_path, overlay_path in planned:
        for p in (mask_path, overlay_path):
            if p is not None:
                check_replaceable(p, force)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for mask, (mask_path, overlay_path) in zip(masks, planned):
        if rgb is not None:
            mask = resized(mask, (rgb.shape[1], rgb.shape[0]))
        write_mask(mask_path, mask, classes)
        if overlay_path is not None and rgb is not None:
            write_overlay(overlay_path, rgb, mask, classes)
        results.append(
            {
                "mask": str(mask_path),
                **({"overlay": str(overlay_path)} if overlay_path is not None else {}),
                "shape": list(mask.shape),
                "pixels": pixel_counts(mask, classes, labels),
            }
        )
    return results


def describe(result: dict[str, Any]) -> str:
    """One line of a written mask: its size, files and the share of each class."""
    h, w = result["shape"]
    total = h * w
    shares = ", ".join(f"{name} {n} ({100 * n / total:.1f}%)" for name, n in result["pixels"].items())
    overlay = f" (overlay {result['overlay']})" if "overlay" in result else ""
    return f"mask {w} x {h} -> {result['mask']}{overlay}; pixels: {shares}"


def _image_rgb(path: Path) -> np.ndarray:
    """The image at its own size as RGB pixels uint8 [H, W, 3] (what the overlay tints)."""
    from ..data import open_image  # deferred for start-up: loads PIL

    with open_image(path) as im:
        return np.asarray(im.convert("RGB"), np.uint8)
