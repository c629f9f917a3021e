"""The `tcc slide` subcommand: its argument parser and the function the CLI calls."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import DataError
from ..files import check_replaceable_folder
from .args import force_arg, load_model, overrides_arg, progress_arg, refuse_with_artifact, weights_args

DESCRIPTION = """\
FastNet's tumour-fast-identification pipeline (section III-B of the paper) over whole images and slides: a tissue
mask (Otsu on R, G, B and on HSV saturation, and the 50..240 RGB band, ANDed) computed on a low-resolution level,
the patch grid over the mask's bounding box (eq. 1-2), the patches at least half covered by the mask (eq. 3-4)
scored in batches by the model, and OUT/heatmap.png, OUT/mask.png and OUT/patches.json (with several images:
OUT/NAME/...). Whole-slide formats (.svs, .ndpi, .mrxs, pyramidal .tiff, ...) are read region by region through
OpenSlide (tifffile for TIFFs OpenSlide cannot open); PNG/JPEG/BMP are decoded whole, up to --max-pixels.

With --segment, a segmenter (a dense [classes, H, W] output) maps every pixel of --level instead: tiles of the
model's input size overlap by its receptive field (measured on the model), so the stitched mask equals one run over
the whole image; tiles without tissue are class 0 (--every-tile runs them too). Writes OUT/segmentation.tiff (a
tiled pyramidal TIFF, class index per pixel with a palette: OpenSlide opens it), segmentation.png and
overlay.png (downsampled) and segmentation.json (the tiling and the pixels per class)."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `slide` subcommand to tcc's parser (called by tcc.cli.main.build_parser)."""
    from ..slide.reader import DEFAULT_MAX_PIXELS  # deferred for start-up: loads numpy

    p = sub.add_parser(
        "slide",
        help="tumour probability heat map of whole slides or large images (FastNet's "
        "tissue mask, patch grid and weight accumulation), here or on Dask",
        description=DESCRIPTION,
    )
    p.add_argument("spec", nargs="?", help="model spec (YAML or JSON) or ONNX file; omit with --artifact")
    p.add_argument(
        "--artifact",
        metavar="BUNDLE_DIR",
        help="score patches with a bundle made by `tcc build` that runs here (its own preprocessing)",
    )
    overrides_arg(p, "override a model parameter (repeatable), e.g. --set image_size=128")
    weights_args(p)  # --weights, --by-order, --key-map, --seed as `tcc predict` and `tcc build` take them
    p.add_argument(
        "--image", nargs="+", required=True, metavar="IMAGE_OR_DIR", help="slides or images, or folders of them"
    )
    p.add_argument("-o", "--output", default="out/slide", metavar="OUT", help="output folder (default out/slide)")
    force_arg(p, "an earlier run's OUT folder")
    p.add_argument(
        "--patch-size",
        type=int,
        help="patch side in level-0 pixels, the paper's WIDTH (default 256); resized to the model's input",
    )
    p.add_argument("--batch-size", type=int, default=32, help="patches per model call (default 32)")
    p.add_argument(
        "--positive-class",
        metavar="INDEX_OR_LABEL",
        help="the tumour class whose softmax probability is mapped (default: the last class)",
    )
    p.add_argument(
        "--mask-level",
        type=int,
        help="pyramid level for the tissue mask (default: the coarsest "
        "level with at most PATCH_SIZE/8 downsample; plain images: 0)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"largest plain image (or mask level) decoded whole (default {DEFAULT_MAX_PIXELS:,}, "
        "20k x 20k); convert larger ones to a tiled pyramidal TIFF",
    )
    _segment_args(p)
    _dask_args(p)
    p.add_argument(
        "--threads",
        type=int,
        help="PyTorch intra-op threads per model (default: PyTorch's own, all "
        "cores; on a local Dask cluster the cores shared among the workers). "
        "Runs with the same --threads give bit-identical probabilities",
    )
    progress_arg(p)
    p.set_defaults(func=run)


def _segment_args(p: argparse.ArgumentParser) -> None:
    segment = p.add_argument_group("segmentation (--segment: a mask of every pixel, not the heat map)")
    segment.add_argument(
        "--segment", action="store_true", help="map the class of every pixel with a segmenter, in overlapping tiles"
    )
    segment.add_argument(
        "--level", type=int, default=0, help="the pyramid level segmented (default 0, full resolution)"
    )
    segment.add_argument(
        "--margin",
        type=int,
        metavar="PIXELS",
        help="context kept around each tile's core (default: the model's receptive field, measured; a smaller one "
        "is faster and may leave seams)",
    )
    segment.add_argument(
        "--every-tile", action="store_true", help="run the tiles without tissue too (default: they are class 0)"
    )


def _dask_args(p: argparse.ArgumentParser) -> None:
    dask = p.add_argument_group(
        "Dask (many slides on a cluster; the same JSON as a one-process run with the same --threads)"
    )
    dask.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="an existing Dask scheduler, e.g. tcp://host:8786 (workers must see the same file paths)",
    )
    dask.add_argument("--dask", action="store_true", help="start a local Dask cluster (LocalCluster) for the run")
    dask.add_argument("--workers", type=int, help="worker processes of the local cluster (implies --dask)")


def run(args) -> int:
    from ..api import Bundle  # deferred for start-up: loads numpy, onnx

    check_replaceable_folder(args.output, args.force)
    if args.artifact:
        refuse_with_artifact(args)
        scorer = Bundle.open(args.artifact)
    elif args.spec:  # an ONNX file: imported in memory, with its weights (Dask workers read the files)
        scorer = load_model(args)
    else:
        raise DataError("slide needs a SPEC (with --weights) or --artifact BUNDLE_DIR")
    if args.segment:
        if args.patch_size is not None:
            raise DataError("--patch-size sizes the heat map's patches; --segment tiles by the model's input")
        segment = {"segment": True, "level": args.level, "margin": args.margin, "every_tile": args.every_tile}
    else:
        segment_only = [
            flag
            for flag, given in (
                ("--level", args.level != 0),
                ("--margin", args.margin is not None),
                ("--every-tile", args.every_tile),
            )
            if given
        ]
        if segment_only:
            raise DataError(f"{segment_only[0]} is for --segment (a segmenter's mask)")
        segment = {"patch_size": 256 if args.patch_size is None else args.patch_size}
    results = scorer.slide(
        args.image,
        args.output,
        log=lambda s: print(s, file=sys.stderr),
        **segment,
        batch_size=args.batch_size,
        mask_level=args.mask_level,
        max_pixels=args.max_pixels,
        positive=args.positive_class,
        dask=args.dask,
        scheduler=args.scheduler,
        workers=args.workers,
        threads=args.threads,
        progress=args.progress,
    )
    for doc, out in results:
        print(_segment_summary(doc, out) if args.segment else _summary(doc, out))
    return 0


def _summary(doc: dict, out: Path) -> str:
    """One line per image: mask, grid, kept patches, the highest probability, where the files went."""
    mask, grid = doc["mask"], doc["grid"]
    probs = [p["probability"] for p in doc["patches"]]
    label = doc["positive_class"]["label"] or f"class {doc['positive_class']['index']}"
    highest = f", max P({label}) {max(probs):.3f}" if probs else ""
    return (
        f"{doc['image']}: mask on level {mask['level']} ({mask['size'][0]} x {mask['size'][1]}), tissue "
        f"{100 * mask['tissue_fraction']:.1f}%, grid {grid['rows']} x {grid['cols']}, kept {doc['kept']} of "
        f"{grid['rows'] * grid['cols']} patches (those at least half tissue, FastNet's eq. 4; the heat map leaves the "
        f"others blank){highest} -> {out}/ (heatmap.png, mask.png, patches.json)"
    )


def _segment_summary(doc: dict, out: Path) -> str:
    """One line per image: the level, the tiling, the tiles run and each class's share."""
    tiles, total = doc["tiles"], doc["level_size"][0] * doc["level_size"][1]
    shares = ", ".join(f"{name} {100 * n / total:.1f}%" for name, n in doc["pixels"].items())
    skipped = tiles["rows"] * tiles["cols"] - tiles["inferred"]
    return (
        f"{doc['image']}: level {doc['level']} ({doc['level_size'][0]} x {doc['level_size'][1]}) in "
        f"{tiles['rows']} x {tiles['cols']} tiles of {tiles['tile'][0]} x {tiles['tile'][1]} (margin "
        f"{tiles['margin']}), {tiles['inferred']} run"
        + (f", {skipped} without tissue (class 0)" if skipped else "")
        + f"; pixels: {shares} -> {out}/ ({', '.join(doc['files'])})"
    )
