"""Calibration time, its memory, and INT8 quality against FP32 on held-out crops: tcc's methods and ONNX Runtime's
own `quantize_static` (MinMax, Entropy, Percentile) on the same calibration data and the same judging data."""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import replace

import numpy as np

from tcc.dense import MaskAgreement, is_dense
from tcc.quant.table.quantizer import cosine


def evaluate(fp32, int8, x: np.ndarray, modes=(("ort", True),)) -> dict:
    """Output cosine (mean, min) and top-1 agreement (per pixel for a dense output, with the lowest Dice of a class,
    INT8 mask vs FP32 mask) of an INT8 ONNX model against its FP32 model on `x`: "ort" runs ORT's integer kernels,
    "fakequant" the same graph unoptimized (float Q/DQ arithmetic)."""
    from tcc.quant.lower.qdq import run  # deferred for start-up: loads onnx

    ref = run(fp32, x)
    out = {}
    for mode, optimize in modes:
        y = run(int8, x, optimize=optimize)
        cos = [cosine(a, b) for a, b in zip(ref, y)]
        out[mode] = {
            "cos_mean": round(float(np.mean(cos)), 7),
            "cos_min": round(float(np.min(cos)), 7),
            "top1": round(float(np.mean(ref.argmax(1) == y.argmax(1))), 4),
            **({"dice_min": MaskAgreement.measure(ref, y).lowest_dice} if is_dense(ref) else {}),
        }
    return out


def timed_calibration(fp32, data, rules: str, method: str, provenance):
    """(table, seconds) of tcc's calibration of `fp32` on `data` (a CalibrationData) under `rules`; `provenance`
    (tcc.quant.settings.Provenance): the spec's and weights' hashes (the data's fingerprint is data's)."""
    from tcc.quant.calibrate import calibrate_onnx  # deferred for start-up: loads onnx

    t = time.perf_counter()
    provenance = replace(provenance, data_fingerprint=data.fingerprint)
    table = calibrate_onnx(fp32, data.array, method=method, target=rules, progress=False, provenance=provenance)
    return table, time.perf_counter() - t


def timed_placement(fp32, table, data: np.ndarray, log=lambda s: None):
    """(table, seconds) of the placement step's speed objective (tcc.quant.place.placer: ORT's profile on this CPU, the
    cosine floor 0.9995) on `table`."""
    from tcc.quant.place.placer import PlaceOptions, place  # deferred for start-up: loads onnx

    t = time.perf_counter()
    placed = place(fp32, table, data, PlaceOptions(speed="ort"), log)
    return placed, time.perf_counter() - t


def peak_memory(fp32, array: np.ndarray, rules: str, method: str) -> int:
    """Peak bytes Python and numpy allocate during one calibration (tracemalloc sees numpy's buffers; ONNX
    Runtime's own arena is not counted: the statistics pass runs it with a fixed batch)."""
    from tcc.quant.calibrate import calibrate_onnx  # deferred for start-up: loads onnx

    tracemalloc.start()
    try:
        calibrate_onnx(fp32, array, method=method, target=rules, progress=False)
        return int(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def ort_static(fp32, array: np.ndarray, method: str):
    """(model, seconds) of ONNX Runtime's quantize_static (QDQ, per-channel s8 weights, u8 activations)."""
    from tcc.quant.report.quality import ort_quantize_static  # deferred for start-up: loads onnx

    t = time.perf_counter()
    model = ort_quantize_static(fp32, array, method)
    return model, time.perf_counter() - t
