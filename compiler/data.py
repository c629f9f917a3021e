"""Turning images and arrays into the model's input tensors, with the spec's preprocessing."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError
from .spec.loader import Preprocess

_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1}  # PIL.Image.Resampling values


def load_image(path: str | Path, pre: Preprocess) -> np.ndarray:
    """One image -> float32 [C, H, W]: color conversion, resize, scale, (x - mean) / std."""
    return normalize_pixels(load_pixels(path, pre), pre)


def load_pixels(path: str | Path, pre: Preprocess) -> np.ndarray:
    """One image decoded, converted (RGB for an RGB or BGR model, L for grey) and resized to the model's input:
    uint8 [H, W, C], the pixels before any arithmetic (what an AX kit's calibration archive stores)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if pre.color is None:
        raise DataError(f"{path}: this model's input is not an image (no color order); pass an array (--input)")
    try:
        with Image.open(path) as im:
            return model_pixels(im, pre)
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None


def model_pixels(im, pre: Preprocess) -> np.ndarray:
    """A PIL image converted (RGB for an RGB or BGR model, L for grey) and resized to the model's input with the
    spec's resampling: uint8 [H, W, C]. One place for both whole images and patches cut from a slide."""
    im = im.convert(pre.color if pre.color != "BGR" else "RGB")
    h, w = pre.resize
    arr = np.asarray(im.resize((w, h), resample=_RESAMPLE[pre.interpolation]), dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def normalize_pixels(pixels: np.ndarray, pre: Preprocess) -> np.ndarray:
    """uint8 [H, W, C] pixels (RGB or L, as load_pixels gives them) -> float32 [C, H, W]: channel order, scale,
    (x - mean) / std."""
    arr = np.asarray(pixels, np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if pre.color == "BGR":
        arr = arr[:, :, ::-1]
    arr = arr * np.float32(pre.scale)
    arr = (arr - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def load_array(path: str | Path, input_shape: tuple) -> np.ndarray:
    """A .npy of NCHW (or CHW) float32 whose per-sample shape is the model's input shape."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npy array ({e})") from None
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(input_shape):
        raise DataError(f"{path}: array of shape {list(arr.shape)}, expected [N, {', '.join(map(str, input_shape))}]")
    if arr.dtype != np.float32:
        raise DataError(f"{path}: dtype {arr.dtype}, expected float32")
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: array holds NaN or infinite values")
    return arr
