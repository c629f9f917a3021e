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
from .ops import ALIASES, CONVERTERS, OnnxNode, SpecNode, Unsupported
from .patterns import rewrite_patterns

_CONTROL_FLOW = ("If", "Loop", "Scan")
_SHOWN = 12  # refused nodes listed one by one (a ConvNeXt at opset 13 has 475)


@dataclass
class ImportedNode:
    id: str
    node: SpecNode
    inputs: list[str]  # spec ids (or "input") of its inputs, in order
    onnx_name: str
    path: tuple[str, ...] = ()  # the module path its ONNX names give: ("layer1", "0", "conv1")


@dataclass
class ImportedGraph:
    name: str
    input_shape: tuple[int, int, int]  # [C, H, W]
    nodes: list[ImportedNode]
    output: str  # the id of the node whose value is the model's output
    opset: int
    notes: list[str] = field(default_factory=list)
    onnx: onnx.ModelProto | None = None  # the graph as read, input shape fixed (the reference to check against)
    shapes: dict[str, tuple] = field(default_factory=dict)  # per-sample shape of every value (node id, `id.k`)


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
        raise DataError(
            f"{path}: {len(inputs)} inputs and {len(model.graph.output)} outputs; tcc imports image "
            "classifiers: one input [N, C, H, W], one output"
        )
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
        raise DataError(
            f"{path}: input '{value.name}' has a dynamic height or width; give it with --size H W "
            "(tcc import MODEL --size H W; a command that takes the ONNX file: --set size=[H,W])"
        )
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
        # constant folding only: its optimizer passes would fold a layer scale (Mul) into the conv before it
        folded, _ = onnxsim.simplify(fixed, check_n=0, perform_optimization=False)
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


def module_path(text: str) -> tuple[str, ...]:
    """The module path in an ONNX name: `features.0.weight` -> (features, 0); torch.onnx.export's node names, whose
    scopes each repeat the module path (`/features/features.0/features.0.0/Conv`, `/layer1/layer1.0/conv1/Conv`),
    -> (features, 0, 0), (layer1, 0, conv1)."""
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
    names = ("_".join(p for p in re.split(r"[^0-9A-Za-z_]+", part) if p) for part in text.split("."))
    return tuple(n for n in names if n)


def identifier(path: tuple[str, ...], fallback: str = "node") -> str:
    """A spec id from a module path: (layer1, 0, conv1) -> layer1_0_conv1; a name starting with a digit gets an
    `n` before it unless it is a number (an id may be one: `features.0`)."""
    name = "_".join(path) or fallback
    return name if name[0].isalpha() or name[0] == "_" or name.isdigit() else f"n{name}"


def restates_float(proto, const: dict) -> bool:
    """A Cast to float32 of a computed value: every computed value of an image model is float32 already (integer
    values, shapes, are constants once the graph is folded at batch 1), so the Cast only restates the type (timm's
    `.float()` before an attention's normalization)."""
    return (
        proto.op_type == "Cast"
        and helper.get_attribute_value(next(a for a in proto.attribute if a.name == "to")) == onnx.TensorProto.FLOAT
        and proto.input[0] not in const
    )


def _convert_nodes(protos: list, const: dict, shapes: dict, producer: dict[str, str]):
    """Every node converted (ImportedNodes, ids unique, in order) and every refusal, one line per node."""
    nodes: list[ImportedNode] = []
    taken = {INPUT}
    refused: list[str] = []
    lost: set[str] = set()  # the values of refused nodes: a node reading one is refused with them, unnamed
    for proto in protos:
        if proto.op_type == "Constant":
            continue
        onnx_node = OnnxNode(proto, const, shapes)
        label = proto.name or proto.output[0]
        if proto.op_type in ALIASES or restates_float(proto, const):
            if proto.input[0] in producer:
                producer[proto.output[0]] = producer[proto.input[0]]
            else:
                lost.add(proto.output[0])
            continue
        missing = [i for i in onnx_node.activations() if i not in producer]
        convert = CONVERTERS.get(proto.op_type)
        try:
            if convert is None:
                raise Unsupported("no spec op")
            spec = convert(onnx_node)
            if missing:  # named where what it reads comes from nowhere, not where it comes from a refused node
                raise Unsupported(
                    None if set(missing) <= lost else f"reads '{missing[0]}', which no imported node makes"
                )
        except Unsupported as e:
            if e.args[0] is not None:
                refused.append(f"node '{label}' ({proto.op_type}): {e}")
            lost.update(proto.output)
            continue
        meaningful = spec.weight_name and "::" not in spec.weight_name  # not torch's anonymous onnx::Conv_193
        path = module_path(spec.weight_name if meaningful else label)
        base = identifier(path, spec.op)
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        nodes.append(ImportedNode(name, spec, [producer[i] for i in onnx_node.activations()], label, path))
        if len(proto.output) == 1:
            producer[proto.output[0]] = name
        else:  # a split: output k is `id.k` in the spec
            producer.update({o: f"{name}.{k}" for k, o in enumerate(proto.output) if o})
    return nodes, refused


def convert_graph(path: str | Path, size: tuple[int, int] | None = None) -> ImportedGraph:
    """The ONNX model at `path` as spec nodes; every node that has no spec equivalent named in one DataError."""
    model = read_model(path)
    value = _input_value(model, path)
    shape = _fixed_shape(value, size, path)
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx") or n.op_type in _CONTROL_FLOW:
            what = f"custom domain '{n.domain}'" if n.domain not in ("", "ai.onnx") else "control flow"
            raise DataError(
                f"{path}: node '{n.name or n.output[0]}' ({n.op_type}): {what}; tcc imports "
                "feed-forward image classifiers"
            )
    folded, notes = _fold(model, value.name, shape, path)
    const, shapes = _constants(folded), _shapes(folded, path)
    producer: dict[str, str] = {value.name: INPUT}  # ONNX value name -> spec id (or the model input)
    nodes, refused = _convert_nodes(rewrite_patterns(list(folded.graph.node), const, shapes), const, shapes, producer)
    if refused:
        shown = refused[:_SHOWN] + ([f"... and {len(refused) - _SHOWN} more"] if len(refused) > _SHOWN else [])
        raise DataError(
            f"{path}: {len(refused)} node(s) with no spec equivalent, nothing written:\n  " + "\n  ".join(shown)
        )
    out = folded.graph.output[0].name
    if producer.get(out) in (None, INPUT):
        raise DataError(f"{path}: the output '{out}' is not computed by any imported node")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    name = identifier(module_path(Path(path).stem)).lower()  # exporters name graphs main_graph or torch_jit
    values = {spec: shapes[name] for name, spec in producer.items() if name in shapes}
    values[INPUT] = shape
    return ImportedGraph(name, shape, nodes, producer[out], opset, notes, folded, values)
