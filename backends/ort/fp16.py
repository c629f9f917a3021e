"""FP32 ONNX -> FP16 ONNX with FP32 I/O: weights and activations in float16, a Cast at each graph input and output.

Written with plain `onnx` (no onnxconverter-common). Rules:
  - every float32 initializer and Constant becomes float16, except inputs that ONNX requires to stay float32
    (KEEP_FP32: Resize roi/scales, Upsample scales); a value above the float16 range (65504) is an error naming it;
  - Cast nodes that produce float32 inside the graph now produce float16;
  - each float32 graph input `x` gets `Cast(x) -> x.fp16` in front; each float32 output `y` is produced as
    `y.fp16` and cast back, so callers keep feeding and reading float32 under the same names;
  - value_info is dropped and re-inferred; the result passes the full ONNX checker.
After the pass pipeline there is no BatchNormalization; if one remains, its parameters become float16 too
(valid for every opset; ORT runs it).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tcc.errors import BuildError

FP16_MAX = float(np.finfo(np.float16).max)
KEEP_FP32 = {"Resize": {1, 2}, "Upsample": {1}}  # (op, input index) that ONNX types as tensor(float)
FLOAT = TensorProto.FLOAT


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    init_names = {t.name for t in g.initializer}
    _initializers_to_half(g)
    _constants_to_half(g)
    _cast_at_the_boundary(g, init_names | {t.name for t in g.initializer})
    del g.value_info[:]
    try:
        out = onnx.shape_inference.infer_shapes(out, check_type=True, strict_mode=True)
        onnx.checker.check_model(out, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise BuildError(f"float16 conversion produced an invalid model: {str(e).strip().splitlines()[0]}") from None
    return out


def _initializers_to_half(g: onnx.GraphProto) -> None:
    """Every float32 initializer to float16, but for the inputs ONNX types as float32 (KEEP_FP32); one used both
    ways gets a float16 copy for its other uses."""
    uses: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in g.node:
        for i, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, i))
    for t in list(g.initializer):
        if t.data_type != TensorProto.FLOAT:
            continue
        name = t.name
        where = uses.get(name, [])
        keep = [(n, i) for n, i in where if i in KEEP_FP32.get(n.op_type, ())]
        if len(keep) == len(where) and where:
            continue
        half = _half(numpy_helper.to_array(t), name, where)
        if keep:  # used both as float32 and as T: a float16 copy for the T uses
            copy = numpy_helper.from_array(half, f"{name}.fp16")
            g.initializer.append(copy)
            for n, i in where:
                if (n, i) not in keep:
                    n.input[i] = copy.name
        else:
            t.CopyFrom(numpy_helper.from_array(half, name))


def _constants_to_half(g: onnx.GraphProto) -> None:
    """Constants' float32 values to float16; Casts to float32 inside the graph cast to float16."""
    for node in g.node:
        for attr in node.attribute:
            if node.op_type in ("Constant", "ConstantOfShape") and attr.name == "value" and attr.t.data_type == FLOAT:
                attr.t.CopyFrom(
                    numpy_helper.from_array(_half(numpy_helper.to_array(attr.t), node.name, []), attr.t.name)
                )
            elif node.op_type == "Constant" and attr.name in ("value_float", "value_floats"):
                raise BuildError(f"node '{node.name}': Constant {attr.name} cannot be converted to float16")
            elif node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
                attr.i = TensorProto.FLOAT16


def _cast_at_the_boundary(g: onnx.GraphProto, init_names: set[str]) -> None:
    """A Cast to float16 after each float32 graph input and one back to float32 before each output, under the
    same names."""
    front, back = [], []
    for vi in g.input:
        if vi.name in init_names or vi.type.tensor_type.elem_type != FLOAT:
            continue
        half_name = f"{vi.name}.fp16"
        for node in g.node:
            for i, name in enumerate(node.input):
                if name == vi.name:
                    node.input[i] = half_name
        front.append(
            helper.make_node("Cast", [vi.name], [half_name], name=f"{vi.name}.cast_fp16", to=TensorProto.FLOAT16)
        )
    for vi in g.output:
        if vi.type.tensor_type.elem_type != FLOAT:
            continue
        half_name = f"{vi.name}.fp16"
        for node in g.node:
            for i, name in enumerate(node.output):
                if name == vi.name:
                    node.output[i] = half_name
            for i, name in enumerate(node.input):
                if name == vi.name:
                    node.input[i] = half_name
        back.append(helper.make_node("Cast", [half_name], [vi.name], name=f"{vi.name}.cast_fp32", to=FLOAT))
    nodes = front + list(g.node) + back
    del g.node[:]
    g.node.extend(nodes)


def _half(a: np.ndarray, name: str, where) -> np.ndarray:
    big = float(np.max(np.abs(a))) if a.size else 0.0
    if not np.isfinite(big) or big > FP16_MAX:
        users = ", ".join(sorted({n.name for n, _ in where})) or name
        raise BuildError(
            f"tensor '{name}' (used by {users}) holds values up to {big:.6g}, beyond the float16 "
            f"range (+-{FP16_MAX:g}); build it at fp32"
        )
    return a.astype(np.float16)
