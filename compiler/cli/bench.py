"""`tcc bench`: benchmark every engine on the same model (bench.json, bench.md)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..errors import DataError
from ..files import check_output, check_replaceable_folder
from ..spec.loader import parse_overrides
from ..spec.zoo import resolve_spec
from .args import force_arg, method_arg, progress_arg, specs_args, weights_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark every engine on the same model: latency, calibration, INT8 quality, "
        "build phases, sizes, ARM instruction counts; writes bench.json and bench.md",
    )
    specs_args(p, "model specs (default: ddsnet with the GC checkpoint, and fastnet)", "one spec")
    weights_args(
        p, ("--weights", "--by-order"), weights="PyTorch state_dict (one spec; default: seeded random weights)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="one small model (FastNet at 64x64) through every section, in about a minute",
    )
    p.add_argument(
        "--only", metavar="BUNDLES", help="comma-separated bundles to build and time, e.g. ort-fp32,ort-int8,host-fp32"
    )
    p.add_argument("--rounds", type=int, help="interleaved latency rounds (default 10)")
    p.add_argument("--runs", type=int, help="inferences per engine per round (default 20)")
    p.add_argument("--calib-images", type=int, help="calibration crops (default 128)")
    p.add_argument("--held-out", type=int, help="judging crops, never calibrated on (default 64)")
    method_arg(p, "each model's spec's `calibrate:` method, else auto; --quick: kl")
    p.add_argument("--no-memory", action="store_true", help="skip the calibration peak-memory runs")
    p.add_argument(
        "--no-placement",
        action="store_true",
        help="skip the ort table's speed placement and its ort-int8-placed bundle",
    )
    p.add_argument(
        "--threads",
        metavar="COUNTS",
        help="comma-separated thread counts, e.g. 1,2: the ORT, TVM host and "
        "TFLite bundles also timed at each count other than 1, with "
        "ratios to one thread (default 1)",
    )
    p.add_argument(
        "--tvm-variants",
        action="store_true",
        help="also time TVM host FP32 without tcc's schedules, unfused, and with dlight",
    )
    p.add_argument(
        "--peers",
        action="store_true",
        help="ARM: also run ONNX Runtime and LiteRT (XNNPACK and builtin) for AArch64 under qemu on the A53 and A55 "
        "classes, counted as tcc's bundles are (instructions, estimated cycles), beside tcc's aarch64 and "
        "aarch64-dotprod bundles (their ort, tflite and aarch64 bundles are built whatever --only says); the first "
        "run makes their sysroot (Debian arm64 packages + the registry's aarch64 wheels); slow: minutes per model",
    )
    progress_arg(p)
    p.add_argument("-o", "--output", default="out/bench", help="where bench.json, bench.md and the bundles go")
    force_arg(p, "an earlier bench's OUTPUT folder")
    p.add_argument(
        "--docs",
        metavar="PAGE",
        help="also write the tables, stamped with machine, CPU flags, commit and "
        "date, into this docs page (docs/bench.md): the section of this CPU "
        "class is replaced, the rest of the page kept",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    """`tcc bench`: one run, every engine side by side; bench.json + bench.md in --output, targets printed."""
    from ..api import bench  # deferred for start-up: loads numpy, onnx, torch
    from ..benchmark import to_markdown  # deferred for start-up: loads numpy
    from ..benchmark.bench import FULL_MATRIX  # deferred for start-up: loads numpy
    from ..benchmark.docs_page import section_key, write_page  # deferred for start-up: tcc.benchmark loads numpy

    out = check_replaceable_folder(args.output, args.force)
    if args.docs:
        check_output(args.docs, (".md",), "a docs page is markdown")
        if not Path(args.docs).is_file():
            raise DataError(f"--docs {args.docs}: no such page (give an existing markdown page, e.g. docs/bench.md)")
    for spec in args.specs or []:
        resolve_spec(spec)  # a missing spec or an unknown name fails now
    matrix = None
    if args.only:
        known = {f"{t}-{p}": (t, p) for t, p in FULL_MATRIX}
        wanted = [e for e in args.only.split(",") if e]
        unknown = [e for e in wanted if e not in known]
        if unknown or not wanted:
            raise DataError(
                f"--only: unknown bundle {', '.join(unknown) or '(none given)'}; known: " + ", ".join(known)
            )
        matrix = tuple(known[e] for e in wanted)
    threads = _thread_counts(args.threads) if args.threads else None
    for name in ("rounds", "runs", "calib_images", "held_out"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise DataError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    doc = bench(
        None if args.quick else args.specs,
        weights=args.weights,
        by_order=args.by_order,
        overrides=parse_overrides(args.overrides),
        quick=args.quick,
        out=out,
        progress=args.progress,
        matrix=matrix,
        rounds=args.rounds,
        runs=args.runs,
        calib_images=args.calib_images,
        held_out=args.held_out,
        method=args.method,
        memory=False if args.no_memory else None,
        placement=False if args.no_placement else None,
        tvm_variants=args.tvm_variants,
        peers=args.peers,
        threads=threads,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "bench.md").write_text(to_markdown(doc) + "\n")
    for t in doc["targets"]:
        print(
            f"{t['status']:<12} {t['model']:<10} {t['what']}: {t['measured']} (bound {t['bound']})"
            + (f"\n{'':<23} {t['context']}" if t.get("context") else "")
        )
    print(f"wrote {out / 'bench.json'} and {out / 'bench.md'} ({doc['seconds']:.0f} s)")
    if args.docs:
        print(f"wrote the {section_key(doc)} section of {write_page(args.docs, doc)}")
    return 0


def _thread_counts(text: str) -> tuple[int, ...]:
    """--threads 1,2: the counts, one included (the ratios' denominator), each at least 1 and at most the cores."""
    try:
        counts = sorted({int(t) for t in text.split(",") if t.strip()} | {1})
    except ValueError:
        raise DataError(f"--threads {text}: comma-separated whole numbers, e.g. 1,2") from None
    cores = os.cpu_count() or 1
    bad = [t for t in counts if not 1 <= t <= cores]
    if bad:
        raise DataError(f"--threads {text}: {bad[0]} threads on a machine of {cores} cores (1 to {cores})")
    return tuple(counts)
