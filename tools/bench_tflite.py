"""TFLite INT8 quality and size: tcc's own int8 model against Google's ai-edge-quantizer (static int8: int8
weights, int8 activations) on the same FP32 .tflite and the same calibration crops.

    .venv/bin/pip install ai-edge-quantizer        # optional: only this benchmark needs it
    .venv/bin/python tools/bench_tflite.py [--weights ../shared/fixtures/ddsnet/GC_DDS_0.0064.pth] [--json out.json]

DDSNet with the authors' GC checkpoint; calibration on 64 crops of real histology, judged on 32 other crops
(tcc.quant.collect.crops.make_crops: calibration and judging crops never overlap). Both int8 models run in LiteRT's
default
CPU path (and tcc's also on the reference kernels, where it equals tcc's integer reference bit for bit); the
quality is the output cosine against the FP32 .tflite (mean, min) and top-1 agreement.
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


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def io_of(path: Path) -> dict:
    """tflite.json for a model tcc did not write: its input / output types and quantization, NHWC input."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    info = {"input_layout": "NHWC"}
    for key, d in (("input", it.get_input_details()[0]), ("output", it.get_output_details()[0])):
        info[f"{key}_dtype"] = np.dtype(d["dtype"]).name
        if info[f"{key}_dtype"] == "int8":
            scale, zp = d["quantization"]
            info[f"{key}_quantization"] = {"scale": float(scale), "zero_point": int(zp)}
    return info


def main(argv=None) -> int:  # noqa: PLR0915
    from tcc.backends import get_backend
    from tcc.backends.base import EmitOptions
    from tcc.frontend import Weights, lower_spec
    from tcc.quant.calibrate import calibrate_onnx
    from tcc.quant.collect.crops import FIXTURES, make_crops
    from tcc.quant.collect.data import load_calibration_data

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=str(FIXTURES / "GC_DDS_0.0064.pth"))
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--held", type=int, default=32)
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        print("ai-edge-quantizer is not installed: .venv/bin/pip install ai-edge-quantizer", file=sys.stderr)
        return 2

    fe = lower_spec(ROOT / "spec" / "ddsnet.yaml", weights=Weights(args.weights, by_order=True))
    backend = get_backend("tflite")
    with tempfile.TemporaryDirectory(prefix="tcc-bench-tflite-") as tmp:
        tmp = Path(tmp)
        pre, shape = fe.model.preprocess, fe.model.input_shape
        cal = load_calibration_data(make_crops(tmp / "cal", args.calib, 0), pre, shape).array
        held = load_calibration_data(make_crops(tmp / "held", args.held, 1), pre, shape).array

        (tmp / "fp32").mkdir()
        backend.emit(fe.onnx, EmitOptions("tflite", "fp32"), tmp / "fp32")
        fp32 = backend.run(backend.load(tmp / "fp32"), held)

        t0 = time.perf_counter()
        table = calibrate_onnx(fe.onnx, cal, method="kl+cos", target="tflite")
        t_tcc = time.perf_counter() - t0
        (tmp / "tcc").mkdir()
        backend.emit(fe.onnx, EmitOptions("tflite", "int8", table=table), tmp / "tcc")

        t0 = time.perf_counter()
        q = quantizer.Quantizer(str(tmp / "fp32" / "model.tflite"), recipe.static_wi8_ai8())
        samples = [{"input": np.ascontiguousarray(x.transpose(1, 2, 0)[None])} for x in cal]
        result = q.quantize(q.calibrate({"serving_default": samples}))
        t_aeq = time.perf_counter() - t0
        (tmp / "aeq").mkdir()
        (tmp / "aeq" / "model.tflite").write_bytes(bytes(result.quantized_model))
        (tmp / "aeq" / "tflite.json").write_text(json.dumps(io_of(tmp / "aeq" / "model.tflite")))

        rows = {}
        for name, kernels in (("tcc", "default"), ("tcc", "reference"), ("aeq", "default")):
            y = backend.run(backend.load(tmp / name, kernels), held)
            c = cosines(y, fp32)
            rows[f"{name}/{kernels}"] = {
                "cos_mean": float(c.mean()),
                "cos_min": float(c.min()),
                "top1": float(np.mean(y.argmax(1) == fp32.argmax(1))),
                "bytes": (tmp / name / "model.tflite").stat().st_size,
                "calibration_s": t_tcc if name == "tcc" else t_aeq,
            }
        rows["fp32"] = {"bytes": (tmp / "fp32" / "model.tflite").stat().st_size}
    print(
        f"DDSNet ({Path(args.weights).name}), {args.calib} calibration crops, {args.held} held-out crops; "
        "INT8 vs the FP32 .tflite in LiteRT"
    )
    print("| model | kernels | cos mean | cos min | top-1 | size | calibration |")
    print("|---|---|---|---|---|---|---|")
    for key, r in rows.items():
        if key == "fp32":
            print(f"| FP32 | - | - | - | - | {r['bytes']:,} B | - |")
            continue
        name, kernels = key.split("/")
        label = {"tcc": "tcc kl+cos (`tcc calibrate --target tflite`)", "aeq": "ai-edge-quantizer static_wi8_ai8"}[name]
        print(
            f"| {label} | {kernels} | {r['cos_mean']:.5f} | {r['cos_min']:.5f} | {100 * r['top1']:.1f}% | "
            f"{r['bytes']:,} B | {r['calibration_s']:.1f} s |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
