"""Executed ARM instructions per function of one inference of arm-a7 / aarch64 bundles, counted exactly under qemu:
which kernels of a module cost what (tcc.backends.tvm.measure.insn_profile). Give one or more bundles that `tcc build`
made;
with two, the totals' ratio (second / first) is printed too.

    .venv/bin/python tools/insn_per_function.py out/ddsnet-arm-a7 out/ddsnet-arm-a7-int8
    .venv/bin/python tools/insn_per_function.py out/ddsnet-arm-a7-int8 --by-kind --top 15 --json per_fn.json

Per function: instructions, share of the total, NEON/AdvSIMD share and the most executed mnemonics.
`--by-kind` adds up the functions of one kind and fusion pattern (layer numbers dropped: all the
``conv2d_add_relu`` kernels together). The input is seeded noise of the bundle's input shape (seed 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path


def profile(bundle: Path) -> dict:
    import numpy as np

    from tcc.backends.tvm.measure.insn_profile import per_function

    manifest = json.loads((bundle / "manifest.json").read_text())
    shape = json.loads((bundle / "kit" / "kit.json").read_text())["input_shape"]
    x = np.random.default_rng(0).standard_normal([1, *shape[1:]]).astype(np.float32)
    result = per_function(bundle / manifest["artifact"], manifest["target"], x, bundle / "kit" / "bin" / "tcc-run")
    result["bundle"] = str(bundle)
    result["precision"] = manifest.get("precision")
    return result


def by_kind(result: dict) -> list[dict]:
    from tcc.backends.tvm.measure.insn_profile import kind

    groups: dict[str, dict] = defaultdict(
        lambda: {"instructions": 0, "simd": 0, "functions": 0, "mnemonics": Counter()}
    )
    for row in result["functions"]:
        g = groups[kind(row["name"])]
        g["instructions"] += row["instructions"]
        g["simd"] += row["simd"]
        g["functions"] += 1
        g["mnemonics"].update(row["mnemonics"])
    rows = [{"name": k, **v, "mnemonics": dict(v["mnemonics"].most_common())} for k, v in groups.items()]
    return sorted(rows, key=lambda r: (-r["instructions"], r["name"]))


def table(result: dict, rows: list[dict], top: int) -> str:
    total = result["total"]
    lines = [
        f"### {result['bundle']} ({result.get('precision')}): {total:,} instructions per inference",
        "",
        "| instructions | share | NEON | function | top mnemonics |",
        "|---:|---:|---:|---|---|",
    ]
    for r in rows[:top]:
        top_m = " ".join(f"{m}:{100 * k / r['instructions']:.0f}%" for m, k in list(r["mnemonics"].items())[:6])
        name = r["name"] + (f" ({r['functions']})" if "functions" in r else "")
        lines.append(
            f"| {r['instructions']:,} | {100 * r['instructions'] / total:.1f}% | "
            f"{100 * r['simd'] / r['instructions']:.0f}% | {name} | {top_m} |"
        )
    rest = sum(r["instructions"] for r in rows[top:])
    if rest:
        lines.append(f"| {rest:,} | {100 * rest / total:.1f}% | | {len(rows) - top} more | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundles", nargs="+", type=Path, help="bundle directories of an ARM target (tcc build -o)")
    ap.add_argument("--top", type=int, default=30, help="rows per bundle (default 30)")
    ap.add_argument("--by-kind", action="store_true", help="add up the functions of one kind and fusion pattern")
    ap.add_argument("--json", type=Path, help="also write every row as JSON here")
    args = ap.parse_args(argv)
    for b in args.bundles:
        if not (b / "manifest.json").exists() or not (b / "kit" / "kit.json").exists():
            print(f"error: {b}: not a bundle with a kit (tcc build --target arm-a7 | aarch64 -o {b})", file=sys.stderr)
            return 2
    results = []
    for b in args.bundles:
        r = profile(b)
        if args.by_kind:
            r["kinds"] = by_kind(r)
        results.append(r)
        print(table(r, r["kinds"] if args.by_kind else r["functions"], args.top) + "\n")
    if len(results) == 2:
        a, b = results
        print(f"{b['bundle']} / {a['bundle']}: {b['total']:,} / {a['total']:,} = {b['total'] / a['total']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
