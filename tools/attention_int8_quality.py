"""INT8 quality of an attention model (issue 35): seeded weights with realistic statistics, INT8 vs FP32 on crops no
calibration saw, on each backend.

    .venv/bin/python tools/attention_int8_quality.py                                # mobilevit_xxs at 128: ort, host
    .venv/bin/python tools/attention_int8_quality.py --spec mobilevit_xxs --size 256 --targets ort,host,arm-a7
    .venv/bin/python tools/attention_int8_quality.py --qat 20       # and each target's table fine-tuned by tcc qat
    .venv/bin/python tools/attention_int8_quality.py --targets tflite,host --w8a16  # and W8A16 (TFLite: 16x8)
    .venv/bin/python tools/attention_int8_quality.py --min-cos 0.999  # and each built with the accuracy placement
                                                    # (TVM targets: widened to 16 bits first, and float only)

No trained checkpoint of the zoo's attention specs ships with tcc (nothing is downloaded). Two kinds of weights:
- `--weights seeded`: tcc's seeded initialisation (init_weights: BN and LayerNorm factors non-trivial) with every
  BatchNorm's running statistics then set to those of its input over the calibration crops (tcc.train.precise_bn,
  what `tcc train` does before a checkpoint). Random convolutions amplify the quantization noise of every layer
  through the depth: a pure CNN (`--spec mobilenet_v2`) loses as much here, so this bounds the kernels poorly.
- `--weights trained` (default): the seeded model trained `--epochs` by `tcc train` to tell the four fixture images
  apart from crops of each (a short run; its features are learned, its statistics those of real activations).

The crops are random squares of the fixture images (../shared/fixtures/ddsnet: GC, PCam, SC, Sipak), calibration
seed 0 and judging seed 1 (no crop in both). Each target is built with `tcc build --precision int8` on the
calibration crops and run here; per held-out crop the cosine of its logits with FP32 (PyTorch), then mean / min
and top-1 agreement. Writes JSON (-o) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import tcc
from tcc.backends.tvm.runner import run_module
from tcc.data import load_image
from tcc.lower.to_torch import init_weights
from tcc.quant.collect.crops import make_crops
from tcc.quant.place.placer import PlaceOptions
from tcc.quant.table.rules import rules_for
from tcc.train.precise_bn import recompute_statistics

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "ddsnet"
IMAGES = ("GC.png", "PCam.png", "SC.jpg", "Sipak.bmp")
ARM = ("arm-a7", "aarch64", "aarch64-dotprod")  # run under qemu: counted in executed instructions, not timed


def realistic_weights(model: tcc.Model, calib_dir: Path, out: Path, seed: int) -> Path:
    """Seeded weights, every BN's running statistics recomputed over the calibration crops (batches of 8)."""
    module = init_weights(model.torch(), seed=seed)
    images = sorted(calib_dir.glob("*.png"))
    batch = np.stack([load_image(p, model.spec.preprocess) for p in images])
    batches = [torch.from_numpy(batch[k : k + 8]) for k in range(0, len(batch), 8)]
    recompute_statistics(module, batches, len(batches))
    torch.save(module.state_dict(), out)
    return out


def trained_weights(spec: str, size: int, fixtures: Path, work: Path, epochs: int, per_class: int) -> Path:
    """`tcc train` on crops labelled by their source image (seed 2: no calibration or held-out crop)."""
    data = work / "train"
    for k, name in enumerate(IMAGES):
        make_crops(data / Path(name).stem, per_class, 2 + k, images=[fixtures / name])
    run = work / "run"
    cmd = [
        sys.executable,
        "-m",
        "tcc",
        "train",
        spec,
        "--set",
        f"image_size={size}",
        "--set",
        f"num_classes={len(IMAGES)}",
        "--data",
        str(data),
        "--epochs",
        str(epochs),
        "--optimizer",
        "adam",
        "--batch-size",
        "16",
        "--no-progress",
        "-o",
        str(run),
    ]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"error: tcc train failed: {done.stderr.strip()[-2000:]}")
    return run / "best.pt"


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def qat_row(model: tcc.Model, target: str, calib: Path, work: Path, args, x: np.ndarray, fp32: np.ndarray) -> dict:
    """The target's table fine-tuned by `tcc qat` (distilled from the FP32 model on the calibration crops), built
    with the fine-tuned weights, judged against the original FP32 logits."""
    start = time.perf_counter()
    table = model.calibrate(calib, target=target, calib_size=args.calib)
    result = model.qat(calib, table, work / f"{target}-qat", epochs=args.qat, calib_size=args.calib, force=True)
    tuned = tcc.Model.load(args.spec, result.weights, image_size=args.size)
    bundle = tuned.build(target, precision="int8", calib=result.table, out=work / f"{target}-qat-int8", force=True)
    return judged(bundle, x, fp32, time.perf_counter() - start)


def judged(bundle, x: np.ndarray, fp32: np.ndarray, seconds: float) -> dict:
    """A bundle's row: its logits on the held-out crops against FP32's, per crop, and what it holds."""
    got = np.concatenate([bundle.run(x[k : k + 1]) for k in range(len(x))])
    c = cosines(got, fp32)
    return {
        "cosine_mean": float(c.mean()),
        "cosine_min": float(c.min()),
        "top1": float((got.argmax(1) == fp32.argmax(1)).mean()),
        "build_s": round(seconds, 1),
        "integer_ops": sum(bundle.manifest["quantization"]["integer_ops"].values()),
        "float_islands": len(bundle.manifest["quantization"].get("float_islands", [])),
        "wide_activations": sum(
            n for bits, n in bundle.manifest["quantization"]["activation_bits"].items() if int(bits) > 8
        ),
        **(
            {"instructions": counted["total"]}
            if (counted := bundle.manifest.get("target_checks", {}).get("instructions_per_inference"))
            else {}
        ),
    }


def latency_ms(bundle, x: np.ndarray, runs: int = 30) -> float | None:
    """The median of `runs` inferences of one crop (None where it cannot run here: ARM under qemu is counted in
    instructions, not timed). A TVM module is timed in its runner's own loop (tcc-run --repeat): `Bundle.run`
    starts a runner process per call, whose start and module load would be most of the figure. A rough figure:
    `tcc bench` times interleaved."""
    if bundle.target in ARM:
        return None
    if bundle.manifest["backend"] == "tvm":
        return round(run_module(Path(bundle.path) / "model.so", bundle.target, x, repeat=runs)[1], 3)
    bundle.run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        bundle.run(x)
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1e3, 3)


def main(argv=None) -> int:  # noqa: PLR0915
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", default="mobilevit_xxs")
    p.add_argument("--size", type=int, default=128, help="input side (image_size)")
    p.add_argument("--targets", default="ort,host")
    p.add_argument("--calib", type=int, default=64, help="calibration crops")
    p.add_argument("--held", type=int, default=32, help="held-out crops")
    p.add_argument("--seed", type=int, default=0, help="weight seed")
    p.add_argument("--weights", choices=("trained", "seeded"), default="trained")
    p.add_argument("--epochs", type=int, default=6, help="training epochs (--weights trained)")
    p.add_argument("--per-class", type=int, default=48, help="training crops per fixture image")
    p.add_argument("--fixtures", type=Path, default=FIXTURES)
    p.add_argument(
        "--qat",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="also fine-tune each target's table by quantization-aware training (tcc qat, distilled on "
        "the calibration crops) for this many epochs, and judge that build against the same FP32",
    )
    p.add_argument(
        "--min-cos",
        type=float,
        metavar="C",
        help="also build each target with the accuracy placement (tcc build --min-cos C: the fewest float "
        "islands that bring the calibration crops' mean cosine to C) and judge it the same way",
    )
    p.add_argument(
        "--w8a16",
        action="store_true",
        help="also build each target whose rules take 16-bit activations with every activation at 16 "
        "bits (tcc build --activation-bits 16: TVM's kernels, TFLite's 16x8 mode) and judge it",
    )
    p.add_argument("-o", "--out", type=Path)
    args = p.parse_args(argv)
    missing = [n for n in IMAGES if not (args.fixtures / n).exists()]
    if missing:
        print(f"error: fixture images missing in {args.fixtures}: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = {}
    with tempfile.TemporaryDirectory(prefix="tcc-attn-q-") as tmp:
        work = Path(tmp)
        images = [args.fixtures / n for n in IMAGES]
        calib = make_crops(work / "calib", args.calib, 0, images=images)
        held = make_crops(work / "held", args.held, 1, images=images)
        if args.weights == "trained":
            weights = trained_weights(args.spec, args.size, args.fixtures, work, args.epochs, args.per_class)
        else:
            seeded = tcc.Model.load(args.spec, image_size=args.size)
            weights = realistic_weights(seeded, calib, work / "weights.pt", args.seed)
        model = tcc.Model.load(args.spec, weights, image_size=args.size)
        x = np.stack([load_image(p, model.spec.preprocess) for p in sorted(held.glob("*.png"))])
        fp32 = model.predict(x)
        for target in args.targets.split(","):
            start = time.perf_counter()
            try:
                bundle = model.build(
                    target,
                    precision="int8",
                    data=calib,
                    calib_options={"calib_size": args.calib},
                    count_instructions=target in ARM,
                    out=work / f"{target}-int8",
                    force=True,
                )
            except tcc.TccError as e:  # a failed self-check is a result too
                rows[target] = {"error": str(e).splitlines()[0]}
                print(f"{target}: {rows[target]}", file=sys.stderr)
                continue
            rows[target] = judged(bundle, x, fp32, time.perf_counter() - start)
            print(f"{target}: {rows[target]}", file=sys.stderr)
            if args.w8a16 and 16 in rules_for(target).activation_bits:
                start = time.perf_counter()
                bundle = model.build(
                    target,
                    precision="int8",
                    data=calib,
                    calib_options={"calib_size": args.calib, "activation_bits": 16},
                    count_instructions=target in ARM,
                    out=work / f"{target}-w8a16",
                    force=True,
                )
                rows[f"{target} W8A16"] = judged(bundle, x, fp32, time.perf_counter() - start)
                print(f"{target} W8A16: {rows[f'{target} W8A16']}", file=sys.stderr)
            if args.qat:
                rows[f"{target} + qat"] = qat_row(model, target, calib, work, args, x, fp32)
                print(f"{target} + qat: {rows[f'{target} + qat']}", file=sys.stderr)
            for wide in (True, False) if args.min_cos else ():
                # the placement widens activations to 16 bits first where the target's kernels take them (TVM's);
                # there the float-only placement (--no-wide) is judged too
                key = f"{target} + min-cos {args.min_cos}" + ("" if wide else " --no-wide")
                start = time.perf_counter()
                bundle = model.build(
                    target,
                    precision="int8",
                    data=calib,
                    calib_options={
                        "calib_size": args.calib,
                        "placement": PlaceOptions(min_cos=args.min_cos, wide=wide),
                    },
                    count_instructions=target in ARM,
                    out=work / f"{target}-int8-placed",
                    force=True,
                )
                rows[key] = judged(bundle, x, fp32, time.perf_counter() - start)
                rows[key]["latency_ms"] = latency_ms(bundle, x[:1])
                rows[target]["latency_ms"] = latency_ms(tcc.Bundle.open(work / f"{target}-int8"), x[:1])
                print(f"{key}: {rows[key]}", file=sys.stderr)
                if not rows[key]["wide_activations"]:
                    break
    result = {
        "spec": args.spec,
        "size": args.size,
        "weights": args.weights,
        "calib": args.calib,
        "held": args.held,
        "seed": args.seed,
        "rows": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"| {args.spec} at {args.size}, {args.weights} weights | cosine mean | min | top-1 | float islands | "
        f"16-bit activations | ms (rough) | ARM instructions |\n|---|---|---|---|---|---|---|---|"
    )
    for target, r in rows.items():
        if "error" in r:
            print(f"| {target} | {r['error']} | | | | | | |")
        else:
            print(
                f"| {target} | {r['cosine_mean']:.6f} | {r['cosine_min']:.6f} | {r['top1']:.3f} | "
                f"{r['float_islands']} | {r['wide_activations']} | {r.get('latency_ms') or ''} | "
                f"{r.get('instructions', '')} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
