#!/usr/bin/env python
"""TVM (host target) vs ONNX Runtime, FP32, one thread, batch 1: latency of the paper models.

    .venv/bin/python tools/bench_tvm.py                      # DDSNet + FastNet, tcc's default pipeline
    .venv/bin/python tools/bench_tvm.py --variants           # also: no tcc schedules, unfused, dlight
    .venv/bin/python tools/bench_tvm.py --tune 200           # MetaSchedule, 200 more trials (~/.cache/tcc/tune)

Both run the same ONNX graph (the spec lowered with seeded random weights, after tcc's pass pipeline; random
weights do not change the latency). TVM: the module compiled by tcc.backends.tvm_compile for `host` (LLVM,
mcpu=native), run by tcc-run --threads 1 --repeat R (median of R runs after one warm-up). ORT: CPUExecutionProvider,
intra_op_num_threads=1, inter_op_num_threads=1, full graph optimisation, median of R runs after 3 warm-ups.
Outputs are compared too (max abs difference). Prints a table and writes JSON (--json).
The goal in the TVM backend issue: TVM <= 1.2x ORT.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"ddsnet": "spec/ddsnet.yaml", "fastnet": "spec/fastnet.yaml"}
GOAL = 1.2  # TVM latency / ORT latency


def lower(spec: str):
    """The spec's FP32 ONNX graph after the pass pipeline, with seeded random weights (as `tcc build` makes it)."""
    from tcc.frontend import lower_spec

    fe = lower_spec(ROOT / spec)
    return fe.onnx, (1, *fe.model.input_shape)


def ort_latency(onnx_model, x: np.ndarray, repeat: int) -> tuple[float, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(onnx_model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(3):
        y = sess.run(None, feed)[0]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), y


def tvm_variant(onnx_model, shape, name: str, out_dir: Path, tune: int, tune_dir: str | None):
    """(compile seconds, .so path) of one pipeline variant: default (tcc's NHWC schedules, what `tcc build` uses),
    unscheduled (TVM's fused default lowering, NCHW), unfused (tvm.compile's own default), dlight (its CPU rules),
    int8 (the integer module of `--precision int8`; its ratio is against ORT FP32)."""
    from tcc.backends import tvm_compile

    inp = onnx_model.graph.input[0].name
    t0 = time.perf_counter()
    if name == "int8":  # the integer module (tvm_int8), calibrated with minmax on seeded N(0, 1) samples: the
        # calibration changes the scales, not the kernels, so it does not matter for the latency
        from tcc.backends.tvm_int8 import lower_int8
        from tcc.quant.calibrate import calibrate_onnx

        data = np.random.default_rng(0).standard_normal((4, *shape[1:])).astype(np.float32)
        table = calibrate_onnx(onnx_model, data, method="minmax", target="tvm")
        so = tvm_compile.compile_module(lower_int8(onnx_model, table, batch=1), "host", out_dir / f"{name}.so",
                                        ieee=True)
        return time.perf_counter() - t0, so
    mod = tvm_compile.import_onnx(onnx_model, {inp: list(shape)})
    kw = {"fuse": True, "dlight": False, "schedule": name == "default"}
    if name == "unfused":
        kw["fuse"] = False
    elif name == "dlight":
        kw["dlight"] = True
    if tune:
        kw.update(tune_dir=tune_dir, tune_trials=tune)
    so = tvm_compile.compile_module(mod, "host", out_dir / f"{name}.so", **kw)
    return time.perf_counter() - t0, so


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--repeat", type=int, default=20, help="timed runs per measurement (median)")
    ap.add_argument("--variants", action="store_true", help="also measure unscheduled / unfused / dlight pipelines")
    ap.add_argument("--int8", action="store_true", help="also measure the INT8 integer module (tvm_int8)")
    ap.add_argument("--tune", type=int, default=0, help="MetaSchedule trials for the default variant")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench_tvm.json"), help="where to write the results")
    args = ap.parse_args(argv)

    from tcc.backends import tvm_compile, tvm_run, tvm_tune
    from tcc.backends import tvm_runtime as rt

    if args.tune:
        problem = tvm_tune.meta_schedule_problem()
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    variants = (["default"] + (["unscheduled", "unfused", "dlight"] if args.variants else [])
                + (["int8"] if args.int8 else []))
    rows = []
    with tempfile.TemporaryDirectory(prefix="tcc-bench-tvm-") as tmp:
        for key in args.models:
            onnx_model, shape = lower(MODELS[key])
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            ort_ms, ref = ort_latency(onnx_model, x, args.repeat)
            for name in variants:
                out = Path(tmp) / key
                tune_dir = str(rt.cache_root() / "tune" / f"bench-{key}") if args.tune and name == "default" else None
                try:
                    secs, so = tvm_variant(onnx_model, shape, name, out, args.tune if tune_dir else 0, tune_dir)
                except Exception as e:  # a variant TVM cannot compile is a result too
                    rows.append({"model": key, "variant": name,
                                 "error": f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[-1]})
                    print(f"{key} {name}: compile failed: {rows[-1]['error']}", file=sys.stderr)
                    continue
                outs, tvm_ms = tvm_run.run_module(so, "host", x, threads=1, repeat=args.repeat)
                rows.append({"model": key, "variant": name, "input": list(shape), "tvm_ms": round(tvm_ms, 3),
                             "ort_ms": round(ort_ms, 3), "ratio": round(tvm_ms / ort_ms, 2),
                             "meets_goal": tvm_ms <= GOAL * ort_ms, "compile_s": round(secs, 1),
                             # INT8 against FP32 is not a numeric check (its self-check is the integer reference)
                             "max_abs_vs_ort": None if name == "int8" else float(np.abs(outs[0] - ref).max()),
                             "tune_trials": args.tune if tune_dir else 0})
                print(f"{key} {name}: TVM {tvm_ms:.2f} ms, ORT {ort_ms:.2f} ms ({tvm_ms / ort_ms:.1f}x)",
                      file=sys.stderr)
    head = f"{'model':<9} {'variant':<11} {'TVM ms':>9} {'ORT ms':>8} {'TVM/ORT':>8} {'compile s':>9} {'max|d|':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<9} {r['variant']:<11} compile failed: {r['error'][:60]}")
            continue
        print(f"{r['model']:<9} {r['variant']:<11} {r['tvm_ms']:>9.2f} {r['ort_ms']:>8.2f} {r['ratio']:>7.1f}x "
              f"{r['compile_s']:>9.1f} " + ("        -" if r["max_abs_vs_ort"] is None else f"{r['max_abs_vs_ort']:>9.1e}"))
    doc = {"goal": f"TVM <= {GOAL}x ORT latency", "threads": 1, "batch": 1, "repeat": args.repeat,
           "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "load_average": [round(v, 2) for v in os.getloadavg()]},
           "tvm": rt.tvm_versions()[0], "tvm_target": tvm_compile.resolve_tvm_target("host"), "results": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
