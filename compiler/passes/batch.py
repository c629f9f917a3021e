"""A fixed batch: the graph inputs' and outputs' first axis set to a number, and the shape arithmetic that read the
batch from the input (Shape -> Slice -> Concat, the shape of a learned tensor's Expand) folded into constants.

NPU toolchains compile one static shape (Axera's Pulsar2 is given onnxsim-simplified batch-1 models and has no
Shape in its op lists); a ViT's class token and position embedding would otherwise be refused. Only the shape
arithmetic is folded: the Expand of a learned tensor stays a node, so the calibration table's tensors all remain.

    static = fixed_batch(model, 1)
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from .base import PassError, infer_value_shapes

SHAPE_OPS = ("Shape", "Slice", "Concat", "Gather", "Unsqueeze", "Squeeze", "Cast")
SHAPE_INPUTS = {"Expand": 1, "Reshape": 1, "Resize": 3}  # the ops' input that is a shape (Resize: its sizes)


def shape_arithmetic(g: onnx.GraphProto, float_type: set, consumers: dict, graph_outputs: set) -> set[str]:
    """The nodes that compute shapes (Shape -> Slice -> Concat: the batch of `param`'s Expand) and only feed shape
    inputs, by name: no tensor of theirs is a float value (`float_type`: the names of float tensors)."""

    def shape_input(o, reader) -> bool:
        return reader.name in found or any(
            i == o and SHAPE_INPUTS.get(reader.op_type) == k for k, i in enumerate(reader.input)
        )

    found = {
        n.name
        for n in g.node
        if n.op_type in SHAPE_OPS and n.name and not any(o in float_type or o in graph_outputs for o in n.output)
    }
    while True:
        keep = {
            n.name
            for n in g.node
            if n.name in found and all(shape_input(o, c) for o in n.output for c in consumers.get(o, []))
        }
        if keep == found:
            return found
        found = keep


def fixed_batch(model: onnx.ModelProto, batch: int = 1) -> onnx.ModelProto:
    """A copy of `model` whose graph inputs and outputs have `batch` as their first dimension, with the shape
    arithmetic folded into initializers (named as the tensors they replace)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    constants = {t.name for t in g.initializer}
    for vi in [*(i for i in g.input if i.name not in constants), *g.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = batch
    typed = infer_value_shapes(m)
    float_type = {name for name, (dtype, _) in typed.items() if dtype is not None and dtype.kind == "f"}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    found = shape_arithmetic(g, float_type, consumers, {o.name for o in g.output})
    if not found:
        return m
    values = _shape_values([n for n in g.node if n.name in found], typed, g, m.opset_import)
    kept = [n for n in g.node if n.name not in found]
    read = {i for n in kept for i in n.input} | {o.name for o in g.output}
    only_shapes = {i for n in g.node if n.name in found for i in n.input} - read  # their constants go too
    inits = [t for t in g.initializer if t.name not in only_shapes]
    del g.node[:], g.initializer[:]
    g.node.extend(kept)
    g.initializer.extend(inits)
    g.initializer.extend(numpy_helper.from_array(v, name) for name, v in values.items() if name in read)
    return m


def _shape_values(nodes: list, typed: dict, g: onnx.GraphProto, opsets) -> dict[str, np.ndarray]:
    """Every output of the shape arithmetic `nodes`, computed: each Shape from the inferred (now static) shape of
    its input, the rest by ONNX's reference evaluator."""
    fed: dict[str, np.ndarray] = {}
    rest = []
    for n in nodes:
        if n.op_type != "Shape":
            rest.append(n)
            continue
        dims = typed.get(n.input[0], (None, None))[1]
        if dims is None or not all(isinstance(d, int) for d in dims):
            raise PassError(
                f"node {n.name!r}: the shape of {n.input[0]!r} is not static at a fixed batch "
                f"({list(dims) if dims is not None else 'unknown'})"
            )
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        fed[n.output[0]] = np.array(dims[attrs.get("start", 0) : attrs.get("end", len(dims))], dtype=np.int64)
    if not rest:
        return fed
    produced = {o for n in rest for o in n.output}
    inits = {t.name: t for t in g.initializer}
    needed = {i for n in rest for i in n.input if i and i not in produced}
    inputs = [
        helper.make_tensor_value_info(k, onnx.TensorProto.INT64, list(v.shape)) for k, v in fed.items() if k in needed
    ]
    sub = helper.make_graph(
        rest,
        "shape_arithmetic",
        inputs,
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in sorted(produced)],
        [inits[i] for i in sorted(needed) if i in inits],
    )
    evaluator = ReferenceEvaluator(helper.make_model(sub, opset_imports=list(opsets)))
    outs = evaluator.run(None, {k: v for k, v in fed.items() if k in needed})
    return {**fed, **dict(zip(sorted(produced), (np.asarray(v) for v in outs)))}
