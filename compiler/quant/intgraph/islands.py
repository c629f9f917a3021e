"""Float islands: a node of an INT8 graph computed in float32 (its quantized inputs dequantized, its outputs
quantized again where an integer node reads them).

    model = island_model(intgraph, inode)          # the island's FP32 ONNX sub-model: the nodes it covers, as-is
    ys = FloatOps().run(qnode, [x0, x1])           # float32 arrays in, float32 arrays out (ONNX Runtime, 1 thread)

The sub-model is the island's own slice of the FP32 graph after the passes: the same ONNX nodes (a producer with
its folded activation, both nodes of an x * g(x) pattern), the same initializers, its quantized or float inputs as
graph inputs. So an island's meaning is the FP32 op's meaning, written once: the integer reference runs the slice
on ONNX Runtime's float kernels (`FloatOps`), the TVM lowering imports it with TVM's ONNX frontend, ORT's QDQ model
simply leaves the nodes without Q/DQ, TFLite lowers the kind with its float builtins.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ...measure.ort import session
from .match import INode, IntGraph


def island_model(graph: IntGraph, node: INode) -> onnx.ModelProto:
    """The FP32 ONNX model of one island: the ONNX nodes it covers (in graph order), their initializers, its
    inputs and outputs as float32 graph inputs and outputs (batch dimension symbolic), and the shape arithmetic
    that computes a shape input of theirs from those inputs (a Resize's sizes: the batch read by Shape)."""
    src = graph.model.graph
    covered = set(node.covers)
    known = set(node.inputs) | {t.name for t in src.initializer}
    producer = {o: n for n in src.node for o in n.output}
    wanted = [i for n in src.node if (n.name or n.output[0]) in covered for i in n.input if i and i not in known]
    while wanted:
        p = producer.get(wanted.pop())
        if p is not None and (p.name or p.output[0]) not in covered:
            covered.add(p.name or p.output[0])
            wanted.extend(i for i in p.input if i and i not in known)
    nodes = [n for n in src.node if (n.name or n.output[0]) in covered]
    used = {i for n in nodes for i in n.input if i}
    inits = [t for t in src.initializer if t.name in used]

    def value(name: str):
        dims = list(graph.shapes.get(name) or ())
        shape = ["N", *[d if isinstance(d, int) else None for d in dims[1:]]] if dims else None
        return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)

    g = helper.make_graph(
        nodes,
        f"island:{node.name}",
        [value(i) for i in dict.fromkeys(node.inputs)],
        [value(o) for o in node.outputs],
        inits,
    )
    m = helper.make_model(g, opset_imports=list(graph.model.opset_import), ir_version=graph.model.ir_version)
    return m


class FloatOps:
    """Runs islands' sub-models on ONNX Runtime's CPU float kernels, one session per island (kept for the life of
    this object), one thread: the same result whatever the machine's core count."""

    def __init__(self) -> None:
        self._sessions: dict[int, tuple] = {}  # id(sub-model) -> (session, the sub-model: keeps the id taken)

    def run(self, node, inputs: list[np.ndarray]) -> list[np.ndarray]:
        key = id(node.float_model)
        if key not in self._sessions:
            self._sessions[key] = (session(node.float_model, threads=1), node.float_model)
        sess = self._sessions[key][0]
        names = [i.name for i in sess.get_inputs()]
        feed = dict(zip(node.inputs, (np.ascontiguousarray(v, np.float32) for v in inputs)))
        return [np.asarray(y, np.float32) for y in sess.run(list(node.outputs), {n: feed[n] for n in names})]
