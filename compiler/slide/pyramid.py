"""A whole-slide class mask kept on disk while it is stitched, then written as a tiled pyramidal TIFF and a small PNG,
with memory flat in the slide's size (`tcc slide --segment`).

    with StitchedMask.create(folder, (width, height), classes) as mask:
        mask.write_rows(top, band)                 # a band of cores, full width, as it is finished
        write_pyramid(path, mask, colours)         # level 0, then 1/2, 1/4, ... (nearest: classes are not blended)
        preview = mask.downsampled(factor)         # a few megapixels, for the PNG and the overlay

The mask is a raw row-major file (sparse: bands without tissue are never written and read back as class 0) read
back band by band with plain reads, not a memory map, whose touched pages would count against the process.
The TIFF has OpenSlide's generic pyramid: every level a top-level tiled page, deflate-compressed, in palette mode
(the pixel values are the class indices, the colour map the classes' colours) up to 256 classes, 16-bit grey beyond.
OpenSlide opens it as a slide (tested; QuPath not tried), tifffile gives the class indices back.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

TILE = 256  # the TIFF's tile side
SMALLEST_LEVEL = 1024  # levels are halved until both sides are at most this


class StitchedMask:
    """The class of every pixel of one level, in a temporary file beside the outputs (removed on close)."""

    def __init__(self, path: Path, size: tuple[int, int], dtype: np.dtype | type):
        self.path, self.size, self.dtype = path, size, np.dtype(dtype)
        self.fd = os.open(path, os.O_RDWR)
        os.ftruncate(self.fd, size[0] * size[1] * self.dtype.itemsize)  # sparse: all class 0 until written

    @classmethod
    def create(cls, folder: Path, size: tuple[int, int], classes: int) -> StitchedMask:
        fd, name = tempfile.mkstemp(prefix=".segmentation.", suffix=".raw", dir=folder)
        os.close(fd)
        return cls(Path(name), size, np.dtype(np.uint8 if classes <= 256 else np.uint16))

    def __enter__(self) -> StitchedMask:
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)
        self.path.unlink(missing_ok=True)

    @property
    def row_bytes(self) -> int:
        return self.size[0] * self.dtype.itemsize

    def write_rows(self, top: int, band: np.ndarray) -> None:
        """Rows top .. top + len(band) - 1 (full width); only the span of each row that is not class 0 is written,
        so the glass around the tissue takes no disk."""
        band = np.asarray(band, self.dtype)
        for y, row in enumerate(band):
            labelled = np.flatnonzero(row)
            if labelled.size:
                data = row[labelled[0] : labelled[-1] + 1].tobytes()
                offset = (top + y) * self.row_bytes + int(labelled[0]) * self.dtype.itemsize
                if os.pwrite(self.fd, data, offset) != len(data):
                    raise OSError(f"{self.path}: could not write row {top + y} (disk full?)")

    def read_rows(self, top: int, stop: int, step: int = 1) -> np.ndarray:
        """Rows top, top + step, ... below `stop`, full width: [n, width]."""
        if step == 1:
            data = os.pread(self.fd, (stop - top) * self.row_bytes, top * self.row_bytes)
            return np.frombuffer(data, self.dtype).reshape(-1, self.size[0])
        rows = [os.pread(self.fd, self.row_bytes, y * self.row_bytes) for y in range(top, stop, step)]
        return np.frombuffer(b"".join(rows), self.dtype).reshape(-1, self.size[0])

    def level_rows(self, factor: int) -> Iterator[np.ndarray]:
        """The mask downsampled by `factor` (nearest: every factor-th row and column), a band of rows at a time."""
        height = self.size[1]
        for top in range(0, height, TILE * factor):  # one row of TIFF tiles of the level at a time
            yield self.read_rows(top, min(height, top + TILE * factor), factor)[:, ::factor]

    def downsampled(self, factor: int) -> np.ndarray:
        return np.concatenate(list(self.level_rows(factor)))


def pyramid_factors(size: tuple[int, int]) -> list[int]:
    """1, 2, 4, ... until the level fits SMALLEST_LEVEL on both sides."""
    factors = [1]
    while max(-(-s // factors[-1]) for s in size) > SMALLEST_LEVEL:
        factors.append(factors[-1] * 2)
    return factors


def write_pyramid(path: Path, mask: StitchedMask, colours: np.ndarray | None) -> list[tuple[int, int]]:
    """The mask as a tiled pyramidal TIFF at `path` (palette mode with `colours` [classes, 3] uint8, else 16-bit
    grey); returns each level's (width, height)."""
    import tifffile  # deferred for start-up: loads tifffile

    options: dict = {"photometric": "minisblack"}
    if colours is not None:
        colormap = np.zeros((3, 256), np.uint16)
        colormap[:, : len(colours)] = colours.T.astype(np.uint16) * 257  # 8-bit to TIFF's 16-bit colour map
        options = {"photometric": "palette", "colormap": colormap}
    levels = []
    with tifffile.TiffWriter(path, bigtiff=mask.size[0] * mask.size[1] * mask.dtype.itemsize > 2**31) as tiff:
        for k, factor in enumerate(pyramid_factors(mask.size)):
            shape = (-(-mask.size[1] // factor), -(-mask.size[0] // factor))
            tiff.write(
                _tiles(mask.level_rows(factor), shape[1], mask.dtype),
                shape=shape,
                dtype=mask.dtype,
                tile=(TILE, TILE),
                compression="zlib",
                subfiletype=1 if k else 0,  # a reduced-resolution image of level 0
                metadata=None,
                **options,
            )
            levels.append((shape[1], shape[0]))
    return levels


def _tiles(bands: Iterator[np.ndarray], width: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    """TILE x TILE tiles in row-major order (zero-padded past the edge) from bands of TILE rows (the last fewer)."""
    for rows in bands:
        for left in range(0, width, TILE):
            tile = np.zeros((TILE, TILE), dtype)
            part = rows[:, left : left + TILE]
            tile[: part.shape[0], : part.shape[1]] = part
            yield tile
