"""ONNX Resize as gathers, before TVM's ONNX frontend: a nearest resize as a Gather of rows and one of columns, a
bilinear one as two Gathers per axis mixed by constant weights (a + (b - a) w), a cubic one as four Gathers per axis
times their weights, summed, from the sampling tables the op table defines (tcc.ops.spatial, read off the node by
tcc.quant.intgraph.node_constants.resize_sampling).

Why: TOPI's resize2d computes each output's source coordinate at run time (floor, rounding, clamps), and on the
ARMv7 target (arm-a7) those modules computed wrong values (a bilinear 16 -> 32 resize off by up to 6.5 on
outputs of magnitude 4: every mode but a nearest asymmetric one, fused or not, with or without fast-math; a cubic
one gave NaN), while
host and AArch64 matched ONNX Runtime. Gathers by precomputed indices compute no coordinate at all, take the
same rows as the PyTorch lowering and the INT8 kinds (`resize_nearest`, `resize_bilinear`), and run on every target.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tcc.ops.spatial import linear_taps
from tcc.passes.base import infer_value_shapes
from tcc.quant.intgraph.node_constants import resize_sampling


def resize_as_gathers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with every Resize of a static [N, C, H, W] (nearest, linear or cubic) written as gathers;
    the model itself where there is none."""
    g = model.graph
    if not any(n.op_type == "Resize" for n in g.node):
        return model
    shapes = {name: dims for name, (_, dims) in infer_value_shapes(model).items()}
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    for n in model.graph.node:
        src, dst = shapes.get(n.input[0]) if n.input else None, shapes.get(n.output[0])
        if n.op_type != "Resize" or src is None or dst is None or len(src) != 4 or len(dst) != 4:
            nodes.append(n)
            continue
        if not all(isinstance(d, int) for d in (*src[2:], *dst[2:])):
            nodes.append(n)
            continue
        a = resize_sampling(n, src, dst, inits)
        if a["mode"] not in ("nearest", "linear", "cubic"):
            nodes.append(n)
            continue
        name, value = n.name or n.output[0], n.input[0]
        for axis, (size_in, size_out, scale) in (
            (2, (src[2], dst[2], a["scales"][0])),
            (3, (src[3], dst[3], a["scales"][1])),
        ):
            last = axis == 3
            target = n.output[0] if last else f"{name}/rows"
            if a["mode"] == "nearest":
                index = a["index_h" if axis == 2 else "index_w"]
                nodes.append(_gather(name, value, index, axis, target, added))
            elif a["mode"] == "cubic":
                nodes += _cubic(name, value, a["rows" if axis == 2 else "cols"], axis, target, added)
            else:
                i0, i1, w = linear_taps(int(size_in), int(size_out), scale, a["coordinates"])
                shape = [1, 1, -1, 1] if axis == 2 else [1, 1, 1, -1]
                low, high = f"{name}/{axis}/low", f"{name}/{axis}/high"
                nodes.append(_gather(name, value, i0, axis, low, added))
                nodes.append(_gather(name, value, i1, axis, high, added))
                weight = f"{name}/{axis}/weight"
                added.append(numpy_helper.from_array(w.reshape(shape).astype(np.float32), weight))
                step = f"{name}/{axis}/step"
                nodes.append(helper.make_node("Sub", [high, low], [step], name=step))
                mixed = f"{name}/{axis}/mixed"
                nodes.append(helper.make_node("Mul", [step, weight], [mixed], name=mixed))
                nodes.append(helper.make_node("Add", [low, mixed], [target], name=f"{name}/{axis}/lerp"))
            value = target
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(added)
    return out


def _cubic(name: str, value: str, table: dict, axis: int, target: str, added: list) -> list[onnx.NodeProto]:
    """One axis of a cubic resize: the four taps' rows, each times its weights, summed in the taps' order."""
    shape = [1, 1, -1, 1] if axis == 2 else [1, 1, 1, -1]
    taps, weights = np.asarray(table["taps"]), np.asarray(table["weights"], np.float32)
    nodes, total = [], ""
    for k in range(4):
        tap, weight, scaled = (f"{name}/{axis}/{part}{k}" for part in ("tap", "weight", "scaled"))
        nodes.append(_gather(name, value, taps[:, k], axis, tap, added))
        added.append(numpy_helper.from_array(weights[:, k].reshape(shape), weight))
        nodes.append(helper.make_node("Mul", [tap, weight], [scaled], name=scaled))
        if total:
            summed = target if k == 3 else f"{name}/{axis}/sum{k}"
            nodes.append(helper.make_node("Add", [total, scaled], [summed], name=summed))
            scaled = summed
        total = scaled
    return nodes


def _gather(name: str, value: str, indices, axis: int, target: str, added: list) -> onnx.NodeProto:
    index = f"{target}/index"
    added.append(numpy_helper.from_array(np.asarray(indices, np.int64), index))
    return helper.make_node("Gather", [value, index], [target], name=f"{target}/gather", axis=axis)


def takes_clipped(mod):
    """The Relax module's takes in "clip" mode: the frontend writes ONNX Gather as take's "fast" mode, whose TOPI
    kernel logs a warning per call at compile time (its indices here are in bounds: the same values)."""
    from tvm import relax  # deferred for start-up: loads tvm

    from .relax_rewrite import call_rewrite_pass  # deferred for start-up: loads tvm

    def rewrite(_mutator, call):
        if call.attrs.mode != "fast":
            return None
        return relax.op.take(call.args[0], call.args[1], call.attrs.axis, mode="clip")

    return call_rewrite_pass("relax.take", rewrite, "tcc.takes_clipped")(mod)
