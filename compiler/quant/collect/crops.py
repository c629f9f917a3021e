"""Histology crops for calibration and judging: random squares (size, position, flip, 90-degree rotation) of the
DDSNet fixture images (``../shared/fixtures/ddsnet``) and scikit-image's immunohistochemistry image, written as
PNG files so that they go through a spec's own preprocessing like any user's images. Calibration and judging sets
use different seeds and never share a crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "ddsnet"


def source_images() -> list[np.ndarray]:
    from PIL import Image  # deferred for start-up: loads Pillow

    ims = []
    for name in ("GC.png", "PCam.png", "SC.jpg", "Sipak.bmp"):
        p = FIXTURES / name
        if p.exists():
            with Image.open(p) as im:
                ims.append(np.asarray(im.convert("RGB")))
    try:
        import skimage.data  # deferred for start-up: loads scikit-image (its sample image: fetched, may fail)

        ims.append(skimage.data.immunohistochemistry())
    except Exception:
        pass
    return ims


def make_crops(out: str | Path, n: int, seed: int, min_side: int = 96, images: list | None = None) -> Path:
    """n random crops (random size, position, flip, 90-degree rotation) of the source images (or of the image
    files `images`, in that order) as PNG files."""
    from PIL import Image  # deferred for start-up: loads Pillow

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ims = source_images() if images is None else [_rgb(p) for p in images]
    rng = np.random.default_rng(seed)
    for k in range(n):
        im = ims[k % len(ims)]
        h, w = im.shape[:2]
        side = int(rng.integers(min(min_side, h, w), min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = im[y : y + side, x : x + side]
        crop = np.rot90(crop, int(rng.integers(4)))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        Image.fromarray(np.ascontiguousarray(crop)).save(out / f"crop_{k:04d}.png")
    return out


def _rgb(path) -> np.ndarray:
    from PIL import Image  # deferred for start-up: loads Pillow

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
