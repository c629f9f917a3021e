"""Every zoo spec through `tcc import` at its full input size: the spec lowered to ONNX by tcc (seeded weights),
imported, and the import compared with the original: parameters and MACs (`tcc check`'s), logits (the import's own
check against ONNX Runtime on the file, the FP32 rule), and how the spec reads (its lines against the original's,
the local blocks it has). The table in docs/import.md is this tool's output.

    .venv/bin/python tools/import_round_trip.py                 # all of `tcc zoo` (~4 min on 2 cores)
    .venv/bin/python tools/import_round_trip.py resnet18 densenet121

Prints one Markdown row per spec and a summary line; exit 1 if any import differs from its original.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import tcc
from tcc.lower.to_torch import init_weights
from tcc.onnx_import import import_onnx
from tcc.spec.zoo import zoo_models


def row(name: str, work: Path) -> tuple[str, bool, bool]:
    """The table row of one spec; whether it round-trips equal; whether it has blocks within 2x the lines."""
    model = tcc.load_spec(name)
    module = init_weights(tcc.to_torch(model.graph, inference_only=True), seed=1)
    path = work / f"{name}.onnx"
    path.write_bytes(tcc.to_onnx(model.graph, module.state_dict()).SerializeToString())
    start = time.perf_counter()
    try:
        imported = import_onnx(path)
    except tcc.TccError as e:  # refused (an op the import does not read yet): the row says what, the rest go on
        why = str(e).splitlines()[-1].strip().replace("|", "/")
        return (
            f"| {name} | {len(model.path.read_text().splitlines())} | refused: {why} | | | **no** | | |",
            False,
            False,
        )
    seconds = time.perf_counter() - start
    spec = work / f"{name}.yaml"
    spec.write_text(imported.spec_text)
    back = tcc.load_spec(spec)
    equal = (back.graph.param_count, back.graph.macs) == (model.graph.param_count, model.graph.macs)
    equal = equal and imported.check["passed"] and not imported.notes
    original, lines = len(model.path.read_text().splitlines()), len(imported.spec_text.splitlines())
    blocks = len(re.findall(r"^  \w+:  # \d+ uses", imported.spec_text, re.MULTILINE))  # the `blocks:` entries
    readable = blocks > 0 and lines <= 2 * original
    check = imported.check
    cells = [
        name,
        str(original),
        str(lines),
        f"{lines / original:.2f}",
        str(blocks),
        "yes" if equal else "**no**",
        f"{check['max_abs']:.2g} / {check['output_scale']:.2g}",
        f"{seconds:.1f}",
    ]
    return "| " + " | ".join(cells) + " |", equal, readable


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="zoo specs (default: all of `tcc zoo`)")
    args = p.parse_args(argv)
    names = args.names or list(zoo_models())
    print(
        "| spec | lines | imported | ratio | local blocks | params, MACs, logits equal | logits max abs / scale "
        "| import s |"
    )
    print("|---|---:|---:|---:|---:|---|---|---:|")
    equal, readable = [], []
    with tempfile.TemporaryDirectory(prefix="tcc-round-trip-") as tmp:
        for name in names:
            text, same, short = row(name, Path(tmp))
            print(text, flush=True)
            equal.append(same)
            readable.append(short)
    print(f"\n{sum(equal)} of {len(names)} equal; {sum(readable)} with local blocks within twice the original's lines")
    return 0 if all(equal) else 1


if __name__ == "__main__":
    sys.exit(main())
