"""How a training folder is laid out, told from its folders alone (no image read): class folders for a classifier
(tcc.train.data), images/ and masks/ for a segmenter (tcc.train.masks). Light (no torch): the run's options take
their task's defaults from it."""

from __future__ import annotations

from pathlib import Path

IMAGES, MASKS, CLASSES = "images", "masks", "classes.txt"


def is_mask_folder(root: str | Path) -> bool:
    """DIR/images + DIR/masks, or DIR/train and DIR/val each holding images/."""
    root = Path(root)
    pair = (root / IMAGES).is_dir() and (root / MASKS).is_dir()
    return pair or all((root / part / IMAGES).is_dir() for part in ("train", "val"))
