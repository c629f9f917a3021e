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
from ..data import load_array, load_image
from ..errors import DataError
from ..slide.infer import ModelSource
from ..slide.pipeline import Options as SlideOptions
from ..slide.pipeline import run_slides
from ..slide.reader import list_images
from ..spec.loader import Preprocess

Inputs = str | Path | npt.ArrayLike  # an image file, a .npy file, or an array [C, H, W] / [N, C, H, W]
Log = Callable[[str], None]  # what hears progress lines
Images = str | Path | Iterable[str | Path]  # image files or folders (tcc.slide)


def as_batch(x: Inputs, preprocess: Preprocess, input_shape: tuple[int, ...]) -> np.ndarray:
    """An image file (through the preprocessing), a .npy file, or an array [C, H, W] / [N, C, H, W]."""
    if isinstance(x, (str, Path)):
        return load_array(x, input_shape) if Path(x).suffix.lower() == ".npy" else load_image(x, preprocess)[None]
    batch = np.asarray(x, dtype=np.float32)
    if batch.ndim == len(input_shape):
        batch = batch[None]
    if tuple(batch.shape[1:]) != tuple(input_shape):
        raise DataError(f"input of shape {list(batch.shape)}: the model takes [N, {', '.join(map(str, input_shape))}]")
    return np.ascontiguousarray(batch)


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
        return self.manifest.get("labels")

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

    def run(self, x: Inputs) -> np.ndarray:
        """The bundle's output for `x` (an image file through the bundle's own preprocessing, a .npy file or an
        array); a kit for an NPU, or a bundle for another machine, is refused with a clear error."""
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
    """tcc.slide's pipeline over `images` (files or folders) with `options` (tcc.slide.pipeline.Options' fields)."""
    unknown = sorted(set(options) - {f.name for f in fields(SlideOptions)})
    if unknown:
        raise DataError(
            f"slide: unknown option {unknown[0]!r} (the options: {', '.join(f.name for f in fields(SlideOptions))})"
        )
    paths = [images] if isinstance(images, (str, Path)) else list(images)
    return run_slides(list_images([str(i) for i in paths]), source, Path(out), SlideOptions(**options), log=log)
