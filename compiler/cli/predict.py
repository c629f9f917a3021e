"""`tcc predict`: run the PyTorch lowering of a spec, or a built bundle, on an image or array."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import BuildError
from .args import load_model, max_pixels_arg, overrides_arg, refuse_with_artifact, weights_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="run the PyTorch lowering of a spec, or a built bundle, on an image or array")
    p.add_argument("spec", nargs="?", help="model spec (YAML or JSON); omit with --artifact")
    p.add_argument("--artifact", metavar="BUNDLE_DIR", help="run a bundle made by `tcc build` (its own preprocessing)")
    overrides_arg(p, "override a model parameter (repeatable), e.g. --set num_classes=2")
    weights_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="an image file; the spec's (or bundle's) preprocessing is applied")
    src.add_argument("--input", help="a .npy float32 array, NCHW, used as is")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--masks",
        metavar="DIR",
        default="out/masks",
        help="a segmentation model (dense output): where each image's mask PNG (the class per pixel, with a palette) "
        "and its overlay go (default out/masks)",
    )
    p.add_argument("--force", action="store_true", help="replace masks already in --masks")
    p.add_argument(
        "--logits", action="store_true", help="a segmentation model: print its logits per pixel instead of masks"
    )
    max_pixels_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.artifact:
        return _predict_artifact(args)
    if not args.spec:
        raise BuildError("predict needs a SPEC or --artifact BUNDLE_DIR")
    model = load_model(args, notes=True)
    if model.weights is None:  # an ONNX file brings its own
        print(
            f"WARNING: no --weights given: using seeded random weights (seed {args.seed}); predictions are meaningless",
            file=sys.stderr,
        )
    logits = model.predict(args.image or args.input, log=lambda msg: print(msg, file=sys.stderr))
    _print_predictions(logits, model.labels, args)
    return 0


def _predict_artifact(args) -> int:
    """Run a built bundle with its own preprocessing, input shape and labels (all from its manifest)."""
    from ..api import Bundle  # deferred for start-up: loads numpy, onnx, torch

    refuse_with_artifact(args)
    bundle = Bundle.open(args.artifact)
    logits = bundle.run(args.image or args.input)
    if bundle.warning:
        print(f"WARNING: {bundle.warning}", file=sys.stderr)
    _print_predictions(logits, bundle.labels, args)
    return 0


def _print_predictions(logits, labels, args) -> None:
    import numpy as np  # deferred for start-up: loads numpy

    from ..dense import is_dense  # deferred for start-up: loads numpy

    dense = is_dense(logits)
    if dense and not args.logits:
        _write_masks(logits, labels, args)
        return
    as_json = args.json
    results: list[dict[str, Any]] = []
    for sample in logits:
        row = sample.ravel()
        r: dict[str, Any] = {"logits": [float(v) for v in row]}
        if dense:  # a class per pixel: the masks say it (without --logits)
            r["shape"] = list(sample.shape)
        else:
            r["class"] = cls = int(np.argmax(row))
            if labels:
                r["label"] = labels[cls]
        results.append(r)
    out = results[0] if len(results) == 1 else results
    if as_json:
        print(json.dumps(out))
    else:
        for r in results:
            print(
                (f"class {r['class']}" if "class" in r else f"shape {' x '.join(map(str, r['shape']))}")
                + (f" ({r['label']})" if "label" in r else "")
                + "  logits "
                + " ".join(f"{v:.4f}" for v in r["logits"])
            )


def _write_masks(logits, labels, args) -> None:
    """A dense output: each sample's mask (and overlay, for an image) written to --masks, one line or JSON each."""
    from pathlib import Path

    from ..segmentation.predict import Source, describe, write_predictions  # deferred for start-up: loads numpy

    source = Source(Path(args.image or args.input), image=args.image is not None)
    results = write_predictions(logits, source, Path(args.masks), labels, args.force)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    else:
        for r in results:
            print(describe(r))
