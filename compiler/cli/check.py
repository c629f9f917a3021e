"""`tcc check`: validate a spec and print its layers, parameters and MACs."""

from __future__ import annotations

import argparse
import json
import sys

from ..spec.loader import parse_overrides
from .args import spec_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="validate a spec and print its layers, parameters and MACs")
    spec_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..api import Model  # deferred for start-up: loads numpy, onnx

    model = Model.load(args.spec, **parse_overrides(args.overrides))
    for note in model.notes:
        print(f"note: {note}", file=sys.stderr)
    summary = model.summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    rows = [
        (
            l["name"],
            l["op"],
            "x".join(map(str, l["shape"]))
            if l["shape"] and not isinstance(l["shape"][0], list)
            else " ".join("x".join(map(str, s)) for s in l["shape"]),
            l["params"],
            l["macs"],
            l.get("aux", False),
        )
        for l in summary["layers"]
    ]
    widths = [max(len(str(r[i])) for r in rows + [("name", "op", "shape", "params", "macs", 0)]) for i in range(5)]
    head = ("name", "op", "shape", "params", "macs")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        cells = [
            str(r[0]).ljust(widths[0]),
            r[1].ljust(widths[1]),
            r[2].ljust(widths[2]),
            f"{r[3]:,}".rjust(widths[3]),
            f"{r[4]:,}".rjust(widths[4]),
        ]
        print("  ".join(cells) + ("  (aux)" if r[5] else ""))
    print(
        f"\n{model.name}: {summary['nodes']} nodes, params {summary['params']:,}, MACs {summary['macs']:,}, "
        f"FP32 size {summary['size_bytes_fp32'] / 2**20:.2f} MiB, input {summary['input']} -> output "
        f"{summary['output']}"
    )
    return 0
