"""Quantization-aware fine-tuning (`tcc qat`) on the DDSNet authors' checkpoints: INT8 vs FP32 on ONNX Runtime's
integer kernels, post-training (tcc calibrate's defaults) against the same table after `tcc qat`, judged on held-out
crops that neither calibration nor training saw.

    .venv/bin/python tools/qat_quality.py                               # four checkpoints, defaults
    .venv/bin/python tools/qat_quality.py --checkpoints Skin,Sipak --epochs 30 --lr 0.03 -o out/qat.json

The protocol of tools/quality_compare.py: 64 calibration crops (seed 0) and 32 held-out crops (seed 1) of each
checkpoint's own fixture image (../shared/fixtures/ddsnet); the ORT target's rules; QAT distils on the 64
calibration crops (no labels), or with --qat-crops N on N other crops of the image (seed 2). The FP32 reference is
the checkpoint as published: the QAT model's INT8 output is compared with it, not with the fine-tuned weights' own
FP32 output (printed too: `fp32 drift`). Latency: the two
INT8 ONNX files have the same graph (same nodes, same placement), checked here node for node.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from quality_compare import CHECKPOINTS, OWN_IMAGE, crops


def per_sample_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def summary(int8: np.ndarray, fp32: np.ndarray) -> dict:
    c = per_sample_cosine(int8, fp32)
    top1 = float((int8.argmax(1) == fp32.argmax(1)).mean())
    return {"mean": round(float(c.mean()), 6), "min": round(float(c.min()), 6), "top1": top1}


def op_types(bundle) -> list[str]:
    import onnx

    model = onnx.load(str(next(Path(bundle.path).glob("*.onnx"))))
    return [n.op_type for n in model.graph.node]


def one(name: str, fixtures: Path, work: Path, args) -> dict:
    import tcc

    calib_dir, held_dir = crops(work / name, fixtures, args.calib, args.held, images=(OWN_IMAGE[name],))
    weights = fixtures / f"{name}_DDS_0.0064.pth"
    model = tcc.Model.load(ROOT / "spec" / "ddsnet.yaml", weights=weights, by_order=True, num_classes=CHECKPOINTS[name])
    from tcc.quant.collect.data import load_calibration_data

    held = load_calibration_data(held_dir, model.spec.preprocess, model.input_shape).array
    fp32 = model.predict(held)
    t0 = time.perf_counter()
    table = model.calibrate(calib_dir, target=args.target, calib_size=args.calib)
    t1 = time.perf_counter()
    ptq = model.build(args.target, precision="int8", calib=table, out=work / name / "ptq", force=True)
    qat_dir = calib_dir
    if args.qat_crops:  # more unlabelled crops of the same image for the distillation (seed 2: none held out)
        from tcc.quant.collect.crops import make_crops

        qat_dir = make_crops(work / name / "qat-crops", args.qat_crops, 2, images=[fixtures / OWN_IMAGE[name]])
    result = model.qat(
        qat_dir,
        table,
        work / name / "qat",
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        augment=args.augment,
        scale_lr=args.scale_lr,
        feature_weight=args.feature_weight,
        bias_lr=args.bias_lr,
        force=True,
        log=print,
    )
    t2 = time.perf_counter()
    tuned = tcc.Model.load(ROOT / "spec" / "ddsnet.yaml", weights=result.weights, num_classes=CHECKPOINTS[name])
    qat = tuned.build(args.target, precision="int8", calib=result.table, out=work / name / "qat-bundle", force=True)
    same_graph = op_types(ptq) == op_types(qat)
    row = {
        "checkpoint": name,
        "ptq": summary(ptq.run(held), fp32),
        "qat": summary(qat.run(held), fp32),
        "fp32_drift": summary(tuned.predict(held), fp32),
        "same_graph": same_graph,
        "calibrate_s": round(t1 - t0, 1),
        "qat_s": round(t2 - t1, 1),
        "kept_epoch": result.log["kept_epoch"],
        "train_int8_cosine": result.log["int8_cosine"],
    }
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default=",".join(CHECKPOINTS))
    p.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared" / "fixtures" / "ddsnet")
    p.add_argument("--target", default="ort")
    p.add_argument("--calib", type=int, default=64)
    p.add_argument("--held", type=int, default=32)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument(
        "--qat-crops",
        type=int,
        default=0,
        help="distil on this many other crops of the image (seed 2) instead of the calibration crops",
    )
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--scale-lr", type=float, default=0.01)
    p.add_argument("--feature-weight", type=float, default=3.0)
    p.add_argument("--bias-lr", type=float, default=0.01)
    p.add_argument("--augment", default="dihedral")
    p.add_argument("-o", "--output", type=Path)
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tcc-qat-quality-") as tmp:
        for name in args.checkpoints.split(","):
            rows.append(one(name, args.fixtures, Path(tmp), args))
    print(
        "\n| checkpoint | PTQ mean / min / top-1 | QAT mean / min / top-1 | QAT FP32 drift (mean / min) | same graph |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        a, b, d = r["ptq"], r["qat"], r["fp32_drift"]
        print(
            f"| {r['checkpoint']} | {a['mean']:.6f} / {a['min']:.6f} / {a['top1']:.0%} | {b['mean']:.6f} / "
            f"{b['min']:.6f} / {b['top1']:.0%} | {d['mean']:.6f} / {d['min']:.6f} | {r['same_graph']} |"
        )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
