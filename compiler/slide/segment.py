"""`tcc slide --segment`: a segmenter's mask of a whole slide (or a large image) at a chosen level, from overlapping
tiles whose context covers the model's receptive field, so the stitched mask is the one a single run over the
whole image would give (tiles.py, field.py), with memory flat in the slide's size (pyramid.py).

Per image: the level's tiling; the tiles whose core holds tissue (FastNet's tissue mask, as the heat map's; all
with --every-tile, the others class 0); one band of tiles at a time through the model (here or on Dask), each tile's
core written into the mask on disk; then OUT/segmentation.tiff (pyramidal, palette), segmentation.png (at most
PREVIEW pixels a side), overlay.png (that mask over the image) and segmentation.json, written last, so it
describes a finished image whenever it exists.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dense import class_masks
from ..errors import DataError
from ..field import Field, measure_field
from ..files import atomic_file, atomic_write
from ..segmentation.masks import named_counts, palette, write_mask, write_overlay
from .cluster import dask_batches
from .infer import ModelSource, Runner, load_runner, model_outputs, torch_threads
from .mask import choose_level, tissue_mask
from .options import Options, progress_bar
from .output import check_dir, prepare_dir
from .pyramid import StitchedMask, write_pyramid
from .reader import Reader, cached_image
from .tiles import Span, Tiling, tile_image

TIFF, PNG, OVERLAY, DOCUMENT = "segmentation.tiff", "segmentation.png", "overlay.png", "segmentation.json"
PREVIEW = 2048  # the PNG's and the overlay's longest side at most


@dataclass(frozen=True)
class Segmenter:
    """The model as the tiling needs it: its classes, tile, stride and receptive field."""

    classes: int
    tile: tuple[int, int]  # (height, width)
    stride: int
    field: Field
    margin: int  # the context kept around each core (the field's radius, or --margin)


def segment_slides(images: list[Path], outs: list[Path], source: ModelSource, runner: Runner, options: Options, log):
    """Every image's mask; returns each image's segmentation.json document and output folder."""
    segmenter = describe_segmenter(runner, options.margin)
    log(
        f"slide: tiles of {segmenter.tile[1]} x {segmenter.tile[0]} with {segmenter.margin} pixels of context "
        f"(receptive field {_field_words(segmenter.field)}, stride {segmenter.stride})"
    )
    for out in set(outs):
        check_dir(out)
    dask = options.dask or options.scheduler or options.workers
    with (
        dask_batches(source, options.scheduler, options.workers, options.threads, log)
        if dask
        else _local_batches(source, options.threads) as run
    ):
        return [segment_image(path, out, runner, segmenter, options, run) for path, out in zip(images, outs)]


def describe_segmenter(runner: Runner, margin: int | None) -> Segmenter:
    """A model whose output is [classes, H, W] at its input's H x W, with its field measured (or `margin` given)."""
    _, height, width = runner.input_shape
    shape = runner.output_shape
    if len(shape) != 3 or tuple(shape[1:]) != (height, width):
        raise DataError(
            f"{runner.where}: the model's output is {list(shape)} for an input of {list(runner.input_shape)}; "
            "a slide's segmentation (--segment) needs a dense output at the input's resolution, [classes, H, W]"
        )
    classes, stride = max(2, int(shape[0])), runner.stride
    if margin is not None:
        return Segmenter(classes, (height, width), stride, Field(None, "given"), -(-margin // stride) * stride)
    field = runner.receptive_field or measure_field(runner.run, tuple(runner.input_shape), stride)
    if field.radius is None:
        raise DataError(
            f"{runner.where}: the output at a pixel depends on the whole {width} x {height} tile (a global pooling?), "
            "so no tiling reproduces a run over the whole image; give --margin PIXELS to stitch tiles anyway (seams "
            "possible)"
        )
    return Segmenter(classes, (height, width), stride, field, -(-field.radius // stride) * stride)


def segment_image(path: Path, out: Path, runner: Runner, segmenter: Segmenter, options: Options, run) -> tuple:
    reader = cached_image(path, options.max_pixels)
    levels = reader.level_dimensions
    if options.level >= len(levels):
        raise DataError(f"{path}: --level {options.level}, but the image has levels 0..{len(levels) - 1}")
    size = levels[options.level]
    tiling = tile_image(size, segmenter.tile, segmenter.margin, segmenter.stride)
    keep, tissue = _tissue_tiles(reader, tiling, options)
    with _new_folder(out):  # a failure before the first file leaves no empty folder
        counts = np.zeros(segmenter.classes, np.int64)
        with StitchedMask.create(out, size, segmenter.classes) as mask:
            with progress_bar(int(keep.sum()), options.progress, path.name, unit="tile") as bar:
                job = _Job(str(path.absolute()), tiling, mask.dtype, options, run, bar.update)
                for i, row in enumerate(tiling.rows):
                    band = _band(job, row, keep[i])
                    mask.write_rows(row.start, band)
                    counts += np.bincount(band.ravel(), minlength=segmenter.classes)[: segmenter.classes]
            colours = palette(segmenter.classes) if segmenter.classes <= 256 else None
            pyramid = []
            atomic_file(out / TIFF, lambda tmp: pyramid.extend(write_pyramid(tmp, mask, colours)))
            factor = -(-max(size) // PREVIEW)
            preview = mask.downsampled(factor).astype(np.int64)
        write_mask(out / PNG, preview, segmenter.classes)
        rgb = _image_preview(reader, (preview.shape[1], preview.shape[0]), options.max_pixels)
        if rgb is not None:
            write_overlay(out / OVERLAY, rgb, preview, segmenter.classes)
    document = {
        "image": path.name,
        "size": list(reader.dimensions),
        "reader": reader.kind,
        "level": options.level,
        "level_size": list(size),
        "tiles": {
            "tile": [segmenter.tile[1], segmenter.tile[0]],
            "margin": tiling.margin,
            "stride": segmenter.stride,
            "field": segmenter.field.to_json(),
            "rows": len(tiling.rows),
            "cols": len(tiling.cols),
            "inferred": int(keep.sum()),
        },
        "tissue": tissue,
        "model": runner.description,
        "classes": runner.labels,
        "pixels": named_counts(counts, runner.labels),
        "pyramid": [list(s) for s in pyramid],
        "preview": {"size": [preview.shape[1], preview.shape[0]], "downsample": factor},
        "files": [TIFF, PNG, *([OVERLAY] if rgb is not None else []), DOCUMENT],
    }
    payload = (json.dumps(document, indent=1) + "\n").encode()
    atomic_write(out / DOCUMENT, lambda f: f.write(payload))
    return document, out


def segment_batch(
    source: ModelSource,
    image: str,
    max_pixels: int,
    level: int,
    origins: tuple,
    crops: tuple,
    threads: int | None = None,
) -> list[np.ndarray]:
    """The class masks of the tiles at `origins` ((x, y) in `level`'s pixels) of `image`, each cut to its crop
    (top, bottom, left, right within the tile). The function both the single-process run and the Dask workers
    call, so both compute the same masks."""
    _, height, width = load_runner(source).input_shape  # a tile is read at the input's size: no resize
    logits = model_outputs(source, image, max_pixels, origins, (width, height), level, threads)
    return [m[top:bottom, left:right] for m, (top, bottom, left, right) in zip(class_masks(logits), crops)]


@dataclass(frozen=True)
class _Job:
    """One image's stitching: what every band's batches need."""

    image: str  # absolute: Dask workers open it themselves
    tiling: Tiling
    dtype: np.dtype
    options: Options
    run: Callable  # _local_batches' or dask_batches' run
    on_done: Callable[[int], object]


def _band(job: _Job, row: Span, keep: np.ndarray) -> np.ndarray:
    """One row of tiles' cores, full width: the kept tiles through the model, the others class 0."""
    band = np.zeros((row.stop - row.start, job.tiling.cols[-1].stop), job.dtype)
    kept = [col for col, k in zip(job.tiling.cols, keep) if k]
    size = job.options.batch_size
    batches = [kept[k : k + size] for k in range(0, len(kept), size)]
    tasks = [
        (
            job.image,
            job.options.max_pixels,
            job.options.level,
            tuple((c.origin, row.origin) for c in batch),
            tuple(
                (row.start - row.origin, row.stop - row.origin, c.start - c.origin, c.stop - c.origin) for c in batch
            ),
        )
        for batch in batches
    ]
    for batch, masks in zip(batches, job.run(segment_batch, tasks, [len(b) for b in batches], job.on_done)):
        for col, core in zip(batch, masks):
            band[:, col.start : col.stop] = core
    return band


def _tissue_tiles(reader: Reader, tiling: Tiling, options: Options) -> tuple[np.ndarray, dict | None]:
    """[rows, cols] bool: the tiles whose core holds tissue (all with --every-tile), and the tissue mask's record."""
    if options.every_tile:
        return np.ones((len(tiling.rows), len(tiling.cols)), bool), None
    level_scale = reader.scale(options.level)
    level = choose_level(reader, round(tiling.tile[0] * level_scale[1]), options.mask_level, options.max_pixels)
    mask, thresholds = tissue_mask(reader.read_level(level))
    mask_scale = reader.scale(level)
    sx, sy = level_scale[0] / mask_scale[0], level_scale[1] / mask_scale[1]  # the level's pixels per mask pixel
    keep = np.zeros((len(tiling.rows), len(tiling.cols)), bool)
    for i, row in enumerate(tiling.rows):
        rows = mask[int(row.start * sy) : max(int(row.start * sy) + 1, int(np.ceil(row.stop * sy)))]
        for j, col in enumerate(tiling.cols):
            keep[i, j] = rows[:, int(col.start * sx) : max(int(col.start * sx) + 1, int(np.ceil(col.stop * sx)))].any()
    record = {"mask_level": level, "thresholds": thresholds.to_json(), "tissue_fraction": round(float(mask.mean()), 6)}
    return keep, record


def _image_preview(reader: Reader, size: tuple[int, int], max_pixels: int) -> np.ndarray | None:
    """The image at `size` (width, height) from the smallest level at least that large that fits `max_pixels` (the
    largest that fits where none is that large); None where no level fits."""
    from PIL import Image  # deferred for start-up: loads PIL

    fitting = [k for k, (w, h) in enumerate(reader.level_dimensions) if w * h <= max_pixels]
    if not fitting:
        return None
    large = [
        k for k in fitting if reader.level_dimensions[k][0] >= size[0] and reader.level_dimensions[k][1] >= size[1]
    ]
    level = max(large) if large else min(fitting)
    image = Image.fromarray(reader.read_level(level))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR))


def _field_words(field: Field) -> str:
    if field.method == "given":
        return "not measured: --margin given"
    how = "NaN spread" if field.method == "nan" else "estimated by perturbation (an integer model)"
    return f"radius {field.radius} pixels, {how}"


@contextlib.contextmanager
def _new_folder(out: Path):
    """OUT created for the image's files (it holds the stitched mask meanwhile); removed again where the image fails
    before any of its files is written."""
    created = not out.exists()
    prepare_dir(out)
    try:
        yield
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()
        raise


@contextlib.contextmanager
def _local_batches(source: ModelSource, threads: int | None):
    """dask_batches' `run` in this process."""
    with torch_threads(source, threads):

        def run(function, tasks: list[tuple], counts: list[int], on_done=lambda n: None) -> list:
            results = []
            for task, count in zip(tasks, counts):
                results.append(function(source, *task))
                on_done(count)
            return results

        yield run
