"""Small ImageFolder datasets for tests/train/test_train.py: square patches cut at seeded random places from texture
photographs that scikit-image ships in its package (no download), one class per texture, saved as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TEXTURES = ("brick", "grass", "gravel")


def texture_patches(
    root: Path, textures=TEXTURES[:2], per_class: int = 40, size: int = 32, seed: int = 0, scale: int = 2
) -> Path:
    """root/<texture>/<texture>_NNN.png: `per_class` grey patches of size x size pixels, each cut from a
    (scale * size)-pixel square of the texture (downscaled, so a patch holds several bricks / blades)."""
    import skimage.data

    rng = np.random.default_rng(seed)
    for name in textures:
        image = getattr(skimage.data, name)()
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        side = scale * size
        for i in range(per_class):
            y, x = (int(v) for v in rng.integers(0, np.array(image.shape) - side))
            crop = Image.fromarray(image[y : y + side, x : x + side]).resize((size, size), Image.Resampling.BILINEAR)
            crop.save(folder / f"{name}_{i:03d}.png")
    return Path(root)
