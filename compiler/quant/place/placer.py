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
  below C, or the lowest per-sample cosine below W, the node with the best measured gain per cost takes a remedy; the
  gain is what the node takes off the shortfall (C - mean)+ + (W - worst)+, so a floor already met counts no more.
  Two remedies, the cheaper first (tcc.quant.place.search): where the rules' kernels take 16-bit activations as
  well as 8-bit ones (TVM's, where 16-bit codes measured cheaper than float islands on ARM and x86 alike), the
  node's outputs are widened to 16 bits (the graph stays integer); then, for what is still missing, nodes are kept
  in float. A node's gain is the output cosine gained with the remedy on that node
  alone (every candidate measured once, end to end); its cost is what the remedy costs an integer target: in float,
  its multiply-accumulates (weighted kinds) or output elements (the rest); widened, those of its outputs' readers,
  whose kernels then work on int16 codes. Greedy by measured sensitivity per cost, as mixed-precision searches do
  (HAWQ's sensitivity / size, Pulsar2's per-layer precision table): one evaluation per candidate, then one per node
  added; the nodes' interactions are measured as they are added, never assumed.

The search evaluates with ONNX Runtime running the QDQ model as float fake-quant (tcc.quant.lower.qdq: equation (8) at
every
quantization point, within one LSB per op of the integer reference and two orders of magnitude faster); the result
is then judged by the integer reference itself on the same samples, and nodes are added (judged by the reference)
until it reaches the floor too. Deterministic: the same table and data give the same placement, except for the
speed objective, which measures time (the table records what it measured).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from ...errors import DataError
from ..intgraph.match import IntGraph, plan, quantized_form
from ..intgraph.qgraph import quantize_graph
from ..intgraph.reference import Reference
from ..intgraph.widths import group_members, widened
from ..lower.qdq import to_qdq
from ..report.quality import per_sample_cosine, run_ort
from ..table.file import CalibrationTable
from ..table.placement import WIDENED, float_nodes, placement_doc, with_placement
from ..table.rules import RULES, get_rules
from .search import FLOAT, WIDE, Remedy, Score, Search, greedy, node_cost, pruned, total_cost
from .speed import speed_nodes

SPEED_FLOOR = 0.9995  # the floor for the speed objective: ORT INT8 output cosine vs FP32 at least this
HEAVY_SHARE = 0.5  # a placement keeping more of the model's cost than this in float is warned about


@dataclass(frozen=True)
class PlaceOptions:
    min_cos: float | None = None  # the output cosine floor (mean over the search samples)
    min_worst_cos: float | None = None  # the floor of the lowest per-sample output cosine on the search samples
    speed: str | None = None  # "ort": keep in float what ORT's integer kernels run slower than float on this CPU
    keep_float: tuple[str, ...] = ()  # nodes pinned in float by hand
    samples: int = 16  # calibration samples the search judges on (a seeded subset)
    seed: int = 0
    wide: bool = True  # accuracy: widen activations to 16 bits before keeping nodes in float (where `widens`)

    @property
    def active(self) -> bool:
        return (
            self.min_cos is not None
            or self.min_worst_cos is not None
            or self.speed is not None
            or bool(self.keep_float)
        )

    @property
    def floor(self) -> float | None:
        return self.min_cos if self.min_cos is not None else (SPEED_FLOOR if self.speed else None)

    def shortfall(self, score: Score) -> float:
        """How far `score` is below the floors (0: every floor met)."""
        short = 0.0
        if self.floor is not None:
            short += max(self.floor - score.mean, 0.0)
        if self.min_worst_cos is not None:
            short += max(self.min_worst_cos - score.worst, 0.0)
        return short

    def gain(self, old: Score, new: Score) -> float:
        """What `new` gains on `old` in the objectives `old` misses, or in all of them where it misses none (a ranking
        by fake-quant, which may meet the floors while the integer reference does not); the mean's gain alone with
        --min-cos only."""
        floor, worst_floor = self.floor, self.min_worst_cos
        means, worsts = floor is not None, worst_floor is not None
        missed = (floor is not None and old.mean < floor, worst_floor is not None and old.worst < worst_floor)
        if any(missed):
            means, worsts = missed
        return (new.mean - old.mean if means else 0.0) + (new.worst - old.worst if worsts else 0.0)


def check_options(options: PlaceOptions, rules: str) -> None:
    """User mistakes in the placement options, before any calibration work."""
    for flag, value in (("--min-cos", options.min_cos), ("--min-worst-cos", options.min_worst_cos)):
        if value is not None and not 0.0 < value <= 1.0:
            raise DataError(f"{flag} {value}: a cosine floor lies in (0, 1]")
    if options.speed not in (None, "ort"):
        raise DataError(f"--speed {options.speed!r}: the speed objective measures ONNX Runtime's kernels ('ort')")
    if options.speed and not (rules in RULES and RULES[rules].ort_kernels):
        ort = ", ".join(name for name, r in RULES.items() if r.ort_kernels)
        raise DataError(
            f"--speed ort measures ONNX Runtime's integer kernels: it applies to tables for their rules ({ort}), "
            f"not {rules!r}"
        )
    if options.samples < 1:
        raise DataError(f"--place-samples {options.samples}: must be at least 1")
    if options.active and not get_rules(rules).float_ops:
        raise DataError(
            f"the {rules} rules keep no float ops (the toolchain's documented config has no per-layer "
            "precision): --min-cos, --min-worst-cos, --speed and --keep-float need a target that runs "
            "float islands (ort, tvm, tflite, pulsar2)"
        )


def check_nodes(options: PlaceOptions, graph: IntGraph) -> None:
    """--keep-float names nodes of the integer graph (their anchors, as the calibration report names them)."""
    anchors = [n.name for n in graph.nodes]
    unknown = [k for k in options.keep_float if k not in anchors]
    if unknown:
        covered = {c: n.name for n in graph.nodes for c in n.covers}
        hint = (
            f" (computed by node {covered[unknown[0]]!r})"
            if unknown[0] in covered
            else f"; its nodes are, e.g., {', '.join(anchors[:4])}"
        )
        raise DataError(f"--keep-float {unknown[0]!r}: no node of the model's integer graph{hint}")
    constant = next((n for n in graph.nodes if n.name in options.keep_float and not n.inputs), None)
    if constant is not None:
        raise DataError(
            f"--keep-float {constant.name!r}: a {constant.kind} computes a constant from no input; keep the node "
            "that reads it in float instead"
        )


def widens(options: PlaceOptions, rules: str) -> bool:
    """Whether the accuracy search widens activations to 16 bits first: not turned off (--no-wide), and the rules'
    kernels take both widths for every kind (TVM's)."""
    r = get_rules(rules)
    return options.wide and 8 in r.activation_bits and 16 in r.activation_bits and r.wide.kinds is None


class FakeQuant:
    """Output cosine vs FP32 of a table's QDQ model, run by ONNX Runtime as float fake-quant on fixed samples."""

    def __init__(self, fp32: onnx.ModelProto, x: np.ndarray):
        self.fp32, self.x = fp32, x
        self.ref = run_ort(fp32, x)
        self.evaluations = 0

    def score(self, table: CalibrationTable) -> Score:
        self.evaluations += 1
        qdq = to_qdq(self.fp32, table, rewrites=False)
        return Score.of(per_sample_cosine(self.ref, run_ort(qdq, self.x, optimize=False)))


def reference_score(fp32, table: CalibrationTable, x: np.ndarray, ref: np.ndarray) -> Score:
    """Output cosine of the integer reference (with the table's placement) vs FP32 `ref`, mean and worst sample."""
    qg = quantize_graph(plan(fp32, rules=table.rules), table)
    y = Reference().run(qg, x)
    return Score.of(per_sample_cosine(ref, y[0] if isinstance(y, list) else y))


def cost_share(graph: IntGraph, names: set) -> float:
    """The share of the graph's integer cost (node_cost summed) that the nodes `names` keep in float."""
    return sum(node_cost(graph, n) for n in graph.nodes if n.name in names) / total_cost(graph)


class Widths:
    """The WIDE remedy on one table: which tensors widening a node takes (its outputs the table quantizes, with
    their scale groups; the graph input, named by its tensor, is a candidate too) and what that costs (its readers'
    kernels on int16 codes)."""

    def __init__(self, graph: IntGraph, table: CalibrationTable):
        self.graph, self.table = graph, table
        self.acts = {k for k, e in table.tensors.items() if e.get("kind") == "activation"}

    def tensors(self, names) -> set:
        outs = {o for n in self.graph.nodes if n.name in names for o in n.outputs if o in self.acts}
        outs |= {self.graph.input} & set(names) & self.acts
        return {m for o in outs for m in group_members(self.table, o)}

    def cost(self, names) -> int:
        return self.readers_cost(self.tensors(names))

    def readers_cost(self, wide: set) -> int:
        """What the integer kernels reading the tensors `wide` cost."""
        return sum(node_cost(self.graph, n) for n in self.graph.nodes if n.integer and wide.intersection(n.inputs))

    def remedy(self) -> Remedy:
        # computing nodes and islands whose outputs the table quantizes (moves share their input's scale group)
        nodes = [n.name for n in self.graph.nodes if n.op.placeable or not n.integer]
        names = tuple(name for name in [self.graph.input, *nodes] if self.tensors({name}))
        return Remedy(WIDE, names, self.cost, set, complete=False)


def place(
    fp32: onnx.ModelProto,
    table: CalibrationTable,
    data: np.ndarray,
    options: PlaceOptions,
    log: Callable[[str], None] = lambda s: None,
) -> CalibrationTable:
    """`table` with the placement the options ask for (the table itself when they ask for none)."""
    if not options.active:
        return table
    check_options(options, table.target)
    t0 = time.perf_counter()
    run = _Placing.of(fp32, table, data, options, log)
    before = run.fake(set(), set())
    record = run.objectives(before)
    if options.speed:
        record["profile"] = run.keep_fast(data[:1])
    cos = run.search(run.fake, run.fake(set(run.chosen), set()) if run.chosen else before, "fake-quant")
    record["cos_after"] = round(cos.mean, 7)
    # fake-quant reached the floors; the integer reference may not yet
    ref_cos = run.search(run.judged, run.judged(set(run.chosen), set(run.wide)), "integer reference", rank=run.fake)
    record["reference_cos_after"] = round(ref_cos.mean, 7)
    if options.min_worst_cos is not None:
        record["worst_cos_after"], record["reference_worst_cos_after"] = round(cos.worst, 7), round(ref_cos.worst, 7)
    run.add_moves()
    record["float_cost_share"] = round(cost_share(run.graph, set(run.chosen)), 4)
    final = run.widened_table(record)
    # (no wall time in the table: the same table and data must give byte-identical bundles)
    log(
        f"placement: {len(run.chosen)} node(s) in float, {len(run.wide)} widened to 16 bits; output cosine "
        f"{before} -> {cos} (fake-quant), {ref_cos} (integer reference), {len(run.x)} samples, "
        f"{run.fq.evaluations} evaluations, {time.perf_counter() - t0:.1f} s"
    )
    return with_placement(final, placement_doc(run.chosen, record, run.wide))


@dataclass
class _Placing:
    """One placement run: the table's graph, the search samples and their judges, and the nodes chosen so far
    (`chosen`: in float, {name: entry}; `wide`: widened to 16 bits)."""

    fp32: onnx.ModelProto  # the graph the table describes
    table: CalibrationTable
    graph: IntGraph  # without placement: the nodes a placement may name
    options: PlaceOptions
    log: Callable[[str], None]
    x: np.ndarray  # the search samples
    fq: FakeQuant
    widths: Widths
    chosen: dict[str, dict]
    wide: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def of(cls, fp32, table: CalibrationTable, data: np.ndarray, options: PlaceOptions, log) -> _Placing:
        fp32 = quantized_form(fp32, table.target)
        graph = plan(fp32, rules=table.rules)
        check_nodes(options, graph)
        anchors = {n.name: n for n in graph.nodes}
        rng = np.random.default_rng(options.seed)
        idx = np.sort(rng.choice(len(data), size=min(options.samples, len(data)), replace=False))
        x = np.ascontiguousarray(data[idx])
        pinned = {k: {"precision": FLOAT, "reason": "pinned", "kind": anchors[k].kind} for k in options.keep_float}
        return cls(fp32, table, graph, options, log, x, FakeQuant(fp32, x), Widths(graph, table), pinned)

    @property
    def anchors(self) -> dict:
        return {n.name: n for n in self.graph.nodes}

    def table_for(self, floats, wides) -> CalibrationTable:
        widened_table = widened(self.table, self.graph, self.widths.tensors(wides))
        return with_placement(widened_table, placement_doc(absorbed(self.graph, floats)))

    def fake(self, floats, wides) -> Score:
        return self.fq.score(self.table_for(floats, wides))

    def judged(self, floats, wides) -> Score:
        """The integer reference itself (slower: the last word)."""
        return reference_score(self.fp32, self.table_for(floats, wides), self.x, self.fq.ref)

    def objectives(self, before: Score) -> dict:
        """The placement's record before the search: its objectives, samples and the cosine it starts from."""
        o = self.options
        return {
            "objectives": {
                "min_cos": o.floor,
                **({"min_worst_cos": o.min_worst_cos} if o.min_worst_cos is not None else {}),
                "speed": o.speed,
                "pinned": sorted(o.keep_float),
                "wide": widens(o, self.table.target),
            },
            "samples": len(self.x),
            "cos_before": round(before.mean, 7),
            **({"worst_cos_before": round(before.worst, 7)} if o.min_worst_cos is not None else {}),
        }

    def keep_fast(self, x: np.ndarray) -> dict:
        """The speed objective: the nodes ORT runs faster in float on this CPU, kept in float; the profile."""
        found, profile = speed_nodes(self.fp32, self.table, set(self.chosen), x, self.log)
        anchors = self.anchors
        for name, numbers in found.items():
            self.chosen[name] = {"precision": FLOAT, "reason": "speed", "kind": anchors[name].kind, **numbers}
        return profile

    def search(self, judge, cos: Score, what: str, rank=None) -> Score:
        """Widening first (where `widens`), then float nodes for what is still missing. Where widening alone
        missed the floors it kept every candidate wide (the most it can do); the float nodes may do without: then
        none stays widened. With the floors met, the float nodes and then the widened ones the floors do without are
        taken back (pruned)."""
        short, chosen, wide = self.options.shortfall, self.chosen, self.wide
        widening, floating = set(wide), set(chosen)  # what had each remedy before: pruning leaves it

        wide_search = (
            self._search(self.widths.remedy(), lambda w: (set(chosen), w), judge, what, rank)
            if widens(self.options, self.table.target)
            else None
        )
        if short(cos) > 0 and wide_search:
            cos = greedy(wide_search, wide, cos)
        if short(cos) > 0:
            float_search = self._search(float_remedy(self.graph), lambda f: (f, set(wide)), judge, what, rank)
            cos = greedy(float_search, chosen, cos)
            if wide and short(alone := judge(set(chosen), set())) == 0:
                self.log(f"placement: the float nodes meet the floors without widening: {what} output cosine {alone}")
                wide.clear()
                cos = alone
            if short(cos) == 0:
                cos = pruned(float_search, chosen, floating, cos)
        if short(cos) == 0 and wide and wide_search:
            cos = pruned(wide_search, wide, widening, cos)
        return cos

    def _search(self, remedy: Remedy, sets: Callable[[set], tuple[set, set]], judge, what: str, rank) -> Search:
        """One remedy's search: `sets` maps the remedy's nodes to the judges' (float nodes, widened nodes)."""
        return Search(
            remedy,
            self.graph,
            lambda names: judge(*sets(names)),
            self.options,
            self.log,
            what,
            rank=rank and (lambda names: rank(*sets(names))),
        )

    def add_moves(self) -> None:
        """The moves between float nodes (absorbed), in float too, each with the reason of the float node it moves
        codes for (a required island's output: the search's, accuracy)."""
        anchors, chosen = self.anchors, self.chosen
        producer = {o: n.name for n in self.graph.nodes for o in n.outputs}
        for name in sorted(absorbed(self.graph, set(chosen)) - set(chosen), key=list(anchors).index):
            source = next(
                (chosen[producer[i]] for i in anchors[name].inputs if producer.get(i) in chosen),
                {"reason": "accuracy"},
            )
            chosen[name] = {"precision": FLOAT, "reason": source["reason"], "kind": anchors[name].kind}

    def widened_table(self, record: dict) -> CalibrationTable:
        """The table with the widened nodes' tensors on 16-bit grids (a node none of whose tensors a grid fits
        stays 8-bit: no longer in `wide`); what they cost in `record`."""
        final = widened(self.table, self.graph, self.widths.tensors(set(self.wide)))
        on_wide = {k for k, e in final.tensors.items() if e.get("widened")}
        for name in [n for n in self.wide if not self.widths.tensors({n}) & on_wide]:
            del self.wide[name]
        if self.wide:
            record["widened_tensors"] = len(on_wide)
            record["widened_cost_share"] = round(self.widths.readers_cost(on_wide) / total_cost(self.graph), 4)
        return final


def float_remedy(graph: IntGraph) -> Remedy:
    """The FLOAT remedy: the computing nodes of the integer graph kept in float with the moves between them."""
    anchors = {n.name: n for n in graph.nodes}
    return Remedy(
        FLOAT,
        tuple(n.name for n in graph.nodes if n.integer and n.op.placeable),
        lambda names: sum(node_cost(graph, anchors[n]) for n in names),
        lambda names: names | absorbed(graph, names),
        complete=True,
    )


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
    # a constant (a parameter broadcast over the batch: no input) stays quantized where it is made: an island of
    # its own would have no tensor to take the batch from (the FP32 graph reads it off another node's output)
    out = fixed | {n.name for n in graph.nodes if not n.op.placeable and n.inputs}
    shrunk = True
    while shrunk:
        shrunk = False
        for n in graph.nodes:
            if (
                n.name in out
                and n.name not in fixed
                and not (
                    all(writer.get(i) in out for i in n.inputs)
                    and all(r in out for o in n.outputs for r in readers.get(o, []))
                )
            ):
                out.discard(n.name)
                shrunk = True
    return out - {n.name for n in graph.islands}


def placement_lines(table: CalibrationTable, nodes: bool = True) -> list[str]:
    """What `tcc calibrate` prints about the table's placement: a summary, a warning when most of the model stays
    float, and (`nodes`) one line per node kept in float or widened."""
    p = table.placement
    if not p:
        return []
    o = p.get("objectives", {})
    worst = f", worst sample {o['min_worst_cos']}" if "min_worst_cos" in o else ""
    lines = [
        f"precision placement: {len(float_nodes(table))} node(s) kept in float (objectives: min cosine "
        f"{o.get('min_cos')}{worst}, speed {o.get('speed') or '-'}, pinned {len(o.get('pinned', []))}); output "
        f"cosine vs FP32 on {p.get('samples')} samples {p.get('cos_before')} -> {p.get('cos_after')} (fake-quant), "
        f"{p.get('reference_cos_after')} (integer reference)"
        + (
            f"; worst sample {p.get('worst_cos_before')} -> {p.get('reference_worst_cos_after')} (integer reference)"
            if worst
            else ""
        )
    ]
    share = p.get("float_cost_share")
    if share is not None:
        lines[0] += f"; {100 * share:.1f}% of the model's cost (MACs, output elements) in float"
    widened_nodes = p.get(WIDENED) or {}
    if widened_nodes:
        lines[0] += (
            f"; {len(widened_nodes)} node(s) widened to 16-bit outputs ({p.get('widened_tensors')} tensors, "
            f"read by {100 * p.get('widened_cost_share', 0):.1f}% of the model's cost)"
        )
    if share is not None and share > HEAVY_SHARE:
        lines.append(
            f"warning: the placement keeps {100 * share:.0f}% of the model in float: little of it runs "
            "as INT8 (lower --min-cos / --min-worst-cos, or calibrate with more steps or data)"
        )
    for name, e in p["nodes"].items() if nodes else ():
        extra = (f", cosine gain alone {e['cos_gain']}" if "cos_gain" in e else "") + (
            f", integer kernel {e['int8_us']} us -> float island {e['float_us']} us" if "int8_us" in e else ""
        )
        lines.append(f"  {name} ({e.get('kind', '?')}): {e['reason']}{extra}")
    for name, e in widened_nodes.items() if nodes else ():
        extra = f", cosine gain alone {e['cos_gain']}" if "cos_gain" in e else ""
        lines.append(f"  {name} ({e.get('kind', '?')}): outputs widened to 16 bits ({e['reason']}){extra}")
    return lines
