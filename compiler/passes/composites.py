"""Ops written as several ONNX nodes that compute one function, read back from the marks the ONNX lowering records
(tcc.lower.to_onnx.COMPOSITES_KEY): GELU as Erf (or Tanh) and arithmetic below opset 20, a layer norm as reductions and
arithmetic below opset 17 (or, above, LayerNormalization between two Transposes for the channel axis).

    regions = composites(model)      # {IR node: Composite}, only the marks whose nodes still form the region

The INT8 planner takes a region as the one function it is (a GELU region is one lookup table, as an ONNX Gelu
node would be), so its inner tensors are never quantized, and the float TFLite lowering writes TFLite's own op for
it. A mark whose nodes a pass removed or rewired no longer describes a closed region and is dropped, so the
planner then sees (and names) the plain nodes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import onnx

from ..lower.to_onnx import COMPOSITES_KEY


@dataclass(frozen=True)
class Composite:
    name: str  # the IR node the region lowers
    function: str  # the ONNX op it computes (Gelu, LayerNormalization)
    attrs: dict = field(hash=False, compare=False)  # that op's attributes (and tcc's: the parameters' names)
    nodes: tuple[str, ...]  # its ONNX nodes, in graph order
    input: str  # the one activation it reads
    output: str  # the one tensor it writes
    internal: tuple[str, ...]  # tensors computed inside it


def composites(model: onnx.ModelProto) -> dict[str, Composite]:
    """The regions of `model` whose marks still hold: every node present, one activation read from outside (the
    rest constants), one output, and no inner tensor read outside the region."""
    raw = next((p.value for p in model.metadata_props if p.key == COMPOSITES_KEY), None)
    if raw is None:
        return {}
    g = model.graph
    order = {n.name: k for k, n in enumerate(g.node)}
    by_name = {n.name: n for n in g.node}
    constants = {t.name for t in g.initializer}
    readers: dict[str, set[str]] = {}
    for n in g.node:
        for t in n.input:
            readers.setdefault(t, set()).add(n.name)
    graph_outputs = {o.name for o in g.output}
    found = {}
    for name, mark in sorted(json.loads(raw).items()):
        if not mark["nodes"] or any(n not in by_name for n in mark["nodes"]):
            continue
        members = sorted(mark["nodes"], key=order.__getitem__)
        inside = set(members)
        produced = [t for n in members for t in by_name[n].output]
        outside_inputs = {
            t for n in members for t in by_name[n].input if t and t not in produced and t not in constants
        }
        outputs = [t for t in produced if t in graph_outputs or readers.get(t, set()) - inside]
        if len(outside_inputs) != 1 or len(outputs) != 1:
            continue
        found[name] = Composite(
            name,
            mark["function"],
            mark["attrs"],
            tuple(members),
            outside_inputs.pop(),
            outputs[0],
            tuple(t for t in produced if t != outputs[0]),
        )
    return found
