"""The placement step: after calibration (and the steps that refine its table), choose the few nodes of the INT8
graph to keep in float (float islands), recorded in the table (tcc.quant.table.placement).

    table = place(fp32, table, data, PlaceOptions(min_cos=0.9999))          # an accuracy floor
    table = place(fp32, table, data, PlaceOptions(speed="ort"))             # + ORT speed (floor 0.9995)

One step, two objectives, applied in this order on top of the nodes pinned by hand (`keep_float`):
- speed (`--speed`, ONNX Runtime): the integer kernels that ORT's profiler measures slower than their float twins on
  this CPU are kept in float where the island, its dequantize / quantize and layout changes included, measured
  cheaper than the integer kernel, and the whole model measured faster (tcc.quant.place.speed). The choice follows
  the profile of the CPU it runs on, never a list;
- accuracy (`--min-cos C`, `--min-worst-cos W`): while the mean output cosine against FP32 on the search samples is
  below C, or the lowest per-sample cosine below W, the node with the best measured gain per cost is added; the gain
  is what the node takes off the shortfall (C - mean)+ + (W - worst)+, so a floor already met counts no more. A
  node's gain is the output cosine gained with that node alone in float
  (every candidate measured once, end to end); its cost is what keeping it in float costs an integer target, its
  multiply-accumulates (conv / gemm) or output elements (the rest). Greedy by measured sensitivity per cost, as
  mixed-precision searches do (HAWQ's sensitivity / size, Pulsar2's per-layer precision table): one evaluation per
  candidate, then one per node added; the nodes' interactions are measured as they are added, never assumed.

The search evaluates with ONNX Runtime running the QDQ model as float fake-quant (tcc.quant.lower.qdq: equation (8) at every
quantization point, within one LSB per op of the integer reference and two orders of magnitude faster); the result
is then judged by the integer reference itself on the same samples, and nodes are added (judged by the reference)
until it reaches the floor too. Deterministic: the same table and data give the same placement, except for the
speed objective, which measures time (the table records what it measured).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx

from ...errors import DataError
from ..intgraph.plan import IntGraph, plan, quantized_form
from ..intgraph.qgraph import quantize_graph
from ..intgraph.reference import Reference
from ..lower.qdq import to_qdq
from ..report.quality import per_sample_cosine, run_ort
from ..table.file import CalibrationTable
from ..table.placement import KEY, float_nodes, placement_doc, with_placement
from ..table.rules import get_rules
from .speed import speed_nodes

SPEED_FLOOR = 0.9995  # the floor for the speed objective: ORT INT8 output cosine vs FP32 at least this
ROUNDS = 3  # ranking passes of the accuracy greedy
HEAVY_SHARE = 0.5  # a placement keeping more of the model's cost than this in float is warned about


@dataclass(frozen=True)
class PlaceOptions:
    min_cos: float | None = None  # the output cosine floor (mean over the search samples)
    min_worst_cos: float | None = None  # the floor of the lowest per-sample output cosine on the search samples
    speed: str | None = None  # "ort": keep in float what ORT's integer kernels run slower than float on this CPU
    keep_float: tuple[str, ...] = ()  # nodes pinned in float by hand
    samples: int = 16  # calibration samples the search judges on (a seeded subset)
    seed: int = 0

    @property
    def active(self) -> bool:
        return (self.min_cos is not None or self.min_worst_cos is not None or self.speed is not None
                or bool(self.keep_float))

    @property
    def floor(self) -> float | None:
        return self.min_cos if self.min_cos is not None else (SPEED_FLOOR if self.speed else None)

    def shortfall(self, score: "Score") -> float:
        """How far `score` is below the floors (0: every floor met)."""
        short = 0.0
        if self.floor is not None:
            short += max(self.floor - score.mean, 0.0)
        if self.min_worst_cos is not None:
            short += max(self.min_worst_cos - score.worst, 0.0)
        return short

    def gain(self, old: "Score", new: "Score") -> float:
        """What `new` gains on `old` in the objectives `old` misses, or in all of them where it misses none (a ranking
        by fake-quant, which may meet the floors while the integer reference does not); the mean's gain alone with
        --min-cos only."""
        means, worsts = self.floor is not None, self.min_worst_cos is not None
        missed = (means and old.mean < self.floor, worsts and old.worst < self.min_worst_cos)
        if any(missed):
            means, worsts = missed
        return (new.mean - old.mean if means else 0.0) + (new.worst - old.worst if worsts else 0.0)


@dataclass(frozen=True)
class Score:
    """Output cosine vs FP32 on the search samples: the mean and the lowest per-sample value."""

    mean: float
    worst: float

    @classmethod
    def of(cls, cosines: np.ndarray) -> "Score":
        return cls(float(np.mean(cosines)), float(np.min(cosines)))

    def __str__(self) -> str:
        return f"{self.mean:.6f} (worst sample {self.worst:.6f})"


def check_options(options: PlaceOptions, rules: str) -> None:
    """User mistakes in the placement options, before any calibration work."""
    for flag, value in (("--min-cos", options.min_cos), ("--min-worst-cos", options.min_worst_cos)):
        if value is not None and not 0.0 < value <= 1.0:
            raise DataError(f"{flag} {value}: a cosine floor lies in (0, 1]")
    if options.speed not in (None, "ort"):
        raise DataError(f"--speed {options.speed!r}: the speed objective measures ONNX Runtime's kernels ('ort')")
    if options.speed and rules != "ort":
        raise DataError(f"--speed measures ONNX Runtime's integer kernels: it applies to tables for the ort rules, "
                        f"not {rules!r}")
    if options.samples < 1:
        raise DataError(f"--place-samples must be at least 1, not {options.samples}")
    if options.active and not get_rules(rules).float_ops:
        raise DataError(f"the {rules} rules keep no float ops (the toolchain's documented config has no per-layer "
                        "precision): --min-cos, --min-worst-cos, --speed and --keep-float need a target that runs "
                        "float islands (ort, tvm, tflite, pulsar2)")


def check_nodes(options: PlaceOptions, graph: IntGraph) -> None:
    """--keep-float names nodes of the integer graph (their anchors, as the calibration report names them)."""
    anchors = [n.name for n in graph.nodes]
    unknown = [k for k in options.keep_float if k not in anchors]
    if unknown:
        covered = {c: n.name for n in graph.nodes for c in n.covers}
        hint = f" (computed by node {covered[unknown[0]]!r})" if unknown[0] in covered else \
            f"; its nodes are, e.g., {', '.join(anchors[:4])}"
        raise DataError(f"--keep-float {unknown[0]!r}: no node of the model's integer graph{hint}")


class FakeQuant:
    """Output cosine vs FP32 of the table's QDQ model with a given set of float nodes, run by ONNX Runtime as float
    fake-quant on fixed samples."""

    def __init__(self, fp32: onnx.ModelProto, table: CalibrationTable, x: np.ndarray):
        self.fp32, self.table, self.x = fp32, table, x
        self.ref = run_ort(fp32, x)
        self.evaluations = 0

    def cosine(self, floats) -> Score:
        self.evaluations += 1
        qdq = to_qdq(self.fp32, with_placement(self.table, placement_doc(floats, {})), rewrites=False)
        return Score.of(per_sample_cosine(self.ref, run_ort(qdq, self.x, optimize=False)))


def reference_score(fp32, table: CalibrationTable, x: np.ndarray, ref: np.ndarray) -> Score:
    """Output cosine of the integer reference (with the table's placement) vs FP32 `ref`, mean and worst sample."""
    qg = quantize_graph(plan(fp32, rules=table.doc["target"]), table)
    y = Reference().run(qg, x)
    return Score.of(per_sample_cosine(ref, y[0] if isinstance(y, list) else y))


def node_cost(graph: IntGraph, n) -> int:
    """What keeping `n` in float costs an integer target: its multiply-accumulates (conv / gemm), else its output
    elements (batch 1)."""
    out = graph.shapes.get(n.outputs[0]) or ()
    elements = int(np.prod([d for d in out[1:] if isinstance(d, int)] or [1]))
    if n.kind in ("conv", "gemm"):
        w = graph.shapes.get(n.weight) or ()
        per_output = int(np.prod(w[1:])) if n.kind == "conv" else int(w[1 - n.w_axis] if len(w) == 2 else 1)
        return elements * max(per_output, 1)
    return elements


def cost_share(graph: IntGraph, names: set) -> float:
    """The share of the graph's integer cost (node_cost summed) that the nodes `names` keep in float."""
    total = sum(node_cost(graph, n) for n in graph.nodes)
    return sum(node_cost(graph, n) for n in graph.nodes if n.name in names) / max(total, 1)


def place(fp32: onnx.ModelProto, table: CalibrationTable, data: np.ndarray, options: PlaceOptions,
          log: Callable[[str], None] = lambda s: None) -> CalibrationTable:
    """`table` with the placement the options ask for (the table itself when they ask for none)."""
    if not options.active:
        return table
    rules = table.doc["target"]
    check_options(options, rules)
    fp32 = quantized_form(fp32, rules)  # the graph the table describes
    t0 = time.perf_counter()
    graph = plan(fp32, rules=rules)  # without placement: the nodes a placement may name
    check_nodes(options, graph)
    anchors = {n.name: n for n in graph.nodes}
    rng = np.random.default_rng(options.seed)
    idx = np.sort(rng.choice(len(data), size=min(options.samples, len(data)), replace=False))
    x = np.ascontiguousarray(data[idx])
    fq = FakeQuant(fp32, table, x)
    chosen: dict[str, dict] = {k: {"precision": "float", "reason": "pinned", "kind": anchors[k].kind}
                               for k in options.keep_float}
    before = fq.cosine(set())
    record: dict = {"objectives": {"min_cos": options.floor, **({"min_worst_cos": options.min_worst_cos}
                                                                 if options.min_worst_cos is not None else {}),
                                   "speed": options.speed, "pinned": sorted(options.keep_float)},
                    "samples": int(len(x)), "cos_before": round(before.mean, 7),
                    **({"worst_cos_before": round(before.worst, 7)} if options.min_worst_cos is not None else {})}
    if options.speed:
        found, profile = speed_nodes(fp32, table, set(chosen), data[:1], log)
        for name, numbers in found.items():
            chosen[name] = {"precision": "float", "reason": "speed", "kind": anchors[name].kind, **numbers}
        record["profile"] = profile
    short = options.shortfall

    def fake(names):
        return fq.cosine(absorbed(graph, names))

    def judged(names):  # the integer reference itself (slower: the last word)
        return reference_score(fp32, with_placement(table, placement_doc(absorbed(graph, names), {})), x, fq.ref)

    cos = fake(set(chosen)) if chosen else before
    if short(cos) > 0:
        cos = _greedy(graph, fake, chosen, options, cos, log, "fake-quant")
    record["cos_after"] = round(cos.mean, 7)
    ref_cos = judged(set(chosen))
    if short(ref_cos) > 0:  # fake-quant reached the floors, the integer reference not yet
        ref_cos = _greedy(graph, judged, chosen, options, ref_cos, log, "integer reference", rank=fake)
    record["reference_cos_after"] = round(ref_cos.mean, 7)
    if options.min_worst_cos is not None:
        record["worst_cos_after"], record["reference_worst_cos_after"] = round(cos.worst, 7), round(ref_cos.worst, 7)
    producer = {o: n.name for n in graph.nodes for o in n.outputs}
    for name in sorted(absorbed(graph, set(chosen)) - set(chosen), key=list(anchors).index):
        source = chosen[producer[anchors[name].inputs[0]]]
        chosen[name] = {"precision": "float", "reason": source["reason"], "kind": anchors[name].kind}
    record["float_cost_share"] = round(cost_share(graph, set(chosen)), 4)
    # (no wall time in the table: the same table and data must give byte-identical bundles)
    log(f"placement: {len(chosen)} node(s) in float; output cosine {before} -> {cos} (fake-quant), "
        f"{ref_cos} (integer reference), {len(x)} samples, {fq.evaluations} evaluations, "
        f"{time.perf_counter() - t0:.1f} s")
    return with_placement(table, placement_doc(chosen, record))


def absorbed(graph: IntGraph, names: set) -> set:
    """`names` and the nodes that compute nothing (moves, concat, max pool, clamps) between float nodes: every input
    written by a float node, every reader a float node (or the graph's output). Quantizing there would cost an extra
    rounding and gain no integer kernel."""
    fixed = set(names) | {n.name for n in graph.islands}
    writer = {o: n.name for n in graph.nodes for o in n.outputs}
    readers: dict[str, list[str]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n.name)
    # the largest such set: start from every node that computes nothing and drop those with an integer neighbour
    # until none is left (a chain of them, e.g. a dense block's concats, is absorbed whole or not at all)
    out = fixed | {n.name for n in graph.nodes if not n.op.placeable}
    shrunk = True
    while shrunk:
        shrunk = False
        for n in graph.nodes:
            if n.name in out and n.name not in fixed and not (
                    all(writer.get(i) in out for i in n.inputs)
                    and all(r in out for o in n.outputs for r in readers.get(o, []))):
                out.discard(n.name)
                shrunk = True
    return out - {n.name for n in graph.islands}


def _ranked(graph: IntGraph, judge, options: PlaceOptions, base: set, cos: Score,
            log) -> list[tuple[str, float, int]]:
    """Candidates (name, measured gain alone on top of `base` in the objectives missed, cost), best gain per cost
    first; only nodes that gain."""
    out = []
    for n in graph.nodes:
        if n.name in base or not n.integer or not n.op.placeable:
            continue
        gain = options.gain(cos, judge(base | {n.name}))
        if gain > 0:
            out.append((n.name, gain, node_cost(graph, n)))
    log(f"placement: {len(out)} candidate node(s) gain output cosine alone")
    return sorted(out, key=lambda r: (-r[1] / max(r[2], 1), r[0]))


def _greedy(graph: IntGraph, judge, chosen: dict, options: PlaceOptions, cos: Score, log, what: str,
            rank=None) -> Score:
    """Add nodes (reason "accuracy") to `chosen` until judge(names) meets every floor of `options`: candidates ranked
    by their gain alone, each kept only when the shortfall it measures with the others is lower (quantization
    errors partly cancel: gains do not add); ranked again on top of what was kept while that helps (ROUNDS passes);
    the last resort is every candidate node in float. `rank` (default: `judge`) measures the gains that order the
    candidates. Returns the last score."""
    rank = rank or judge
    short = options.shortfall
    anchors = {n.name: n for n in graph.nodes}
    start = set(chosen)

    def add(names, gains):
        for name in names:
            chosen[name] = {"precision": "float", "reason": "accuracy", "kind": anchors[name].kind,
                            **({"cos_gain": round(gains[name], 7)} if name in gains else {})}

    for _ in range(ROUNDS):
        ranked = _ranked(graph, rank, options, set(chosen), rank(set(chosen)) if rank is not judge else cos, log)
        before = short(cos)
        for name, gain, _cost in ranked:
            if short(cos) == 0:
                return cos
            trial = judge(set(chosen) | {name})
            if short(trial) < short(cos):
                add([name], {name: gain})
                cos = trial
                log(f"placement: + {name} ({anchors[name].kind}): {what} output cosine {cos}")
        if short(cos) == 0 or short(cos) >= before:
            break
    if short(cos) > 0:  # no node gains alone: the error is spread over many layers
        cos = _float_tail(graph, judge, chosen, start, options, cos, log, what)
    return cos


def _float_tail(graph: IntGraph, judge, chosen: dict, start: set, options: PlaceOptions, cos: Score, log,
                what: str) -> Score:
    """The last resort of the greedy: the shortest tail of the graph (its last computing nodes, in graph order) kept
    in float that meets the floors, found by bisection (the output cosine rises with the tail, up to every node in
    float, which meets any floor). A tail, because errors made late reach the output undamped and a CNN's late
    layers are its cheapest (small feature maps: DDSNet's last dense block is 3% of its MACs). Two tails are
    tried, on top of what the greedy kept and on top of `start` (what was in float before it: the greedy's picks
    may be scattered over the expensive early layers), and the cheaper one is kept."""
    anchors = {n.name: n for n in graph.nodes}
    computing = [n.name for n in graph.nodes if n.integer and n.op.placeable]

    def tail(base: set, rest: list, k: int) -> set:
        names = base | set(rest[len(rest) - k:])
        return names | absorbed(graph, names)

    def shortest(base: set) -> tuple[set, Score | None]:
        rest = [n for n in computing if n not in base]
        lo, hi, best = 0, len(rest), None  # tail(hi): every computing node in float, which meets any floor
        while hi - lo > 1:
            mid = (lo + hi) // 2
            trial = judge(tail(base, rest, mid))
            if options.shortfall(trial) > 0:
                lo = mid
            else:
                hi, best = mid, trial
        return tail(base, rest, hi), best

    options_found = [shortest(set(chosen))] + ([shortest(set(start))] if set(start) != set(chosen) else [])
    names, best = min(options_found, key=lambda t: (cost_share(graph, t[0]), len(t[0])))
    for name in (n.name for n in graph.nodes if n.name in names and n.name not in chosen):
        chosen[name] = {"precision": "float", "reason": "accuracy", "kind": anchors[name].kind}
    for name in [n for n in chosen if n not in names]:  # the greedy's picks the cheaper tail does without
        del chosen[name]
    cos = best if best is not None else judge(set(chosen))
    log(f"placement: no node gains alone; the floors need a float tail of the graph: {len(chosen)} node(s) in "
        f"float, {100 * cost_share(graph, set(chosen)):.1f}% of the graph's cost: {what} "
        f"output cosine {cos}")
    return cos


def placement_lines(table: CalibrationTable, nodes: bool = True) -> list[str]:
    """What `tcc calibrate` prints about the table's placement: a summary, a warning when most of the model stays
    float, and (`nodes`) one line per node kept in float."""
    p = table.doc.get(KEY)
    if not p:
        return []
    o = p.get("objectives", {})
    worst = f", worst sample {o['min_worst_cos']}" if "min_worst_cos" in o else ""
    lines = [f"precision placement: {len(float_nodes(table))} node(s) kept in float (objectives: min cosine "
             f"{o.get('min_cos')}{worst}, speed {o.get('speed') or '-'}, pinned {len(o.get('pinned', []))}); output "
             f"cosine vs FP32 on {p.get('samples')} samples {p.get('cos_before')} -> {p.get('cos_after')} (fake-quant), "
             f"{p.get('reference_cos_after')} (integer reference)"
             + (f"; worst sample {p.get('worst_cos_before')} -> {p.get('reference_worst_cos_after')} (integer "
                "reference)" if worst else "")]
    share = p.get("float_cost_share")
    if share is not None:
        lines[0] += f"; {100 * share:.1f}% of the model's cost (MACs, output elements) in float"
        if share > HEAVY_SHARE:
            lines.append(f"warning: the placement keeps {100 * share:.0f}% of the model in float: little of it runs "
                         "as INT8 (lower --min-cos / --min-worst-cos, or calibrate with more steps or data)")
    for name, e in p["nodes"].items() if nodes else ():
        extra = (f", cosine gain alone {e['cos_gain']}" if "cos_gain" in e else "") + \
            (f", integer kernel {e['int8_us']} us -> float island {e['float_us']} us" if "int8_us" in e else "")
        lines.append(f"  {name} ({e.get('kind', '?')}): {e['reason']}{extra}")
    return lines


