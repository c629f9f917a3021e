"""Masks from a dense output: the class of every pixel, written as a palette PNG, tinted over the image it came from,
and counted per class (`tcc predict` on a segmentation model or bundle).

    masks = tcc.dense.class_masks(logits)  # [N, H, W] class indices: argmax over C (C == 1: the logit above 0)
    mask = resized(masks[0], (w, h))       # to the image's own size (nearest: classes are not blended)
    write_mask("a.mask.png", mask, classes)  # "P" PNG: the class index per pixel, with PALETTE (16-bit grey past 256)
    overlay(rgb, mask)                     # the image with every class but 0 (background, by convention) tinted
    pixel_counts(mask, classes, labels)    # {label or index: pixels}, every class listed

The model sees the image resized to its input (the spec's preprocessing resizes, it does not crop), so its mask
resized back to the image's size covers the whole image.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

from ..files import atomic_write

OVERLAY_ALPHA = 0.45  # the tint's weight over the image
# class 0 black (background), then matplotlib's tab10, then hues a golden angle apart: distinct for any class count
_TAB10 = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194),
    (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip


def palette(classes: int) -> np.ndarray:
    """uint8 [classes, 3]: the colour of each class."""
    colours = [(0, 0, 0), *_TAB10]
    for i in range(len(colours), classes):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95)
        colours.append((round(255 * r), round(255 * g), round(255 * b)))
    return np.asarray(colours[:classes], np.uint8)


def resized(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A class mask [h, w] at `size` (width, height) by PIL's nearest neighbour (classes are not blended), int64."""
    from PIL import Image  # deferred for start-up: loads Pillow

    im = Image.fromarray(np.ascontiguousarray(mask, np.int32))  # mode "I": any class count
    return np.asarray(im.resize(size, Image.Resampling.NEAREST), np.int64)


def write_mask(path: str | Path, mask: np.ndarray, classes: int) -> Path:
    """The mask as a PNG whose pixel values are the class indices: palette mode ("P", PALETTE's colours) for up to
    256 classes, 16-bit grey beyond; written atomically."""
    from PIL import Image  # deferred for start-up: loads Pillow

    if classes <= 256:
        im = Image.fromarray(mask.astype(np.uint8), mode="P")
        im.putpalette(palette(classes).ravel().tolist())
    else:
        im = Image.fromarray(mask.astype(np.uint16))
    return atomic_write(path, lambda f: im.save(f, format="PNG"))


def overlay(rgb: np.ndarray, mask: np.ndarray, classes: int, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """uint8 [H, W, 3]: the image with each pixel of a class other than 0 blended with its class colour."""
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"image {rgb.shape[:2]} and mask {mask.shape} differ in size")
    colours = palette(classes)[mask].astype(np.float32)
    tinted = (1 - alpha) * rgb.astype(np.float32) + alpha * colours
    out = np.where((mask > 0)[:, :, None], tinted, rgb.astype(np.float32))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write_overlay(path: str | Path, rgb: np.ndarray, mask: np.ndarray, classes: int) -> Path:
    from PIL import Image  # deferred for start-up: loads Pillow

    im = Image.fromarray(overlay(rgb, mask, classes))
    return atomic_write(path, lambda f: im.save(f, format="PNG"))


def pixel_counts(mask: np.ndarray, classes: int, labels: list[str] | None = None) -> dict[str, int]:
    """Pixels of each class, every class listed (0 where absent), by label where the model has labels."""
    return named_counts(np.bincount(mask.ravel(), minlength=classes), labels)


def named_counts(counts: np.ndarray, labels: list[str] | None = None) -> dict[str, int]:
    """Pixels per class index as {label or index: pixels}."""
    names = labels if labels is not None and len(labels) == len(counts) else [str(i) for i in range(len(counts))]
    return {name: int(n) for name, n in zip(names, counts)}
