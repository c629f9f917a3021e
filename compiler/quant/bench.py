"""DDSNet INT8 benchmark: `python -m tcc.quant.bench [--images 128] [--methods kl+cos,kl,...]`.

Calibration and held-out sets are crops of real histology (the DDSNet fixture images and skimage's
immunohistochemistry image), written as PNG files and read back through the spec's preprocessing. Reports, per
method: calibration time, end-to-end INT8 (QDQ fake-quant, ORT optimisations off) vs FP32 cosine on the held-out
crops, top-1 agreement, and the same for the ORT-optimised (integer kernel) run; then ONNX Runtime's own
`quantize_static` (MinMax, Percentile, Entropy) on the same data, and with --latency 1-thread latencies.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "ddsnet"


def source_images() -> list[np.ndarray]:
    from PIL import Image

    ims = []
    for name in ("GC.png", "PCam.png", "SC.jpg", "Sipak.bmp"):
        p = FIXTURES / name
        if p.exists():
            with Image.open(p) as im:
                ims.append(np.asarray(im.convert("RGB")))
    try:
        import skimage.data

        ims.append(skimage.data.immunohistochemistry())
    except Exception:  # noqa: BLE001  (skimage data missing: fixtures alone)
        pass
    return ims


def make_crops(out: str | Path, n: int, seed: int, min_side: int = 96) -> Path:
    """n random crops (random size, position, flip, 90-degree rotation) of the source images as PNG files."""
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ims = source_images()
    rng = np.random.default_rng(seed)
    for k in range(n):
        im = ims[k % len(ims)]
        h, w = im.shape[:2]
        side = int(rng.integers(min(min_side, h, w), min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = im[y:y + side, x:x + side]
        crop = np.rot90(crop, int(rng.integers(4)))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        Image.fromarray(np.ascontiguousarray(crop)).save(out / f"crop_{k:04d}.png")
    return out


def ddsnet_fp32(weights: str | Path, fold=None):
    """spec -> torch (+weights) -> ONNX (-> passes when available). Returns (model, onnx proto)."""
    import tcc
    from tcc.lower_onnx import to_onnx
    from tcc.weights import load_weights

    model = tcc.load_model(ROOT / "spec" / "ddsnet.yaml")
    module = tcc.to_torch(model.graph, inference_only=True)
    load_weights(module, model.graph, weights, by_order=True)
    proto = to_onnx(model.graph, module.state_dict())
    try:
        from tcc.passes import run_pipeline

        proto, _ = run_pipeline(proto)
    except ImportError:
        if fold is not None:
            proto = fold(proto)
    return model, proto


def evaluate(fp32, qdq, x: np.ndarray) -> dict:
    from .qdq import run
    from .quantizer import cosine

    ref = run(fp32, x)
    out = {}
    for mode, opt in (("fakequant", False), ("ort", True)):
        y = run(qdq, x, optimize=opt)
        cos = [cosine(a, b) for a, b in zip(ref, y)]
        out[mode] = {"cos_mean": float(np.mean(cos)), "cos_min": float(np.min(cos)),
                     "top1": float(np.mean(ref.argmax(1) == y.argmax(1)))}
    return out


def ort_static(fp32, cal: np.ndarray, method: str):
    """ONNX Runtime's own quantize_static (QDQ, per-channel int8 weights, u8 activations) for comparison."""
    import tempfile

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": cal[i:i + 1]} for i in range(len(cal))])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        onnx.save(fp32, src)
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, method))
        return onnx.load(dst)


def latency_ms(model, x: np.ndarray, runs: int = 30) -> float:
    """Median single-image latency, ONNX Runtime, 1 thread, all optimisations."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    one = x[:1]
    for _ in range(3):
        sess.run(None, {"input": one})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {"input": one})
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--held-out", type=int, default=64)
    ap.add_argument("--methods", default="kl+cos,kl,percentile,minmax")
    ap.add_argument("--work", default="/tmp/tcc_quant_bench")
    ap.add_argument("--weights", default=str(FIXTURES / "GC_DDS_0.0064.pth"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--ort", default="MinMax,Percentile,Entropy", help="ORT quantize_static methods to compare")
    ap.add_argument("--latency", action="store_true", help="also time 1-thread ORT latency")
    args = ap.parse_args(argv)
    from .calibrate import calibrate_onnx
    from .data import load_calibration_data
    from .qdq import to_qdq

    model, fp32 = ddsnet_fp32(args.weights)
    work = Path(args.work)
    cal = load_calibration_data(make_crops(work / "calib", args.images, 0), model.preprocess, model.input_shape,
                                args.images)
    held = load_calibration_data(make_crops(work / "held", args.held_out, 1), model.preprocess, model.input_shape)
    results = {}
    for method in args.methods.split(","):
        t = time.perf_counter()
        table = calibrate_onnx(fp32, cal.array, method=method, data_fingerprint=cal.fingerprint)
        dt = time.perf_counter() - t
        qdq = to_qdq(fp32, table)
        r = {"calib_s": dt, "timing": table.doc["timing_s"], "summary": table.doc["summary"],
             **evaluate(fp32, qdq, held.array)}
        r["size_ratio"] = len(qdq.SerializeToString()) / len(fp32.SerializeToString())
        if args.latency:
            r["latency_ms"] = latency_ms(qdq, held.array)
        results[method] = r
        print(method, json.dumps(r), flush=True)
    for method in [m for m in args.ort.split(",") if m]:
        t = time.perf_counter()
        q = ort_static(fp32, cal.array, method)
        r = {"calib_s": time.perf_counter() - t, **evaluate(fp32, q, held.array)}
        if args.latency:
            r["latency_ms"] = latency_ms(q, held.array)
        results[f"ort_{method}"] = r
        print(f"ort_{method}", json.dumps(r), flush=True)
    if args.latency:
        results["fp32_latency_ms"] = latency_ms(fp32, held.array)
        print("fp32 latency_ms", results["fp32_latency_ms"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
