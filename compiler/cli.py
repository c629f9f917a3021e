"""The `tcc` command line: parse arguments, call one function, print, map errors to exit codes."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import TccError


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="model spec (YAML or JSON)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model parameter (repeatable), e.g. --set num_classes=2")


def _load(args):
    from .spec.loader import load_model, parse_overrides

    model = load_model(args.spec, parse_overrides(args.overrides))
    for note in model.notes:
        print(f"note: {note}", file=sys.stderr)
    return model


def cmd_check(args) -> int:
    model = _load(args)
    summary = model.graph.summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    rows = [(l["name"], l["op"], "x".join(map(str, l["shape"])) if l["shape"] and not isinstance(l["shape"][0], list)
             else " ".join("x".join(map(str, s)) for s in l["shape"]), l["params"], l["macs"], l.get("aux", False))
            for l in summary["layers"]]
    widths = [max(len(str(r[i])) for r in rows + [("name", "op", "shape", "params", "macs", 0)]) for i in range(5)]
    head = ("name", "op", "shape", "params", "macs")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        cells = [str(r[0]).ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                 f"{r[3]:,}".rjust(widths[3]), f"{r[4]:,}".rjust(widths[4])]
        print("  ".join(cells) + ("  (aux)" if r[5] else ""))
    print(f"\n{model.name}: {summary['nodes']} nodes, params {summary['params']:,}, MACs {summary['macs']:,}, "
          f"FP32 size {summary['size_bytes_fp32'] / 2**20:.2f} MiB, input {summary['input']} -> output "
          f"{summary['output']}")
    return 0


def cmd_predict(args) -> int:
    import numpy as np
    import torch

    from .data import load_array, load_image
    from .lower_torch import init_weights, to_torch
    from .weights import load_weights

    model = _load(args)
    module = to_torch(model.graph)
    if args.weights:
        match = load_weights(module, model.graph, args.weights, args.by_order, args.key_map)
        print(f"weights: {match.report()}", file=sys.stderr)
    else:
        init_weights(module, args.seed)
        print(f"WARNING: no --weights given: using seeded random weights (seed {args.seed}); predictions are "
              "meaningless", file=sys.stderr)
    x = load_image(args.image, model.preprocess)[None] if args.image else load_array(args.input, model.input_shape)
    module.eval()
    with torch.no_grad():
        logits = module(torch.from_numpy(x)).numpy()
    results = []
    for row in logits.reshape(len(logits), -1):
        cls = int(np.argmax(row))
        r = {"logits": [float(v) for v in row], "class": cls}
        if model.labels:
            r["label"] = model.labels[cls]
        results.append(r)
    out = results[0] if len(results) == 1 else results
    if args.json:
        print(json.dumps(out))
    else:
        for r in results:
            print(f"class {r['class']}" + (f" ({r['label']})" if "label" in r else "")
                  + "  logits " + " ".join(f"{v:.4f}" for v in r["logits"]))
    return 0


def cmd_schema(args) -> int:
    from .spec.schema import build_schema

    print(json.dumps(build_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tcc", description="declarative model-graph compiler for medical CNNs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate a spec and print its layers, parameters and MACs")
    _spec_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("predict", help="run the PyTorch lowering on an image or array")
    _spec_args(p)
    p.add_argument("--weights", help="PyTorch state_dict (.pt/.pth), loaded with weights_only=True")
    p.add_argument("--by-order", action="store_true", help="match checkpoint tensors to the spec in order")
    p.add_argument("--key-map", help="YAML/JSON mapping of checkpoint keys (or 'prefix.') to spec names")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights used without --weights")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="an image file; the spec's preprocessing is applied")
    src.add_argument("--input", help="a .npy float32 array, NCHW, used as is")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("schema", help="print the JSON Schema of spec documents")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TccError as e:
        # A positioned error already reads "file:line:col: message", like a compiler's.
        print(str(e) if getattr(e, "where", None) else f"error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. `tcc check --json | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
