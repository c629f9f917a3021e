"""Precision placement as data: which nodes of an INT8 graph are float islands, and why.

The calibration table carries it (spec/schema/calibration.schema.json, `placement`):

    "placement": {"objectives": {...}, "nodes": {"dense1.layer0.dw.conv": {"precision": "float",
                  "reason": "speed", ...}}, "widened": {"stages.2.0.pw.conv": {"precision": "int16", ...}}, ...}

`widened` names the nodes whose output activations the accuracy search put on 16-bit grids (TVM's rules take both
widths); their table entries say so themselves (`bits` 16, `widened`), so every reader of the table builds them
as it builds any 16-bit tensor.

`tcc.quant.intgraph.qgraph.quantize_graph` plans the model with the table's float nodes, so every interpreter (the
integer reference, QDQ for ONNX Runtime, TVM, TFLite, the AX kits) builds the same mixed graph. Nodes without an
integer form (Role.FLOAT: layer norm; a kind the rules list in float_kinds: softmax on ORT) are islands wherever the
target rules allow float ops, whether or not the table names them. `islands(graph)` lists every island with its
reason: what the manifest records and `tcc build` prints.

The step that chooses the nodes (accuracy floor, ORT speed) is tcc.quant.place.placer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol, cast

from .file import CalibrationTable
from .records import Placement

KEY = "placement"
WIDENED: Final = "widened"
REASONS = {
    # the target's rules: no integer form, or one the rules compute in float (a division's operands; under ONNX
    # Runtime's, a computing node that writes a graph output: tcc.quant.table.rules)
    "required": "no integer form on this target, or one its rules compute in float: kept in float where the target "
    "allows float ops",
    "accuracy": "kept in float to reach the output cosine floor (--min-cos)",
    "speed": "kept in float: its integer kernel measured slower than its float twin on this CPU (--speed)",
    "pinned": "kept in float on request (--keep-float)",
}


def float_nodes(table: CalibrationTable) -> frozenset:
    """The anchor names the table keeps in float (empty without a placement)."""
    nodes = (table.placement or {}).get("nodes") or {}
    return frozenset(name for name, entry in nodes.items() if entry.get("precision") == "float")


def placement_doc(
    nodes: dict[str, Any] | Iterable[str], record: dict[str, Any] | None = None, widened: dict[str, Any] | None = None
) -> Placement:
    """A placement for the table: `nodes` in float ({name: entry}, or names, pinned), what the step measured, and
    the nodes whose outputs it widened ({name: entry}; their tensors are the table's to widen)."""
    if not isinstance(nodes, dict):
        nodes = {name: {"precision": "float", "reason": "pinned"} for name in nodes}
    doc = {
        **(record or {}),
        "nodes": dict(sorted(nodes.items())),
        **({WIDENED: dict(sorted(widened.items()))} if widened else {}),
    }
    return cast(Placement, doc)


def with_placement(table: CalibrationTable, placement: Placement) -> CalibrationTable:
    """A copy of `table` carrying `placement` (no placement when it keeps no node in float and widens none)."""
    return table.with_placement(placement)


class _Node(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def integer(self) -> bool: ...


class _Graph(Protocol):  # tcc.quant.intgraph's IntGraph and QGraph (a layer above this one)
    @property
    def nodes(self) -> Sequence[_Node]: ...


def islands(graph: _Graph, table: CalibrationTable | None = None) -> list[dict[str, str]]:
    """Every float island of `graph` (an IntGraph or QGraph): node, kind, ONNX op and why, in graph order."""
    placed = ((table.placement or {}).get("nodes") or {}) if table is not None else {}
    out = []
    for n in graph.nodes:
        if n.integer:
            continue
        entry = placed.get(n.name, {})
        reason = entry.get("reason", "required")
        out.append({"node": n.name, "kind": n.kind, "reason": reason, "why": REASONS.get(reason, reason)})
    return out


def summary_line(found: list[dict[str, str]]) -> str | None:
    """One line for `tcc build` / `tcc calibrate`: how many islands, which, and why (None without islands)."""
    if not found:
        return None
    by_reason: dict[str, list[str]] = {}
    for f in found:
        by_reason.setdefault(f["reason"], []).append(f["node"])
    parts = [f"{len(v)} {k} ({', '.join(v[:4])}{', ...' if len(v) > 4 else ''})" for k, v in by_reason.items()]
    return f"float islands: {len(found)} node(s) of the INT8 graph run in float32: " + "; ".join(parts)
