"""`tcc report`: the paper's Table 1 for specs and, for built bundles, latency, fidelity and instruction counts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..files import check_replaceable_folder
from ..spec.loader import parse_overrides
from .args import force_arg, specs_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="the paper's Table 1 for specs (params, MACs, FP32 / INT8 size) and, for built "
        "bundles, latency, fidelity and ARM instruction counts; markdown, JSON, plots",
    )
    specs_args(p, "model specs or ONNX files", "every spec")
    p.add_argument("--bundles", nargs="+", metavar="DIR", help="bundles made by `tcc build`")
    p.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds (default 5)")
    p.add_argument("--runs", type=int, default=10, help="inferences per bundle per round (default 10)")
    p.add_argument("-o", "--output", default="out/report", help="where report.md, report.json and the plots go")
    force_arg(p, "an earlier report's OUTPUT folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    """`tcc report SPEC... [--bundles DIR...]`: Table 1, the bundles' latency and fidelity, plots."""
    from ..api import report  # deferred for start-up: loads numpy, onnx
    from ..benchmark.report import to_markdown  # deferred for start-up: loads numpy

    check_replaceable_folder(args.output, args.force)
    doc = report(
        args.specs,
        args.bundles or [],
        args.output,
        overrides=parse_overrides(args.overrides),
        rounds=args.rounds,
        runs=args.runs,
    )
    if args.json:
        print(json.dumps(doc))
    else:
        print(to_markdown(doc))
        print(f"wrote {Path(args.output) / 'report.md'}, report.json and {len(doc['plots'])} plots")
    return 0
