"""`tcc diff`: run two implementations of a model on one input and compare every tensor both expose."""

from __future__ import annotations

import argparse
import json

from .args import load_model, max_pixels_arg, overrides_arg, weights_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diff",
        help="run two implementations of a model on one input and compare every tensor both "
        "expose, first divergence first",
    )
    p.add_argument(
        "a",
        help="a bundle directory, a spec file (its PyTorch lowering), 'pytorch' (with --spec) or "
        "'reference[:RULES]' (the integer reference on --calib's table)",
    )
    p.add_argument("b", help="the same kinds as A")
    p.add_argument("--input", required=True, help="an image (through the spec's or bundle's preprocessing) or a .npy")
    p.add_argument("--spec", help="the model's spec (needed by pytorch, reference and an ORT INT8 bundle's tensors)")
    overrides_arg(p, "override a model parameter (as the bundle was built)")
    weights_args(
        p,
        ("--weights", "--by-order", "--key-map"),
        weights="PyTorch state_dict the model was built with",
        key_map="YAML/JSON mapping of checkpoint keys to spec names",
    )
    p.add_argument("--calib", help="calibration table for reference[:RULES] (default: the INT8 bundle's own)")
    p.add_argument("--min-cosine", type=float, default=0.9999, help="a float tensor below this diverges")
    p.add_argument(
        "--max-rel",
        type=float,
        default=1e-3,
        help="or where max |a - b| / max |b| is above this (e.g. 0.05 for INT8 against FP32)",
    )
    p.add_argument("--max-lsb", type=float, default=1.0, help="an integer tensor (both sides) above this diverges")
    p.add_argument(
        "--all",
        action="store_true",
        help="print every tensor (default: the rows around the first divergence when there are many)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    max_pixels_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """`tcc diff A B --input X`: both on one input, every tensor both expose compared in graph order."""
    from ..api import diff  # deferred for start-up: loads numpy, onnx, torch
    from ..tensor_diff import format_diff, kind_of  # deferred for start-up: loads numpy

    spec = args.spec or next((e for e in (args.a, args.b) if kind_of(e) == "spec"), None)
    model = load_model(args, spec) if spec else None
    result = diff(
        args.a,
        args.b,
        args.input,
        model=model,
        calib=args.calib,
        min_cosine=args.min_cosine,
        max_lsb=args.max_lsb,
        max_rel=args.max_rel,
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(format_diff(result, every=args.all))
    return 0
