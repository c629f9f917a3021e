"""What a `tcc slide` run is asked to do (its flags, or Model.slide's keywords), checked before any work, and the
pieces both of its ways share: one output folder per image and the progress bar."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..data import DEFAULT_MAX_PIXELS
from ..errors import DataError


@dataclass
class Options:
    patch_size: int = 256
    batch_size: int = 32
    mask_level: int | None = None  # None: chosen by mask.choose_level
    max_pixels: int = DEFAULT_MAX_PIXELS
    positive: str | None = None  # --positive-class
    dask: bool = False
    scheduler: str | None = None
    workers: int | None = None
    threads: int | None = None  # PyTorch intra-op threads (None: PyTorch's default; Dask: see cluster.py)
    progress: bool | None = None  # None: when stderr is a terminal
    segment: bool = False  # a segmenter's mask of the whole slide (segment.py), not the heat map
    level: int = 0  # --segment: the pyramid level segmented
    margin: int | None = None  # --segment: context kept around each tile's core (None: the measured field)
    every_tile: bool = False  # --segment: run the tiles without tissue too


def check_options(options: Options) -> None:
    for name in ("patch_size", "batch_size", "max_pixels", "workers", "threads"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise DataError(f"--{name.replace('_', '-')} {value}: must be at least 1")
    if options.scheduler and options.workers:
        raise DataError("--workers starts a local Dask cluster; with --scheduler the cluster's own workers are used")
    if options.level < 0:
        raise DataError(f"--level {options.level}: must be at least 0")
    if options.margin is not None and options.margin < 0:
        raise DataError(f"--margin {options.margin}: must be at least 0")
    if options.segment and options.positive is not None:
        raise DataError("--positive-class picks the heat map's class; --segment maps every class")


def output_dirs(images: list[Path], out: Path) -> list[Path]:
    """OUT itself for one image; OUT/STEM for each of several (two images with one stem are an error)."""
    if len(images) == 1:
        return [out]
    stems = [p.stem for p in images]
    twins = sorted({s for s in stems if stems.count(s) > 1})
    if twins:
        clash = [str(p) for p in images if p.stem in twins]
        raise DataError(f"images with the same name would share an output folder under {out}: {', '.join(clash)}")
    return [out / s for s in stems]


def progress_bar(total: int, enabled: bool | None, description: str, unit: str = "patch"):
    from tqdm import tqdm  # deferred for start-up: loads tqdm

    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not (sys.stderr.isatty() if enabled is None else enabled),
    )
