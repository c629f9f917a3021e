"""Histology crops for calibration and judging: random squares (size, position, flip, 90-degree rotation) of the
DDSNet fixture images (the authors' one image per dataset, `fixtures_dir`) and scikit-image's immunohistochemistry
image, written as PNG files so that they go through a spec's own preprocessing like any user's images. Calibration
and judging sets use different seeds and never share a crop. Public as `tcc.make_crops`."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ...errors import DataError

ROOT = Path(__file__).resolve().parents[3]
FIXTURE_IMAGES = ("GC.png", "PCam.png", "SC.jpg", "Sipak.bmp")
FIXTURES_ENV = "TCC_FIXTURES"


def fixtures_dir() -> Path:
    """Where the DDSNet fixtures (checkpoints and images) are: $TCC_FIXTURES, else ../shared/fixtures/ddsnet beside
    the checkout tcc runs from, else beside the working folder (an installed tcc run from a checkout's root)."""
    if os.environ.get(FIXTURES_ENV):
        return Path(os.environ[FIXTURES_ENV])
    for base in (ROOT, Path.cwd()):
        candidate = base.parent / "shared" / "fixtures" / "ddsnet"
        if candidate.is_dir():
            return candidate
    return ROOT.parent / "shared" / "fixtures" / "ddsnet"


FIXTURES = fixtures_dir()


def source_images() -> list[np.ndarray]:
    """The DDSNet fixture images found, and scikit-image's immunohistochemistry image; a warning where the fixtures
    are missing (the crops are then of one image only)."""
    from PIL import Image  # deferred for start-up: loads Pillow

    ims = []
    folder = fixtures_dir()
    for name in FIXTURE_IMAGES:
        p = folder / name
        if p.exists():
            with Image.open(p) as im:
                ims.append(np.asarray(im.convert("RGB")))
    if not ims:
        warnings.warn(
            f"make_crops: no DDSNet fixture images in {folder} (set {FIXTURES_ENV} to their folder, or pass "
            "images=[...]): the crops are of scikit-image's immunohistochemistry image only",
            stacklevel=3,
        )
    try:
        import skimage.data  # deferred for start-up: loads scikit-image (its sample image: fetched, may fail)

        ims.append(skimage.data.immunohistochemistry())
    except Exception:
        pass
    if not ims:
        raise DataError(f"make_crops: no source images (no fixtures in {folder}, scikit-image's not loadable)")
    return ims


def make_crops(out: str | Path, n: int, seed: int, min_side: int = 96, images: list | None = None) -> Path:
    """`n` random crops (random size, position, flip, 90-degree rotation; seeded by `seed`) as PNG files in the
    folder `out`, of the image files `images` in turn or, by default, of the DDSNet fixture images and scikit-image's
    immunohistochemistry image (`source_images`). `min_side`: the smallest crop's side. Returns `out`."""
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
