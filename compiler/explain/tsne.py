"""t-SNE of a folder's penultimate features (the DDSNet paper's Fig. 7): every image through the model, its
features at one layer (default: the classifier's input), embedded in 2-D with scikit-learn's TSNE.

The folder is ImageFolder-style (one subfolder per class; the class of an image is its top-level folder) or flat
(one unlabelled set). Perplexity: min(30, n - 1) by default (scikit-learn's 30, kept below the sample count as
TSNE requires), or the caller's value, which must be below n.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import load_image
from ..errors import DataError
from ..quant.collect.data import IMAGE_SUFFIXES, find_images
from .capture import record
from .layers import Layer, LayerIndex

MIN_IMAGES = 3
DEFAULT_PERPLEXITY = 30.0
BATCH = 16


@dataclass
class Embedding:
    files: list[str]  # relative to the folder, sorted
    classes: list[str | None]  # the top-level folder of each file; None for files directly in the folder
    points: np.ndarray  # [N, 2] float64
    predicted: list[int]  # the model's class for each image
    layer: Layer
    perplexity: float
    seed: int

    def to_json(self, labels: list[str] | None) -> dict:
        def name(k: int):
            return labels[k] if labels else k

        return {
            "layer": self.layer.name,
            "features": int(np.prod(self.layer.shape)),
            "perplexity": self.perplexity,
            "seed": self.seed,
            "points": [
                {"file": f, "class": c, "predicted": name(p), "x": float(x), "y": float(y)}
                for f, c, p, (x, y) in zip(self.files, self.classes, self.predicted, self.points)
            ],
        }


def labelled_images(folder: str | Path) -> tuple[list[Path], list[str], list[str | None]]:
    """The folder's images (recursive, sorted), their paths relative to it, and each one's class: its top-level
    subfolder, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of images")
    files = find_images(folder)
    if len(files) < MIN_IMAGES:
        raise DataError(
            f"{folder}: {len(files)} image(s) found ({', '.join(IMAGE_SUFFIXES)}, recursively); t-SNE "
            f"needs at least {MIN_IMAGES}"
        )
    rel = [f.relative_to(folder) for f in files]
    return files, [r.as_posix() for r in rel], [r.parts[0] if len(r.parts) > 1 else None for r in rel]


def perplexity_for(n: int, requested: float | None) -> float:
    if requested is None:
        return min(DEFAULT_PERPLEXITY, n - 1.0)
    if not 0 < requested < n:
        raise DataError(f"--perplexity {requested:g}: must be above 0 and below the number of images ({n})")
    return float(requested)


def features(gm, model, files: list[Path], layer: Layer, progress: bool | None = None) -> tuple[np.ndarray, list[int]]:
    """[N, F] features at `layer` (flattened) and the predicted class of each file, in batches of BATCH images;
    a tqdm bar over the images (default: when stderr is a terminal)."""
    from tqdm import tqdm  # deferred for start-up: loads tqdm

    show = sys.stderr.isatty() if progress is None else progress
    feats, predicted = [], []
    with tqdm(total=len(files), desc="features", unit="img", file=sys.stderr, disable=not show) as bar, torch.no_grad():
        for start in range(0, len(files), BATCH):
            batch = []
            for f in files[start : start + BATCH]:
                batch.append(load_image(f, model.preprocess))
                bar.update(1)
            out, values = record(gm, torch.from_numpy(np.stack(batch)), {layer.fx_name})
            feats.append(values[layer.fx_name].flatten(1).double().numpy())
            predicted += out.argmax(1).tolist()
    return np.concatenate(feats), predicted


def embed(feats: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """[N, 2] t-SNE points (PCA initialisation and scikit-learn's automatic learning rate, seeded)."""
    from sklearn.manifold import TSNE  # deferred for start-up: loads scikit-learn

    if not np.isfinite(feats).all():
        raise DataError("the features hold NaN or infinite values: check the weights")
    return TSNE(
        n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed
    ).fit_transform(feats)


def embed_folder(
    model,
    gm,
    folder: str | Path,
    layer: str | None = None,
    perplexity: float | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> Embedding:
    """t-SNE of the features of every image in `folder` at `layer` (default: the penultimate features)."""
    chosen = LayerIndex(model.graph, gm.meta["value_names"]).features(layer)
    files, names, classes = labelled_images(folder)
    rule = perplexity_for(len(files), perplexity)
    feats, predicted = features(gm, model, files, chosen, progress)
    return Embedding(names, classes, embed(feats, rule, seed), predicted, chosen, rule, seed)
