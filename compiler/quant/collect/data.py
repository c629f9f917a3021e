"""Calibration data: a directory of images (recursive) or a .npy/.npz of NCHW float32, as one float32 batch.

    data = load_calibration_data("calib/", model.preprocess, model.input_shape, calib_size=128, seed=0)
    data.array        # [N, C, H, W] float32, after the spec's preprocessing
    data.fingerprint  # sha256 over the chosen files' names and bytes (or the array), recorded in the table

The N samples are chosen deterministically: the sorted file list (or the array's rows) is permuted by a
`numpy.random.default_rng(seed)` and the first N taken, then kept in sorted order. A corrupt image is a
`DataError` naming the file, or, with `skip_bad=True`, a warning naming it (the sample is replaced by the next
one in the permutation so N still holds when enough good files exist).
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...data import load_image
from ...errors import DataError
from ...spec.loader import Preprocess

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class BadImageWarning(UserWarning):
    """An unreadable calibration image was skipped (`skip_bad=True`)."""


@dataclass
class CalibrationData:
    array: np.ndarray  # [N, C, H, W] float32
    fingerprint: str  # sha256 hex
    source: str
    files: list[str] = field(default_factory=list)  # the chosen files (images only), relative to the source
    skipped: list[str] = field(default_factory=list)  # unreadable files skipped with skip_bad

    def __len__(self) -> int:
        return len(self.array)


def find_images(root: str | Path) -> list[Path]:
    """Every image file under `root` (recursive, ImageFolder-style or flat), sorted by relative path."""
    root = Path(root)
    return sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.relative_to(root).as_posix(),
    )


def _order(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


def _check_batch(arr: np.ndarray, input_shape: tuple, where: str) -> np.ndarray:
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise DataError(
            f"{where}: array of shape {list(arr.shape)}, expected NCHW [N, {', '.join(map(str, input_shape))}]"
        )
    if arr.shape[1] != input_shape[0]:
        raise DataError(
            f"{where}: {arr.shape[1]} channel(s) (shape {list(arr.shape)}), the model expects "
            f"{input_shape[0]} (input shape {list(input_shape)})"
        )
    if tuple(arr.shape[2:]) != tuple(input_shape[1:]):
        raise DataError(
            f"{where}: spatial size {arr.shape[2]}x{arr.shape[3]}, the model expects "
            f"{input_shape[1]}x{input_shape[2]} (input shape {list(input_shape)})"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{where}: dtype {arr.dtype}, expected float32 (already preprocessed NCHW)")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr).reshape(len(arr), -1).all(axis=1))[0, 0])
        raise DataError(f"{where}: sample {bad} holds NaN or infinite values")
    return arr


def _load_array_file(path: Path, input_shape: tuple) -> np.ndarray:
    try:
        obj = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npy/.npz array ({e})") from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            keys = list(obj.keys())
            if not keys:
                raise DataError(f"{path}: the .npz holds no arrays")
            key = "input" if "input" in keys else keys[0] if len(keys) == 1 else None
            if key is None:
                raise DataError(
                    f"{path}: the .npz holds {len(keys)} arrays ({', '.join(keys)}); name the "
                    f"calibration array 'input' or store only one"
                )
            obj = obj[key]
    return _check_batch(obj, input_shape, str(path))


def load_calibration_data(
    source: str | Path | np.ndarray,
    preprocess,
    input_shape: tuple,
    calib_size: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    progress: bool | None = None,
    what: str = "calibration",
) -> CalibrationData:
    """Load calibration samples from an image directory, a .npy/.npz file or an in-memory array.

    `preprocess` is the spec's `Preprocess` (only used for images), `input_shape` the model's per-sample (C, H, W).
    `calib_size=None` takes every sample. `progress=None` shows a bar on a terminal for more than 64 images.
    `what` names the data in errors ("held-out" for `tcc calibrate --eval`).
    """
    input_shape = tuple(int(v) for v in input_shape)
    if calib_size is not None and calib_size < 1:
        raise DataError(f"calibration size must be >= 1, got {calib_size}")
    if isinstance(source, np.ndarray):
        arr = _check_batch(source, input_shape, "calibration array")
        return _pick_rows(arr, calib_size, seed, "<array>")
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such {what} file or directory")
    if path.is_file():
        if path.suffix.lower() not in (".npy", ".npz"):
            raise DataError(f"{path}: {what} data must be a directory of images or a .npy/.npz array")
        return _pick_rows(_load_array_file(path, input_shape), calib_size, seed, str(path))
    files = find_images(path)
    if not files:
        raise DataError(f"{path}: no images found (looked recursively for {', '.join(IMAGE_SUFFIXES)})")
    if preprocess is None or preprocess.color is None:
        raise DataError(f"{path}: this model's input is not an image (no color order); calibrate with a .npy/.npz")
    want = len(files) if calib_size is None else min(calib_size, len(files))
    if progress is None:
        progress = sys.stderr.isatty() and want > 64
    reading = _ImageReading(preprocess, input_shape, skip_bad, what)
    samples, skipped = reading.first(files, _order(len(files), seed), want, progress)
    if not samples:
        raise DataError(f"{path}: none of the {len(files)} images could be read")
    chosen = sorted(samples)
    arr = np.stack([samples[i] for i in chosen])
    rel = [files[idx].relative_to(path).as_posix() for idx in chosen]
    return CalibrationData(arr, _fingerprint(files, chosen, rel, preprocess), str(path), rel, skipped)


def held_back(
    source: str | Path | np.ndarray,
    calibration: CalibrationData,
    preprocess,
    input_shape: tuple,
    seed: int,
    n: int,
) -> np.ndarray | None:
    """Up to `n` samples of `source` that `calibration` (load_calibration_data of the same source and seed) did not
    pick, next in the same seeded order: samples to judge a calibration on that it never saw. None where it took
    every sample. Unreadable images are passed over (calibration already said so, or refused them)."""
    input_shape = tuple(int(v) for v in input_shape)
    if isinstance(source, np.ndarray) or Path(source).is_file():
        arr = source if isinstance(source, np.ndarray) else _load_array_file(Path(source), input_shape)
        arr = _check_batch(arr, input_shape, "calibration array")
        if len(calibration) >= len(arr):
            return None
        rest = _order(len(arr), seed)[len(calibration) :][:n]
        return np.ascontiguousarray(arr[np.sort(rest)])
    path = Path(source)
    files = find_images(path)
    taken = set(calibration.files) | {Path(f).relative_to(path).as_posix() for f in calibration.skipped}
    left = [int(i) for i in _order(len(files), seed) if files[i].relative_to(path).as_posix() not in taken]
    if not left:
        return None
    reading = _ImageReading(preprocess, input_shape, skip_bad=True, what="held-back")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)  # a held-back image that does not read is just not used
        samples, _ = reading.first(files, left, n, progress=False)
    return np.stack([samples[i] for i in sorted(samples)]) if samples else None


@dataclass(frozen=True)
class _ImageReading:
    """How calibration images are read: the spec's preprocessing to the model's per-sample shape; unreadable ones
    skipped with a warning (`skip_bad`) or refused; `what` names the data in errors."""

    preprocess: Preprocess
    input_shape: tuple
    skip_bad: bool
    what: str

    def first(self, files: list[Path], order, want: int, progress: bool) -> tuple[dict[int, np.ndarray], list[str]]:
        """({index: sample} of the first `want` readable files in `order`, the files skipped)."""
        bar = None
        if progress:
            from tqdm import tqdm  # deferred for start-up: a progress bar only on a terminal

            bar = tqdm(total=want, desc=f"{self.what} images", unit="img", file=sys.stderr)
        samples: dict[int, np.ndarray] = {}
        skipped: list[str] = []
        try:
            for idx in order:
                if len(samples) == want:
                    break
                x = self.read(files[idx], skipped)
                if x is None:
                    continue
                samples[int(idx)] = x
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return samples, skipped

    def read(self, f: Path, skipped: list[str]) -> np.ndarray | None:
        """One preprocessed sample, or None when it is unreadable and skipped (noted in `skipped`)."""
        try:
            x = load_image(f, self.preprocess)
        except DataError as e:
            if not self.skip_bad:
                raise
            warnings.warn(f"skipping unreadable {self.what} image {e}", BadImageWarning, stacklevel=4)
            skipped.append(str(f))
            return None
        if x.shape != self.input_shape:
            raise DataError(f"{f}: preprocessed to {list(x.shape)}, the model expects {list(self.input_shape)}")
        if not np.isfinite(x).all():
            raise DataError(f"{f}: preprocessing produced NaN or infinite values")
        return x


def _fingerprint(files: list[Path], chosen: list[int], rel: list[str], preprocess) -> str:
    """sha256 over the chosen files (their names under the folder and their bytes) and the preprocessing."""
    h = hashlib.sha256()
    for idx, name in zip(chosen, rel):
        h.update(name.encode() + b"\0")
        h.update(hashlib.sha256(files[idx].read_bytes()).digest())
    h.update(repr(preprocess.to_json()).encode())
    return h.hexdigest()


def _pick_rows(arr: np.ndarray, calib_size: int | None, seed: int, source: str) -> CalibrationData:
    if len(arr) == 0:
        raise DataError(f"{source}: the array holds no samples")
    if calib_size is not None and calib_size < len(arr):
        arr = arr[np.sort(_order(len(arr), seed)[:calib_size])]
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256(repr((arr.shape, str(arr.dtype))).encode())
    h.update(arr.tobytes())
    return CalibrationData(arr, h.hexdigest(), source)
