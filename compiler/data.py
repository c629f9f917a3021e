"""Turning images and arrays into the model's input tensors, with the spec's preprocessing.

Every image tcc reads is opened here (`open_image`): its declared size is checked against a pixel cap before any
pixel is decoded, so a decompression bomb (a 35 kB PNG declaring 60,000 x 60,000 pixels) is refused naming the file
and the cap, never decoded into gigabytes or met as Pillow's traceback. `--max-pixels` raises the cap.
"""

from __future__ import annotations

import contextlib
import struct
import warnings
from pathlib import Path

import numpy as np

from .errors import DataError
from .spec.loader import Preprocess

_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1}  # PIL.Image.Resampling values
DEFAULT_MAX_PIXELS = 20_000 * 20_000  # 1.2 GB decoded as RGB; whole-slide images are read region by region
_max_pixels = DEFAULT_MAX_PIXELS


def set_max_pixels(value: int) -> None:
    """The cap for this process (`--max-pixels`): images declaring more pixels are refused before decoding."""
    global _max_pixels
    if value < 1:
        raise DataError(f"--max-pixels {value}: must be at least 1")
    _max_pixels = int(value)


def max_pixels() -> int:
    return _max_pixels


def too_big(path, w: int, h: int, cap: int, hint: str) -> str:
    return (
        f"{path}: declares {w:,} x {h:,} = {w * h:,} pixels, above --max-pixels {cap:,}; refused before "
        f"decoding. {hint}"
    )


_HINT = "If the image is real and the memory is there (3 bytes a pixel), raise --max-pixels."


@contextlib.contextmanager
def _own_size_check():
    """Pillow's decompression-bomb guard off while a header is read (it refuses above twice its cap without telling
    the size): open_image checks the declared size itself before anything is decoded, and says what to do."""
    from PIL import Image  # deferred for start-up: loads PIL

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


@contextlib.contextmanager
def open_image(path: str | Path, cap: int | None = None, hint: str = _HINT):
    """PIL's image of `path` (only its header read), its declared size checked against the pixel cap; a file that
    is missing, not an image or too large is a DataError naming it."""
    from PIL import Image, UnidentifiedImageError  # deferred for start-up: loads PIL

    cap = cap or _max_pixels
    path = Path(path)
    try:
        with _own_size_check():
            im = Image.open(path)
        with im:
            w, h = im.size
            if w * h > cap:
                raise DataError(too_big(path, w, h, cap, hint))
            if im.mode in ("P", "PA") and im.palette is None:  # a PNG without its PLTE: Pillow's convert() asserts
                raise DataError(f"{path}: cannot read image (a palette image without its palette)")
            yield im
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    # what Pillow's decoders raise on a damaged file, beyond OSError and ValueError: SyntaxError (a plugin's parse),
    # EOFError and struct.error (a header cut short), OverflowError (a TIFF tag's value too large for its C decoder)
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        struct.error,
        OverflowError,
        Image.DecompressionBombError,
    ) as e:
        raise DataError(f"{path}: cannot read image ({str(e) or type(e).__name__})") from None


def load_image(path: str | Path, pre: Preprocess) -> np.ndarray:
    """One image -> float32 [C, H, W]: color conversion, resize, scale, (x - mean) / std."""
    return normalize_pixels(load_pixels(path, pre), pre)


def load_pixels(path: str | Path, pre: Preprocess) -> np.ndarray:
    """One image decoded, converted (RGB for an RGB or BGR model, L for grey) and resized to the model's input:
    uint8 [H, W, C], the pixels before any arithmetic (what an AX kit's calibration archive stores)."""
    path = Path(path)
    if pre.color is None:
        raise DataError(
            f"{path}: this model's input is not an image (no color order); give its input as an array (a .npy file)"
        )
    with open_image(path) as im:
        return model_pixels(im, pre)


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
    arr: np.ndarray = np.asarray(pixels, np.float32)
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
