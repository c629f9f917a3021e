"""The two figures of `tcc explain`, on the house's matplotlib set-up (tcc.plots: Agg, atomic, byte-stable saves):
the Grad-CAM overlay beside its input (as the DDSNet paper's Fig. 6 pairs them) and the t-SNE scatter by class
(its Fig. 7)."""

from __future__ import annotations

import numpy as np

from ..plots import pyplot

UNLABELLED = "(unlabelled)"


def _show_pixels(ax, pixels: np.ndarray) -> None:
    if pixels.shape[2] == 1:
        ax.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(pixels)
    ax.set_xticks([])
    ax.set_yticks([])


def gradcam_figure(pixels: np.ndarray, cam: np.ndarray, peak: tuple[int, int] | None, title: str, alpha: float = 0.45):
    """Left: the input as the model sees it (uint8 [H, W, C], resized); right: the same with the normalised map
    over it in jet (red: strong evidence for the class, blue: none) and its peak (row, column) marked."""
    plt = pyplot()
    from matplotlib.cm import ScalarMappable  # deferred for start-up: loads matplotlib
    from matplotlib.colors import Normalize  # deferred for start-up: loads matplotlib

    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 4.6))
    _show_pixels(left, pixels)
    left.set_title(f"input ({pixels.shape[1]}x{pixels.shape[0]}, as the model sees it)", fontsize=9)
    _show_pixels(right, pixels)
    right.imshow(cam, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0, interpolation="nearest")
    if peak is not None:
        right.plot(peak[1], peak[0], marker="+", color="white", markersize=14, markeredgewidth=2)
    right.set_title("Grad-CAM (+: peak)" if peak is not None else "Grad-CAM (all zero)", fontsize=9)
    opaque = ScalarMappable(Normalize(0.0, 1.0), "jet")  # the bar in full colour, not faded by alpha
    fig.colorbar(opaque, ax=right, fraction=0.046, pad=0.04, label="normalised Grad-CAM")
    fig.suptitle(title, fontsize=10)
    return fig


def tsne_figure(points: np.ndarray, classes: list[str | None], title: str):
    """The 2-D points coloured by class (unlabelled ones in grey), with a legend of classes and counts."""
    plt = pyplot()
    names = sorted({c for c in classes if c is not None}) + ([UNLABELLED] if None in classes else [])
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    labels = np.array([UNLABELLED if c is None else c for c in classes])
    fig, ax = plt.subplots(figsize=(7, 6))
    for i, name in enumerate(names):
        mine = points[labels == name]
        colour = "0.5" if name == UNLABELLED else colours(i % colours.N)
        ax.scatter(mine[:, 0], mine[:, 1], s=22, color=colour, alpha=0.85, label=f"{name} ({len(mine)})")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, title="class (images)")
    return fig
