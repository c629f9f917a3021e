"""An ONNX classification graph read into spec nodes and a state_dict (tcc.onnx_import.ops converts each node).

The graph is checked (onnx.checker), its input shape fixed (batch 1; `size` for dynamic height and width), its
shape arithmetic folded by onnxsim (torch.onnx.export writes `x.view(x.size(0), -1)` as Shape / Gather / Concat /
Reshape) with BatchNorm kept as such, and every node converted; a node with no spec equivalent is collected, and the
model is refused naming each one, before anything is written.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import DataError
from ..ir import INPUT
from .ops import ALIASES, CHANNEL_SHUFFLE, CONVERTERS, OnnxNode, SpecNode, Unsupported

_CONTROL_FLOW = ("If", "Loop", "Scan")
_SHOWN = 12  # refused nodes listed one by one (a ConvNeXt at opset 13 has 475)


@dataclass
class ImportedNode:
    id: str
    node: SpecNode
    inputs: list[str]  # spec ids (or "input") of its inputs, in order
    onnx_name: str


@dataclass
class ImportedGraph:
    name: str
    input_shape: tuple[int, int, int]  # [C, H, W]
    nodes: list[ImportedNode]
    output: str  # the id of the node whose value is the model's output
    opset: int
    notes: list[str] = field(default_factory=list)
    onnx: onnx.ModelProto | None = None  # the graph as read, input shape fixed (the reference to check against)


def read_model(path: str | Path) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX file
        raise DataError(f"{path}: not an ONNX model ({type(e).__name__}: {str(e)[:120]})") from None
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise DataError(f"{path}: fails onnx.checker: {str(e).splitlines()[0]}") from None
    return model


def _input_value(model: onnx.ModelProto, path) -> onnx.ValueInfoProto:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise DataError(f"{path}: {len(inputs)} inputs and {len(model.graph.output)} outputs; tcc imports image "
                        "classifiers: one input [N, C, H, W], one output")
    return inputs[0]


def _fixed_shape(value: onnx.ValueInfoProto, size: tuple[int, int] | None, path) -> tuple[int, int, int]:
    dims = value.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise DataError(f"{path}: input '{value.name}' has {len(dims)} dimensions; tcc imports [N, C, H, W] images")
    c = dims[1].dim_value
    if not c:
        raise DataError(f"{path}: input '{value.name}' has no fixed channel count")
    h, w = dims[2].dim_value, dims[3].dim_value
    if size is not None:
        if (h and h != size[0]) or (w and w != size[1]):
            raise DataError(f"{path}: --size {size[0]} {size[1]}, but input '{value.name}' is fixed at {h} x {w}")
        h, w = size
    if not (h and w):
        raise DataError(f"{path}: input '{value.name}' has a dynamic height or width; give it with --size H W "
                        "(tcc import MODEL --size H W, then use the spec it writes)")
    return int(c), int(h), int(w)


def _fold(model: onnx.ModelProto, name: str, shape: tuple, path) -> tuple[onnx.ModelProto, list[str]]:
    import onnxsim  # deferred for start-up: onnxsim loads onnxruntime

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    dims = next(i for i in fixed.graph.input if i.name == name).type.tensor_type.shape.dim
    for d, v in zip(dims, (1, *shape)):
        d.Clear()
        d.dim_value = v
    try:
        folded, _ = onnxsim.simplify(fixed, check_n=0, skip_fuse_bn=True)
        return folded, []
    except Exception as e:  # a graph onnxsim cannot run: import it as written
        return fixed, [f"onnxsim could not fold the graph ({type(e).__name__}); imported as written"]


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    out = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute:  # value (a tensor), value_float(s), value_int(s)
            value = helper.get_attribute_value(n.attribute[0])
            out[n.output[0]] = numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.array(value)
    return out


def _shapes(model: onnx.ModelProto, path) -> dict[str, tuple]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as e:  # onnx's InferenceError and friends: the file's shapes do not add up
        raise DataError(f"{path}: ONNX shape inference fails: {str(e).splitlines()[0][:200]}") from None
    out = {}
    for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = v.type.tensor_type.shape.dim
        out[v.name] = tuple(d.dim_value for d in dims[1:])
    return out


def _identifier(text: str) -> str:
    """A spec id from an ONNX name: `features.0.weight` -> features_0; torch.onnx.export's node names, whose scopes
    each repeat the module path (`/features/features.0/features.0.0/Conv`, `/layer1/layer1.0/conv1/Conv`), -> the
    module's path: features_0_0, layer1_0_conv1."""
    text = re.sub(r"\.(weight|bias|W|B)$", "", text)
    if "/" in text:
        scopes = [p for p in text.split("/") if p]
        if scopes and re.fullmatch(r"[A-Z][A-Za-z]*(_\d+)?", scopes[-1]):  # the op type ending a node name
            scopes = scopes[:-1]
        parts: list[str] = []  # a scope extending the one before it replaces it: /block/block.0 -> block.0
        for scope in scopes:
            if parts and scope.startswith(parts[-1] + "."):
                parts[-1] = scope
            else:
                parts.append(scope)
        text = ".".join(parts)
    name = "_".join(p for p in re.split(r"[^0-9A-Za-z_]+", text) if p) or "node"
    return name if name[0].isalpha() or name[0] == "_" else f"n{name}"


def _channel_shuffles(nodes: list, const: dict[str, np.ndarray]) -> list:
    """ShuffleNet's channel shuffle as exporters write it: Reshape to [N, g, C/g, H, W], Transpose (0, 2, 1, 3, 4),
    Reshape back to [N, C, H, W], each read only by the next: one ChannelShuffle(groups=g) node."""
    readers: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    by_input = {n.input[0]: n for n in nodes if n.input}
    out, skip = [], set()
    for n in nodes:
        if id(n) in skip:
            continue
        shape = const.get(n.input[1]) if n.op_type == "Reshape" and len(n.input) > 1 else None
        t = by_input.get(n.output[0]) if shape is not None and shape.size == 5 else None
        back = by_input.get(t.output[0]) if t is not None and t.op_type == "Transpose" else None
        perm = next((list(helper.get_attribute_value(a)) for a in t.attribute if a.name == "perm"), None) if t else None
        if (back is not None and back.op_type == "Reshape" and perm == [0, 2, 1, 3, 4]
                and readers.get(n.output[0]) == 1 and readers.get(t.output[0]) == 1
                and const.get(back.input[1]) is not None and const[back.input[1]].size == 4):
            out.append(helper.make_node(CHANNEL_SHUFFLE, [n.input[0]], [back.output[0]], name=back.name or n.name,
                                        groups=int(shape[1])))
            skip.update((id(t), id(back)))
            continue
        out.append(n)
    return out


_GATES = {"hardsigmoid": "hardswish", "sigmoid": "silu"}  # x * gate(x): the activation exporters write in parts


def _gated_activations(nodes: list[ImportedNode], output: str | None) -> list[ImportedNode]:
    """`x * hardsigmoid(x)` read back as hardswish and `x * sigmoid(x)` as silu (opset 13 has no HardSwish; torch
    writes SiLU as Sigmoid and Mul), where the gate feeds nothing else: the spec says what the model computes."""
    readers: dict[str, int] = {}
    for n in nodes:
        for i in n.inputs:
            readers[i] = readers.get(i, 0) + 1
    by_id = {n.id: n for n in nodes}
    dropped = set()
    for n in nodes:
        if n.node.op != "mul" or len(n.inputs) != 2:
            continue
        for x, gate in (n.inputs, n.inputs[::-1]):
            g = by_id.get(gate)
            if g is not None and g.node.op in _GATES and g.inputs == [x] and readers[gate] == 1 and gate != output:
                n.node.op, n.inputs = _GATES[g.node.op], [x]
                dropped.add(gate)
                break
    return [n for n in nodes if n.id not in dropped]


def convert_graph(path: str | Path, size: tuple[int, int] | None = None) -> ImportedGraph:
    """The ONNX model at `path` as spec nodes; every node that has no spec equivalent named in one DataError."""
    model = read_model(path)
    value = _input_value(model, path)
    shape = _fixed_shape(value, size, path)
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx") or n.op_type in _CONTROL_FLOW:
            what = f"custom domain '{n.domain}'" if n.domain not in ("", "ai.onnx") else "control flow"
            raise DataError(f"{path}: node '{n.name or n.output[0]}' ({n.op_type}): {what}; tcc imports "
                            "feed-forward image classifiers")
    folded, notes = _fold(model, value.name, shape, path)
    const, shapes = _constants(folded), _shapes(folded, path)
    producer: dict[str, str] = {value.name: INPUT}  # ONNX value name -> spec id (or the model input)
    nodes: list[ImportedNode] = []
    taken = {INPUT}
    refused = []
    for proto in _channel_shuffles(list(folded.graph.node), const):
        if proto.op_type == "Constant":
            continue
        onnx_node = OnnxNode(proto, const, shapes)
        label = proto.name or proto.output[0]
        if proto.op_type in ALIASES:
            producer[proto.output[0]] = producer.get(proto.input[0], proto.input[0])
            continue
        convert = CONVERTERS.get(proto.op_type)
        if convert is None:
            refused.append(f"node '{label}' ({proto.op_type}): no spec op")
            continue
        try:
            spec = convert(onnx_node)
        except Unsupported as e:
            refused.append(f"node '{label}' ({proto.op_type}): {e}")
            continue
        missing = [i for i in onnx_node.activations() if i not in producer]
        if missing:
            refused.append(f"node '{label}' ({proto.op_type}): reads '{missing[0]}', which no imported node makes")
            continue
        meaningful = spec.weight_name and "::" not in spec.weight_name  # not torch's anonymous onnx::Conv_193
        base = _identifier(spec.weight_name if meaningful else label)
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        nodes.append(ImportedNode(name, spec, [producer[i] for i in onnx_node.activations()], label))
        if len(proto.output) == 1:
            producer[proto.output[0]] = name
        else:  # a split: output k is `id.k` in the spec
            producer.update({o: f"{name}.{k}" for k, o in enumerate(proto.output) if o})
    if refused:
        shown = refused[:_SHOWN] + ([f"... and {len(refused) - _SHOWN} more"] if len(refused) > _SHOWN else [])
        raise DataError(f"{path}: {len(refused)} node(s) with no spec equivalent, nothing written:\n  "
                        + "\n  ".join(shown))
    out = folded.graph.output[0].name
    nodes = _gated_activations(nodes, producer.get(out))
    if producer.get(out) in (None, INPUT):
        raise DataError(f"{path}: the output '{out}' is not computed by any imported node")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    name = _identifier(Path(path).stem).lower()  # exporters name graphs main_graph or torch_jit: the file says more
    return ImportedGraph(name, shape, nodes, producer[out], opset, notes, folded)
