"""Masks from a dense output (tcc.segmentation.masks): the class per pixel, resized as PIL's nearest does, written
as a palette PNG that reads back as the classes, tinted over the image, counted per class."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tcc.dense import class_masks, classes_of, is_dense
from tcc.errors import DataError
from tcc.segmentation.masks import (
    overlay,
    palette,
    pixel_counts,
    resized,
    write_mask,
)


def test_the_class_of_each_pixel():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    np.testing.assert_array_equal(class_masks(logits), logits.argmax(axis=1))
    single = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)  # one logit per pixel: foreground above 0
    np.testing.assert_array_equal(class_masks(single), (single[:, 0] > 0).astype(np.int64))
    assert classes_of(single) == 2 and classes_of(logits) == 3
    assert not is_dense(np.zeros((1, 5))) and not is_dense(np.zeros((1, 5, 1, 1))) and is_dense(logits)
    with pytest.raises(DataError, match=r"shape \[1, 5\] is not dense"):
        class_masks(np.zeros((1, 5)))


@pytest.mark.parametrize("size", [(37, 23), (5, 9), (64, 64), (8, 3)])
def test_resized_as_pil_nearest(size):
    mask = np.random.default_rng(1).integers(0, 5, (11, 13))
    pil = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize(size, Image.Resampling.NEAREST))
    np.testing.assert_array_equal(resized(mask, size), pil)


def test_palette_png_reads_back_as_the_classes(tmp_path):
    mask = np.random.default_rng(2).integers(0, 12, (9, 10))
    with Image.open(write_mask(tmp_path / "m.png", mask, 12)) as im:
        assert im.mode == "P" and im.size == (10, 9)
        np.testing.assert_array_equal(np.asarray(im), mask)
        colours = np.asarray(im.getpalette()[: 12 * 3]).reshape(12, 3)
    np.testing.assert_array_equal(colours, palette(12))
    wide = np.random.default_rng(3).integers(0, 300, (4, 5))  # past a palette's 256 entries: 16-bit grey
    with Image.open(write_mask(tmp_path / "w.png", wide, 300)) as im:
        np.testing.assert_array_equal(np.asarray(im), wide)


def test_palette_tells_classes_apart():
    colours = palette(40)
    assert tuple(colours[0]) == (0, 0, 0)
    assert len({tuple(c) for c in colours}) == 40


def test_overlay_tints_every_class_but_background_and_counts():
    rgb = np.full((2, 3, 3), 200, np.uint8)
    mask = np.array([[0, 1, 2], [2, 0, 1]])
    out = overlay(rgb, mask, 3, alpha=0.5)
    np.testing.assert_array_equal(out[mask == 0], rgb[mask == 0])  # background untouched
    expected = np.rint(0.5 * 200 + 0.5 * palette(3)[1].astype(np.float32)).astype(np.uint8)
    np.testing.assert_array_equal(out[0, 1], expected)
    assert pixel_counts(mask, 3) == {"0": 2, "1": 2, "2": 2}
    assert pixel_counts(np.zeros((2, 2), np.int64), 3, ["bg", "gland", "tumour"]) == {"bg": 4, "gland": 0, "tumour": 0}
