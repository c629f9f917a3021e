"""The accuracy search of the placement step: which nodes take a remedy so that the output cosine meets the floors.

Two remedies, tried in this order by tcc.quant.place.placer:
- WIDE ("int16"): a node's output activations (with their scale groups) on signed 16-bit grids, where the rules'
  kernels take both widths (TVM's). The graph stays integer, its integer ops bit-exact with the integer reference;
  what it costs is its readers' kernels working on int16 codes (x86 `vpmaddwd`, AArch64 two 8-bit digits, ARMv7
  `vmlal.s16`: measured cheaper than float islands on each, docs/int8.md#the-placement-step);
- FLOAT: the node kept in float (a float island), with the moves between float nodes (`absorbed`). Every node in
  float is the FP32 model, so this remedy meets any floor.

For each: candidates ranked by the output cosine each gains alone, per cost; each kept only when the shortfall it
measures with the others is lower (quantization errors partly cancel: gains do not add); ranked again on top of what was
kept while that helps (ROUNDS passes); the last resort is the cheapest of the shortest tail and the shortest head of the
graph that meet the floors (bisection). With the floors met, every node kept is taken back where the floors hold without
it (pruned, once the other remedy is settled). A judge maps the remedy's set of nodes to a Score; the placer closes over
the other remedy's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..intgraph.match import IntGraph

ROUNDS = 3  # ranking passes of the accuracy greedy
FLOAT, WIDE = "float", "int16"  # a placement entry's precision
ENDS = ("tail", "head")  # the last resort's runs of nodes (ends): a tail wins a tie of cost and length


@dataclass(frozen=True)
class Score:
    """Output cosine vs FP32 on the search samples: the mean and the lowest per-sample value."""

    mean: float
    worst: float

    @classmethod
    def of(cls, cosines: np.ndarray) -> Score:
        return cls(float(np.mean(cosines)), float(np.min(cosines)))

    def __str__(self) -> str:
        return f"{self.mean:.6f} (worst sample {self.worst:.6f})"


@dataclass(frozen=True)
class Remedy:
    """One way to take a node's quantization error away."""

    precision: str  # FLOAT or WIDE: the placement entry's precision
    candidates: tuple[str, ...]  # the nodes it may take, in graph order
    cost: Callable[[set], int]  # what the remedy costs an integer target on a set of nodes
    closure: Callable[[set], set]  # a set of nodes and what it takes with it (float: the moves between them)
    complete: bool  # every candidate taken meets any floor (float: that is the FP32 model)


def node_cost(graph: IntGraph, n) -> int:
    """What keeping `n` in float costs an integer target (batch 1): its output elements times its kind's
    multiply-accumulates per output element (tcc.intops.IntOp.macs_per_output: a weighted producer's, a conv's,
    pooled conv's or gemm's, from its weight; 1 for the rest)."""
    out = graph.shapes.get(n.outputs[0]) or ()
    elements = int(np.prod([d for d in out[1:] if isinstance(d, int)] or [1]))
    weight = (graph.shapes.get(n.weight) or ()) if n.weight else ()
    return elements * n.op.macs_per_output(tuple(weight), n.w_axis)


def total_cost(graph: IntGraph) -> int:
    return max(sum(node_cost(graph, n) for n in graph.nodes), 1)


def _entry(remedy: Remedy, graph: IntGraph, name: str, gain: float | None = None) -> dict:
    kind = next((n.kind for n in graph.nodes if n.name == name), "input")  # WIDE may take the graph input
    return {
        "precision": remedy.precision,
        "reason": "accuracy",
        "kind": kind,
        **({"cos_gain": round(gain, 7)} if gain is not None else {}),
    }


def _ranked(remedy: Remedy, judge, options, base: set, cos: Score, log) -> list[tuple[str, float, int]]:
    """Candidates (name, measured gain alone on top of `base` in the objectives missed, cost), best gain per cost
    first; only nodes that gain."""
    out = []
    for name in remedy.candidates:
        if name in base:
            continue
        gain = options.gain(cos, judge(base | {name}))
        if gain > 0:
            out.append((name, gain, remedy.cost({name})))
    log(f"placement: {len(out)} candidate node(s) gain output cosine alone ({remedy.precision})")
    return sorted(out, key=lambda r: (-r[1] / max(r[2], 1), r[0]))


@dataclass(frozen=True)
class Search:
    """One remedy's search: the remedy, the graph, the judge of a set of its nodes (`rank`, default `judge`: what
    measures the gains that order the candidates), the floors (`options`: tcc.quant.place.placer.PlaceOptions), and
    the log with the judge's name in it (`what`)."""

    remedy: Remedy
    graph: IntGraph
    judge: Callable[[set], Score]
    options: Any
    log: Callable[[str], None]
    what: str
    rank: Callable[[set], Score] | None = None

    def short(self, cos: Score) -> float:
        return self.options.shortfall(cos)

    def entry(self, name: str, gain: float | None = None) -> dict:
        return _entry(self.remedy, self.graph, name, gain)


def greedy(search: Search, chosen: dict, cos: Score) -> Score:
    """Give nodes the remedy (reason "accuracy", added to `chosen`: the remedy's nodes, {name: entry}) until
    search.judge(its nodes) meets every floor, or the remedy can do no more. Returns the last score."""
    remedy, judge, short = search.remedy, search.judge, search.short
    rank = search.rank or judge
    start = set(chosen)
    for _ in range(ROUNDS):
        mine = set(chosen)
        ranked = _ranked(remedy, rank, search.options, mine, rank(mine) if rank is not judge else cos, search.log)
        before = short(cos)
        for name, gain, _cost in ranked:
            if short(cos) == 0:
                return cos
            trial = judge(set(chosen) | {name})
            if short(trial) < short(cos):
                chosen[name] = search.entry(name, gain)
                cos = trial
                search.log(
                    f"placement: + {name} ({chosen[name]['kind']}, {remedy.precision}): {search.what} output "
                    f"cosine {cos}"
                )
        if short(cos) == 0 or short(cos) >= before:
            break
    if short(cos) > 0:  # no node gains alone: the error is spread over many layers
        cos = ends(search, chosen, start, cos)
    return cos


def pruned(search: Search, chosen: dict, start: set, cos: Score) -> Score:
    """With the floors met (the greedy's result, and the other remedy's settled: tcc.quant.place.placer), each node
    given the remedy since `start` taken back where the floors stay met without it, the costliest first. A node's gain
    alone orders the greedy, but the nodes kept later can make an earlier one needless (DeepLabV3-MobileNetV3: scattered
    picks, then its stem's nodes, which alone meet the floor; docs/notes/segmentation.md).
    One judgement per node kept."""
    cost = search.remedy.cost
    for name in sorted((n for n in chosen if n not in start), key=lambda n: (-cost({n}), n)):
        trial = search.judge(set(chosen) - {name})
        if search.short(trial) == 0:
            del chosen[name]
            cos = trial
            search.log(f"placement: - {name} (the floors hold without it): {search.what} output cosine {cos}")
    return cos


def ends(search: Search, chosen: dict, start: set, cos: Score) -> Score:
    """The last resort of the greedy: the shortest end of the graph (its last candidates in graph order, or its
    first) given the remedy that meets the floors, found by bisection (the output cosine rises with an end's length).
    An end, because a float island removes the quantization of the tensors between float nodes only, so a spread
    error is taken away by a contiguous run of nodes, not by one node alone. A tail, because errors made late reach
    the output undamped and a CNN's late layers are its cheapest (small feature maps: DDSNet's last dense block is 3%
    of its MACs); a head, because an error made early passes through every later layer (DeepLabV3-MobileNetV3's
    stem and first block hold the most of its INT8 error: docs/notes/segmentation.md). Each end is tried
    on top of what the greedy kept and on top of `start` (what had the remedy before it: the greedy's picks may be
    scattered over the expensive early layers), and the cheapest is kept. A remedy that is not complete may miss the
    floors with every candidate: then every candidate takes it (the most it can do; the next remedy goes on from
    there)."""
    remedy, judge = search.remedy, search.judge
    mine = set(chosen)

    def set_to(names: set) -> None:
        for name in [n for n in remedy.candidates if n in names and n not in chosen]:
            chosen[name] = search.entry(name)
        for name in [n for n in mine if n not in names]:  # the greedy's picks the cheaper end does without
            del chosen[name]

    if not remedy.complete:
        every = remedy.closure(set(remedy.candidates) | mine)
        most = judge(every)
        if search.short(most) > 0:
            set_to(every)
            search.log(
                f"placement: every candidate at {remedy.precision} reaches only {search.what} output cosine {most}"
            )
            return most
    bases = [mine] + ([set(start)] if set(start) != mine else [])
    found = [(end, *_shortest_end(search, base, end)) for end in ENDS for base in bases]
    end, names, best = min(found, key=lambda t: (remedy.cost(t[1]), len(t[1])))
    set_to(names)
    cos = best if best is not None else judge(set(chosen))
    search.log(
        f"placement: no node gains alone; the floors need a {end} of the graph at {remedy.precision}: "
        f"{len(chosen)} node(s), {100 * remedy.cost(names) / total_cost(search.graph):.1f}% of the "
        f"graph's cost: {search.what} output cosine {cos}"
    )
    return cos


def _shortest_end(search: Search, base: set, end: str) -> tuple[set, Score | None]:
    """The shortest `end` (ENDS) of the remedy's candidates not in `base` that meets the floors on top of `base`, by
    bisection, with its score (None: only every candidate, not judged here)."""
    remedy = search.remedy
    rest = [n for n in remedy.candidates if n not in base]

    def end_of(k: int) -> set:
        return remedy.closure(base | set(rest[len(rest) - k :] if end == "tail" else rest[:k]))

    lo, hi, best = 0, len(rest), None  # end_of(hi): every candidate, which meets the floors
    while hi - lo > 1:
        mid = (lo + hi) // 2
        trial = search.judge(end_of(mid))
        if search.short(trial) > 0:
            lo = mid
        else:
            hi, best = mid, trial
    return end_of(hi), best
