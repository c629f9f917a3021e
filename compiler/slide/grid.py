"""FastNet's patch grid and weight accumulation (section III-B-2, eq. 1-4), in level-0 coordinates.

The grid covers the mask's bounding box (MIN_X, MIN_Y)..(MAX_X, MAX_Y) (inclusive) with I x J patches of
WIDTH x WIDTH level-0 pixels from (MIN_X, MIN_Y), padded past the image's edge:
    I = (MAX_Y - MIN_Y) // WIDTH + 1     (eq. 1)      J = (MAX_X - MIN_X) // WIDTH + 1     (eq. 2)
W[i, j] is the number of level-0 mask pixels set under patch (i, j) (eq. 3; pixels past the edge count 0), and the
patch is kept when W[i, j] >= WIDTH^2 / 2 (eq. 4), tested as 2 W >= WIDTH^2.

A mask computed at a downsampled level stands for its level-0 pixels as nearest-neighbour upsampling would: each
mask pixel covers sx x sy level-0 pixels (sx, sy = level-0 size / mask size per axis). W is then the level-0 area
of the patch that set mask pixels cover, mask pixels cut by the patch's border counted by the fraction inside. At
level 0 (sx = sy = 1) every weight is 0 or 1 and W is the exact integer count of eq. 3 (float64 sums of integers
are exact far beyond any slide's size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    min_x: int  # the mask's bounding box in level-0 pixels, inclusive (the paper's MIN_X .. MAX_Y)
    min_y: int
    max_x: int
    max_y: int
    width: int  # the patch size, WIDTH

    @property
    def rows(self) -> int:  # I, eq. 1
        return (self.max_y - self.min_y) // self.width + 1

    @property
    def cols(self) -> int:  # J, eq. 2
        return (self.max_x - self.min_x) // self.width + 1

    def origin(self, i: int, j: int) -> tuple[int, int]:
        """Level-0 (x, y) of patch (i, j)'s top-left corner."""
        return self.min_x + j * self.width, self.min_y + i * self.width

    def to_json(self) -> dict:
        return {"min_x": self.min_x, "min_y": self.min_y, "max_x": self.max_x, "max_y": self.max_y}


def bounding_grid(mask: np.ndarray, scale: tuple[float, float], width: int, size: tuple[int, int]) -> Grid | None:
    """The grid over the level-0 bounding box of `mask` (a mask pixel spans `scale` level-0 pixels; `size` is
    level 0's (width, height)); None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    (sx, sy), (w0, h0) = scale, size
    return Grid(
        min_x=int(np.floor(cols[0] * sx)),
        min_y=int(np.floor(rows[0] * sy)),
        max_x=min(w0, int(np.ceil((cols[-1] + 1) * sx))) - 1,
        max_y=min(h0, int(np.ceil((rows[-1] + 1) * sy))) - 1,
        width=width,
    )


def accumulate(mask: np.ndarray, scale: tuple[float, float], grid: Grid) -> np.ndarray:
    """W of eq. 3 for every patch: float64 [I, J], in level-0 pixels."""
    sx, sy = scale
    weights = np.zeros((grid.rows, grid.cols))
    lefts = (grid.min_x + grid.width * np.arange(grid.cols)) / sx  # patch borders in mask pixels
    rights = lefts + grid.width / sx
    for i in range(grid.rows):
        top = (grid.min_y + i * grid.width) / sy
        r0, r1, wy = _overlaps(top, top + grid.width / sy, mask.shape[0])
        column_sums = wy @ mask[r0:r1]  # the band's mask pixels, each row weighted by its share inside the patch
        # the integral of the piecewise-constant column sums up to a real x is the linear interpolation of their
        # cumulative sum (clamped past the edge, where the mask is 0)
        cumulative = np.concatenate(([0.0], np.cumsum(column_sums)))
        nodes = np.arange(cumulative.size)
        weights[i] = np.interp(rights, nodes, cumulative) - np.interp(lefts, nodes, cumulative)
    return weights * (sx * sy)


def keep(weights: np.ndarray, width: int) -> np.ndarray:
    """Eq. 4: a patch is kept when at least half of its WIDTH^2 mask pixels are set."""
    return 2 * weights >= width * width


def _overlaps(start: float, stop: float, n: int) -> tuple[int, int, np.ndarray]:
    """The mask rows r0..r1-1 that [start, stop) touches (clipped to 0..n) and the length of each one's overlap
    with it."""
    r0, r1 = max(0, int(np.floor(start))), min(n, int(np.ceil(stop)))
    u = np.arange(r0, max(r0, r1))
    return r0, max(r0, r1), np.clip(np.minimum(u + 1, stop) - np.maximum(u, start), 0, None)
