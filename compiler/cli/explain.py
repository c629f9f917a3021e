"""The `tcc explain` subcommand: its argument parser and the function the CLI calls."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import DataError
from ..files import atomic_write, check_output, check_replaceable
from .args import force_arg, load_model, max_pixels_arg, progress_arg, spec_args, weights_args

DEFAULT_ALPHA = 0.45
IMAGE_ONLY = {"target": "--class", "npy": "--npy", "alpha": "--alpha"}
TSNE_ONLY = {"perplexity": "--perplexity", "progress": "--progress"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `explain` subcommand to tcc's parser (called by tcc.cli.main.build_parser)."""
    p = sub.add_parser(
        "explain",
        help="Grad-CAM heat map of an image for a chosen layer, or a t-SNE plot of the "
        "penultimate features of a folder of images",
        description="Grad-CAM (--image): the chosen class's evidence at one layer, over the image; "
        "t-SNE (--tsne): every image's features at one layer, embedded in 2-D and "
        "coloured by class folder.",
    )
    spec_args(p)
    weights_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="Grad-CAM of this image (the spec's preprocessing is applied)")
    src.add_argument(
        "--tsne",
        metavar="DIR",
        help="t-SNE of every image in DIR (class subfolders give the "
        "colours; a flat folder is one unlabelled set), seeded by --seed",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT.png",
        help="the plot (.png, .svg or .pdf); with --tsne the points go beside it as OUT.json",
    )
    p.add_argument(
        "--layer",
        metavar="NAME",
        help="a layer as `tcc check` names it (default: Grad-CAM, the last conv, concat or add with a "
        "spatial output; t-SNE, the classifier's input)",
    )
    p.add_argument(
        "--class",
        dest="target",
        metavar="K|LABEL",
        help="Grad-CAM: the class to explain, an index or a label (default: the predicted class)",
    )
    p.add_argument("--alpha", type=float, help=f"Grad-CAM: opacity of the heat map (default {DEFAULT_ALPHA})")
    p.add_argument("--npy", metavar="FILE.npy", help="Grad-CAM: also save the normalised map, float32 [H, W]")
    p.add_argument(
        "--perplexity",
        type=float,
        help="t-SNE perplexity (default min(30, images - 1); must be below the number of images)",
    )
    progress_arg(p, "t-SNE: ")
    force_arg(p, "existing output files (the plot, its .json, --npy)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    max_pixels_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    _check_options(args)  # mistakes in the options fail before the model is built
    model = load_model(args, notes=True)
    if model.weights is None:  # an ONNX file brings its own
        _log(
            f"WARNING: no --weights given: using seeded random weights (seed {args.seed}); the explanation is "
            "meaningless"
        )
    return _tsne(args, model) if args.tsne else _gradcam(args, model)


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def _check_options(args) -> None:
    from ..plots import IMAGE_SUFFIXES  # deferred for start-up: loads numpy

    mode, other = ("--tsne", IMAGE_ONLY) if args.tsne else ("--image", TSNE_ONLY)
    stray = [flag for dest, flag in other.items() if getattr(args, dest) is not None]
    if stray:
        raise DataError(f"{', '.join(stray)} does not apply to {mode}")
    if args.alpha is not None and not 0 <= args.alpha <= 1:
        raise DataError(f"--alpha {args.alpha:g}: must be between 0 and 1")
    check_replaceable(
        check_output(args.output, IMAGE_SUFFIXES, "the plot is written as .png, .svg or .pdf"), args.force
    )
    if args.tsne:
        check_replaceable(Path(args.output).with_suffix(".json"), args.force)
    if args.npy:
        check_replaceable(check_output(args.npy, (".npy",), "the map is written as .npy"), args.force)


def _class_name(k: int, labels: list[str] | None) -> str:
    return f"{k} ({labels[k]})" if labels else str(k)


def _gradcam(args, model) -> int:
    import numpy as np  # deferred for start-up: loads numpy

    from ..explain.plot import gradcam_figure  # deferred for start-up: loads numpy
    from ..plots import save  # deferred for start-up: loads numpy

    result = model.explain(args.image, layer=args.layer, target=args.target, log=_log)
    g, layer = result.gradcam, result.layer
    if g.flat:
        _log(
            f"note: the Grad-CAM of class {_class_name(g.target, model.labels)} at {layer.name} has no spread "
            f"(largest value {g.coarse.max():.3g}): nothing there speaks for the class more than elsewhere; the "
            "map is all zero"
        )
    title = (
        f"{model.name}: Grad-CAM of class {_class_name(g.target, model.labels)}, "
        f"p = {g.probabilities[g.target]:.4f}, at {layer.describe()}"
    )
    save(
        gradcam_figure(
            result.pixels, g.cam, None if g.flat else g.peak, title, DEFAULT_ALPHA if args.alpha is None else args.alpha
        ),
        args.output,
    )
    if args.npy:
        atomic_write(args.npy, lambda f: np.save(f, g.cam))
    _print_gradcam(args, model, result)
    return 0


def _print_gradcam(args, model, result) -> None:
    g, layer = result.gradcam, result.layer
    probability = float(g.probabilities[g.target])
    (row, col), (x, y) = g.peak, result.peak_in_image()
    if args.json:
        print(
            json.dumps(
                {
                    "class": g.target,
                    "label": model.labels[g.target] if model.labels else None,
                    "probability": probability,
                    "predicted": g.predicted,
                    "layer": layer.name,
                    "layer_shape": list(layer.shape),
                    "flat": g.flat,
                    "peak": None if g.flat else {"row": row, "column": col, "image_x": x, "image_y": y},
                    "output": args.output,
                    "npy": args.npy,
                }
            )
        )
        return
    chosen = (
        "the predicted class"
        if g.target == g.predicted
        else (f"predicted: {_class_name(g.predicted, model.labels)}, {g.probabilities[g.predicted]:.4f}")
    )
    height, width = result.pixels.shape[:2]
    print(f"class {_class_name(g.target, model.labels)}: probability {probability:.4f} ({chosen})")
    print(f"layer {layer.describe()}" + ("" if args.layer else " (default: the last spatial conv, concat or add)"))
    if not g.flat:
        print(
            f"peak at row {row}, column {col} of the {width}x{height} input (x {x}, y {y} of the "
            f"{result.image_size[0]}x{result.image_size[1]} image)"
        )
    print(f"wrote {args.output}" + (f" and {args.npy}" if args.npy else ""))


def _tsne(args, model) -> int:
    from ..explain.plot import UNLABELLED, tsne_figure  # deferred for start-up: loads numpy
    from ..plots import save  # deferred for start-up: loads numpy

    emb = model.tsne(args.tsne, layer=args.layer, perplexity=args.perplexity, progress=args.progress, log=_log)
    points = Path(args.output).with_suffix(".json")
    present = sorted(set(emb.classes), key=lambda c: (c is None, c or ""))  # classes by name, unlabelled last
    counts = {c or UNLABELLED: emb.classes.count(c) for c in present}
    groups = ", ".join(f"{c} {n}" for c, n in counts.items())
    title = (
        f"{model.name}: t-SNE of {len(emb.files)} images at {emb.layer.name} "
        f"(perplexity {emb.perplexity:g}, seed {emb.seed})"
    )
    save(tsne_figure(emb.points, emb.classes, title), args.output)
    doc = emb.to_json(model.labels)
    atomic_write(points, lambda f: f.write((json.dumps(doc, indent=1) + "\n").encode()))
    if args.json:
        print(
            json.dumps(
                {
                    **{k: v for k, v in doc.items() if k != "points"},
                    "images": len(emb.files),
                    "classes": counts,
                    "output": args.output,
                    "points_file": str(points),
                }
            )
        )
        return 0
    print(
        f"t-SNE of {len(emb.files)} images ({groups}) at layer {emb.layer.describe()}, perplexity "
        f"{emb.perplexity:g}" + (" (min(30, images - 1))" if args.perplexity is None else "") + f", seed {emb.seed}"
    )
    print(f"wrote {args.output} and {points}")
    return 0
