"""Activation widths in a table: 16-bit grids fitted to the readers' int32 accumulators, and 8-bit tensors widened
to 16 bits (the placement's cheaper remedy than a float island, where the rules' kernels take both widths).

    fit_accumulators(table, graph)               # a W8A16 calibration: narrow the grids an accumulator overflows on
    table = widened(table, graph, {"s2.pw.conv"}) # these tensors (and their scale groups) at 16 bits
"""

from __future__ import annotations

from ..table.file import CalibrationTable
from ..table.quantizer import qrange, scale_for_threshold
from .match import IntGraph
from .qgraph import NARROWEST_WIDE_GRID, quantize_graph

WIDE_BITS = 16
WIDE_METHOD = "minmax"  # 32768 levels: rounding is negligible, clipping is what remains (calibrate.wide_method)


def fit_accumulators(table: CalibrationTable, graph: IntGraph) -> None:
    """16-bit activations: each tensor whose readers' int32 accumulators can overflow on the codes it can hold
    (tcc.quant.intgraph.qgraph's guard) is put on a grid of as many fewer bits as the worst case needs, with its scale
    group: the same range on 2^k times fewer codes (int16 still), which halves the products k times. Repeated until
    no accumulator can overflow (narrowing one tensor moves the ranges after it), or no grid can lose more, when
    the quantizer's guard refuses the table naming the layer. Entries record the layer (`headroom_for`)."""
    if _narrowed(table, graph):  # a grid at the narrowest still overflows: refused here, naming the layer
        quantize_graph(graph, table)


def _narrowed(table: CalibrationTable, graph: IntGraph) -> dict[str, tuple[int, str]]:
    """fit_accumulators' narrowing, in place; returns what still overflows with every grid concerned at its
    narrowest ({tensor: (bits to lose, reading layer)}), empty when every accumulator fits."""
    tensors = table.tensors
    while True:
        need: dict[str, tuple[int, str]] = {}
        quantize_graph(graph, table, headroom=need)
        changed = False
        for name, (bits, layer) in need.items():
            for m in group_members(table, name):
                e = tensors[m]
                narrower = max(NARROWEST_WIDE_GRID, e["bits"] - bits)
                if narrower < e["bits"]:
                    top = qrange(e["bits"], e["signed"])[1]
                    e["scale"] = float(scale_for_threshold(e["scale"] * top, narrower, e["signed"]))
                    e["bits"], e["headroom_for"], changed = narrower, layer, True
        if not changed:
            return need


def group_members(table: CalibrationTable, name: str) -> list[str]:
    """`name` and the tensors that share its scale (the table's `groups`), in table order."""
    group = table.tensors[name].get("group")
    if group is None:
        return [name]
    return [n for n, t in table.tensors.items() if t.get("group") == group]


def widened(table: CalibrationTable, graph: IntGraph, names) -> CalibrationTable:
    """A copy of `table` whose activations `names`, with every tensor of their scale groups, are signed 16-bit on
    the whole range the calibration saw (the entries' min / max: a group takes its widest; a softmax's output
    its [0, 1]), then fitted to the readers' accumulators (fit_accumulators). A group that no grid of 9 to 16 bits fits
    (a reader summing tens of
    thousands of products) stays as `table` has it: its kernels offer no such choice. The other entries are
    untouched; `names` empty gives `table`."""
    if not names:
        return table
    members = {m for n in names for m in group_members(table, n)}
    fixed = graph.output_amax()
    while True:
        out = _on_wide_grids(table, members, fixed)
        need = _narrowed(out, graph)
        if not need:
            return out
        kept = {m for n in need for m in group_members(out, n)} & members
        if not kept:  # `table` had it at 16 bits already: refused here, naming the layer
            quantize_graph(graph, out)
        members -= kept


def _on_wide_grids(table: CalibrationTable, members: set, fixed: dict[str, float]) -> CalibrationTable:
    """A copy of `table` with the tensors `members` (whole scale groups) on 16-bit grids over their range, or over
    the range their op fixes where that is wider (`fixed`: IntGraph.output_amax)."""
    out = table.copy()
    tensors = out.tensors
    done: set[str] = set()
    for name in sorted(members, key=list(tensors).index):
        if name in done:
            continue
        group = group_members(out, name)
        amax = max(max(abs(tensors[m]["min"]), abs(tensors[m]["max"]), fixed.get(m, 0.0)) for m in group)
        scale = float(scale_for_threshold(amax, WIDE_BITS, True))
        for m in group:
            tensors[m].update(
                {
                    "scale": scale,
                    "zero_point": 0,
                    "bits": WIDE_BITS,
                    "symmetric": True,
                    "signed": True,
                    "method": WIDE_METHOD,
                    "threshold": float(amax),
                    "widened": True,
                }
            )
            tensors[m].pop("headroom_for", None)
        done.update(group)
    return out
