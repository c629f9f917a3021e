"""A bundle made by `tcc build`, opened: its manifest, its files checked, the model run where its backend runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..artifact import manifest_preprocess, open_artifact
from ..bundle import read_manifest
from ..data import load_array, load_image, model_pixels, normalize_pixels
from ..dense import class_masks
from ..errors import DataError
from ..slide.infer import ModelSource
from ..slide.options import Options as SlideOptions
from ..slide.pipeline import run_slides
from ..slide.reader import list_images
from ..spec.loader import Preprocess

# an image file, a .npy file, a PIL image, uint8 pixels [H, W, C] / [N, H, W, C] (or [H, W], grey), or the model's
# input itself: float [C, H, W] / [N, C, H, W]
Inputs = str | Path | npt.ArrayLike | Any
Log = Callable[[str], None]  # what hears progress lines
Images = str | Path | Iterable[str | Path]  # image files or folders (tcc.slide)


def as_batch(x: Inputs, preprocess: Preprocess, input_shape: tuple[int, ...]) -> np.ndarray:
    """The model's input batch, float32 [N, C, H, W], from what a user has at hand: an image file or a PIL image
    (through the preprocessing), uint8 pixels [H, W, C] / [N, H, W, C] (the same; [H, W] for grey), a .npy file,
    or an array that is already the model's input, [C, H, W] / [N, C, H, W]."""
    if isinstance(x, (str, Path)):
        return load_array(x, input_shape) if Path(x).suffix.lower() == ".npy" else load_image(x, preprocess)[None]
    if _is_pil_image(x):
        return _pixels_batch([x], preprocess)
    arr = np.asarray(x)
    if arr.dtype == np.uint8:  # pixels as PIL, OpenCV (BGR: say so in the spec) or skimage give them
        images = [arr] if arr.ndim in (2, 3) else list(arr) if arr.ndim == 4 else None
        if images is None:
            raise DataError(f"uint8 pixels of shape {list(arr.shape)}: expected [H, W, C], [N, H, W, C] or [H, W]")
        return _pixels_batch(images, preprocess)
    batch = np.asarray(arr, dtype=np.float32)
    if batch.ndim == len(input_shape):
        batch = batch[None]
    if tuple(batch.shape[1:]) != tuple(input_shape):
        raise DataError(
            f"input of shape {list(batch.shape)}: the model takes float [N, {', '.join(map(str, input_shape))}] "
            "(or give an image: a path, a PIL image or uint8 pixels [H, W, C])"
        )
    return np.ascontiguousarray(batch)


def _is_pil_image(x: object) -> bool:
    from PIL import Image  # deferred for start-up: loads Pillow

    return isinstance(x, Image.Image)


def _pixels_batch(images: list, preprocess: Preprocess) -> np.ndarray:
    """PIL images or uint8 pixel arrays through the preprocessing, as an image file would go (tcc.data)."""
    from PIL import Image  # deferred for start-up: loads Pillow

    if preprocess.color is None:
        raise DataError("this model's input is not an image (no color order); pass a float array [N, C, H, W]")
    out = []
    for im in images:
        if not isinstance(im, Image.Image):
            pixels = np.asarray(im)
            if pixels.ndim == 3 and pixels.shape[2] == 1:
                pixels = pixels[:, :, 0]
            if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
                raise DataError(f"uint8 pixels of shape {list(pixels.shape)}: expected [H, W], [H, W, 3] or [H, W, 4]")
            im = Image.fromarray(np.ascontiguousarray(pixels))
        out.append(normalize_pixels(model_pixels(im, preprocess), preprocess))
    return np.stack(out).astype(np.float32, copy=False)


@dataclass
class Bundle:
    """A bundle made by `tcc build`: its manifest, and the model run here where its backend runs on this machine."""

    path: Path
    manifest: dict[str, Any]  # the bundle's manifest.json (tcc.bundle)
    report: object = None  # the pass pipeline's report, for a bundle just built
    seconds: dict[str, float] = field(default_factory=dict)  # wall time by phase, for a bundle just built
    _artifact: Any = None  # the opened artifact (tcc.artifact), made on the first run

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        """An existing bundle; its files are checked against the manifest's hashes (a changed byte is refused)."""
        return cls(Path(path), read_manifest(path))

    @property
    def target(self) -> str:
        target: str = self.manifest["target"]
        return target

    @property
    def precision(self) -> str:
        precision: str = self.manifest["precision"]
        return precision

    @property
    def labels(self) -> list[str] | None:
        """The class names the model was built with, or None."""
        return self.manifest.get("labels")

    @property
    def classes(self) -> list[str] | None:
        """The class names (as `labels`; the name torchvision's and timm's users look for), or None."""
        return self.labels

    @property
    def num_classes(self) -> int:
        """The width of the model's output (its last axis)."""
        return int(self.manifest["outputs"][0]["shape"][-1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["inputs"][0]["shape"][1:])

    @property
    def warning(self) -> str | None:
        """The loud warning of a bundle built with seeded random weights, else None."""
        weights = self.manifest["weights"]
        return weights.get("warning") if "random_seed" in weights else None

    def check(self) -> dict[str, Any]:
        """Every file against the manifest's sha256 (a BuildError names the first that differs); the self-check
        the build recorded."""
        self.manifest = read_manifest(self.path, verify=True)
        self_check: dict[str, Any] = self.manifest["self_check"]
        return self_check

    def predict(self, x: Inputs) -> np.ndarray:
        """The bundle's output for `x`, as Model.predict takes it (an image file, a PIL image or uint8 pixels
        through the bundle's own preprocessing, a .npy file or a float array); a kit for an NPU, or a bundle for
        another machine, is refused with a clear error."""
        return self.run(x)

    def segment(self, x: Inputs) -> np.ndarray:
        """A segmentation bundle's masks: the class of every pixel of its dense output, int64 [N, H, W]
        (tcc.dense.class_masks; `tcc predict --artifact` writes them as PNGs)."""
        return class_masks(self.predict(x))

    def run(self, x: Inputs) -> np.ndarray:
        """The same as `predict` (the name of earlier versions, kept)."""
        if self._artifact is None:
            self._artifact = open_artifact(self.path)
        y: np.ndarray = self._artifact.run(as_batch(x, manifest_preprocess(self.manifest), self.input_shape))
        return y

    def slide(
        self, images: Images, out: str | Path = "out/slide", *, log: Log = lambda s: None, **options: Any
    ) -> list:
        """Model.slide with this bundle scoring the patches (`tcc slide --artifact`), its own preprocessing."""
        return score_slides(ModelSource.create(artifact=self.path), images, out, log, options)


def score_slides(source: ModelSource, images: Images, out: str | Path, log: Log, options: dict[str, Any]) -> list[Any]:
    """tcc.slide's pipeline over `images` (files or folders) with `options` (tcc.slide.options.Options' fields)."""
    unknown = sorted(set(options) - {f.name for f in fields(SlideOptions)})
    if unknown:
        raise DataError(
            f"slide: unknown option {unknown[0]!r} (the options: {', '.join(f.name for f in fields(SlideOptions))})"
        )
    paths = [images] if isinstance(images, (str, Path)) else list(images)
    return run_slides(list_images([str(i) for i in paths]), source, Path(out), SlideOptions(**options), log=log)
