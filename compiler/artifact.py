"""A built bundle as something to run: its backend's loaded model, preprocessing, input shape and labels, all read
from its manifest. `tcc predict --artifact`, `tcc diff` and `tcc slide --artifact` run bundles through this."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .bundle import read_manifest
from .errors import BuildError
from .spec.loader import Preprocess


@dataclass
class Artifact:
    path: Path
    manifest: dict
    backend: object  # tcc.backends.base.Backend
    loaded: object  # what backend.load returned

    @property
    def preprocess(self):
        """The spec's preprocessing the bundle was built with (tcc.spec.loader.Preprocess)."""
        return manifest_preprocess(self.manifest)

    @property
    def input_shape(self) -> tuple:
        """Per-sample input shape, [C, H, W]."""
        return tuple(self.manifest["inputs"][0]["shape"][1:])

    @property
    def labels(self) -> list | None:
        return self.manifest.get("labels")

    @property
    def warning(self) -> str | None:
        """The loud warning of a bundle built with seeded random weights, else None."""
        return self.manifest["weights"].get("warning") if "random_seed" in self.manifest["weights"] else None

    def run(self, x):
        """float32 [N, C, H, W] -> the model's output (logits), as numpy, of the shape its manifest declares (a
        bundle whose model was edited after the build may compute another: refused, not printed as classes)."""
        y = self.backend.run(self.loaded, x)
        declared = self.manifest["outputs"][0]["shape"][1:]
        if list(y.shape[1:]) != declared:
            raise BuildError(
                f"{self.path}: its model gives an output of shape {list(y.shape)}, its manifest "
                f"declares [N, {', '.join(map(str, declared))}]: a damaged or edited bundle"
            )
        return y


def manifest_preprocess(manifest: dict):
    p = manifest["preprocess"]
    return Preprocess(**{**p, "resize": tuple(p["resize"]), "mean": tuple(p["mean"]), "std": tuple(p["std"])})


def open_artifact(path: str | Path) -> Artifact:
    """Load a bundle made by `tcc build` for running here; a kit or a bundle for another machine is refused with
    a clear error (exit 2)."""
    from tcc.backends import get_backend  # deferred for start-up: loads numpy

    manifest = read_manifest(path)
    backend = get_backend(manifest["backend"])
    if backend.capabilities.kit:
        raise BuildError(
            f"{path}: a kit for {manifest['runtime'].get('runtime', manifest['target'])}: its "
            "toolchain builds the NPU model (build.sh, in Axera's Docker image); prediction.json holds "
            "tcc's prediction of the NPU's result"
        )
    if not backend.capabilities.runs_here:
        raise BuildError(f"{path}: a {manifest['target']} bundle cannot run on this machine")
    return Artifact(Path(path), manifest, backend, backend.load(Path(path)))
