"""Concat-of-concat flattening: concat(concat(a, b), c) -> concat(a, b, c) when the inner concat (same axis) is
read by the outer one alone. Nested branches produce such chains; NPUs place one concat's inputs side by side in
memory for free, a chain costs a copy per level."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from .base import Rule, only_feeds, producer, rewrite_pass


def _axis(node: gs.Node) -> int | None:
    axis = node.attrs.get("axis")
    if axis is None or axis >= 0:
        return axis
    shape = node.outputs[0].shape
    return axis + len(shape) if shape is not None else None


def _match_nested(outer: gs.Node, graph: gs.Graph) -> dict | None:
    axis = _axis(outer)
    if axis is None:
        return None
    for t in outer.inputs:
        inner = producer(t)
        if inner is not None and inner.op == "Concat" and _axis(inner) == axis and only_feeds(t, outer, graph):
            return {"outer": outer, "inner": inner, "tensor": t}
    return None


def _splice(graph: gs.Graph, m: dict) -> None:
    outer, inner, t = m["outer"], m["inner"], m["tensor"]
    inputs = list(outer.inputs)
    k = inputs.index(t)
    inputs[k : k + 1] = list(inner.inputs)
    inner.inputs.clear()
    inner.outputs.clear()
    outer.inputs.clear()
    outer.inputs.extend(inputs)


flatten_concat = rewrite_pass(
    "flatten_concat",
    "a Concat read only by another Concat along the same axis is merged into it",
    [Rule("concat_concat", "Concat", _match_nested, _splice)],
    infer_shapes=True,
)
