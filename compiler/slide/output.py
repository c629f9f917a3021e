"""What `tcc slide` writes for each image, every file atomically (a temporary file renamed over the target) and
only once the image's probabilities are all in: mask.png, heatmap.png, then patches.json, which therefore
describes a finished image whenever it exists."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import atomic_write
from ..plots import save
from .mask import BAND

MASK, HEATMAP, PATCHES = "mask.png", "heatmap.png", "patches.json"


def patches_document(plan, probabilities: np.ndarray, model: dict, labels: list | None, positive: int) -> dict:
    """patches.json: the image, its mask, the grid (eq. 1-2) and, per kept patch (eq. 4), its place, mask fraction
    (W / WIDTH^2, eq. 3) and probabilities. Nothing in it depends on how the run was scheduled."""
    grid = plan.grid
    return {
        "image": plan.path.name,
        "size": list(plan.size),
        "reader": plan.reader,
        "mask": {
            "level": plan.mask_level,
            "size": list(plan.mask_size),
            "downsample": [float(s) for s in plan.scale],
            "thresholds": plan.thresholds.to_json(),
            "band": list(BAND),
            "tissue_fraction": round(plan.tissue_fraction, 6),
        },
        "patch_size": plan.patch_size,
        "grid": {
            "rows": grid.rows if grid else 0,
            "cols": grid.cols if grid else 0,
            "bbox": grid.to_json() if grid else None,
        },
        "model": model,
        "classes": labels,
        "positive_class": {"index": positive, "label": labels[positive] if labels else None},
        "kept": len(plan.kept),
        "patches": [
            {
                "i": i,
                "j": j,
                "x": x,
                "y": y,
                "mask_fraction": round(fraction, 6),
                "probability": float(p[positive]),
                "probabilities": [float(v) for v in p],
            }
            for (i, j, x, y, fraction), p in zip(plan.kept, probabilities)
        ],
    }


def probability_grid(plan, probabilities: np.ndarray, positive: int) -> np.ndarray | None:
    """[I, J] of the positive class's probability, NaN where the patch was dropped."""
    if plan.grid is None:
        return None
    grid = np.full((plan.grid.rows, plan.grid.cols), np.nan)
    for (i, j, *_), p in zip(plan.kept, probabilities):
        grid[i, j] = p[positive]
    return grid


def mask_png(mask: np.ndarray) -> bytes:
    """The tissue mask as a 1-bit PNG (kept in memory until the image is done)."""
    from PIL import Image  # deferred for start-up: loads PIL

    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()


def check_dir(out: Path) -> None:
    """OUT can be written: an existing writable directory, or creatable (its nearest existing ancestor a writable
    directory). Checked before any long work, created only when the first outputs are written, so a run that
    fails leaves no empty folder behind."""
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise DataError(
            f"{existing}: exists and is not a directory" + ("" if existing == out else f" (cannot create {out})")
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(
            f"{out}: cannot create the output directory ({existing} is not writable)"
            if existing != out
            else f"{out}: the output directory is not writable"
        )


def prepare_dir(out: Path) -> Path:
    """OUT exists as a writable directory (created if needed), checked before any long work."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{out}: cannot create the output directory ({e.strerror or e})") from None
    return out


def write_image_outputs(out: Path, mask_bytes: bytes, figure, document: dict) -> None:
    prepare_dir(out)
    atomic_write(out / MASK, lambda f: f.write(mask_bytes))
    save(figure, out / HEATMAP)
    payload = (json.dumps(document, indent=1, allow_nan=False) + "\n").encode()
    atomic_write(out / PATCHES, lambda f: f.write(payload))
