"""`tcc slide` end to end: per image the tissue mask on a low-resolution level, the patch grid and the patches kept
(mask.py, grid.py), their probabilities in batches (infer.py, here or on Dask: cluster.py), then the heat map,
the mask and the JSON (heatmap.py, output.py). `--segment` takes segment.py's way instead: a segmenter's mask of
the whole slide from overlapping tiles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import grid as gridlib
from .cluster import predict_on_dask
from .heatmap import heatmap_figure, thumbnail
from .infer import (
    ModelSource,
    Runner,
    load_runner,
    positive_class,
    predict_batch,
    torch_threads,
)
from .mask import Thresholds, choose_level, tissue_mask
from .options import Options, check_options, output_dirs, progress_bar
from .output import (
    check_dir,
    mask_png,
    patches_document,
    probability_grid,
    write_image_outputs,
)
from .reader import cached_image
from .segment import segment_slides


@dataclass
class Plan:
    """One image before inference: everything but the probabilities."""

    path: Path
    out: Path
    reader: str
    size: tuple[int, int]
    mask_level: int
    mask_size: tuple[int, int]
    scale: tuple[float, float]
    thresholds: Thresholds
    tissue_fraction: float
    patch_size: int
    grid: gridlib.Grid | None
    kept: list[tuple[int, int, int, int, float]]  # (i, j, x, y, mask fraction) in row-major order
    thumbnail: np.ndarray
    mask_png: bytes

    def batches(self, size: int) -> list[tuple]:
        origins = [(x, y) for _, _, x, y, _ in self.kept]
        return [tuple(origins[k : k + size]) for k in range(0, len(origins), size)]


def run_slides(images: list[Path], source: ModelSource, out: Path, options: Options, log=lambda s: None) -> list:
    """Every image through the pipeline; returns each image's patches.json document and output directory."""
    check_options(options)
    outs = output_dirs(images, out)
    runner = load_runner(source)
    for message in runner.messages:
        log(message)
    if runner.preprocess.color is None:
        raise DataError("this model's input is not an image (its spec has no color order); tcc slide needs one")
    if options.segment:
        return segment_slides(images, outs, source, runner, options, log)
    positive = positive_class(runner, options.positive)
    for d in set(outs):  # writable, checked now; created with the first outputs (a failure leaves no folder)
        check_dir(d)
    if options.dask or options.scheduler or options.workers:
        return _run_on_dask(images, outs, source, runner, positive, options, log)
    results = []
    with torch_threads(source, options.threads):
        for path, image_out in zip(images, outs):
            plan = plan_image(path, image_out, options, log)
            batches = []
            with progress_bar(len(plan.kept), options.progress, path.name) as bar:
                for batch in plan.batches(options.batch_size):
                    batches.append(
                        predict_batch(source, str(path.absolute()), options.max_pixels, batch, plan.patch_size)
                    )
                    bar.update(len(batch))
            results.append(_finish(plan, batches, runner, positive))
    return results


def plan_image(path: Path, out: Path, options: Options, log=lambda s: None) -> Plan:
    """Mask, grid and kept patches of one image; only the mask's level is read whole."""
    reader = cached_image(path, options.max_pixels)  # the batches read their patches through the same reader
    level = choose_level(reader, options.patch_size, options.mask_level, options.max_pixels)
    pixels = reader.read_level(level)
    scale = reader.scale(level)
    mask, thresholds = tissue_mask(pixels)
    grid = gridlib.bounding_grid(mask, scale, options.patch_size, reader.dimensions)
    kept = []
    if grid is None:
        log(f"WARNING: {path}: no tissue found by the mask; no patches to score")
    else:
        weights = gridlib.accumulate(mask, scale, grid)
        for i, j in zip(*np.nonzero(gridlib.keep(weights, grid.width))):
            kept.append((int(i), int(j), *grid.origin(int(i), int(j)), float(weights[i, j]) / grid.width**2))
    return Plan(
        path,
        out,
        reader.kind,
        reader.dimensions,
        level,
        (pixels.shape[1], pixels.shape[0]),
        scale,
        thresholds,
        float(mask.mean()),
        options.patch_size,
        grid,
        kept,
        thumbnail(pixels),
        mask_png(mask),
    )


def _run_on_dask(images, outs, source, runner, positive, options, log) -> list:
    plans = [plan_image(path, image_out, options, log) for path, image_out in zip(images, outs)]
    tasks, owner = [], []
    for k, plan in enumerate(plans):
        for batch in plan.batches(options.batch_size):
            tasks.append((str(plan.path.absolute()), options.max_pixels, batch, plan.patch_size))
            owner.append(k)
    with progress_bar(sum(len(p.kept) for p in plans), options.progress, "patches") as bar:
        outputs = predict_on_dask(
            source, tasks, options.scheduler, options.workers, options.threads, bar.update, log=log
        )
    return [
        _finish(plan, [o for o, k in zip(outputs, owner) if k == index], runner, positive)
        for index, plan in enumerate(plans)
    ]


def _finish(plan: Plan, batches: list[np.ndarray], runner: Runner, positive: int) -> tuple[dict, Path]:
    """Write the image's outputs; returns its document and directory."""
    probabilities = np.concatenate(batches) if batches else np.zeros((0, runner.num_classes))
    document = patches_document(plan, probabilities, runner.description, runner.labels, positive)
    label = runner.labels[positive] if runner.labels else f"class {positive}"
    cells = f"{plan.grid.rows * plan.grid.cols}" if plan.grid else "0"
    title = f"{plan.path.name}: P({label}) of {len(plan.kept)} of {cells} patches ({plan.patch_size} px)"
    figure = heatmap_figure(
        plan.thumbnail, plan.size, plan.grid, probability_grid(plan, probabilities, positive), title, label
    )
    write_image_outputs(plan.out, plan.mask_png, figure, document)
    return document, plan.out
