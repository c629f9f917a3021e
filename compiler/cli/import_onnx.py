"""`tcc import`: an ONNX image classifier as a spec and a state_dict (tcc.onnx_import through tcc.api)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="turn an ONNX image classifier into a spec and its weights (a state_dict "
        "by the spec's names), checked against ONNX Runtime on the original",
    )
    p.add_argument("model", help="the ONNX file (opsets 11-21, as torch.onnx.export writes them)")
    p.add_argument("-o", "--output", required=True, metavar="SPEC", help="the spec to write (.yaml)")
    p.add_argument("--weights-out", metavar="W", help="the weights to write (.pt; default: beside the spec)")
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input height and width where the model's are dynamic (also the preprocessing's resize)",
    )
    p.add_argument("--mean", type=float, nargs="+", help="preprocessing: per-channel mean of [0, 1] pixels")
    p.add_argument("--std", type=float, nargs="+", help="preprocessing: per-channel std of [0, 1] pixels")
    p.add_argument("--force", action="store_true", help="replace an existing spec or weights file")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..api import import_onnx  # deferred for start-up: loads numpy, onnx, torch

    imported = import_onnx(
        args.model,
        args.output,
        weights_out=args.weights_out,
        size=tuple(args.size) if args.size else None,
        mean=args.mean,
        std=args.std,
        force=args.force,
    )
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    g, check = imported.graph, imported.check
    weights = args.weights_out or str(Path(args.output).with_suffix(".pt"))
    lines = len(imported.spec_text.splitlines())
    print(
        f"imported {args.model}: {len(g.nodes)} nodes in {lines} lines, {len(imported.blocks)} local block(s), input "
        f"{list(g.input_shape)}; its PyTorch lowering vs ONNX Runtime on the original: max abs {check['max_abs']}, "
        f"cosine {check['cosine']} (FP32 rule: passed)"
    )
    print(f"wrote {args.output} and {weights}; build it with: tcc build {args.output} --weights {weights} --target ort")
    return 0
