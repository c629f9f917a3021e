"""Training data: an ImageFolder-style folder, its train / validation split, and the dataset that reads, augments and
preprocesses one sample.

    DIR/<class>/*.png                       a seeded stratified split (val_fraction of each class)
    DIR/train/<class>/..., DIR/val/<class>/...   the given split

Class folders are sorted by name; their index is the label. Images are found recursively (PNG, JPEG, BMP, TIFF).
Augmentation is a function of (seed, epoch, sample index) only, never of a process's RNG, so one process and
many (torchrun) see the same augmented samples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import load_pixels, normalize_pixels, open_image
from ..errors import DataError
from ..quant.collect.data import IMAGE_SUFFIXES, find_images
from .sample_rng import AUGMENT_STREAM, sample_rng

Sample = tuple[Path, int]  # image file, label (a segmenter's: image file, mask file; tcc.train.masks)


@dataclass
class Split:
    root: Path
    classes: list[str]
    train: list
    val: list
    given: bool  # DIR/train and DIR/val, not a seeded split
    task: str = "classify"  # or "segment": image / mask pairs (tcc.train.masks)
    pixels: list[int] | None = None  # a segmenter's training pixels per class (its class weights' counts)

    @property
    def segment(self) -> bool:
        return self.task == "segment"

    def train_counts(self) -> list[int]:
        """Training samples per class (a segmenter's: training pixels per class, counted by the preflight)."""
        if self.pixels is not None:
            return self.pixels
        return self.counts(self.train)

    def counts(self, samples: list[Sample]) -> list[int]:
        return np.bincount([label for _, label in samples], minlength=len(self.classes)).tolist()

    def describe(self) -> str:
        how = "given split" if self.given else "seeded split" if self.segment else "seeded stratified split"
        what = "image / mask pairs" if self.segment else "images"
        return (
            f"{len(self.classes)} classes ({', '.join(self.classes)}), {len(self.train)} train / "
            f"{len(self.val)} val {what} ({how})"
        )


def find_split(root: str | Path, val_fraction: float, seed: int) -> Split:
    """The class folders under `root` and the train / validation samples."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {'not a folder' if root.exists() else 'no such data folder'}")
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes = _class_folders(root / "train")
        val_classes = _class_folders(root / "val")
        if val_classes != classes:
            raise DataError(
                f"{root}: train/ has the classes {classes} but val/ has {val_classes}; both need the same class folders"
            )
        return Split(root, classes, _samples(root / "train", classes), _samples(root / "val", classes), True)
    classes = _class_folders(root)
    train, val = _stratified_split(_samples(root, classes), len(classes), val_fraction, seed, root)
    return Split(root, classes, train, val, False)


def _class_folders(folder: Path) -> list[str]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(
            f"{folder}: {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); training "
            "needs one folder of images per class, at least 2 (or train/ and val/ each holding them)"
        )
    return classes


def _samples(folder: Path, classes: list[str]) -> list[Sample]:
    samples = []
    for label, name in enumerate(classes):
        files = find_images(folder / name)
        if not files:
            raise DataError(f"{folder / name}: empty class folder (no {', '.join(IMAGE_SUFFIXES)} images)")
        samples += [(f, label) for f in files]
    return samples


def _stratified_split(samples: list[Sample], num_classes: int, fraction: float, seed: int, root: Path):
    """Hold out round(fraction * n) of each class (at least 1, at most n - 1), chosen by a seeded permutation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in range(num_classes):
        mine = [s for s in samples if s[1] == label]
        if len(mine) < 2:
            raise DataError(
                f"{mine[0][0].parent}: 1 image; a seeded split needs at least 2 per class (or give "
                f"{root}/train and {root}/val)"
            )
        n_val = min(max(1, round(fraction * len(mine))), len(mine) - 1)
        held = set(rng.permutation(len(mine))[:n_val].tolist())
        val += [s for i, s in enumerate(mine) if i in held]
        train += [s for i, s in enumerate(mine) if i not in held]
    return train, val


def repeated_in_training(split: Split) -> list[tuple[Path, Path]]:
    """(validation image, training image) for every validation image whose file is byte for byte a training image's
    (a tile cut twice, a file copied into two class folders): a validation metric on them is a training metric.
    Only files of equal size are read and hashed."""
    by_size: dict[int, list[Path]] = {}
    for path, _ in split.train:
        by_size.setdefault(path.stat().st_size, []).append(path)
    digests: dict[Path, bytes] = {}

    def digest(path: Path) -> bytes:
        if path not in digests:
            digests[path] = hashlib.sha256(path.read_bytes()).digest()
        return digests[path]

    repeats = []
    for path, _ in split.val:
        same = [t for t in by_size.get(path.stat().st_size, []) if digest(t) == digest(path)]
        if same:
            repeats.append((path, same[0]))
    return repeats


def check_images(samples: list) -> None:
    """Every file opens as an image of an acceptable size (its header only; decoding errors still name the file
    when it is read); a segmenter's masks too."""
    for path, other in samples:
        for file in (path, other) if isinstance(other, Path) else (path,):
            with open_image(file):
                pass


# ---------------------------------------------------------------------------------------------------- augmentation
def _hflip(pixels, rng):
    return pixels[:, ::-1] if rng.random() < 0.5 else pixels


def _vflip(pixels, rng):
    return pixels[::-1] if rng.random() < 0.5 else pixels


def _rot90(pixels, rng):
    return np.rot90(pixels, int(rng.integers(4)))


AUGMENT = {"hflip": _hflip, "vflip": _vflip, "rot90": _rot90}  # applied in this order


def augment_pixels(pixels: np.ndarray, names, rng: np.random.Generator) -> np.ndarray:
    """uint8 [H, W, C] pixels through the chosen augmentations (the spec's preprocessing follows)."""
    for name, fn in AUGMENT.items():
        if name in names:
            pixels = fn(pixels, rng)
    return np.ascontiguousarray(pixels)


class ImageFolderSet(torch.utils.data.Dataset):
    """(input [C, H, W] float32, label, sample index). Set `epoch` before each epoch: augmentation depends on it."""

    def __init__(self, samples: list, preprocess, augment=(), seed: int = 0):  # Samples, or (image, mask) pairs
        self.samples, self.preprocess, self.augment, self.seed = samples, preprocess, tuple(augment), seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        pixels = load_pixels(path, self.preprocess)
        if self.augment:
            pixels = augment_pixels(pixels, self.augment, sample_rng(self.seed, self.epoch, index, AUGMENT_STREAM))
        return torch.from_numpy(normalize_pixels(pixels, self.preprocess)), label, index
