"""The probability heat map: each kept patch coloured by its tumour probability (red high, green low, as in the
FastNet paper's figure) over a downscaled copy of the image; dropped patches and the background stay untouched.
Axes are in level-0 pixels. Drawn on a bare matplotlib Figure (no pyplot state: safe beside Dask threads) and
written by tcc.plots.save (atomic, stable metadata)."""

from __future__ import annotations

import numpy as np

THUMBNAIL_SIDE = 1600  # the longest side of the image under the heat map, in pixels
OVERLAY_ALPHA = 0.55


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A copy of uint8 RGB no larger than THUMBNAIL_SIDE on its longest side."""
    from PIL import Image  # deferred for start-up: loads PIL

    im = Image.fromarray(rgb)
    im.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(im)


def heatmap_figure(
    image: np.ndarray, size: tuple[int, int], grid, probabilities: np.ndarray | None, title: str, label: str
):
    """`image` (downscaled) spans level-0 `size` (width, height); `probabilities` is [I, J] with NaN for the
    patches not kept (None without a grid)."""
    import matplotlib  # deferred for start-up: loads matplotlib
    from matplotlib.figure import Figure  # deferred for start-up: loads matplotlib

    w0, h0 = size
    right, bottom = w0, h0
    fig = Figure(figsize=(8.5, float(np.clip(7.5 * h0 / w0, 3, 12))))
    ax = fig.add_subplot()
    ax.imshow(image, extent=(0, w0, h0, 0), interpolation="antialiased")
    cmap = matplotlib.colormaps["RdYlGn_r"].with_extremes(bad=(0, 0, 0, 0))  # NaN (not kept): transparent
    if grid is not None:
        assert probabilities is not None  # given with a grid
        right = max(w0, grid.min_x + grid.cols * grid.width)  # the grid's padding may reach past the image
        bottom = max(h0, grid.min_y + grid.rows * grid.width)
        shown = ax.imshow(
            np.ma.masked_invalid(probabilities),
            cmap=cmap,
            vmin=0,
            vmax=1,
            alpha=OVERLAY_ALPHA,
            interpolation="nearest",
            extent=(grid.min_x, grid.min_x + grid.cols * grid.width, grid.min_y + grid.rows * grid.width, grid.min_y),
        )
        fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.02, label=f"P({label})")
    ax.set_xlim(0, right)
    ax.set_ylim(bottom, 0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x (level-0 pixels)")
    ax.set_ylabel("y (level-0 pixels)")
    return fig
