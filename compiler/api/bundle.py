"""A bundle made by `tcc build`, opened: its manifest, its files checked, the model run where its backend runs."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import manifest_preprocess, open_artifact
from ..bundle import read_manifest
from ..data import load_array, load_image
from ..errors import DataError
from ..slide.infer import ModelSource
from ..slide.pipeline import Options as SlideOptions
from ..slide.pipeline import run_slides
from ..slide.reader import list_images


def as_batch(x, preprocess, input_shape) -> np.ndarray:
    """An image file (through the preprocessing), a .npy file, or an array [C, H, W] / [N, C, H, W]."""
    if isinstance(x, (str, Path)):
        return load_array(x, input_shape) if Path(x).suffix.lower() == ".npy" else load_image(x, preprocess)[None]
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == len(input_shape):
        x = x[None]
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(f"input of shape {list(x.shape)}: the model takes [N, {', '.join(map(str, input_shape))}]")
    return np.ascontiguousarray(x)


@dataclass
class Bundle:
    """A bundle made by `tcc build`: its manifest, and the model run here where its backend runs on this machine."""

    path: Path
    manifest: dict
    report: object = None  # the pass pipeline's report, for a bundle just built
    seconds: dict = field(default_factory=dict)  # wall time by phase, for a bundle just built
    _artifact: Any = None  # the opened artifact (tcc.artifact), made on the first run

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        """An existing bundle; its files are checked against the manifest's hashes (a changed byte is refused)."""
        return cls(Path(path), read_manifest(path))

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    @property
    def labels(self) -> list[str] | None:
        return self.manifest.get("labels")

    @property
    def input_shape(self) -> tuple:
        return tuple(self.manifest["inputs"][0]["shape"][1:])

    @property
    def warning(self) -> str | None:
        """The loud warning of a bundle built with seeded random weights, else None."""
        weights = self.manifest["weights"]
        return weights.get("warning") if "random_seed" in weights else None

    def check(self) -> dict:
        """Every file against the manifest's sha256 (a BuildError names the first that differs); the self-check
        the build recorded."""
        self.manifest = read_manifest(self.path, verify=True)
        return self.manifest["self_check"]

    def run(self, x) -> np.ndarray:
        """The bundle's output for `x` (an image file through the bundle's own preprocessing, a .npy file or an
        array); a kit for an NPU, or a bundle for another machine, is refused with a clear error."""
        if self._artifact is None:
            self._artifact = open_artifact(self.path)
        return self._artifact.run(as_batch(x, manifest_preprocess(self.manifest), self.input_shape))

    def slide(self, images, out: str | Path = "out/slide", *, log=lambda s: None, **options) -> list:
        """Model.slide with this bundle scoring the patches (`tcc slide --artifact`), its own preprocessing."""
        return score_slides(ModelSource.create(artifact=self.path), images, out, log, options)


def score_slides(source: ModelSource, images, out: str | Path, log, options: dict) -> list:
    """tcc.slide's pipeline over `images` (files or folders) with `options` (tcc.slide.pipeline.Options' fields)."""
    unknown = sorted(set(options) - {f.name for f in fields(SlideOptions)})
    if unknown:
        raise DataError(
            f"slide: unknown option {unknown[0]!r} (the options: {', '.join(f.name for f in fields(SlideOptions))})"
        )
    images = [images] if isinstance(images, (str, Path)) else list(images)
    return run_slides(list_images([str(i) for i in images]), source, Path(out), SlideOptions(**options), log=log)
