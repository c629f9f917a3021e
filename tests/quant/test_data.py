"""Calibration data: image directories (recursive, every format), arrays, deterministic picking, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from tcc.errors import DataError
from tcc.quant.collect.data import BadImageWarning, find_images, load_calibration_data
from tcc.spec.loader import Preprocess

PRE = Preprocess(resize=(16, 16), color="RGB", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
SHAPE = (3, 16, 16)


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "calib"
    for k, (sub, ext) in enumerate(
        [
            ("a", "png"),
            ("a", "jpg"),
            ("b", "bmp"),
            ("b", "tiff"),
            ("", "PNG"),
            ("b/deep", "jpeg"),
            ("a", "tif"),
            ("", "png"),
        ]
    ):
        d = root / sub
        d.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (20 + k, 24, 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"img{k}.{ext}")
    (root / "notes.txt").write_text("not an image")
    return root


def test_directory_recursive_all_formats(image_dir):
    files = find_images(image_dir)
    assert len(files) == 8
    d = load_calibration_data(image_dir, PRE, SHAPE)
    assert d.array.shape == (8, 3, 16, 16) and d.array.dtype == np.float32
    assert d.files == sorted(d.files) and len(d.fingerprint) == 64
    # preprocessing is the spec's: (x / 255 - 0.5) / 0.25 lies in [-2, 2]
    assert d.array.min() >= -2.0 - 1e-6 and d.array.max() <= 2.0 + 1e-6


def test_calib_size_is_deterministic_and_seeded(image_dir):
    a = load_calibration_data(image_dir, PRE, SHAPE, calib_size=4, seed=3)
    b = load_calibration_data(image_dir, PRE, SHAPE, calib_size=4, seed=3)
    c = load_calibration_data(image_dir, PRE, SHAPE, calib_size=4, seed=4)
    assert a.files == b.files and a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.array, b.array)
    assert len(a) == 4 and a.files != c.files and a.fingerprint != c.fingerprint


def test_corrupt_image_is_named_or_skipped(image_dir):
    bad = image_dir / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="broken.png"):
        load_calibration_data(image_dir, PRE, SHAPE)
    with pytest.warns(BadImageWarning, match="broken.png"):
        d = load_calibration_data(image_dir, PRE, SHAPE, skip_bad=True)
    assert len(d) == 8 and d.skipped == [str(bad)]
    # with a calib_size the next good file takes the bad one's place
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)
        assert len(load_calibration_data(image_dir, PRE, SHAPE, calib_size=8, skip_bad=True)) == 8


def test_empty_and_missing(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        load_calibration_data(tmp_path / "empty", PRE, SHAPE)
    with pytest.raises(DataError, match="no such"):
        load_calibration_data(tmp_path / "nope", PRE, SHAPE)
    (tmp_path / "x.txt").write_text("?")
    with pytest.raises(DataError, match="directory of images or a .npy"):
        load_calibration_data(tmp_path / "x.txt", PRE, SHAPE)
    with pytest.raises(DataError, match=">= 1"):
        load_calibration_data(tmp_path / "empty", PRE, SHAPE, calib_size=0)


def test_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    d = load_calibration_data(tmp_path / "x.npy", PRE, SHAPE, calib_size=6, seed=1)
    assert d.array.shape == (6, 3, 16, 16)
    assert all(any(np.array_equal(r, s) for s in x) for r in d.array)
    np.savez(tmp_path / "x.npz", input=x, other=x[:1])
    assert len(load_calibration_data(tmp_path / "x.npz", PRE, SHAPE)) == 10
    np.savez(tmp_path / "two.npz", a=x, b=x)
    with pytest.raises(DataError, match="name the calibration array 'input'"):
        load_calibration_data(tmp_path / "two.npz", PRE, SHAPE)
    np.save(tmp_path / "c1.npy", x[:, :1])
    with pytest.raises(DataError, match="1 channel"):
        load_calibration_data(tmp_path / "c1.npy", PRE, SHAPE)
    np.save(tmp_path / "s.npy", x[:, :, :8])
    with pytest.raises(DataError, match="spatial size 8x16"):
        load_calibration_data(tmp_path / "s.npy", PRE, SHAPE)
    y = x.copy()
    y[4, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", y)
    with pytest.raises(DataError, match="sample 4 holds NaN"):
        load_calibration_data(tmp_path / "nan.npy", PRE, SHAPE)
    np.save(tmp_path / "int.npy", x.astype(np.int32))
    with pytest.raises(DataError, match="dtype int32"):
        load_calibration_data(tmp_path / "int.npy", PRE, SHAPE)
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(DataError, match="junk.npy: not a readable"):
        load_calibration_data(tmp_path / "junk.npy", PRE, SHAPE)
    # an in-memory array works the same way
    assert load_calibration_data(x, PRE, SHAPE, calib_size=3).array.shape == (3, 3, 16, 16)


def test_non_image_model_needs_arrays(image_dir):
    pre = Preprocess(resize=(16, 16), color=None)
    with pytest.raises(DataError, match="not an image"):
        load_calibration_data(image_dir, pre, SHAPE)
