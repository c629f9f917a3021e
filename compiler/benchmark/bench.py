"""`tcc bench`: every engine on the same model, the same input and the same calibration data, in one run.

Per model: the FP32 graph as `tcc build` lowers it; calibration and held-out crops of real histology through the
spec's preprocessing; tcc's calibration (time, peak memory) against ONNX Runtime's quantize_static and INT8
quality of both on the held-out crops; a bundle per (target, precision) built by `tcc build` itself (wall time by
phase, artifact bytes, and on the ARM targets the instructions one inference executes, counted under qemu); then
1-thread batch-1 latency of PyTorch eager and every bundle that runs here, interleaved in rounds. The speed
targets are judged on the result (tcc.benchmark.targets) and the whole is written as bench.json and bench.md.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tcc.backends import TvmOptions, get_target
from tcc.build import BuildSettings, Int8Source, build
from tcc.errors import TccError
from tcc.frontend import Frontend, Weights, lower_spec
from tcc.quant.collect.crops import FIXTURES, make_crops
from tcc.quant.collect.data import CalibrationData, load_calibration_data
from tcc.quant.prepare import method_for
from tcc.quant.settings import Provenance
from tcc.quant.table.file import file_sha256, load_table

from ..measure.machine import machine_info, source_revision
from ..measure.ort import float_nodes, profile_nodes
from . import quality, timing
from .peers.compare import arm_peers
from .targets import judge
from .tvm_variants import time_variants

ROOT = Path(__file__).resolve().parents[2]
FORMAT = "tcc-bench/1"

# (target, precision) bundles built and timed: every engine the issue compares
FULL_MATRIX = (
    ("ort", "fp32"),
    ("ort", "fp16"),
    ("ort", "int8"),
    ("ort", "dynamic"),
    ("host", "fp32"),
    ("host", "int8"),
    ("tflite", "fp32"),
    ("tflite", "int8"),
    ("arm-a7", "fp32"),
    ("arm-a7", "int8"),
    ("aarch64", "fp32"),
    ("aarch64", "int8"),
    ("aarch64-dotprod", "fp32"),
    ("aarch64-dotprod", "int8"),
)
# --peers: the peers' bundles (ORT, TFLite) and tcc's on their two AArch64 classes, added to any matrix
PEER_MATRIX = tuple((t, p) for t in ("ort", "tflite", "aarch64", "aarch64-dotprod") for p in ("fp32", "int8"))
# --quick: FP32 and INT8 on ONNX Runtime, TVM host, TFLite and ARMv7, in FULL_MATRIX's order
QUICK_MATRIX = tuple(
    (t, p) for t, p in FULL_MATRIX if t in ("ort", "host", "tflite", "arm-a7") and p in ("fp32", "int8")
)


def with_peer_bundles(matrix: tuple) -> tuple:
    """The matrix with the bundles the peers run and the ones they are compared with (PEER_MATRIX) added, in order."""
    return matrix + tuple(b for b in PEER_MATRIX if b not in matrix)


@dataclass
class BenchModel:
    key: str
    spec: Path
    weights: Path | None = None
    by_order: bool = False
    overrides: dict = field(default_factory=dict)


@dataclass
class BenchConfig:
    models: list[BenchModel]
    work: Path
    matrix: tuple = FULL_MATRIX
    rounds: int = 10
    runs: int = 20
    calib_images: int = 128
    held_out: int = 64
    method: str | None = None  # None: each model's default (its spec's `calibrate:` method, else auto)
    ort_methods: tuple = ("MinMax", "Entropy")
    memory: bool = True  # peak memory of calibration at a quarter of the samples and at all of them
    quick: bool = False
    tvm_variants: bool = False  # also TVM host FP32 without tcc's schedules, unfused, and with dlight
    peers: bool = False  # ARM: ONNX Runtime and LiteRT for AArch64 under qemu beside tcc's bundles (peers.measure)
    placement: bool = True  # the ort table's speed placement (tcc.quant.place.placer, --speed): ort-int8-placed
    threads: tuple = (1,)  # thread counts timed: 1 for every engine, each other count for the THREADED bundles


def default_models() -> list[BenchModel]:
    """The paper models: DDSNet with the authors' GC checkpoint when the fixtures are there, FastNet seeded."""
    gc = FIXTURES / "GC_DDS_0.0064.pth"
    return [
        BenchModel("ddsnet", ROOT / "spec" / "ddsnet.yaml", gc if gc.exists() else None, gc.exists()),
        BenchModel("fastnet", ROOT / "spec" / "fastnet.yaml"),
    ]


def quick_config(work: Path) -> BenchConfig:
    """One small model through every section, in about a minute: FastNet at 64 x 64 (seeded weights)."""
    return BenchConfig(
        [BenchModel("fastnet-64", ROOT / "spec" / "fastnet.yaml", overrides={"image_size": 64})],
        work,
        QUICK_MATRIX,
        rounds=3,
        runs=5,
        calib_images=16,
        held_out=8,
        method="kl",
        ort_methods=("MinMax",),
        memory=False,
        quick=True,
        placement=False,
    )


class Progress:
    """A tqdm bar on stderr over the run's steps (off when stderr is not a terminal unless forced)."""

    def __init__(self, total: int, enabled: bool | None):
        from tqdm import tqdm  # deferred for start-up: a bench without a terminal draws no bar

        self.bar = tqdm(
            total=total,
            file=sys.stderr,
            disable=not (sys.stderr.isatty() if enabled is None else enabled),
            dynamic_ncols=True,
        )

    def step(self, what: str) -> None:
        self.bar.set_description(what)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_bench(config: BenchConfig, progress: bool | None = None, log: Callable[[str], None] = lambda s: None) -> dict:
    if config.peers:
        config = replace(config, matrix=with_peer_bundles(config.matrix))
    steps = sum(4 + len(config.matrix) + config.placement + config.peers + config.rounds for _ in config.models)
    bar = Progress(steps, progress)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "quick": config.quick,
        "machine": machine_info(),
        "stamp": {"date": datetime.datetime.now(datetime.UTC).date().isoformat(), **source_revision()},
        "settings": {
            "threads": list(config.threads),
            "batch": 1,
            "rounds": config.rounds,
            "runs_per_round": config.runs,
            "calib_images": config.calib_images,
            "held_out": config.held_out,
            "method": config.method or "each model's default (its spec's `calibrate:` method, else auto)",
            "ort_methods": list(config.ort_methods),
        },
        "models": {},
    }
    started = time.perf_counter()
    try:
        for m in config.models:
            doc["models"][m.key] = bench_model(m, config, bar, log)
    finally:
        bar.close()
    doc["seconds"] = round(time.perf_counter() - started, 1)

    doc["targets"] = judge(doc)
    return doc


@dataclass
class _ModelBench:
    """One model's bench run: what its steps share, and the section of bench.json they fill (in order)."""

    m: BenchModel
    config: BenchConfig
    bar: Progress
    log: Callable[[str], None]
    fe: Frontend
    calib: CalibrationData  # the calibration crops
    held: CalibrationData  # the held-out crops every quality and latency number is taken on
    out: dict
    tables: dict[str, Path] = field(default_factory=dict)  # rules (and "ort-placed") -> its table file
    runners: dict = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return self.config.work / self.m.key

    @property
    def method(self) -> str:
        """tcc's calibration method for this model: the bench's --method, else the model's default."""
        return method_for(self.config.method, self.fe.model.calibrate)


def bench_model(m: BenchModel, config: BenchConfig, bar: Progress, log) -> dict:
    b = _start(m, config, bar, log)
    calibration = _calibrate(b)
    _quality(b, calibration)
    _builds(b)
    if config.peers:
        b.out["arm_peers"] = arm_peers(b.work / "bundles", b.held.array[:1], b.log)
        b.bar.step(f"{m.key}: ARM peers")
    _profile(b)
    if config.tvm_variants:
        b.out["tvm_variants"] = time_variants(b.fe.onnx, b.held.array, b.work / "variants", config.runs)
    _latency(b)
    return b.out


def _start(m: BenchModel, config: BenchConfig, bar: Progress, log) -> _ModelBench:
    """The model lowered, its calibration and held-out crops, and what bench.json says of it."""
    work = config.work / m.key
    fe = lower_spec(m.spec, m.overrides, Weights(m.weights, m.by_order))
    model = fe.model
    calib = load_calibration_data(
        make_crops(work / "calib", config.calib_images, 0), model.preprocess, model.input_shape, progress=False
    )
    held = load_calibration_data(
        make_crops(work / "held", config.held_out, 1), model.preprocess, model.input_shape, progress=False
    )
    bar.step(f"{m.key}: crops")
    summary = model.graph.summary()
    out: dict = {
        "spec": _rel(m.spec),
        "weights": _rel(m.weights) if m.weights else "seeded random (seed 0)",
        "overrides": m.overrides,
        "input": [1, *model.input_shape],
        "params": summary["params"],
        "macs": summary["macs"],
    }
    return _ModelBench(m, config, bar, log, fe, calib, held, out)


def _calibrate(b: _ModelBench) -> dict:
    """One table per rules the INT8 bundles need; the ort one is the timed comparison. Returns bench.json's
    "calibration" (tcc's; ONNX Runtime's are added by _quality)."""
    config, fp32, calib, model = b.config, b.fe.onnx, b.calib, b.fe.model
    weights = b.m.weights
    hashes = Provenance(spec_hash=model.spec_hash, weights_hash=file_sha256(weights) if weights else None)
    rules_needed = sorted({r for t, p in config.matrix if p == "int8" and (r := get_target(t).rules)})
    cal: dict = {"tcc": {}, "onnxruntime": {}}
    for rules in rules_needed:
        table, secs = quality.timed_calibration(fp32, calib, rules, b.method, hashes)
        path = b.work / f"calib-{rules}.json"
        table.save(path)
        b.tables[rules] = path
        cal["tcc"][rules] = {
            "method": table.method,
            "asked": b.method,
            "seconds": round(secs, 2),
            "samples": len(calib),
        }
    b.bar.step(f"{b.m.key}: calibration")
    if config.memory and "ort" in rules_needed:
        quarter = max(1, len(calib) // 4)
        cal["tcc"]["ort"]["peak_bytes"] = {
            str(n): quality.peak_memory(fp32, calib.array[:n], "ort", b.method) for n in (quarter, len(calib))
        }
    return cal


def _quality(b: _ModelBench, cal: dict) -> None:
    """INT8 against FP32 on the held-out crops: tcc's table, its speed placement, ONNX Runtime's quantize_static."""
    from tcc.quant.lower.qdq import to_qdq  # deferred for start-up: loads onnx

    config, fp32, tables, held = b.config, b.fe.onnx, b.tables, b.held
    qual = {}
    if "ort" in tables:
        qual[f"tcc {b.method}"] = quality.evaluate(
            fp32, to_qdq(fp32, load_table(tables["ort"]), compact=True), held.array
        )["ort"]
    if config.placement and "ort" in tables and any(t == "ort" and p == "int8" for t, p in config.matrix):
        placed, secs = quality.timed_placement(fp32, load_table(tables["ort"]), b.calib.array, b.log)
        tables["ort-placed"] = b.work / "calib-ort-placed.json"
        placed.save(tables["ort-placed"])
        p = placed.placement or {}
        b.out["placement"] = {
            "objective": "speed (ort), cosine floor " + str(p.get("objectives", {}).get("min_cos")),
            "seconds": round(secs, 2),
            "float_nodes": sorted(p.get("nodes", {})),
            **{k: p[k] for k in ("cos_before", "cos_after", "reference_cos_after", "profile") if k in p},
        }
        qual[f"tcc {b.method} + speed placement"] = quality.evaluate(
            fp32, to_qdq(fp32, placed, compact=True), held.array
        )["ort"]
    for method in config.ort_methods:
        q, secs = quality.ort_static(fp32, b.calib.array, method)
        cal["onnxruntime"][method] = {"seconds": round(secs, 2), "samples": len(b.calib)}
        qual[f"onnxruntime {method}"] = quality.evaluate(fp32, q, held.array)["ort"]
    b.out["calibration"] = cal
    b.out["quality"] = {"held_out": len(held), "vs": "FP32 (ONNX Runtime)", "results": qual}
    b.bar.step(f"{b.m.key}: quality")


def _builds(b: _ModelBench) -> None:
    """Every bundle of the matrix built (`tcc build`), and a runner for each that runs here."""
    m, config, held = b.m, b.config, b.held.array
    builds: dict = {}
    b.runners["pytorch-fp32"] = timing.torch_runner(b.fe.module, held)
    bundles: list[tuple[str, str, str, Path | None]] = [(t, p, f"{t}-{p}", None) for t, p in config.matrix]
    if "ort-placed" in b.tables:  # the same INT8 bundle with the speed placement, timed beside it
        bundles.append(("ort", "int8", "ort-int8-placed", b.tables["ort-placed"]))
    for target, precision, key, calib in bundles:
        folder = b.work / "bundles" / key
        builds[key] = _build_one(m, target, precision, b.tables, folder, b.log, calib)
        b.bar.step(f"{m.key}: build {key}")
        runner = runner_for(target, precision, folder, held) if "error" not in builds[key] else None
        if runner is not None:
            b.runners[key] = runner
        for threads in (t for t in config.threads if t != 1 and key in THREADED and runner is not None):
            b.runners[threaded(key, threads)] = runner_for(target, precision, folder, held, threads)
    if not config.quick and "seconds" in builds.get("arm-a7-fp32", {}):
        builds["arm-a7-fp32"]["command"] = command_build_seconds(m, "arm-a7", b.work / "bundles" / "arm-a7-cli")
    b.out["builds"] = builds
    b.bar.step(f"{m.key}: runners")


def _profile(b: _ModelBench) -> None:
    """Where ORT's INT8 time goes: the kernels still on float data."""
    if "ort-int8" not in b.runners:
        return
    import onnx  # deferred for start-up: loads onnx

    from tcc.quant.place.speed import placement_bound  # deferred for start-up: loads onnx

    prof = profile_nodes(onnx.load(b.work / "bundles" / "ort-int8" / "model.onnx"), b.held.array)
    b.out["ort_int8_profile"] = {
        "kernels": len(prof),
        "sum_us": round(sum(p["us"] for p in prof), 1),
        "float_nodes": float_nodes(prof),
        "placement_bound": placement_bound(b.fe.onnx, load_table(b.tables["ort"]), b.held.array),
    }


def _latency(b: _ModelBench) -> None:
    """Every runner timed in interleaved rounds, and the ratios taken round by round."""
    config = b.config
    per_round = timing.interleave(b.runners, config.rounds, config.runs, lambda: b.bar.step(f"{b.m.key}: latency"))
    b.out["latency_ms"] = {k: timing.spread(v) for k, v in per_round.items()}
    ratios = {
        **RATIOS,
        **{
            f"{key} {t} threads / 1 thread": (threaded(key, t), key)
            for t in config.threads
            if t != 1
            for key in THREADED
        },
    }
    b.out["latency_ratios"] = {
        name: r for name, (a, b_) in ratios.items() if (r := timing.ratio(per_round, a, b_)) is not None
    }


# the bundles timed at every thread count of --threads (PyTorch eager stays at one: its thread count is global)
THREADED = ("ort-fp32", "ort-int8", "host-fp32", "host-int8", "tflite-fp32", "tflite-int8")


def threaded(key: str, threads: int) -> str:
    """A bundle's runner key at another thread count than one: host-fp32@2t."""
    return f"{key}@{threads}t"


# ratios taken round by round: (numerator, denominator)
RATIOS = {
    "ort int8 / ort fp32": ("ort-int8", "ort-fp32"),
    "ort fp16 / ort fp32": ("ort-fp16", "ort-fp32"),
    "ort int8 placed / ort fp32": ("ort-int8-placed", "ort-fp32"),
    "ort int8 placed / ort int8": ("ort-int8-placed", "ort-int8"),
    "ort dynamic / ort fp32": ("ort-dynamic", "ort-fp32"),
    "host fp32 / ort fp32": ("host-fp32", "ort-fp32"),
    "host int8 / host fp32": ("host-int8", "host-fp32"),
    "host int8 / ort fp32": ("host-int8", "ort-fp32"),
    "tflite int8 / tflite fp32": ("tflite-int8", "tflite-fp32"),
    "pytorch fp32 / ort fp32": ("pytorch-fp32", "ort-fp32"),
}


def _build_one(m: BenchModel, target: str, precision: str, tables: dict, out: Path, log, calib=None) -> dict:
    """`tcc build` of one bundle: wall time by phase, artifact bytes, ARM instruction counts; or why it was
    skipped (a backend whose tools are missing here is a result, not a crash)."""
    tgt = get_target(target)
    count = bool(tgt.platform and tgt.platform.qemu)
    try:
        settings = BuildSettings(
            target,
            precision,
            weights=Weights(m.weights, m.by_order),
            overrides=m.overrides,
            int8=Int8Source(calib=(calib or tables.get(tgt.rules)) if precision == "int8" else None),
            tvm=TvmOptions(count_instructions=count),
        )
        r = build(m.spec, settings, out, force=True, log=log)
    except TccError as e:
        return {"error": str(e).splitlines()[0]}
    man = r.manifest
    res = {
        "seconds": {k: round(v, 2) for k, v in r.seconds.items()},
        "bytes": sum(f["bytes"] for name, f in man["files"].items() if name in man["artifacts"]),
        "artifact_bytes": man["files"][man["artifact"]]["bytes"],
    }
    checks = man.get("target_checks", {})
    if "instructions_per_inference" in checks:
        res["instructions"] = checks["instructions_per_inference"]
    if "cycles_per_inference" in checks:
        res["cycles"] = checks["cycles_per_inference"]
    return res


def command_build_seconds(m: BenchModel, target: str, out: Path) -> dict:
    """The wall time of the command a user types, `tcc build SPEC --target T` (FP32), run as its own process:
    interpreter start and imports included, no instruction count (the bench's own builds add one, in a process
    whose imports are warm). What the build-time target judges."""
    args = ["build", _rel(m.spec), "--target", target]
    if m.weights is not None:
        args += ["--weights", _rel(m.weights)] + (["--by-order"] if m.by_order else [])
    for k, v in m.overrides.items():
        args += ["--set", f"{k}={v}"]
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tcc", *args, "-o", str(out), "--force"], capture_output=True, text=True, cwd=ROOT
    )
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return {"argv": ["tcc", *args], "seconds": round(seconds, 2)}


def runner_for(target: str, precision: str, bundle: Path, x: np.ndarray, threads: int = 1):
    """The timing runner of a bundle that runs here, at `threads` threads; None for ARM modules and kits."""
    tgt = get_target(target)
    if tgt.backend == "ort":
        return timing.ort_runner(bundle / "model.onnx", x, threads)
    if tgt.backend == "tflite":
        return timing.litert_runner(bundle, x, threads)
    if tgt.backend == "tvm" and not (tgt.platform and tgt.platform.qemu):
        return timing.TvmRunner(bundle / "model.so", target, x, bundle / "kit" / "bin" / "tcc-run", threads)
    return None  # ARM modules: qemu cannot time them; their cost is the instruction count


def _rel(p) -> str:
    """A path as the README writes it: relative to the checkout (../shared/... for the fixtures beside it)."""
    p = Path(p).resolve()
    if p.is_relative_to(ROOT):
        return str(p.relative_to(ROOT))
    if p.is_relative_to(ROOT.parent):
        return "../" + str(p.relative_to(ROOT.parent))
    return str(p)
