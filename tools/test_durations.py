"""Record how long each test file runs, for the suite's scheduling (tests/conftest.py runs the longest files first, so
that pytest-xdist's per-file scheduling does not leave one worker running a long file alone at the end).

    .venv/bin/python -m pytest -q -n 2 --dist loadfile -m 'not slow' --durations=0 > durations.log
    .venv/bin/python tools/test_durations.py durations.log          # rewrites tests/durations.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from tcc.files import atomic_write

RECORD = Path(__file__).resolve().parent.parent / "tests" / "durations.json"
LINE = re.compile(r"^([\d.]+)s (?:call|setup|teardown)\s+([^\s:]+)::")


def file_seconds(lines) -> dict[str, float]:
    """Seconds per test file (setup, call and teardown of its tests) from pytest's `--durations=0` report."""
    seconds: Counter = Counter()
    for line in lines:
        m = LINE.match(line)
        if m:
            seconds[m.group(2)] += float(m.group(1))
    return {f: round(s, 1) for f, s in sorted(seconds.items()) if s >= 1.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", type=Path, help="the output of a pytest run with --durations=0")
    ap.add_argument("-o", "--out", type=Path, default=RECORD)
    args = ap.parse_args(argv)
    try:
        seconds = file_seconds(args.log.read_text().splitlines())
    except OSError as e:
        print(f"error: {args.log}: {e.strerror}", file=sys.stderr)
        return 2
    if not seconds:
        print(f"error: {args.log}: no durations (run pytest with --durations=0)", file=sys.stderr)
        return 2
    doc = {
        "about": "seconds each test file took in a run of the suite (tools/test_durations.py); tests/conftest.py "
        "runs the longest first",
        "seconds": seconds,
    }
    atomic_write(args.out, lambda f: f.write((json.dumps(doc, indent=1) + "\n").encode()))  # never half-written
    print(f"{args.out}: {len(seconds)} files, {sum(seconds.values()):.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
