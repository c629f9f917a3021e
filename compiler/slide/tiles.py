"""Overlapping tiles whose stitched output equals one run over the whole image (`tcc slide --segment`).

A segmenter's output at a pixel depends on the input within its receptive field (radius R pixels, tcc.field).
Each tile is the model's input size T; only its core, the part at least MARGIN >= R pixels from every tile edge that
lies inside the image, is kept, and the cores partition the image. A core pixel then sees exactly the input the
whole-image run gives it, and where a tile edge is the image's edge, the zero padding the whole-image run has there.
Tile origins are multiples of the model's stride S (the product of its downsampling steps), so every pooling or
strided conv window falls where it falls in the whole-image run.

Per axis of length L, from START = 0 until the cores reach L:
    ORIGIN = START - MARGIN, clamped to [0, LAST]     LAST = (L - T) rounded up to a multiple of S: the last tile
                                                      reaches the image's end (or past it, by under S pixels of white)
    core [START, STOP), STOP = ORIGIN + T - MARGIN rounded down to a multiple of S (the next START), or L for the
    tile at LAST, whose right edge is the image's.
A core is then at least T - 2 MARGIN (rounded down to S) long; the first reaches further (its left edge is the
image's).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DataError


@dataclass(frozen=True)
class Span:
    """One tile along an axis: its origin and the core [start, stop) it writes, in the level's pixels."""

    origin: int
    start: int
    stop: int


@dataclass(frozen=True)
class Tiling:
    """The tiles of an image: rows x cols spans (the cores partition the image) and how they were laid out."""

    rows: tuple[Span, ...]
    cols: tuple[Span, ...]
    tile: tuple[int, int]  # (height, width), the model's input
    margin: int
    stride: int

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)


def tile_image(size: tuple[int, int], tile: tuple[int, int], margin: int, stride: int) -> Tiling:
    """The tiling of an image of `size` (width, height) by tiles of `tile` (height, width) pixels with at least
    `margin` pixels of context kept around each core (rounded up to a multiple of `stride`)."""
    if margin < 0:
        raise DataError(f"--margin {margin}: must be at least 0")
    margin = -(-margin // stride) * stride
    (width, height), (tile_h, tile_w) = size, tile
    return Tiling(
        _spans(height, tile_h, margin, stride, "height"),
        _spans(width, tile_w, margin, stride, "width"),
        tile,
        margin,
        stride,
    )


def _spans(length: int, tile: int, margin: int, stride: int, axis: str) -> tuple[Span, ...]:
    step = (tile - 2 * margin) // stride * stride
    if step < stride:
        raise DataError(
            f"a tile {tile} pixels in {axis} keeps no core with {margin} pixels of context on each side (the "
            f"model's receptive field, in steps of its stride {stride}): give the model a larger input "
            "(--set image_size=...) or a smaller --margin (seams possible)"
        )
    last = max(0, -(-(length - tile) // stride) * stride)
    spans: list[Span] = []
    start = 0
    while start < length:
        origin = min(max(0, start - margin), last)
        stop = length if origin == last else min((origin + tile - margin) // stride * stride, length)
        spans.append(Span(origin, start, stop))
        start = stop
    return tuple(spans)
