"""What every pass is made of: a `Pass` (model -> model, plus what it did), rewrite `Rule`s and their driver, and
the onnx-graphsurgeon round trip that keeps what graphsurgeon drops (model metadata, node doc strings).

A rewrite pass is a short list of rules, each `(name, anchor op type, match, rewrite)`:

    fold_batchnorm = rewrite_pass("fold_batchnorm", "...", [
        Rule("conv_bn", "BatchNormalization", match_conv_bn, fold_into_conv),
        Rule("gemm_bn", "BatchNormalization", match_gemm_bn, fold_into_gemm),
    ])

`match(node, graph)` returns the bindings (a dict) or None; `rewrite(graph, bindings)` edits node inputs/outputs
and leaves dead nodes to `graph.cleanup()`. The driver applies the rules until none matches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..errors import TccError

Stats = dict[str, int]


class PassError(TccError):
    """A pass failed, or the pipeline's result breaks its promise (a standalone BatchNormalization survived)."""


@dataclass(frozen=True)
class Pass:
    """A pass: `pass_(model)` returns the new model; `pass_.run(model)` returns (model, stats)."""

    name: str
    doc: str
    run: Callable[[onnx.ModelProto], tuple[onnx.ModelProto, Stats]]

    def __call__(self, model: onnx.ModelProto) -> onnx.ModelProto:
        return self.run(model)[0]


@dataclass(frozen=True)
class Rule:
    name: str
    op: str  # the anchor's op type
    match: Callable[[gs.Node, gs.Graph], dict | None]
    rewrite: Callable[[gs.Graph, dict], None]


# ---------------------------------------------------------------------------------------------------- round trip
def import_graph(model: onnx.ModelProto, infer_shapes: bool = False) -> gs.Graph:
    graph = gs.import_onnx(model)
    if infer_shapes:
        shapes = infer_value_shapes(model)
        for t in graph.tensors().values():
            if isinstance(t, gs.Variable) and t.name in shapes:
                t.dtype, t.shape = shapes[t.name]
    return graph


def infer_value_shapes(model: onnx.ModelProto, batch: int | None = None) -> dict[str, tuple]:
    """{tensor name: (numpy dtype, shape)} from ONNX shape inference, run on a copy of the model without its big
    weights (they become typed graph inputs), so a 500 MB VGG is not serialized for it. `batch`: the graph
    inputs' first dimension set to it, so that a tensor whose first axis folds the batch into rows (tokens before a
    linear layer) has a number there too."""
    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    g = skeleton.graph
    g.node.extend(model.graph.node)
    g.input.extend(model.graph.input)
    if batch is not None:
        for i in g.input:
            if i.type.tensor_type.shape.dim:
                i.type.tensor_type.shape.dim[0].Clear()
                i.type.tensor_type.shape.dim[0].dim_value = batch
    g.output.extend(model.graph.output)
    for t in model.graph.initializer:
        if onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize * int(np.prod(t.dims)) <= 4096:
            g.initializer.append(t)  # small: shapes, split sizes, pads may be read by shape inference
        else:
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    # data propagation: a shape computed from the input's (a learned tensor expanded to the batch) is known too
    inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=True).graph
    shapes = {}
    for vi in [*inferred.value_info, *inferred.input, *inferred.output]:
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
        shapes[vi.name] = (onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type), dims)
    return shapes


def export_graph(graph: gs.Graph, like: onnx.ModelProto) -> onnx.ModelProto:
    """Clean up, sort and export; carry over what graphsurgeon does not keep from the model `like`."""
    graph.cleanup().toposort()
    model = gs.export_onnx(graph, do_type_check=False)
    del model.graph.value_info[:]  # inferred shapes are recomputed on demand, never stale
    return restore_metadata(model, like)


def restore_metadata(model: onnx.ModelProto, like: onnx.ModelProto) -> onnx.ModelProto:
    """Model fields and node doc strings (spec locations) of `like`, matched by node name."""
    model.ir_version = like.ir_version
    model.producer_name, model.producer_version = like.producer_name, like.producer_version
    model.domain, model.model_version, model.doc_string = like.domain, like.model_version, like.doc_string
    del model.metadata_props[:]
    model.metadata_props.extend(like.metadata_props)
    docs = {n.name: n.doc_string for n in like.graph.node if n.doc_string}
    for n in model.graph.node:
        if n.name in docs and not n.doc_string:
            n.doc_string = docs[n.name]
    return model


def op_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


# ---------------------------------------------------------------------------------------------------- drivers
def apply_rules(graph: gs.Graph, rules: list[Rule], max_rounds: int = 1000) -> Stats:
    counts = {r.name: 0 for r in rules}
    for _ in range(max_rounds):
        changed = False
        for node in list(graph.nodes):
            for rule in rules:
                if node.op != rule.op or not node.outputs:  # a node a rewrite disconnected is dead
                    continue
                bindings = rule.match(node, graph)
                if bindings is not None:
                    rule.rewrite(graph, bindings)
                    counts[rule.name] += 1
                    changed = True
                    break
        if not changed:
            return counts
        graph.cleanup()
    raise AssertionError("rewrite rules did not converge")


def rewrite_pass(name: str, doc: str, rules: list[Rule], infer_shapes: bool = False) -> Pass:
    def run(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Stats]:
        graph = import_graph(model, infer_shapes)
        stats = apply_rules(graph, rules)
        return export_graph(graph, model), stats

    return Pass(name, doc, run)


def graph_pass(name: str, doc: str, fn: Callable[[gs.Graph], Stats], infer_shapes: bool = False) -> Pass:
    """A pass written as a function on the graphsurgeon graph (returns its stats)."""

    def run(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Stats]:
        graph = import_graph(model, infer_shapes)
        stats = fn(graph)
        return export_graph(graph, model), stats

    return Pass(name, doc, run)


# ---------------------------------------------------------------------------------------------------- helpers
def producer(t: gs.Tensor) -> gs.Node | None:
    return t.inputs[0] if len(t.inputs) == 1 else None


def only_feeds(t: gs.Tensor, node: gs.Node, graph: gs.Graph) -> bool:
    """`t` is read by `node` alone (once) and is not a graph output."""
    return len(t.outputs) == 1 and t.outputs[0] is node and t not in graph.outputs and list(node.inputs).count(t) == 1


def const(t: gs.Tensor | None) -> np.ndarray | None:
    return np.asarray(t.values) if isinstance(t, gs.Constant) else None


def const_value(t: gs.Tensor) -> np.ndarray:
    """The values of a tensor a rule's match found constant."""
    value = const(t)
    assert value is not None, f"{t.name}: not a constant"
    return value


def replace_uses(graph: gs.Graph, old: gs.Tensor, new: gs.Tensor) -> None:
    """Every reader of `old` (nodes and graph outputs) reads `new` instead."""
    for consumer in list(old.outputs):
        for i, t in enumerate(consumer.inputs):
            if t is old:
                consumer.inputs[i] = new
    graph.outputs = [new if t is old else t for t in graph.outputs]


def disconnect(node: gs.Node) -> None:
    node.inputs.clear()
    node.outputs.clear()


def bypass(graph: gs.Graph, node: gs.Node) -> bool:
    """Remove a node whose first output equals its first input. False where that cannot be done (an output that
    is the graph input itself)."""
    src, out = node.inputs[0], node.outputs[0]
    if out in graph.outputs:
        prod = producer(src)
        if prod is None or src in graph.outputs:
            return False
        disconnect(node)
        replace_uses(graph, src, out)  # everyone else reads the graph output's name now
        prod.outputs[prod.outputs.index(src)] = out
        return True
    disconnect(node)
    replace_uses(graph, out, src)
    return True


def fresh_name(graph: gs.Graph, base: str) -> str:
    names = set(graph.tensors())
    if base not in names:
        return base
    k = 1
    while f"{base}_{k}" in names:
        k += 1
    return f"{base}_{k}"
