"""`tcc predict`: run the PyTorch lowering of a spec, or a built bundle, on an image or array."""
from __future__ import annotations

import argparse
import json
import sys

from ..artifact import open_artifact
from ..errors import BuildError
from .args import load_spec, refuse_with_artifact, weights_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="run the PyTorch lowering of a spec, or a built bundle, on an image or array")
    p.add_argument("spec", nargs="?", help="model spec (YAML or JSON); omit with --artifact")
    p.add_argument("--artifact", metavar="BUNDLE_DIR", help="run a bundle made by `tcc build` (its own preprocessing)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model parameter (repeatable), e.g. --set num_classes=2")
    weights_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="an image file; the spec's (or bundle's) preprocessing is applied")
    src.add_argument("--input", help="a .npy float32 array, NCHW, used as is")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.artifact:
        return _predict_artifact(args)
    if not args.spec:
        raise BuildError("predict needs a SPEC or --artifact BUNDLE_DIR")
    import torch

    from ..data import load_array, load_image  # deferred for start-up: loads numpy
    from ..lower.to_torch import init_weights, to_torch  # deferred for start-up: loads torch
    from ..lower.weights import load_weights  # deferred for start-up: loads torch

    model = load_spec(args)
    module = to_torch(model.graph)
    if args.weights:
        match = load_weights(module, model.graph, args.weights, args.by_order, args.key_map,
                             layouts=model.checkpoints)
        print(f"weights: {match.report()}", file=sys.stderr)
    else:
        init_weights(module, args.seed)
        print(f"WARNING: no --weights given: using seeded random weights (seed {args.seed}); predictions are "
              "meaningless", file=sys.stderr)
    x = load_image(args.image, model.preprocess)[None] if args.image else load_array(args.input, model.input_shape)
    module.eval()
    with torch.no_grad():
        logits = module(torch.from_numpy(x)).numpy()
    _print_predictions(logits, model.labels, args.json)
    return 0


def _predict_artifact(args) -> int:
    """Run a built bundle with its own preprocessing, input shape and labels (all from its manifest)."""
    from ..data import load_array, load_image  # deferred for start-up: loads numpy

    refuse_with_artifact(args)
    artifact = open_artifact(args.artifact)
    x = load_image(args.image, artifact.preprocess)[None] if args.image else load_array(args.input,
                                                                                         artifact.input_shape)
    if artifact.warning:
        print(f"WARNING: {artifact.warning}", file=sys.stderr)
    _print_predictions(artifact.run(x), artifact.labels, args.json)
    return 0


def _print_predictions(logits, labels, as_json: bool) -> None:
    import numpy as np

    results = []
    for row in logits.reshape(len(logits), -1):
        cls = int(np.argmax(row))
        r = {"logits": [float(v) for v in row], "class": cls}
        if labels:
            r["label"] = labels[cls]
        results.append(r)
    out = results[0] if len(results) == 1 else results
    if as_json:
        print(json.dumps(out))
    else:
        for r in results:
            print(f"class {r['class']}" + (f" ({r['label']})" if "label" in r else "")
                  + "  logits " + " ".join(f"{v:.4f}" for v in r["logits"]))
