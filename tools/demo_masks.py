#!/usr/bin/env python3
"""`make demo`'s segmentation data (and tests/train/test_masks.py's): tiles of scikit-image's immunohistochemistry
image (a real IHC stain, 512 x 512, shipped with scikit-image: no download) with their masks, the pixels whose DAB
stain (the brown chromogen, separated by colour deconvolution, `skimage.color.rgb2hed`) is above Otsu's threshold of
the whole image: a mask a small net can learn from the pixels, standing in for a hand-drawn one.

    OUT/tiles/images/tNN.jpg, OUT/tiles/masks/tNN.png (palette PNG: 0 background, 1 DAB), OUT/tiles/classes.txt
    OUT/slide.png: the image twice over in each direction (mirrored, 1024 x 1024), a small stand-in for a slide

    .venv/bin/python tools/demo_masks.py out/demo/seg [--tiles 64] [--size 64] [--stride 64]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("background", "DAB")


def stain_mask(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W]: 1 where the DAB stain is above Otsu's threshold of the image."""
    import skimage.color
    import skimage.filters

    dab = skimage.color.rgb2hed(image)[..., 2]
    return (dab > skimage.filters.threshold_otsu(dab)).astype(np.uint8)


def stain_tiles(root: Path, tiles: int = 64, size: int = 32, stride: int | None = None) -> Path:
    """root/images and root/masks: `tiles` tiles of `size` pixels on a grid of `stride` (default: `size`, tiles
    side by side) over the image, row by row, fewer tiles spread over the rows. More tiles than the grid holds is
    an error: a repeated tile would be a calibration sample and a held-out one at once."""
    import skimage.data

    image = skimage.data.immunohistochemistry()
    mask = stain_mask(image)
    step = stride or size
    per_row, rows = (image.shape[1] - size) // step + 1, (image.shape[0] - size) // step + 1
    if tiles > per_row * rows:
        raise ValueError(
            f"{tiles} tiles of {size} px at a stride of {step} px: the {image.shape[1]} x {image.shape[0]} image holds "
            f"{per_row * rows} different ones (ask for fewer, or a smaller --stride)"
        )
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    digits = max(2, len(str(tiles - 1)))
    for k in range(tiles):
        y, x = (k // per_row) * max(1, rows * per_row // tiles) % rows * step, (k % per_row) * step
        name = f"t{k:0{digits}d}"
        Image.fromarray(image[y : y + size, x : x + size]).save(root / "images" / f"{name}.jpg")
        tile = Image.fromarray(mask[y : y + size, x : x + size], mode="P")
        tile.putpalette([0, 0, 0, 255, 0, 0])
        tile.save(root / "masks" / f"{name}.png")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def main(argv=None) -> int:
    import skimage.data

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tiles", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--stride", type=int, help="pixels between tiles (default: the size, side by side)")
    args = parser.parse_args(argv)
    try:
        stain_tiles(args.out / "tiles", args.tiles, args.size, args.stride)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    image = skimage.data.immunohistochemistry()
    slide = np.concatenate([image, image[:, ::-1]], axis=1)
    Image.fromarray(np.concatenate([slide, slide[::-1]], axis=0)).save(args.out / "slide.png")
    print(f"{args.out}/tiles: {args.tiles} tiles of {args.size} px with their DAB masks; {args.out}/slide.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
