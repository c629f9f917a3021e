"""DDSNet INT8 benchmark on ONNX Runtime: `python tools/bench_int8.py` (same as `python -m tcc.quant.bench`).

Calibration and held-out sets are crops of real histology (the DDSNet fixture images and skimage's
immunohistochemistry image), written as PNG files and read back through the spec's preprocessing. Measures, for
kl+cos (and any other --methods): calibration time, INT8 vs FP32 cosine and top-1 on the held-out crops (ORT
integer kernels; float fake-quant alongside), model size (the compact QDQ form, `to_qdq(..., compact=True)`); ONNX
Runtime's own `quantize_static` (MinMax, Percentile, Entropy) on the same data; 1-thread latency of FP32 vs
INT8, interleaved in rounds on this (shared) machine: median and spread of the per-round medians; the nodes that
ONNX Runtime's profiler sees running on float data. Checks the issue's targets (PASS / FAIL) and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
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


def make_crops(out: str | Path, n: int, seed: int, min_side: int = 96, images: list | None = None) -> Path:
    """n random crops (random size, position, flip, 90-degree rotation) of the source images (or of the image
    files `images`, in that order) as PNG files."""
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ims = source_images() if images is None else [_rgb(p) for p in images]
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


def _rgb(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def ddsnet_fp32(weights: str | Path):
    """DDSNet with the authors' checkpoint, as `tcc build` lowers it (tcc.frontend). Returns (model, onnx proto)."""
    from tcc.frontend import lower_spec

    fe = lower_spec(ROOT / "spec" / "ddsnet.yaml", weights=weights, by_order=True)
    return fe.model, fe.onnx


GOALS = {  # the targets
    "cosine": 0.9995,  # end-to-end INT8 vs FP32 cosine on the held-out crops (mean), and >= every ORT method
    "top1": 1.0,  # top-1 agreement with FP32
    "calib_s": 30.0,  # kl+cos calibration of 128 images
    "latency_ratio": 0.6,  # INT8 / FP32 latency, 1 thread
    "size_ratio": 0.30,  # INT8 / FP32 serialized .onnx bytes
}


def evaluate(fp32, qdq, x: np.ndarray, modes=(("fakequant", False), ("ort", True))) -> dict:
    from .qdq import run
    from .quantizer import cosine

    ref = run(fp32, x)
    out = {}
    for mode, opt in modes:
        y = run(qdq, x, optimize=opt)
        cos = [cosine(a, b) for a, b in zip(ref, y)]
        out[mode] = {"cos_mean": float(np.mean(cos)), "cos_min": float(np.min(cos)),
                     "top1": float(np.mean(ref.argmax(1) == y.argmax(1)))}
    return out


def ort_static(fp32, cal: np.ndarray, method: str):
    """ONNX Runtime's own quantize_static (QDQ, per-channel int8 weights, u8 activations) for comparison; the one
    definition lives in report.py (the quality report compares with it too)."""
    from .report import ort_quantize_static

    return ort_quantize_static(fp32, cal, method)


def session(model, threads: int = 1, profile: str | None = None):
    """ONNX Runtime CPU session, all graph optimisations (the default), `threads` intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = profile
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def latencies(models: dict, x: np.ndarray, rounds: int = 15, runs: int = 20, warmup: int = 10) -> dict:
    """1-thread single-image latency of each model, interleaved: every round times `runs` inferences of each
    model in turn (so that load from other processes hits all of them alike) and keeps their median. Returns,
    per model, the per-round medians in ms of wall-clock time ("wall") and of the calling thread's CPU time
    ("cpu": with one intra-op thread ORT runs every kernel on the caller; CPU time leaves out the time other
    processes hold the core, most of the spread on a shared machine)."""
    one = np.ascontiguousarray(x[:1])
    sess = {k: session(m) for k, m in models.items()}
    for s in sess.values():
        for _ in range(warmup):
            s.run(None, {"input": one})
    wall = {k: [] for k in models}
    cpu = {k: [] for k in models}
    for _ in range(rounds):
        for k, s in sess.items():
            t, c = [], []
            for _ in range(runs):
                t0, c0 = time.perf_counter(), time.thread_time()
                s.run(None, {"input": one})
                c.append(time.thread_time() - c0)
                t.append(time.perf_counter() - t0)
            wall[k].append(1000 * float(np.median(t)))
            cpu[k].append(1000 * float(np.median(c)))
    return {"wall": wall, "cpu": cpu}


def spread(v) -> dict:
    v = np.asarray(v, dtype=np.float64)
    return {"median": float(np.median(v)), "min": float(v.min()), "p10": float(np.percentile(v, 10)),
            "p90": float(np.percentile(v, 90)), "max": float(v.max()), "n": int(len(v))}


def profile_nodes(model, x: np.ndarray, runs: int = 30) -> list[dict]:
    """Per-node kernel times (median over `runs`, 1 thread) from ONNX Runtime's profiler, in execution order,
    with the op the kernel ran as and the element types of its data input and output."""
    import tempfile

    one = np.ascontiguousarray(x[:1])
    with tempfile.TemporaryDirectory() as d:
        s = session(model, profile=str(Path(d) / "prof"))
        for _ in range(5 + runs):
            s.run(None, {"input": one})
        path = s.end_profiling()
        events = json.loads(Path(path).read_text())
        os.remove(path)
    nodes: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        a = e["args"]

        def data(key):  # element types of the activation tensors (rank >= 2; scales and zero points are not)
            return sorted({t for d in a.get(key, []) for t, shape in d.items() if len(shape) >= 2})

        n = nodes.setdefault(e["name"][: -len("_kernel_time")], {
            "op": a["op_name"], "times": [], "in": data("input_type_shape"), "out": data("output_type_shape")})
        n["times"].append(e["dur"])
    return [{"node": k, "op": v["op"], "in": v["in"], "out": v["out"], "us": float(np.median(v["times"][-runs:]))}
            for k, v in nodes.items()]


def float_nodes(prof: list[dict]) -> list[dict]:
    """Nodes reading or writing float activations: the work ONNX Runtime does outside its integer kernels."""
    return [p for p in prof if "float" in p["in"] + p["out"]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=128, help="calibration crops")
    ap.add_argument("--held-out", type=int, default=64, help="held-out crops")
    ap.add_argument("--methods", default="kl+cos", help="tcc calibration methods (the first is the one checked)")
    ap.add_argument("--ort", default="MinMax,Percentile,Entropy", help="ORT quantize_static methods to compare")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved latency rounds")
    ap.add_argument("--runs", type=int, default=20, help="inferences per model per round")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--work", default="/tmp/tcc_bench_int8")
    ap.add_argument("--weights", default=str(FIXTURES / "GC_DDS_0.0064.pth"))
    ap.add_argument("--json", default=None, help="results file (default: WORK/bench_int8.json)")
    args = ap.parse_args(argv)
    import onnxruntime

    from .calibrate import calibrate_onnx
    from .data import load_calibration_data
    from .qdq import to_qdq

    model, fp32 = ddsnet_fp32(args.weights)
    work = Path(args.work)
    cal = load_calibration_data(make_crops(work / "calib", args.images, 0), model.preprocess, model.input_shape,
                                args.images)
    held = load_calibration_data(make_crops(work / "held", args.held_out, 1), model.preprocess, model.input_shape)
    fp32_bytes = len(fp32.SerializeToString())
    res = {"onnxruntime": onnxruntime.__version__, "calib_images": len(cal.array), "held_out": len(held.array),
           "fp32_bytes": fp32_bytes, "methods": {}, "ort_static": {}, "targets": GOALS}
    int8 = {}
    for method in [m for m in args.methods.split(",") if m]:
        t = time.perf_counter()
        table = calibrate_onnx(fp32, cal.array, method=method, data_fingerprint=cal.fingerprint)
        dt = time.perf_counter() - t
        q = to_qdq(fp32, table, compact=True)
        int8[method] = q
        r = {"calib_s": dt, "timing": table.doc["timing_s"], **evaluate(fp32, q, held.array),
             "bytes": len(q.SerializeToString()), "bytes_full_names": len(to_qdq(fp32, table).SerializeToString())}
        r["size_ratio"] = r["bytes"] / fp32_bytes
        res["methods"][method] = r
        print(f"{method}: calibration {dt:.1f} s; ORT integer cos {r['ort']['cos_mean']:.6f} (min "
              f"{r['ort']['cos_min']:.6f}) top-1 {r['ort']['top1']:.4f}; fake-quant cos "
              f"{r['fakequant']['cos_mean']:.6f} top-1 {r['fakequant']['top1']:.4f}; {r['bytes']} bytes "
              f"({r['size_ratio']:.4f} of FP32)", flush=True)
    static = {}
    for method in [m for m in args.ort.split(",") if m]:
        t = time.perf_counter()
        q = ort_static(fp32, cal.array, method)
        static[method] = q
        r = {"calib_s": time.perf_counter() - t, **evaluate(fp32, q, held.array, modes=(("ort", True),)),
             "bytes": len(q.SerializeToString())}
        r["size_ratio"] = r["bytes"] / fp32_bytes
        res["ort_static"][method] = r
        print(f"ORT quantize_static {method}: cos {r['ort']['cos_mean']:.6f} (min {r['ort']['cos_min']:.6f}) "
              f"top-1 {r['ort']['top1']:.4f}; {r['size_ratio']:.4f} of FP32", flush=True)

    main_method = next(iter(int8))
    q = int8[main_method]
    prof = profile_nodes(q, held.array)
    res["profile_int8"] = prof
    res["float_nodes"] = float_nodes(prof)
    res["profile_fp32_us"] = sum(p["us"] for p in profile_nodes(fp32, held.array))
    print(f"INT8 nodes on float data (ORT profiler, {len(prof)} kernels, sum of medians "
          f"{sum(p['us'] for p in prof):.0f} us):")
    for p in res["float_nodes"]:
        print(f"  {p['op']:<16} {'/'.join(p['in'])} -> {'/'.join(p['out'])}  {p['us']:.0f} us  ({p['node']})")
    if not args.no_latency:
        models = {"fp32": fp32, main_method: q, **{f"ort_{k}": v for k, v in static.items()}}
        res["load_average_before"] = os.getloadavg()
        lat = latencies(models, held.array, args.rounds, args.runs)
        res["load_average_after"] = os.getloadavg()
        for clock in ("wall", "cpu"):
            res[f"latency_ms_{clock}"] = {k: spread(v) for k, v in lat[clock].items()}
            ratios = np.asarray(lat[clock][main_method]) / np.asarray(lat[clock]["fp32"])  # per round: same load
            res[f"latency_ratio_{clock}"] = r = spread(ratios)
            for k, v in res[f"latency_ms_{clock}"].items():
                print(f"latency ({clock}) {k}: median {v['median']:.3f} ms (rounds: min {v['min']:.3f}, p10 "
                      f"{v['p10']:.3f}, p90 {v['p90']:.3f}, max {v['max']:.3f})")
            print(f"INT8/FP32 ({clock}) per round: median {r['median']:.3f} (min {r['min']:.3f}, p10 {r['p10']:.3f},"
                  f" p90 {r['p90']:.3f}, max {r['max']:.3f})")
        print(f"load average before / after: {res['load_average_before'][0]:.2f} / "
              f"{res['load_average_after'][0]:.2f} on {os.cpu_count()} CPUs")

    m = res["methods"][main_method]
    best_ort = max([r["ort"]["cos_mean"] for r in res["ort_static"].values()], default=-1.0)
    checks = {
        f"cosine >= {GOALS['cosine']} and >= every ORT method ({best_ort:.6f})":
            m["ort"]["cos_mean"] >= GOALS["cosine"] and m["ort"]["cos_mean"] >= best_ort,
        "top-1 agreement 100%": m["ort"]["top1"] >= GOALS["top1"],
        f"calibration of {len(cal.array)} images <= {GOALS['calib_s']:.0f} s": m["calib_s"] <= GOALS["calib_s"],
        f"size <= {GOALS['size_ratio']:.2f} of FP32": m["size_ratio"] <= GOALS["size_ratio"],
    }
    if "latency_ratio_wall" in res:
        checks[f"latency <= {GOALS['latency_ratio']} of FP32 (1 thread, median per-round ratio, wall clock)"] = \
            res["latency_ratio_wall"]["median"] <= GOALS["latency_ratio"]
    res["checks"] = checks
    print(f"\ntargets ({main_method}):")
    for k, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {k}")
    out = Path(args.json) if args.json else work / "bench_int8.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
