"""The speed targets, judged on a bench result. Each names its bound (which may depend on the CPU class: 8-bit
dot products or not), the measured value and PASS / FAIL; a target whose measurement is missing from the run
(a section skipped, a backend not available here) is reported as not measured, never as passed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .peers.compare import tcc_vs_best_peer


@dataclass(frozen=True)
class Target:
    key: str
    what: str
    bound: Callable[[dict], float]  # from the machine record
    measure: Callable[[dict], float | None]  # from one model's record
    models: tuple[str, ...] | None = None  # None: every model benchmarked
    min_samples: int = 0  # calibration targets are stated for a sample count
    context: Callable[[dict], str | None] = lambda m: None  # what else the run measured that bears on it


def _ratio(*names: str) -> Callable[[dict], float | None]:
    """The first of `names` measured (the speed-placed ORT INT8 bundle before the plain one)."""

    def measure(m):
        for name in names:
            value = (m.get("latency_ratios", {}).get(name) or {}).get("median")
            if value is not None:
                return value
        return None

    return measure


def _build_seconds(key: str) -> Callable[[dict], float | None]:
    """The build's wall time as the user's command takes it (its own process: `command`), else the bench's
    in-process build without the instruction count and cycle estimate it adds (imports warm: a lower bound)."""

    def get(m: dict) -> float | None:
        b = m.get("builds", {}).get(key, {})
        if "seconds" in b.get("command", {}):
            return b["command"]["seconds"]
        phases = b.get("seconds") or {}
        total = phases.get("total")
        added = phases.get("target-checks/instruction-count", 0.0) + phases.get("target-checks/cycle-estimate", 0.0)
        return None if total is None else round(total - added, 2)

    return get


def _instruction_ratio(target: str, what: str = "instructions"):
    """INT8 / FP32 executed instructions (or estimated cycles: `what` "cycles") of one ARM target's two bundles."""

    def measure(m: dict) -> float | None:
        b = m.get("builds", {})
        i8, f32 = (b.get(f"{target}-{p}", {}).get(what) for p in ("int8", "fp32"))
        return i8["total"] / f32["total"] if i8 and f32 else None

    return measure


def _constant(bound: float) -> Callable[[dict], float]:
    return lambda mach: bound


def _peer_ratio(core: str, precision: str) -> Callable[[dict], float | None]:
    """tcc's estimated cycles on an AArch64 class over the best peer's (ORT, LiteRT) at the same precision."""

    def measure(m: dict) -> float | None:
        found = tcc_vs_best_peer(m, core, precision)
        return found[0] if found else None

    return measure


def _best_peer(core: str, precision: str) -> Callable[[dict], str | None]:
    def context(m: dict) -> str | None:
        found = tcc_vs_best_peer(m, core, precision)
        return f"the best peer: {found[1]}" if found else None

    return context


def _calibration_seconds(m: dict) -> float | None:
    return (m.get("calibration", {}).get("tcc", {}).get("ort") or {}).get("seconds")


def _memory_growth(m: dict) -> float | None:
    peaks = (m.get("calibration", {}).get("tcc", {}).get("ort") or {}).get("peak_bytes")
    if not peaks or len(peaks) < 2:
        return None
    counts = sorted(peaks, key=int)
    return peaks[counts[-1]] / peaks[counts[0]]


def _int8_cosine(m: dict) -> float | None:
    """Held-out mean cosine of the ORT INT8 bundle the latency target judges: the speed-placed one when built."""
    res = m.get("quality", {}).get("results", {})
    tcc = next((v for k, v in res.items() if k.startswith("tcc ") and k.endswith("placement")), None) or next(
        (v for k, v in res.items() if k.startswith("tcc ")), None
    )
    return tcc["cos_mean"] if tcc else None


def _placement_bound(m: dict) -> str | None:
    b = m.get("ort_int8_profile", {}).get("placement_bound")
    if not b:
        return None
    return (
        f"kernel time INT8 / FP32 {b['int8_ratio']}; with every node at the faster of its integer and float "
        f"kernels, conversions free: {b['bound_ratio']} ({len(b['integer_slower'])} integer kernels slower)"
    )


def _fastest(*names: str) -> Callable[[dict], float | None]:
    """The lowest of the ratios measured among `names` (the fastest of several bundles against one reference)."""

    def measure(m):
        values = [v for v in (_ratio(name)(m) for name in names) if v is not None]
        return min(values) if values else None

    return measure


TARGETS = (
    Target("host-fp32", "TVM host FP32 latency / ORT FP32", lambda mach: 0.9, _ratio("host fp32 / ort fp32")),
    Target(
        "host-int8",
        "TVM host INT8 latency / TVM host FP32",
        lambda mach: 0.5 if mach["int8_dot"] else 1.0,
        _ratio("host int8 / host fp32"),
    ),
    Target(
        "fastest-int8",
        "fastest tcc INT8 latency (TVM host, ORT, ORT placed) / ORT FP32",
        lambda mach: 0.35 if mach["int8_dot"] else 0.55,
        _fastest("host int8 / ort fp32", "ort int8 / ort fp32", "ort int8 placed / ort fp32"),
        models=("ddsnet",),
    ),
    Target(
        "ort-int8",
        "ORT INT8 latency / ORT FP32 (with the speed placement where built)",
        lambda mach: 0.45 if mach["int8_dot"] else 0.6,
        _ratio("ort int8 placed / ort fp32", "ort int8 / ort fp32"),
        context=_placement_bound,
    ),
    Target(
        "ort-int8-cosine", "ORT INT8 output cosine vs FP32 (held-out mean), at least", lambda mach: 0.9995, _int8_cosine
    ),
    Target(
        "build-arm-a7",
        "`tcc build --target arm-a7` wall seconds",
        lambda mach: 10.0,
        _build_seconds("arm-a7-fp32"),
        models=("ddsnet",),
    ),
    Target(
        "calibration",
        "calibration seconds (128 samples, the model's default method: DDSNet's spec names kl+cos)",
        lambda mach: 15.0,
        _calibration_seconds,
        models=("ddsnet",),
        min_samples=128,
    ),
    Target(
        "calibration-memory",
        "calibration peak memory, all samples / a quarter of them",
        lambda mach: 1.25,
        _memory_growth,
    ),
    Target(
        "arm-a7-int8-instructions",
        "arm-a7 INT8 executed instructions / FP32",
        lambda mach: 0.5,
        _instruction_ratio("arm-a7"),
    ),
    Target(
        "aarch64-int8-instructions",
        "aarch64 (ARMv8.0) INT8 executed instructions / FP32",
        lambda mach: 0.5,
        _instruction_ratio("aarch64"),
    ),
    Target(
        "aarch64-dotprod-int8-instructions",
        "aarch64-dotprod (ARMv8.2, A55) INT8 executed instructions / FP32",
        lambda mach: 0.3,
        _instruction_ratio("aarch64-dotprod"),
    ),
    Target(
        "arm-a7-int8-cycles",
        "arm-a7 INT8 / FP32 estimated cycles (Cortex-A7; the Cortex-R52's LLVM model stands in)",
        lambda mach: 0.4,
        _instruction_ratio("arm-a7", "cycles"),
    ),
    *(
        Target(
            f"peers-{core}-{precision}",
            f"tcc {precision.upper()} / the best peer's {precision.upper()} (ORT, LiteRT), estimated Cortex-"
            f"{core.upper()} cycles",
            _constant(bound),
            _peer_ratio(core, precision),
            context=_best_peer(core, precision),
        )
        for core, precision, bound in (
            ("a53", "int8", 0.7),
            ("a55", "int8", 0.6),
            ("a53", "fp32", 0.9),
            ("a55", "fp32", 0.9),
        )
    ),
    Target(
        "threads-host",
        "TVM host FP32 latency, 2 threads / 1 thread",
        lambda mach: 0.6,
        _ratio("host-fp32 2 threads / 1 thread"),
        models=("ddsnet",),
    ),
    Target(
        "threads-ort",
        "ORT FP32 latency, 2 threads / 1 thread",
        lambda mach: 0.6,
        _ratio("ort-fp32 2 threads / 1 thread"),
        models=("ddsnet",),
    ),
)
AT_LEAST = {"ort-int8-cosine"}


def judge(doc: dict) -> list[dict]:
    rows = []
    machine = doc["machine"]
    samples = doc["settings"]["calib_images"]
    for t in TARGETS:
        for key, m in doc["models"].items():
            if t.models is not None and key not in t.models:
                continue
            bound = t.bound(machine)
            value = t.measure(m) if samples >= t.min_samples else None
            if value is None:
                status = "not measured"
            elif t.key in AT_LEAST:
                status = "PASS" if value >= bound else "FAIL"
            else:
                status = "PASS" if value <= bound else "FAIL"
            rows.append(
                {
                    "target": t.key,
                    "model": key,
                    "what": t.what,
                    "bound": bound,
                    "measured": None if value is None else round(float(value), 4),
                    "status": status,
                    "isa_class": machine["isa_class"],
                }
            )
            if (note := t.context(m)) is not None:
                rows[-1]["context"] = note
    return rows
