"""Conv + activation fusion *marking*: the graph is not changed; the pairs the quantizer and the backends may fuse
are recorded in the model's metadata. Producers: Conv, Gemm, MatMul, and Add (a residual add + ReLU is one
NPU op too); activations: Relu, and Clip with constant bounds (ReLU6 is Clip(0, 6)).

Format: `model.metadata_props["tcc.fused_activations"]` is a JSON object keyed by the producing node's name:

    {"stem.conv": {"activation": "Relu", "max": null, "min": 0.0, "node": "stem.relu", "op": "Conv"},
     "features.head.conv": {"activation": "Clip", "max": 6.0, "min": 0.0, "node": "features.head.act", "op": "Conv"}}

`min`/`max` is the activation's output range (Relu: [0, inf) written as max null). A pair is marked when the
producer's output is read only by the activation and is not a graph output, so the quantizer may quantize the
activation's output only and a backend may emit one fused op. The pipeline runs this pass last, because a later
rewrite could rename or remove marked nodes; `fused_activations(model)` reads the marks back and drops any whose
nodes no longer form the pair.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..intops import ACTIVATION_OPS, FUSES_ACTIVATION
from .base import Pass, Stats, const, import_graph, only_feeds, producer

KEY = "tcc.fused_activations"
# the integer op table (tcc.intops) says which producers fold a following activation into their clamp: the
# quantizer and every INT8 backend read these marks (tcc.quant.intgraph.match), nothing recomputes them
FUSABLE = FUSES_ACTIVATION


def _clip_range(node: gs.Node) -> tuple[float | None, float | None] | None:
    if "min" in node.attrs or "max" in node.attrs:  # opset < 11
        return float(node.attrs.get("min", -np.inf)), float(node.attrs.get("max", np.inf))
    bounds: list[float | None] = []
    for i in (1, 2):
        t = node.inputs[i] if len(node.inputs) > i else None
        if t is None or not t.name:
            bounds.append(None)
            continue
        v = const(t)
        if v is None:
            return None  # dynamic bounds
        bounds.append(float(v))
    return bounds[0], bounds[1]


def find_fusions(graph: gs.Graph) -> dict[str, dict]:
    marks = {}
    for act in graph.nodes:
        if act.op not in ACTIVATION_OPS:
            continue
        lo: float | None
        hi: float | None
        if act.op == "Relu":
            lo, hi = 0.0, None
        elif act.op == "Clip":
            r = _clip_range(act)
            if r is None:
                continue
            lo, hi = r
            lo = None if lo is not None and np.isneginf(lo) else lo
            hi = None if hi is not None and np.isposinf(hi) else hi
        else:
            continue
        x = act.inputs[0]
        prod = producer(x)
        if prod is None or prod.op not in FUSABLE or not only_feeds(x, act, graph):
            continue
        marks[prod.name] = {"op": prod.op, "activation": act.op, "node": act.name, "min": lo, "max": hi}
    return marks


def _mark(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Stats]:
    marks = find_fusions(import_graph(model))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    props = [p for p in out.metadata_props if p.key != KEY]
    del out.metadata_props[:]
    out.metadata_props.extend(props)
    entry = out.metadata_props.add()
    entry.key = KEY
    entry.value = json.dumps(marks, sort_keys=True, separators=(",", ":"))
    stats: Stats = {}
    for m in marks.values():
        name = f"{m['op']}+{m['activation']}"
        stats[name] = stats.get(name, 0) + 1
    return out, dict(sorted(stats.items()))


mark_fused_activations = Pass(
    "mark_fused_activations",
    f"Conv/Gemm/MatMul/Add -> Relu/Clip pairs recorded in metadata_props[{KEY!r}] (graph unchanged)",
    _mark,
)


def fused_activations(model: onnx.ModelProto, mark_if_unmarked: bool = False) -> dict[str, dict]:
    """The marks of `model` that still describe a producer -> activation pair in its graph. A model that never went
    through the pass (no marks at all) has none, or with `mark_if_unmarked` the marks the pass would make."""
    raw = next((p.value for p in model.metadata_props if p.key == KEY), None)
    if raw is None:
        return find_fusions(import_graph(model)) if mark_if_unmarked else {}
    marks = json.loads(raw)
    nodes = {n.name: n for n in model.graph.node}
    readers: dict[str, int] = {}
    for n in model.graph.node:
        for t in n.input:
            readers[t] = readers.get(t, 0) + 1
    outputs = {o.name for o in model.graph.output}
    valid = {}
    for name, m in marks.items():
        prod, act = nodes.get(name), nodes.get(m["node"])
        if prod is None or act is None or prod.op_type != m["op"] or act.op_type != m["activation"]:
            continue
        if act.input[0] != prod.output[0] or readers.get(prod.output[0]) != 1 or prod.output[0] in outputs:
            continue
        valid[name] = m
    return valid
