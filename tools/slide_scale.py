#!/usr/bin/env python3
"""Whole-slide scale: `tcc slide` on synthetic pyramidal TIFFs of two sizes, peak memory and patches per second.

    .venv/bin/python tools/slide_scale.py                       # 100,000 x 80,000 against 25,000 x 20,000
    .venv/bin/python tools/slide_scale.py --sizes 20000x16000 5000x4000 --workers 1 2 --out out/slide-scale
    .venv/bin/python tools/slide_scale.py --segment --workers 1    # `tcc slide --segment`: the level-0 mask

Each slide is generated tile by tile (never whole in memory): a tiled, deflate-compressed TIFF with OpenSlide's
generic pyramid (levels at 1/2, 1/4, ... as top-level pages, down to under 1,024 pixels), mostly white glass with
a few stained blobs whose outline and texture are functions of the level-0 coordinates, so every level is drawn
directly at its own resolution and the blobs cover the same fraction at every size. The slides are kept in --out
and reused by the next run (their file name carries the size and seed).

Every run is `tcc slide` in its own process tree (the CLI, and the Dask workers with --workers): peak memory is the
largest sum of the tree's resident set sizes, sampled every 20 ms with psutil; patches per second is kept patches
over the run's wall time (model load, Dask start and mask included), and the progress bar's own rate over the
scoring alone. The model is a FastNet ONNX Runtime FP32 bundle with
seeded weights (built once into --out): the probabilities do not matter here, only the work. Prints a Markdown
table and writes OUT/slide_scale.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import tifffile

ROOT = Path(__file__).resolve().parent.parent
TCC = [sys.executable, "-m", "tcc"]
TILE = 256
GLASS = (243, 242, 245)
PINK, PURPLE = (220, 150, 190), (150, 90, 170)
# (centre x, centre y, radius) as fractions of the slide's width; together 3.4% of the area is tissue
BLOBS = ((0.22, 0.30, 0.060), (0.55, 0.52, 0.045), (0.78, 0.25, 0.035), (0.40, 0.70, 0.050))


def tissue_tile(x0: int, y0: int, width: int, height: int, downsample: int, slide_width: int) -> np.ndarray:
    """The RGB pixels of a level's region whose top-left corner is (x0, y0) in that level's pixels."""
    tile = np.empty((height, width, 3), np.uint8)
    tile[:] = GLASS
    near = [blob for blob in BLOBS if _may_touch(blob, x0, y0, width, height, downsample, slide_width)]
    if not near:  # almost every tile: no trigonometry
        return tile
    ys, xs = np.mgrid[y0 : y0 + height, x0 : x0 + width].astype(np.float64) * downsample  # level-0 coordinates
    inside = np.zeros((height, width), bool)
    for cx, cy, r in near:
        dx, dy = xs - cx * slide_width, ys - cy * slide_width
        angle = np.arctan2(dy, dx)
        wobble = 1 + 0.15 * np.sin(5 * angle) + 0.08 * np.sin(11 * angle + 1.3)
        inside |= np.hypot(dx, dy) < r * slide_width * wobble
    # eosin pink shading into haematoxylin purple around "nuclei" on a 24-pixel lattice of level-0 coordinates: one
    # broad range of stain (as in real tissue), so Otsu's split falls between the stain and the glass
    purple = np.clip(np.sin(xs / 24 * np.pi) * np.sin(ys / 24 * np.pi * 1.3), 0, 1)[..., None] ** 2
    grain = ((xs.astype(np.int64) * 73856093 ^ ys.astype(np.int64) * 19349663) % 17 - 8)[..., None]
    stain = np.array(PINK) * (1 - purple) + np.array(PURPLE) * purple + grain
    tile[inside] = np.clip(stain, 0, 255).astype(np.uint8)[inside]
    return tile


def _may_touch(blob, x0, y0, width, height, downsample, slide_width) -> bool:
    """Whether the blob's outer circle (its largest wobble) meets the tile's rectangle, in level-0 pixels."""
    cx, cy, r = (v * slide_width for v in blob)
    left, top = x0 * downsample, y0 * downsample
    nearest_x = min(max(cx, left), left + width * downsample)
    nearest_y = min(max(cy, top), top + height * downsample)
    return np.hypot(nearest_x - cx, nearest_y - cy) <= r * 1.25


def write_slide(path: Path, width: int, height: int) -> Path:
    """The pyramidal TIFF, tile by tile (written to PATH.partial, renamed when complete)."""
    partial = path.with_name(path.name + ".partial")
    levels, downsample = [], 1
    while True:
        levels.append((-(-width // downsample), -(-height // downsample), downsample))
        if max(levels[-1][:2]) < 1024:
            break
        downsample *= 2
    with tifffile.TiffWriter(partial, bigtiff=True) as tw:
        for k, (w, h, ds) in enumerate(levels):
            tiles = (tissue_tile(x, y, TILE, TILE, ds, width) for y in range(0, h, TILE) for x in range(0, w, TILE))
            tw.write(
                tiles,
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                compression="zlib",
                compressionargs={"level": 1},
                photometric="rgb",
                subfiletype=1 if k else 0,
            )
    partial.rename(path)
    return path


SEGMENTER = ["spec/unet.yaml", "--set", "base=8", "--set", "depth=3", "--set", "image_size=256"]


def ensure_model(out: Path, segment: bool) -> Path:
    """FastNet's bundle for the heat map; for --segment a U-Net (8 channels, depth 3, 256-pixel tiles)."""
    bundle = out / ("unet-ort" if segment else "fastnet-ort")
    spec = SEGMENTER if segment else ["spec/fastnet.yaml"]
    if not (bundle / "manifest.json").exists():
        subprocess.run(
            [*TCC, "build", str(ROOT / spec[0]), *spec[1:], "--target", "ort", "-o", str(bundle), "--force"],
            check=True,
        )
    return bundle


def run_measured(command: list[str]) -> tuple[float, int, subprocess.CompletedProcess]:
    """Wall seconds and the peak summed RSS (bytes) of the command's process tree."""
    peak = 0
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample():
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                total = 0
                for p in tree:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
                peak = max(peak, total)
            except psutil.Error:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return seconds, peak, subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["100000x80000", "25000x20000"],
        metavar="WxH",
        help="slide sizes; the first is compared with the last (default 100000x80000 25000x20000)",
    )
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="Dask workers per run (default 1 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "out/slide-scale")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--segment", action="store_true", help="`tcc slide --segment` with a small U-Net: the whole level-0 mask"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    bundle = ensure_model(args.out, args.segment)
    mode = "segment" if args.segment else "heatmap"
    rows = []
    for size in args.sizes:
        width, height = map(int, size.lower().split("x"))
        path = args.out / f"synthetic-{width}x{height}.tiff"
        if not path.exists():
            started = time.perf_counter()
            write_slide(path, width, height)
            print(
                f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
            )
        for workers in args.workers:
            result_dir = args.out / f"run-{mode}-{width}x{height}-w{workers}"
            command = [
                *TCC,
                "slide",
                "--artifact",
                str(bundle),
                "--image",
                str(path),
                "-o",
                str(result_dir),
                "--batch-size",
                str(args.batch_size),
                "--workers",
                str(workers),
                "--progress",
                "--force",
                *(["--segment"] if args.segment else []),
            ]
            seconds, peak, done = run_measured(command)
            if done.returncode:
                sys.stderr.write(done.stderr)
                return done.returncode
            if args.segment:  # tiles run (those whose core holds tissue)
                kept = json.loads((result_dir / "segmentation.json").read_text())["tiles"]["inferred"]
            else:
                kept = len(json.loads((result_dir / "patches.json").read_text())["patches"])
            bar = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
            rate = re.search(r"([\d.]+)(patch|tile)/s", bar)  # tqdm: the scoring alone (no start-up, no mask)
            rows.append(
                dict(
                    width=width,
                    height=height,
                    workers=workers,
                    file_mib=path.stat().st_size / 2**20,
                    kept=kept,
                    seconds=seconds,
                    patches_per_second=kept / seconds,
                    scoring_patches_per_second=float(rate.group(1)) if rate else None,
                    peak_mib=peak / 2**20,
                    progress=bar,
                )
            )
            print(
                f"{width}x{height}, {workers} worker(s): {kept} {'tiles' if args.segment else 'patches'} in "
                f"{seconds:.1f} s, "
                f"peak {peak / 2**20:.0f} MiB",
                file=sys.stderr,
            )
    (args.out / f"slide_scale_{mode}.json").write_text(json.dumps(rows, indent=1) + "\n")
    unit = "tiles" if args.segment else "patches"
    print(
        f"| slide | TIFF MiB | Dask workers | {unit} run | seconds | {unit}/s (wall) | {unit}/s (scoring) | "
        "peak MiB (tree) | peak / smallest slide's |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        base = next(r for r in rows if r["workers"] == row["workers"] and r["width"] == rows[-1]["width"])
        print(
            f"| {row['width']:,} x {row['height']:,} | {row['file_mib']:.1f} | {row['workers']} | {row['kept']:,} | "
            f"{row['seconds']:.1f} | {row['patches_per_second']:.1f} | "
            f"{row['scoring_patches_per_second'] or 0:.1f} | {row['peak_mib']:.0f} | "
            f"{row['peak_mib'] / base['peak_mib']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
