"""`tcc golden`: check every backend's output against the stored golden one, or store them again on purpose."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "golden",
        help="golden outputs: check every backend's output against the stored one, or "
        "store them again on purpose (update)",
    )
    p.add_argument("action", choices=["check", "update"])
    p.add_argument(
        "dir",
        nargs="?",
        default="tests/golden",
        help="the golden set (a folder with golden.yaml; default tests/golden)",
    )
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--entry", action="append", help="only this entry, e.g. host-int8 (repeatable)")
    p.add_argument("--all", action="store_true", help="check: also the entries the plan marks slow")
    p.add_argument(
        "--recalibrate",
        action="store_true",
        help="update: calibrate again and store the tables (otherwise a stored table that still fits is kept)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    """`tcc golden check|update DIR`: every entry of a golden set now against its stored outputs, or stored again
    on purpose (printing what changed and by how much). Exit 1 when an entry fails."""
    from ..api import golden_check, golden_update  # deferred for start-up: loads numpy, onnx
    from ..golden import format_rows  # deferred for start-up: loads numpy, torch

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    if args.action == "check":
        rows = golden_check(args.dir, models=args.model, entries=args.entry, everything=args.all, log=log)
    else:
        rows = golden_update(args.dir, models=args.model, entries=args.entry, recalibrate=args.recalibrate, log=log)
    failed = [r for r in rows if r.failed]
    if args.json:
        print(json.dumps({"action": args.action, "passed": not failed, "rows": [r.to_json() for r in rows]}))
    else:
        print(format_rows(rows))
        total = len(rows)
        if args.action == "check":
            print(f"\n{total - len(failed)} of {total} passed" + (f"; {len(failed)} FAILED" if failed else ""))
        else:
            changed = sum(r.status in ("changed", "new") for r in rows)
            bad = sorted({r.model for r in failed})
            print(
                f"\n{changed} of {total} changed or new"
                + (
                    f"; {len(failed)} failed their rule: nothing of {', '.join(bad)} was written"
                    if failed
                    else "; written"
                )
            )
    return 1 if failed else 0
