"""Every plot tcc draws, on matplotlib (Agg: no display needed): real axes and legends, PNG or vector output
(.svg / .pdf) by the file's suffix, written atomically and byte-stable (no timestamps in the metadata)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from .files import atomic_write

IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
_METADATA = {".png": {"Software": None}, ".svg": {"Date": None}, ".pdf": {"CreationDate": None}}


def pyplot():
    import matplotlib  # deferred for start-up: loads matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred for start-up: loads matplotlib

    plt.rcParams["svg.hashsalt"] = "tcc"  # stable element ids in SVG output
    return plt


def save(fig, path: str | Path) -> Path:
    """Write `fig` to `path` (.png at 120 dpi, .svg, .pdf) atomically and close it."""
    plt = pyplot()
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        atomic_write(
            path, lambda f: fig.savefig(f, format=suffix[1:], dpi=120, metadata=_METADATA[suffix], bbox_inches="tight")
        )
    finally:
        plt.close(fig)
    return path


def quality_chart(report: dict, summary: list[str]):
    """Per-tensor INT8 vs FP32 cosine of the integer reference (line, errors of every layer before included) and
    the fine search's per-layer cosine (the layer alone), the worst tensors ringed and named; under it the
    end-to-end summary."""
    plt = pyplot()
    layers = report["layers"]
    fig = plt.figure(figsize=(12, 7.5))
    ax = fig.add_axes([0.08, 0.42, 0.9, 0.5])
    k = np.arange(1, len(layers) + 1)
    ax.plot(k, [r["cosine"] for r in layers], "o-", ms=3, lw=1.5, label="integer reference vs FP32")
    search = [(i + 1, r["search_cos_after"]) for i, r in enumerate(layers) if "search_cos_after" in r]
    if search:
        ax.plot(*zip(*search), "o", mfc="none", ms=6, label="fine search (the layer alone)")
    rank = {name: i + 1 for i, name in enumerate(report["worst_layers"])}
    for i, r in enumerate(layers):
        if r["tensor"] in rank:
            ax.plot(i + 1, r["cosine"], "o", mfc="none", mec="tab:red", ms=11)
            ax.annotate(
                str(rank[r["tensor"]]),
                (i + 1, r["cosine"]),
                xytext=(6, -4),
                textcoords="offset points",
                color="tab:red",
            )
    s = report["samples"]
    ax.set_title(f"INT8 vs FP32 cosine per tensor ({report['per_layer_source']}, {s['used']} samples)")
    ax.set_xlabel("tensor, in topological order (input first, graph output last)")
    ax.set_ylabel("cosine")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    worst = "worst: " + ", ".join(
        f"{rank[r['tensor']]} {r['tensor']} {r['cosine']:.5f}"
        for r in sorted(layers, key=lambda r: rank.get(r["tensor"], 99))
        if r["tensor"] in rank
    )
    text = textwrap.wrap(worst, 150) + [""] + [p for line in summary for p in textwrap.wrap(line, 150) or [""]]
    fig.text(0.08, 0.33, "\n".join(text), va="top", family="monospace", fontsize=8)
    return fig


def activation_histograms(values: dict[str, np.ndarray], table: dict, columns: int = 3):
    """Histogram of each tensor's FP32 values (log counts) with the calibration's clipping threshold (the KL
    choice, refined by the cosine search) and the observed range marked."""
    plt = pyplot()
    names = list(values)
    rows = max(1, -(-len(names) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        v = np.asarray(values[name], np.float64).ravel()
        t = table[name]
        ax.hist(v, bins=128, color="tab:blue", alpha=0.8, log=True)
        thr = t.get("threshold")
        if thr is not None:
            ax.axvline(thr, color="tab:red", lw=1.5, label=f"threshold {thr:.3g}")
            if t.get("signed", True) and v.min() < 0:
                ax.axvline(-thr, color="tab:red", lw=1.5)
        ax.axvline(v.max(), color="0.4", ls="--", lw=1, label=f"max {v.max():.3g}")
        ax.set_title(name if len(name) < 40 else "..." + name[-37:], fontsize=9)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.suptitle("FP32 activations and the chosen clipping threshold (values beyond it saturate)")
    fig.tight_layout()
    return fig


def layer_cosine_bars(tensors: dict, title: str):
    """Per-tensor cosine of the calibration's fine search: before it (the KL scale) and after it."""
    plt = pyplot()
    rows = [
        (k, t["diagnostics"])
        for k, t in tensors.items()
        if t.get("kind") == "activation" and "cos_after" in t.get("diagnostics", {})
    ]
    fig, ax = plt.subplots(figsize=(max(8, 0.16 * len(rows) + 2), 4.5))
    x = np.arange(len(rows))
    if rows:
        ax.bar(x - 0.2, [1 - d["cos_before"] for _, d in rows], 0.4, label="KL scale")
        ax.bar(x + 0.2, [1 - d["cos_after"] for _, d in rows], 0.4, label="after the cosine search")
        ax.set_yscale("log")
    ax.set_xticks(x, [k for k, _ in rows], rotation=90, fontsize=6)
    ax.set_ylabel("1 - cosine (the layer alone, lower is better)")
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def model_size_chart(rows: list[dict]):
    """Parameters, MACs and sizes of a set of specs (the DDSNet paper's Table 1), log scale."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    names = [r["name"] for r in rows]
    for ax, (key, label) in zip(
        axes, (("params", "parameters"), ("macs", "MACs"), ("fp32_mib", "size (MiB): FP32 and INT8"))
    ):
        if key == "fp32_mib":
            x = np.arange(len(rows))
            ax.bar(x - 0.2, [r["fp32_mib"] for r in rows], 0.4, label="FP32")
            ax.bar(x + 0.2, [r["int8_mib"] for r in rows], 0.4, label="INT8")
            ax.set_xticks(x, names, rotation=45, ha="right")
            ax.legend()
        else:
            ax.bar(names, [r[key] for r in rows])
            ax.tick_params(axis="x", rotation=45)
        ax.set_yscale("log")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
