"""The model that scores patches: the spec's PyTorch lowering with its weights, or a built bundle, loaded once per
process (the CLI's, or each Dask worker's) and keyed by what identifies it, so a worker that receives many batches
loads it once."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..artifact import open_artifact
from ..data import model_pixels, normalize_pixels
from ..errors import DataError
from ..field import Field, assumed_stride, graph_stride
from ..frontend import reference_module
from ..spec.loader import Preprocess, load_spec
from .reader import cached_image


@dataclass(frozen=True)
class ModelSource:
    """What a worker needs to load the same model: a bundle directory, or a spec with its --set overrides and
    weights. Paths are absolute (a worker may run elsewhere in the tree; on a remote cluster they must exist on
    the workers too); `stamp` holds the files' modification times, so a changed file is not served from cache."""

    artifact: str | None = None
    spec: str | None = None
    overrides: str = "{}"  # the --set values as JSON (hashable, whatever their type)
    weights: str | None = None
    by_order: bool = False
    key_map: str | None = None
    seed: int = 0
    stamp: tuple = ()

    @classmethod
    def create(
        cls, *, artifact=None, spec=None, overrides=None, weights=None, by_order=False, key_map=None, seed=0
    ) -> ModelSource:
        bundle, spec_file, weights_file, key_map_file = (_absolute(p) for p in (artifact, spec, weights, key_map))
        paths = [bundle, spec_file, weights_file, key_map_file]
        files = [p for p in paths if p] + ([str(Path(bundle) / "manifest.json")] if bundle else [])
        return cls(
            bundle,
            spec_file,
            json.dumps(overrides or {}, sort_keys=True),
            weights_file,
            by_order,
            key_map_file,
            seed,
            tuple(_mtime(f) for f in files),
        )


@dataclass
class Runner:
    """A loaded model: float32 [N, C, H, W] -> its output, logits [N, classes] (a classifier, for the heat map) or
    [N, classes, H, W] (a segmenter, for `--segment`)."""

    run: Callable[[np.ndarray], np.ndarray]
    preprocess: Preprocess
    input_shape: tuple
    output_shape: tuple  # per sample
    labels: list | None
    description: dict  # what patches.json says of the model
    where: str  # the spec or bundle, for messages
    stride: int  # the product of its downsampling steps (tcc.field; a bundle's from its manifest, or assumed)
    receptive_field: Field | None = None  # a bundle's, as its build measured it (None: measured when needed)
    messages: list = field(default_factory=list)  # what the CLI prints once (weights report, notes, WARNING)

    @property
    def num_classes(self) -> int:
        """The classes of a classifier's [classes] output; the heat map needs a softmax over at least two."""
        shape = self.output_shape
        if len(shape) != 1 or not isinstance(shape[0], int) or shape[0] < 2:
            raise DataError(
                f"{self.where}: the model's output is {list(shape)}; tcc slide needs class logits, [classes] "
                "with at least 2 classes (a segmenter's [classes, H, W]: --segment)"
            )
        return int(shape[0])


@functools.lru_cache(maxsize=2)
def load_runner(source: ModelSource) -> Runner:
    return _artifact_runner(source) if source.artifact else _torch_runner(source)


def predict_batch(
    source: ModelSource, image: str, max_pixels: int, origins: tuple, width: int, threads: int | None = None
) -> np.ndarray:
    """Softmax probabilities [n, classes] (float64) of the WIDTH x WIDTH level-0 patches at `origins` ((x, y)
    pairs) of `image`, through the model's preprocessing. The one function both the single-process run and the
    Dask workers call, so both compute the same numbers. `threads`: PyTorch's intra-op threads in this process
    from now on (a Dask worker is dedicated to the run; the single-process run uses torch_threads instead)."""
    scores = model_outputs(source, image, max_pixels, origins, (width, width), threads=threads)
    return softmax(np.asarray(scores, np.float64).reshape(len(origins), -1))


def model_outputs(
    source: ModelSource,
    image: str,
    max_pixels: int,
    origins: tuple,
    size: tuple[int, int],
    level: int = 0,
    threads: int | None = None,
) -> np.ndarray:
    """The model's outputs on the regions of `image` at `origins` ((x, y) pairs in `level`'s pixels), each `size`
    (width, height) pixels, through the model's preprocessing (resized to its input); a region scored NaN or
    infinity (damaged weights or bundle: no probability or mask can be made of it) is an error naming it."""
    from PIL import Image  # deferred for start-up: loads PIL

    runner = load_runner(source)
    if threads and not source.artifact:
        set_torch_threads(threads)
    reader = cached_image(image, max_pixels)
    pre = runner.preprocess
    x = np.stack(
        [
            normalize_pixels(model_pixels(Image.fromarray(reader.read_region(px, py, *size, level)), pre), pre)
            for px, py in origins
        ]
    )
    outputs = np.asarray(runner.run(x))
    if not np.isfinite(outputs).all():
        (px, py), *_ = (o for o, out in zip(origins, outputs) if not np.isfinite(out).all())
        where = f" of level {level}" if level else ""
        raise DataError(
            f"{image}: the model scores the patch at ({px}, {py}){where} with NaN or infinity (damaged weights or "
            "bundle?)"
        )
    return outputs


@contextlib.contextmanager
def torch_threads(source: ModelSource, threads: int | None):
    """PyTorch's intra-op threads set to `threads` (process-wide) for the block, then restored. oneDNN picks its
    float32 convolution algorithm by thread count (and batch), so the last bits of a probability depend on it:
    runs agree bit for bit when they use the same threads."""
    if not threads or source.artifact:  # ONNX Runtime sessions keep their own thread pool
        yield
        return
    import torch  # deferred for start-up: loads torch

    before = torch.get_num_threads()
    set_torch_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def set_torch_threads(threads: int) -> None:
    import torch  # deferred for start-up: loads torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def softmax(logits: np.ndarray) -> np.ndarray:
    from scipy.special import softmax as _softmax  # deferred for start-up: loads scipy

    return _softmax(logits, axis=1)


def positive_class(runner: Runner, choice: str | None) -> int:
    """--positive-class as an index: a number, or a label name (case-insensitive); default the last class."""
    names = runner.labels or []
    if choice is None:
        return runner.num_classes - 1
    if choice.lstrip("-").isdigit():
        index = int(choice)
        if 0 <= index < runner.num_classes:
            return index
    lowered = [str(n).lower() for n in names]
    if choice.lower() in lowered:
        return lowered.index(choice.lower())
    known = ", ".join(f"{i} ({n})" for i, n in enumerate(names)) if names else f"0..{runner.num_classes - 1}"
    raise DataError(f"--positive-class {choice!r}: not one of the model's classes: {known}")


def _torch_runner(source: ModelSource) -> Runner:
    import torch  # deferred for start-up: loads torch

    from ..lower.weights import fit_to_checkpoint  # deferred for start-up: loads torch

    messages: list[str] = []
    assert source.spec is not None  # a PyTorch source has its spec
    model = fit_to_checkpoint(
        load_spec(source.spec, json.loads(source.overrides)), source.weights, source.by_order, source.key_map
    )
    messages += [f"note: {n}" for n in model.notes]
    module, info = reference_module(
        model, source.weights, source.by_order, source.key_map, source.seed, log=messages.append
    )
    if "warning" in info:
        messages.append(
            f"WARNING: no --weights given: using seeded random weights (seed {source.seed}); the "
            "probabilities are meaningless"
        )

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    weights = {k: info[k] for k in ("file", "sha256", "random_seed") if k in info}
    return Runner(
        run,
        model.preprocess,
        tuple(model.input_shape),
        tuple(model.graph.shape(model.graph.output)),
        model.labels,
        {
            "kind": "pytorch",
            "name": model.name,
            "spec": Path(source.spec).name,
            "params": model.params,
            "weights": weights,
        },
        source.spec,
        graph_stride(model.graph, tuple(model.input_shape)),
        None,  # measured on the module itself when --segment needs it
        messages,
    )


def _artifact_runner(source: ModelSource) -> Runner:
    assert source.artifact is not None  # an artifact source has its bundle
    artifact = open_artifact(source.artifact)
    m = artifact.manifest
    tiling = m.get("tiling")  # a dense model's stride and receptive field, from its build
    messages = [f"WARNING: {artifact.warning}"] if artifact.warning else []
    return Runner(
        artifact.run,
        artifact.preprocess,
        artifact.input_shape,
        tuple(m["outputs"][0]["shape"][1:]),
        artifact.labels,
        {
            "kind": "artifact",
            "name": m["model"]["name"],
            "bundle": Path(source.artifact).name,
            "target": m["target"],
            "precision": m["precision"],
        },
        source.artifact,
        tiling["stride"] if tiling else assumed_stride(artifact.input_shape),
        Field.from_json(tiling["field"]) if tiling else None,
        messages,
    )


def _absolute(path) -> str | None:
    return str(Path(path).absolute()) if path else None


def _mtime(path: str) -> int:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0
