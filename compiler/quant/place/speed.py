"""The speed objective of the placement step, for ONNX Runtime: keep in float the nodes whose integer kernel is
slower than float on this CPU, where the float island, conversions included, measured cheaper.

All from ONNX Runtime's own profiler (tcc.measure.ort: per-kernel median times, 1 thread, batch 1) on the
CPU the step runs on, never from a list (which kernels pay off depends on the instruction set: on AVX2 without
VNNI the u8s8 kernels multiply through saturating 16-bit pairs, and ORT's depthwise and 3-channel kernels lose to
its float ones; with VNNI they mostly win):

1. candidates: the nodes whose integer kernel in the INT8 model (its QDQ, as ORT fuses it) takes longer than the
   same node's float kernel in the FP32 model, of the kinds placement weighs (tcc.intops.IntOp.placeable: the ones
   that compute; a move's kernel is never an island, whatever it measured);
2. islands cost more than their float kernel: a float island in ORT's integer graph is a layout change (its integer
   kernels run NHWC, its float convs NCHWc), the dequantize, the float kernel, the quantize and the layout change
   back. The INT8 model with every candidate in float is profiled, its kernels cut into runs between integer
   kernels, and a run is kept where it costs less than the integer kernels of the islands in it (measured in the
   INT8 model); repeated until the kept set is stable (at most ROUNDS profiles);
3. the whole placed model must measure faster than the INT8 model without it (interleaved rounds, the median of
   per-round ratios at most ACCEPT), else no node is kept for speed.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from tcc.measure.machine import machine_info
from tcc.measure.ort import profile_nodes

from ...measure.timing import interleave, ort_runner, ratio
from ..intgraph.match import plan, quantized_form
from ..lower.qdq import to_qdq
from ..table.file import CalibrationTable
from ..table.placement import placement_doc, with_placement

ROUNDS = 3  # profiles of the placed model at most (the kept set is usually stable after the first)
MARGIN = 0.9  # a run of island kernels is kept when it costs less than this share of the integer kernels it replaces
ACCEPT = 0.97  # the placed model must measure at most this share of the INT8 model's time (timing noise on a shared
# machine is a few percent round to round: a smaller gain is not told apart from none)
LAYOUT_KERNELS = ("Transpose", "ReorderInput", "ReorderOutput")  # what ORT inserts between NHWC and NCHW(c) kernels
SUFFIX = re.compile(r"(_token_\d+|_nchwc|_nchw)+$")


def _names(graph) -> dict[str, str]:
    """Node and tensor names -> the anchor of the integer graph node that computes them."""
    out = {}
    for n in graph.nodes:
        for name in (*n.covers, *n.outputs, *n.internal, n.name):
            out[name] = n.name
    return out


def anchor_of(kernel: str, names: dict[str, str]) -> str | None:
    """The integer-graph node a profiled kernel belongs to: ORT names fused kernels after a node it fused (+
    "_token_N", "_nchwc"); tcc names Q/DQ nodes after their tensor (+ "/quantize", ...)."""
    base = SUFFIX.sub("", kernel)
    if base in names:
        return names[base]
    base = base.split("/")[0]
    return names.get(base)


def _profile(model, x, runs: int) -> list[dict]:
    return profile_nodes(model, x, runs)


def _times(prof: list[dict], names: dict[str, str], floating: bool | None) -> dict[str, float]:
    """Per node: the summed median time of its kernels (floating: only float-typed ones / only integer ones)."""
    out: dict[str, float] = {}
    for p in prof:
        a = anchor_of(p["node"], names)
        is_float = "float" in p["in"] + p["out"]
        if a is not None and (floating is None or floating == is_float):
            out[a] = out.get(a, 0.0) + p["us"]
    return out


def island_runs(prof: list[dict], names: dict[str, str], islands: set[str]) -> list[tuple[set[str], float]]:
    """The placed model's kernels cut at integer kernels: (the islands whose float kernel is in the run, the run's
    time) for every run of float-typed and layout kernels that holds one."""
    runs, current, cost = [], set(), 0.0
    for p in prof + [{"node": "", "op": "", "in": ["int"], "out": ["int"], "us": 0.0}]:
        is_float = "float" in p["in"] + p["out"]
        if is_float or p["op"] in LAYOUT_KERNELS:
            cost += p["us"]
            a = anchor_of(p["node"], names)
            if is_float and a in islands:
                current.add(a)
            continue
        if current:
            runs.append((current, cost))
        current, cost = set(), 0.0
    return runs


def speed_nodes(
    fp32: onnx.ModelProto,
    table: CalibrationTable,
    base: set,
    x: np.ndarray,
    log: Callable[[str], None] = lambda s: None,
    runs: int = 30,
) -> tuple[dict, dict]:
    """({node: {"int8_us", "float_us"}} kept in float for speed, the profile record) on top of the float nodes
    `base`, measured with ONNX Runtime on sample x [1, ...]."""
    fp32 = quantized_form(fp32, table.rules)  # the graph the table describes

    def placed(floats, compact=False):
        return to_qdq(fp32, with_placement(table, placement_doc(set(floats))), compact=compact)

    graph = plan(fp32, rules=table.rules, floats=base)
    names = _names(graph)
    int8_prof = _profile(placed(base), x, runs)
    t8 = _times(int8_prof, names, floating=False)
    tf = _times(_profile(fp32, x, runs), names, floating=None)
    candidates = {
        n.name for n in graph.nodes if n.integer and n.op.placeable and t8.get(n.name, 0.0) > tf.get(n.name, np.inf)
    }
    log(f"placement (speed): {len(candidates)} node(s) whose ORT integer kernel is slower than its float twin here")
    kept = set(candidates)
    numbers: dict[str, dict[str, float]] = {}
    for _ in range(ROUNDS):
        if not kept:
            break
        prof = _profile(placed(base | kept), x, runs)
        keep, numbers = set(), {}
        for members, cost in island_runs(prof, names, kept):
            saved = sum(t8.get(m, 0.0) for m in members)
            if cost < MARGIN * saved:
                keep |= members
                for m in members:
                    numbers[m] = {"int8_us": round(t8[m], 1), "float_us": round(cost * t8[m] / saved, 1)}
        if keep == kept:
            break
        kept = keep
    numbers = {m: v for m, v in numbers.items() if m in kept}
    record = {
        "runtime": "onnxruntime",
        "machine": {k: v for k, v in machine_info().items() if k in ("cpu", "isa", "isa_class", "int8_dot")},
        "candidates": len(candidates),
        "kept": len(kept),
    }
    if kept:
        ratio = _measured_ratio(placed(base | kept, True), placed(base, True), x)
        record["latency_ratio_vs_int8"] = round(ratio, 4)
        if ratio >= ACCEPT:
            log(f"placement (speed): the placed model measured {ratio:.3f}x the INT8 model's time: nothing kept")
            kept, numbers = set(), {}
            record["kept"] = 0
    log(f"placement (speed): {len(kept)} node(s) kept in float")
    return {m: numbers[m] for m in sorted(kept)}, record


def placement_bound(fp32: onnx.ModelProto, table: CalibrationTable, x: np.ndarray, runs: int = 30) -> dict:
    """What any per-op precision placement could reach on ONNX Runtime on this CPU: every node of the INT8 model
    at the faster of its integer kernels (the INT8 model's profile) and its float kernel (the FP32 model's), the
    conversions between them free, the INT8 model's other kernels (the input's quantize, layout changes) as
    measured. Kernel times summed (1 thread, medians), so the ratio is of kernel time, not of wall time: a
    latency bound below it cannot be met by placement with these kernels."""
    fp32 = quantized_form(fp32, table.rules)  # the graph the table describes (its FP32 profile too)
    graph = plan(fp32, rules=table.rules)
    names = _names(graph)
    int8_prof, fp32_prof = _profile(to_qdq(fp32, table), x, runs), _profile(fp32, x, runs)
    t8, tf = _times(int8_prof, names, floating=False), _times(fp32_prof, names, floating=None)
    attributed = sum(t8.values())
    int8_us, fp32_us = sum(p["us"] for p in int8_prof), sum(p["us"] for p in fp32_prof)
    bound_us = int8_us - attributed + sum(min(t, tf.get(a, t)) for a, t in t8.items())
    return {
        "fp32_us": round(fp32_us, 1),
        "int8_us": round(int8_us, 1),
        "bound_us": round(bound_us, 1),
        "int8_ratio": round(int8_us / fp32_us, 4),
        "bound_ratio": round(bound_us / fp32_us, 4),
        "integer_slower": sorted(a for a, t in t8.items() if t > tf.get(a, t)),
    }


def _measured_ratio(a: onnx.ModelProto, b: onnx.ModelProto, x: np.ndarray, rounds: int = 7, runs: int = 15) -> float:
    """Median over interleaved rounds of latency(a) / latency(b), 1 thread, batch 1 (tcc.benchmark.timing)."""
    with tempfile.TemporaryDirectory() as d:
        paths = {k: Path(d) / f"{k}.onnx" for k in "ab"}
        for k, m in (("a", a), ("b", b)):
            onnx.save(m, paths[k])
        per_round = interleave({k: ort_runner(p, x) for k, p in paths.items()}, rounds, runs)
    spread_ab = ratio(per_round, "a", "b")
    assert spread_ab is not None  # both were timed
    return float(spread_ab["median"])
