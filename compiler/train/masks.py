"""Training data for a segmenter: images with their masks, the train / validation split, and the dataset that reads,
augments and preprocesses an image and its mask together.

    DIR/images/NAME.png + DIR/masks/NAME.png           a seeded split (val_fraction of the pairs)
    DIR/train/{images,masks}/..., DIR/val/{images,masks}/...   the given split
    DIR/classes.txt (optional)                         the class names, one a line, in index order

A mask is a single-channel image (palette "P" as `tcc predict` writes them, or grey) whose pixel values are the
class indices, paired with the image of the same name (any suffix). It is resized to the model's input by nearest
neighbour (classes are not blended) and flipped or rotated with its image, by the same draw.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..data import load_pixels, normalize_pixels, open_image
from ..errors import DataError
from ..quant.collect.data import IMAGE_SUFFIXES, find_images
from .data import ImageFolderSet, Split, augment_pixels
from .layout import CLASSES, IMAGES, MASKS
from .sample_rng import AUGMENT_STREAM, sample_rng

MASK_MODES = ("P", "L", "1", "I;16", "I")  # single-channel modes whose values are the class indices


def find_mask_split(root: Path, val_fraction: float, seed: int) -> Split:
    """The image / mask pairs under `root` and their split; `classes` from classes.txt (empty: the model's)."""
    names = _class_names(root)
    if (root / "train" / IMAGES).is_dir() and (root / "val" / IMAGES).is_dir():
        return Split(root, names, _pairs(root / "train"), _pairs(root / "val"), True, task="segment")
    pairs = _pairs(root)
    if len(pairs) < 2:
        raise DataError(f"{root}: {len(pairs)} image / mask pair; a seeded split needs at least 2 (or train/, val/)")
    n_val = min(max(1, round(val_fraction * len(pairs))), len(pairs) - 1)
    held = set(np.random.default_rng(seed).permutation(len(pairs))[:n_val].tolist())
    train = [p for i, p in enumerate(pairs) if i not in held]
    val = [p for i, p in enumerate(pairs) if i in held]
    return Split(root, names, train, val, False, task="segment")


def _class_names(root: Path) -> list[str]:
    path = root / CLASSES
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the class names ({e})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) < 2:
        raise DataError(f"{path}: {len(names)} class name(s); a segmenter tells at least 2 classes apart")
    return names


def _pairs(folder: Path) -> list[tuple[Path, Path]]:
    """Every image of folder/images with the mask of the same stem in folder/masks."""
    images, masks = folder / IMAGES, folder / MASKS
    if not masks.is_dir():
        raise DataError(f"{masks}: no masks folder beside {images} (a mask per image, of the same name)")
    by_stem: dict[str, Path] = {}
    for mask in find_images(masks):
        stem = mask.relative_to(masks).with_suffix("").as_posix()
        if stem in by_stem:
            raise DataError(f"{masks}: two masks for {stem}: {by_stem[stem].name} and {mask.name}")
        by_stem[stem] = mask
    pairs = []
    for image in find_images(images):
        stem = image.relative_to(images).with_suffix("").as_posix()
        if stem not in by_stem:
            raise DataError(f"{image}: no mask {masks / stem}.* ({', '.join(IMAGE_SUFFIXES)})")
        pairs.append((image, by_stem.pop(stem)))
    if by_stem:
        raise DataError(f"{masks / next(iter(by_stem))}: a mask without its image in {images}")
    if not pairs:
        raise DataError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return pairs


def read_mask(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask's class indices, int64 [H, W], resized to `size` (height, width) by nearest neighbour."""
    from PIL import Image  # deferred for start-up: loads PIL

    with open_image(path) as im:
        if im.mode not in MASK_MODES:
            raise DataError(
                f"{path}: a {im.mode} image; a mask is single-channel (palette or grey) with the class index as "
                "each pixel's value"
            )
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.Resampling.NEAREST)
        mask = np.asarray(im, dtype=np.int64)
    if mask.size and mask.min() < 0:  # a 32-bit grey image can hold them
        raise DataError(f"{path}: class index {int(mask.min())} in a mask; class indices are 0 or more")
    return mask


def class_pixels(pairs: list[tuple[Path, Path]], size: tuple[int, int]) -> tuple[np.ndarray, Path | None]:
    """Pixels of each class index over the masks at the model's input size (as long as the largest index + 1),
    and the mask that holds the largest index (None without masks). Each mask is read once."""
    counts, largest = np.zeros(0, np.int64), None
    for _, mask_path in pairs:
        found = np.bincount(read_mask(mask_path, size).ravel())
        if len(found) > len(counts):
            counts, largest = np.pad(counts, (0, len(found) - len(counts))), mask_path
        counts[: len(found)] += found
    return counts, largest


def segmenter_classes(model, split: Split):
    """(model, split) with the classes a segmenter is trained on: classes.txt's names; else as many as the model's
    output tells apart where the masks' indices fit them (by its labels, or by index), else the masks' (largest
    index + 1), which the model must then have (--set num_classes, or with --weights fitted to them as a
    classifier's head is). Every mask's indices are checked against them, and the training pixels counted."""
    output = model.graph.shape(model.graph.main_output)
    channels = int(output[0]) if len(output) == 3 else 0
    size = tuple(model.preprocess.resize)
    (train, train_largest), (val, val_largest) = class_pixels(split.train, size), class_pixels(split.val, size)
    names = split.classes
    if not names:
        k = max(channels, 2, len(train), len(val))
        names = model.labels if model.labels and len(model.labels) == k else [str(i) for i in range(k)]
    k = len(names)
    for counts, largest in ((train, train_largest), (val, val_largest)):
        if len(counts) > k:
            raise DataError(
                f"{largest}: class index {len(counts) - 1} in a mask, but the model tells {k} classes apart "
                f"(0..{k - 1})"
            )
    pixels = np.pad(train, (0, k - len(train))).tolist()
    return model, replace(split, classes=list(names), pixels=pixels)


class MaskPairSet(ImageFolderSet):
    """(input [C, H, W] float32, mask [H, W] int64, sample index) of (image, mask) samples. Set `epoch` before each
    epoch: augmentation depends on it, and moves an image and its mask together."""

    def __getitem__(self, index: int):
        image, mask_path = self.samples[index]
        pixels = load_pixels(image, self.preprocess)
        mask = read_mask(mask_path, self.preprocess.resize)
        if self.augment:  # the mask rides along as one more channel, so both see the same flips and turn
            both = np.concatenate([pixels.astype(np.int64), mask[:, :, None]], axis=2)
            both = augment_pixels(both, self.augment, sample_rng(self.seed, self.epoch, index, AUGMENT_STREAM))
            pixels, mask = both[:, :, :-1].astype(np.uint8), both[:, :, -1]
        x = torch.from_numpy(normalize_pixels(pixels, self.preprocess))
        return x, torch.from_numpy(np.ascontiguousarray(mask)), index
