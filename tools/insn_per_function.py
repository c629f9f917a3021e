"""Executed ARM instructions per function of one inference of arm-a7 / aarch64 bundles, counted exactly under qemu:
which kernels of a module cost what (tcc.backends.tvm.measure.insn_profile). Give one or more bundles that `tcc build`
made;
with two, the totals' ratio (second / first) is printed too.

    .venv/bin/python tools/insn_per_function.py out/ddsnet-arm-a7 out/ddsnet-arm-a7-int8
    .venv/bin/python tools/insn_per_function.py out/ddsnet-arm-a7-int8 --by-kind --top 15 --json per_fn.json

Per function: instructions, share of the total, NEON/AdvSIMD share and the most executed mnemonics; with `--cycles`
also the estimated cycles on the board's core (tcc.backends.tvm.measure.cycles: LLVM's scheduling model; two more
runs under qemu). `--by-kind` adds up the functions of one kind and fusion pattern (layer numbers dropped: all the
``conv2d_add_relu`` kernels together). The input is seeded noise of the bundle's input shape (seed 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path


def profile(bundle: Path, cycles: bool = False) -> dict:
    import numpy as np

    from tcc.backends.tvm.measure.insn_profile import per_function

    manifest = json.loads((bundle / "manifest.json").read_text())
    shape = json.loads((bundle / "kit" / "kit.json").read_text())["input_shape"]
    x = np.random.default_rng(0).standard_normal([1, *shape[1:]]).astype(np.float32)
    module, runner = bundle / manifest["artifact"], bundle / "kit" / "bin" / "tcc-run"
    result = per_function(module, manifest["target"], x, runner)
    result["bundle"] = str(bundle)
    result["precision"] = manifest.get("precision")
    if cycles:
        from tcc.backends.tvm.measure.blocks import inference_blocks
        from tcc.backends.tvm.measure.cycle_models import model_for
        from tcc.backends.tvm.measure.cycles import estimate
        from tcc.backends.tvm.measure.insn_profile import nm_for

        model = model_for(manifest["target"])
        if model is None:
            print(f"error: {bundle}: target {manifest['target']} has no cycle model (ARM targets)", file=sys.stderr)
            raise SystemExit(2)
        run = inference_blocks(module, manifest["target"], x, runner, log=True)
        est = estimate(run, model, nm_for(manifest["target"]), top=1 << 30)
        by_name = {f["name"]: f["cycles"] for f in est["functions"]}
        for row in result["functions"]:
            row["cycles"] = by_name.get(row["name"], 0)
        result["cycles"] = {k: v for k, v in est.items() if k != "functions"}
    return result


def by_kind(result: dict) -> list[dict]:
    from tcc.backends.tvm.measure.insn_profile import kind

    groups: dict[str, dict] = defaultdict(
        lambda: {"instructions": 0, "simd": 0, "functions": 0, "mnemonics": Counter()}
    )
    for row in result["functions"]:
        g = groups[kind(row["name"])]
        if "cycles" in row:
            g["cycles"] = g.get("cycles", 0) + row["cycles"]
        g["instructions"] += row["instructions"]
        g["simd"] += row["simd"]
        g["functions"] += 1
        g["mnemonics"].update(row["mnemonics"])
    rows = [{"name": k, **v, "mnemonics": dict(v["mnemonics"].most_common())} for k, v in groups.items()]
    return sorted(rows, key=lambda r: (-r["instructions"], r["name"]))


def table(result: dict, rows: list[dict], top: int) -> str:
    total = result["total"]
    est = result.get("cycles")
    head = f"### {result['bundle']} ({result.get('precision')}): {total:,} instructions per inference"
    if est:
        head += f", {est['total']:,} estimated {est['core']} cycles ({est['model']})"
    cyc = ("cycles | per instruction | ", "---:|---:|") if est else ("", "")
    lines = [
        head,
        "",
        f"| instructions | share | {cyc[0]}NEON | function | top mnemonics |",
        f"|---:|---:|{cyc[1]}---:|---|---|",
    ]
    for r in rows[:top]:
        top_m = " ".join(f"{m}:{100 * k / r['instructions']:.0f}%" for m, k in list(r["mnemonics"].items())[:6])
        name = r["name"] + (f" ({r['functions']})" if "functions" in r else "")
        c = f"{r.get('cycles', 0):,} | {r.get('cycles', 0) / r['instructions']:.2f} | " if est else ""
        lines.append(
            f"| {r['instructions']:,} | {100 * r['instructions'] / total:.1f}% | {c}"
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
    ap.add_argument("--cycles", action="store_true", help="also the estimated cycles on the board's core per function")
    args = ap.parse_args(argv)
    for b in args.bundles:
        if not (b / "manifest.json").exists() or not (b / "kit" / "kit.json").exists():
            print(f"error: {b}: not a bundle with a kit (tcc build --target arm-a7 | aarch64 -o {b})", file=sys.stderr)
            return 2
    results = []
    for b in args.bundles:
        r = profile(b, args.cycles)
        if args.by_kind:
            r["kinds"] = by_kind(r)
        results.append(r)
        print(table(r, r["kinds"] if args.by_kind else r["functions"], args.top) + "\n")
    if len(results) == 2:
        a, b = results
        print(f"{b['bundle']} / {a['bundle']}: {b['total']:,} / {a['total']:,} = {b['total'] / a['total']:.4f}")
        if "cycles" in a and "cycles" in b:
            ca, cb = a["cycles"]["total"], b["cycles"]["total"]
            print(f"estimated cycles: {cb:,} / {ca:,} = {cb / ca:.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
