"""How a golden entry's output now is judged against the stored outputs (one function per `Entry.rule`).

Each returns a `Verdict`: passed, the numbers (recorded in golden.json when the entry is stored), and on failure one
line per input naming the input and its worst element. Tolerances come from tcc.tolerance (the build's policy) and,
for `measured` entries, from the entry's record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..build import int8_self_check
from ..bundle import stable_float
from ..tolerance import TOLERANCES, compare

# measured entries (fp16, dynamic): a correct run on another CPU differs from the stored one because its kernels sum
# in another order, and float16 casts and run-time quantization can turn that float32 rounding into a flipped code
# or float16 ulp at a tie. The tolerance, as a fraction of the output's scale, is the largest of three things
# measured when the entry is stored:
# - NOISE_FACTOR x the output change when the stored inputs are perturbed by a relative PERTURB_RELATIVE (about 8
#   float32 ulps: more than any reordering moves an activation), PERTURB_SEEDS times. This is blind to float16
#   inputs, whose cast absorbs it;
# - DISTANCE_FRACTION x the entry's own distance to PyTorch FP32. Flipped float16 ulps or codes are a small part of
#   that distance; a real change (another float16 conversion rule, another dynamic quantizer) moves the output by a
#   good part of it;
# - FP32_ALLOWANCE_FACTOR x the FP32 policy's bound on the same inputs: two correct float32 runs may each be that
#   far from the exact function.
PERTURB_RELATIVE = 1e-6
PERTURB_SEEDS = 3
NOISE_FACTOR = 4.0
DISTANCE_FRACTION = 0.25
FP32_ALLOWANCE_FACTOR = 2.0


@dataclass
class Verdict:
    passed: bool
    numbers: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        keys = (
            "max_abs_over_bound",
            "bit_exact",
            "max_lsb",
            "max_abs_over_scale",
            "tolerance",
            "cosine_mean",
            "top1",
            "changed",
            "tensors",
            "max_range_change",
        )
        return ", ".join(f"{k} {self.numbers[k]}" for k in keys if k in self.numbers)


def _worst(a: np.ndarray, r: np.ndarray) -> str:
    d = np.abs(np.asarray(a, np.float64) - np.asarray(r, np.float64))
    idx = np.unravel_index(int(np.argmax(d)), d.shape)
    return f"output{list(map(int, idx))} = {float(a[idx]):.7g}, stored {float(r[idx]):.7g}"


def fp32(got, r32, r64, names) -> Verdict:
    """Per input, the FP32 policy against the stored PyTorch float32 and float64 outputs."""
    worst_ratio, failures, cos = 0.0, [], []
    for i, name in enumerate(names):
        c = compare(got[i], r32[i], "fp32", exact=r64[i])
        if "error" in c:
            return Verdict(False, {}, [f"input {name}: {c['error']}"])
        ratio = float(c["max_abs_vs_float64"]) / float(c["bound"]) if float(c["bound"]) else 0.0
        worst_ratio = max(worst_ratio, ratio if np.isfinite(ratio) else np.inf)
        cos.append(float(c["cosine"]))
        if not c["passed"]:
            failures.append(
                f"input {name}: max |a - r64| {c['max_abs_vs_float64']} > bound {c['bound']} at "
                + _worst(got[i], r64[i]).replace("stored", "stored float64")
            )
    return Verdict(
        not failures,
        {
            "max_abs_over_bound": stable_float(worst_ratio),
            "cosine_min": stable_float(min(cos), 7),
            "rule": TOLERANCES["fp32"]["rule"],
        },
        failures,
    )


def bit_exact(got, stored, names, lsb: float | None) -> Verdict:
    got, stored = np.asarray(got), np.asarray(stored)
    if got.shape != stored.shape:
        return Verdict(False, {}, [f"output shape {list(got.shape)}, stored {list(stored.shape)}"])
    failures = []
    for i, name in enumerate(names):
        if not np.array_equal(got[i], stored[i]):
            d = np.abs(got[i].astype(np.float64) - stored[i].astype(np.float64))
            n = int(np.count_nonzero(d))
            in_lsb = f", {float(d.max()) / lsb:.3g} LSB" if lsb else ""
            failures.append(
                f"input {name}: {n} of {d.size} elements differ (max {float(d.max()):.4g}{in_lsb}); "
                f"worst {_worst(got[i], stored[i])}"
            )
    max_lsb = float(np.abs(got.astype(np.float64) - stored.astype(np.float64)).max()) / lsb if lsb else None
    return Verdict(
        not failures,
        {"bit_exact": not failures, **({"max_lsb": stable_float(max_lsb)} if max_lsb is not None else {})},
        failures,
    )


def per_op(got, x, produced, stored_reference, names, exact: bool = False) -> Verdict:
    """Every integer op within TOLERANCES['int8']['lsb_tolerance'] of the reference op on the backend's own codes
    (gated: what ONNX Runtime documents and the build checks); end to end vs the stored reference (recorded).
    exact: an exact backend whose float islands kept it from the reference's bits: integer ops bit-exact, islands
    within TOLERANCES['int8']['island_lsb_tolerance'] (the build's rule, tcc.tolerance)."""
    check = int8_self_check(got, got, produced.qgraph, x, exact, None, produced.codes)["result"]
    lsb = produced.qgraph.output_scales[produced.qgraph.outputs[0]]
    e2e = float(np.abs(np.asarray(got, np.float64) - np.asarray(stored_reference, np.float64)).max()) / lsb
    p = check["per_op"]
    numbers = {
        "max_lsb": p["max_lsb"],
        "worst_op": p["worst_op"],
        "ops_checked": p["ops_checked"],
        "end_to_end_lsb_vs_reference": stable_float(e2e),
        "rule": check["required"],
    }
    failures = (
        []
        if check["passed"]
        else [
            f"op {p['worst_op']!r} is {p['max_lsb']} LSB from the reference op on the backend's own codes (at most "
            f"{TOLERANCES['int8']['lsb_tolerance']}; {p['ops_checked']} of {len(produced.qgraph.nodes)} ops checked) "
            f"on inputs {', '.join(names)}"
        ]
    )
    return Verdict(check["passed"], numbers, failures)


def measure_noise(produced, x: np.ndarray) -> float:
    """The largest scale-relative change of the artifact's output under PERTURB_RELATIVE input perturbations."""
    base = np.asarray(produced.output, np.float64)
    worst = 0.0
    for seed in range(PERTURB_SEEDS):
        u = np.random.default_rng(1000 + seed).uniform(-1, 1, x.shape)
        y = np.asarray(produced.rerun((x * (1 + PERTURB_RELATIVE * u)).astype(np.float32)), np.float64)
        for i in range(len(x)):
            scale = float(np.abs(base[i]).max()) or 1.0
            worst = max(worst, float(np.abs(y[i] - base[i]).max()) / scale)
    return worst


def measured_tolerance(noise: float, got, r32, r64) -> tuple[float, dict]:
    """(tolerance, how it was made) for a measured entry whose output on the stored inputs is `got`."""
    distance, allowance = 0.0, 0.0
    for i in range(len(got)):
        scale = float(np.abs(r32[i]).max()) or 1.0
        distance = max(distance, float(np.abs(np.asarray(got[i], np.float64) - r32[i]).max()) / scale)
        c = compare(r32[i], r32[i], "fp32", exact=r64[i])
        allowance = max(allowance, float(c["bound"]) / scale)
    parts = {
        "perturbation_noise": stable_float(noise),
        "distance_to_fp32": stable_float(distance),
        "fp32_allowance": stable_float(allowance),
    }
    tol = max(NOISE_FACTOR * noise, DISTANCE_FRACTION * distance, FP32_ALLOWANCE_FACTOR * allowance)
    return float(stable_float(tol)), parts


def measured(got, stored_self, r32, names, precision: str, tolerance: float) -> Verdict:
    """Against its own stored output within the stored tolerance (scale-relative), and against PyTorch FP32 by the
    build's rule for `precision`."""
    failures, worst = [], 0.0
    for i, name in enumerate(names):
        scale = float(np.abs(stored_self[i]).max()) or 1.0
        d = float(np.abs(np.asarray(got[i], np.float64) - stored_self[i]).max()) / scale
        worst = max(worst, d)
        if not d <= tolerance:
            failures.append(
                f"input {name}: max |a - stored| / scale {d:.3g} > {tolerance:.3g} (measured once); "
                f"worst {_worst(got[i], stored_self[i])}"
            )
        c = compare(got[i], r32[i], precision)
        if not c["passed"]:
            failures.append(
                f"input {name}: against PyTorch FP32 {c} fails the {precision} rule ({TOLERANCES[precision]['rule']})"
            )
    return Verdict(not failures, {"max_abs_over_scale": stable_float(worst), "tolerance": tolerance}, failures)


def _agreement(a: np.ndarray, r: np.ndarray) -> float:
    """Top-1 agreement of one input's output: its class (1 or 0), or for a dense [C, H, W] output the fraction of
    positions whose class (the argmax over C) agrees."""
    if a.ndim >= 2:
        return float(np.mean(a.argmax(axis=0) == r.argmax(axis=0)))
    return float(int(np.argmax(a)) == int(np.argmax(r)))


def vs_fp32(got, r32, names, floor: dict | None) -> Verdict:
    """INT8 against FP32: per-input cosine (mean, min) and top-1 agreement (per position for a dense output),
    against the model's floor."""
    cos, top = [], []
    for i in range(len(names)):
        a, r = np.asarray(got[i], np.float64).ravel(), np.asarray(r32[i], np.float64).ravel()
        na, nr = np.linalg.norm(a), np.linalg.norm(r)
        cos.append(float(a @ r / (na * nr)) if na and nr else float(na == nr))
        top.append(_agreement(np.asarray(got[i], np.float64), np.asarray(r32[i], np.float64)))
    numbers = {
        "cosine_mean": stable_float(float(np.mean(cos)), 6),
        "cosine_min": stable_float(min(cos), 6),
        "top1": stable_float(float(np.mean(top))),
    }
    failures = []
    if floor is not None:
        if float(np.mean(cos)) < floor["cosine"]:
            worst = int(np.argmin(cos))
            failures.append(
                f"INT8 vs FP32 cosine {np.mean(cos):.6f} (mean) is below the floor {floor['cosine']}; "
                f"lowest on input {names[worst]} ({cos[worst]:.6f})"
            )
        if float(np.mean(top)) < floor["top1"]:
            missed = [
                f"{names[i]}" + (f" ({t:.3f})" if 0 < t < 1 else "") for i, t in enumerate(top) if t < floor["top1"]
            ]
            failures.append(
                f"INT8 top-1 agreement {np.mean(top):.3f} is below the floor {floor['top1']} "
                f"(class changed on {', '.join(missed)})"
            )
    return Verdict(not failures, numbers, failures)


# calibration: activation ranges come from histograms and a discrete search (a KL threshold bin, a cosine-search
# step of 1.5% of the scale: 100 factors over [0.5, 2]), and kl+cos searches weight scales on the same grid, so
# float32 rounding on another CPU can move one to the next bin or step. SCALE_RANGE_RTOL allows one step (not
# measured across CPUs: no second CPU class was available); a changed method moves ranges by far more
# (docs/notes/golden-scale-tolerances.md).
SCALE_RANGE_RTOL = 0.02
WEIGHT_SCALE_RTOL = 0.02  # kl+cos's weight step; without it a weight scale is max |w| / 127, exact
# The weight search maximises a layer's cosine over 100 scales per channel; one channel's share of the layer's
# cosine is tiny, so its optimum is flat and float32 rounding on another CPU class can move the choice far while the
# layer's cosine barely moves (docs/notes/golden-scale-tolerances.md). A weight move beyond WEIGHT_SCALE_RTOL is
# therefore an equal optimum when the layer's searched cosine is within LAYER_COS_TIE of the stored one.
LAYER_COS_TIE = 1e-6


def _range(t: dict) -> tuple[float, float]:
    bits = int(t.get("bits", 8))
    qmin = -(1 << (bits - 1)) if t["signed"] else 0
    qmax = qmin + (1 << bits) - 1
    s, zp = float(t["scale"]), int(t["zero_point"])
    return (qmin - zp) * s, (qmax - zp) * s


def _equal_optimum(name: str, layers_now: dict, layers_stored: dict) -> str | None:
    """Why a moved weight scale is as good as the stored one (its layer's searched cosine is not lower), or None."""
    layer = next((k for k, v in layers_stored.items() if v.get("weight") == name), None)
    if layer is None or layer not in layers_now:
        return None
    a, b = layers_stored[layer].get("cos_after"), layers_now[layer].get("cos_after")
    if a is None or b is None or b < a - LAYER_COS_TIE:
        return None
    return f"layer {layer}'s searched cosine {b:.7f}, stored {a:.7f}: an equal optimum"


def scales(now: dict, stored: dict, layers_now: dict | None = None, layers_stored: dict | None = None) -> Verdict:
    """Every tensor of the stored table against the table made now ({name: entry} of each).

    `layers_now` / `layers_stored`: the tables' "layers" records; with them, a weight scale moved beyond
    WEIGHT_SCALE_RTOL passes when its layer's searched cosine is within LAYER_COS_TIE of the stored one."""
    changes, failures = [], []
    for name, t in stored.items():
        n = now.get(name)
        if n is None or n["kind"] != t["kind"]:
            failures.append(f"tensor {name}: in the stored table ({t['kind']}), not in the table made now")
            continue
        if t["kind"] == "weight":
            a, b = np.asarray(t["scale"], np.float64), np.asarray(n["scale"], np.float64)
            rel = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-30))) if a.shape == b.shape else np.inf
            limit = WEIGHT_SCALE_RTOL
            text = f"weight scales moved by up to {rel:.3g} (relative)"
            tie = _equal_optimum(name, layers_now or {}, layers_stored or {}) if rel > limit else None
            if tie:
                limit, text = np.inf, f"{text}; {tie}"
        else:
            (lo0, hi0), (lo1, hi1) = _range(t), _range(n)
            width = max(hi0 - lo0, 1e-30)
            rel = max(abs(lo1 - lo0), abs(hi1 - hi0)) / width
            limit = SCALE_RANGE_RTOL
            text = f"range [{lo0:.5g}, {hi0:.5g}] -> [{lo1:.5g}, {hi1:.5g}] ({100 * rel:.2f}% of its width)"
        if rel > 0:
            changes.append((rel, name, text, rel > limit))
    for name in sorted(set(now) - set(stored)):
        failures.append(f"tensor {name}: in the table made now, not in the stored table")
    changes.sort(key=lambda c: (-c[0], c[1]))
    failures += [f"tensor {name}: {text}" for _, name, text, bad in changes if bad]
    numbers = {
        "tensors": len(stored),
        "changed": len(changes),
        "max_range_change": stable_float(max((c[0] for c in changes), default=0.0)),
    }
    notes = [f"tensor {name}: {text} (within tolerance)" for _, name, text, bad in changes[:5] if not bad]
    v = Verdict(not failures, numbers, failures)
    v.numbers["notes"] = notes
    return v
