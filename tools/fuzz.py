"""Seeded mutation fuzzer for what users hand to tcc that the spec fuzzer (tests/spec/test_fuzz.py) does not cover:
images, TIFFs, training options, golden sets and bundles, each made valid and small, mutated, and given to the
commands that read them.

    .venv/bin/python tools/fuzz.py image 1000 0                 # 1,000 cases of KIND with SEED 0
    .venv/bin/python tools/fuzz.py tiff 200 7 --out out/fuzz     # failing cases kept under out/fuzz/KIND-SEED-K/
    .venv/bin/python tools/fuzz.py train 1 0 --case 17          # replay case 17 of seed 0 alone

A case passes when its command ends with exit code 0 or 2 (a clean one-line error; `golden` also 1, `tcc golden
check`'s verdict that a stored output differs) without a Python traceback, within --timeout. Anything else is a
failure, printed with the case's mutation and the line that replays it. Cases run one at a time, each in a forked
child of this process (tools/fuzzing/runner.py says why). Exit code 0 when every case passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per case: the cases run one after another
TOOLS = Path(__file__).resolve().parent
if str(TOOLS) not in sys.path:  # tools/fuzzing, beside this script, also when a test loads this file
    sys.path.insert(0, str(TOOLS))

from fuzzing.kinds import KINDS
from fuzzing.session import run_kind


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tools/fuzz.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="kinds:\n" + "\n".join(f"  {k.name:8} {k.what}" for k in KINDS.values()),
    )
    p.add_argument("kind", choices=sorted(KINDS), help="what to fuzz")
    p.add_argument("n", type=int, help="number of cases (0 .. N-1)")
    p.add_argument("seed", type=int, help="the seed: the same KIND N SEED gives the same cases")
    p.add_argument("--case", type=int, metavar="K", help="run only case K (replays a failure; N is then ignored)")
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="per case; longer is a hang (default: the kind's, 60 to 120 s)"
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="keep each failing case's files and output here")
    p.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    p.add_argument("-v", "--verbose", action="store_true", help="a line per case: its mutation, exit code, last line")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n < 1 or (args.case is not None and args.case < 0):
        print("error: N must be at least 1 and --case K at least 0", file=sys.stderr)
        return 2
    report = run_kind(
        KINDS[args.kind],
        args.n,
        args.seed,
        timeout=args.timeout,
        keep=args.out,
        only=args.case,
        log=(lambda _: None) if args.quiet else lambda line: print(line, file=sys.stderr, flush=True),
        verbose=args.verbose,
    )
    print(report.summary())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
