"""IR -> ONNX ModelProto, written directly with `onnx.helper` (no tracing, no torch.onnx).

Each IR node of the inference graph (auxiliary heads dropped) is lowered by its op's `to_onnx` rule, which talks
to an `OnnxEmitter`: `emit.op("Conv", [x, emit.param("weight")], ...)` adds an ONNX node, `emit.param` adds the
node's parameter from the state as an initializer, `emit.const` adds a small constant (a shape, split sizes).

Names follow the IR so every report can point at a spec node:

- the ONNX node that computes an IR node's value is named after it (`dense1.layer0.dw.conv`), and so is its
  output tensor (`name.0`, `name.1`, ... for a multi-output node such as `split`);
- helper nodes of a rule that needs several ONNX nodes are `name/suffix` (`stage2.0.shuffle/transpose`); where
  they compute one function (GELU as Erf and arithmetic below opset 20, a layer norm), the model's metadata says
  so (COMPOSITES_KEY), so that later stages can take them as that function;
- parameters are initializers `name.weight`, `name.bias`, `name.running_mean`, ... (the state_dict keys);
  small constants are `name/suffix`;
- the graph input is `input` with shape [N, C, H, W] (N dynamic), the graph output `output`.

Each node's doc_string is its spec location (`file.yaml:line:col`, the file name only, so bytes do not depend on
where the spec lives). The bytes are deterministic: fixed producer name and version, no timestamps, the IR
version the lowest the opset allows.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..errors import ExportError, OpsetError, WeightsError
from ..ir import INPUT, Graph, Node, Ref

MIN_OPSET = 9
MAX_OPSET = 21  # the newest opset the rules are checked against (ONNX Runtime runs it)
DEFAULT_OPSET = 13
PRODUCER = "tcc"
INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_DIM = "N"
# metadata_props key: {IR node: {"function", "attrs", "nodes"}} for each op written as several ONNX nodes that
# compute one function (GELU below opset 20, layer norm); read back by tcc.passes.composites
COMPOSITES_KEY = "tcc.composites"


def _producer_version() -> str:
    try:
        return version("tcc")
    except Exception:  # not installed (running from a checkout)
        return "0.0.0"


class OnnxEmitter:
    """What an op's `to_onnx` rule sees: the node, its shapes, the opset, and ways to add nodes and tensors."""

    def __init__(self, builder: _Builder, node: Node, in_shapes: list[tuple], opset: int):
        self._b = builder
        self.node = node
        self.name = node.name
        self.in_shapes = in_shapes  # per sample, as in the IR
        self.out_shapes = list(node.shapes)
        self.opset = opset
        self._main = False
        self._composite: dict | None = None
        self.emitted: list[str] = []  # the ONNX nodes this rule added, in order

    # ------------------------------------------------------------------ nodes
    def op(self, op_type: str, inputs: list[str], suffix: str | None = None, outputs: int = 1, **attrs):
        """Add one ONNX node and return its output tensor name (a list when `outputs` > 1).

        Without `suffix` this is the node that computes the IR node's value: it takes the IR node's name and its
        outputs the IR's value names. With a suffix it is a helper node `name/suffix`.
        """
        if suffix is None:
            if self._main:
                raise AssertionError(f"{self.name}: a rule emits one main node (give helpers a suffix)")
            self._main = True
            node_name = self.name
            outs = [self.name] if outputs == 1 else [f"{self.name}.{i}" for i in range(outputs)]
        else:
            node_name = f"{self.name}/{suffix}"
            outs = [node_name] if outputs == 1 else [f"{node_name}.{i}" for i in range(outputs)]
        nd = helper.make_node(op_type, list(inputs), outs, name=node_name, **attrs)
        self.emitted.append(node_name)
        if self.node.where is not None:
            w = self.node.where
            nd.doc_string = f"{Path(w.file).name}:{w.line}:{w.col}"
        self._b.nodes.append(nd)
        return outs[0] if outputs == 1 else outs

    def clip(self, x: str, lo: float, hi: float, suffix: str | None = None) -> str:
        """Clip(x, lo, hi): bounds are inputs from opset 11, attributes before."""
        if self.opset >= 11:
            tag = f"{suffix}_" if suffix else ""
            lo_t = self.const(f"{tag}min", np.float32(lo), "float32")
            hi_t = self.const(f"{tag}max", np.float32(hi), "float32")
            return self.op("Clip", [x, lo_t, hi_t], suffix=suffix)
        return self.op("Clip", [x], suffix=suffix, min=float(lo), max=float(hi))

    def pad(self, x: str, pads: list[int], suffix: str = "pad") -> str:
        """Zero padding, ONNX pads order [x1_begin, x2_begin, ..., x1_end, ...] (an input from opset 11)."""
        if self.opset >= 11:
            return self.op("Pad", [x, self.const(f"{suffix}s", pads)], suffix=suffix, mode="constant")
        return self.op("Pad", [x], suffix=suffix, mode="constant", pads=list(pads), value=0.0)

    # ------------------------------------------------------------------ tensors
    def param(self, key: str, shape: tuple | None = None) -> str:
        """The node's parameter `key` (a state_dict entry `name.key`) as an initializer; returns its name. `shape`:
        the same values reshaped at lowering (a linear layer's [out, in] as a 1x1 conv's [out, in, 1, 1])."""
        return self._b.parameter(self.node, key, shape)

    def const(self, suffix: str, values, dtype: str = "int64") -> str:
        """A small constant initializer `name/suffix`."""
        name = f"{self.name}/{suffix}"
        self._b.add_initializer(name, np.asarray(values, dtype=dtype))
        return name

    # ------------------------------------------------------------------ limits
    def composite(self, function: str, **attrs) -> None:
        """The nodes this rule emits compute one function: `function` an ONNX op (or a tcc op name where ONNX has
        none) with `attrs`. Recorded in the model's metadata (COMPOSITES_KEY), so the INT8 planner and the float
        lowerings see GELU written as Erf and arithmetic below opset 20 as the one function it is."""
        self._composite = {"function": function, "attrs": attrs}

    def require(self, opset: int, what: str) -> None:
        if self.opset < opset:
            raise OpsetError(
                f"{self.node.op} with {what} needs ONNX opset {opset} or newer (building for opset {self.opset})",
                self.name,
                self.node.where,
            )

    def unsupported(self, message: str):
        raise ExportError(message, self.name, self.node.where)


class _Builder:
    def __init__(self, state: dict):
        self.state = state
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.composites: dict[str, dict] = {}

    def add_initializer(self, name: str, array: np.ndarray) -> None:
        assert name not in self.initializers, f"duplicate initializer {name}"
        self.initializers[name] = array

    def write_initializers(self, graph: onnx.GraphProto) -> None:
        """Straight into the model's graph: big models (VGG: 0.5 GB) would otherwise be copied three times."""
        for name, array in self.initializers.items():
            t = graph.initializer.add()
            t.name = name
            t.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
            t.dims.extend(array.shape)
            t.raw_data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()

    def parameter(self, node: Node, key: str, shape: tuple | None = None) -> str:
        name = f"{node.name}.{key}"
        if name in self.initializers:
            return name
        if name not in self.state:
            raise WeightsError(f"node '{node.name}': the weights have no tensor '{name}'")
        array = _to_numpy(self.state[name])
        want = node.params[key].shape if key in node.params else None
        if want is not None and tuple(array.shape) != tuple(want):
            raise WeightsError(
                f"node '{node.name}': tensor '{name}' has shape {list(array.shape)}, the spec needs {list(want)}"
            )
        if array.dtype.kind == "f":
            array = array.astype(np.float32, copy=False)
        if shape is not None:
            array = array.reshape(shape)
        self.add_initializer(name, array)
        return name


def _to_numpy(t) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t
    try:
        import torch  # deferred for start-up: loads torch

        if isinstance(t, torch.Tensor):
            return t.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(t)


def _value_name(graph: Graph, ref: Ref) -> str:
    node = graph.nodes[ref.node]
    return ref.node if len(node.shapes) == 1 else f"{ref.node}.{ref.index}"


def check_opset(opset: int) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise OpsetError(f"ONNX opset {opset!r} is not supported; choose one from {MIN_OPSET} to {MAX_OPSET}")
    return opset


def to_onnx(graph: Graph, state: dict, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Lower the inference graph to ONNX with the weights in `state` (name -> np.ndarray | torch.Tensor).

    Raises OpsetError / ExportError (naming the node) for what the opset or ONNX cannot express, WeightsError for
    a missing or misshapen tensor.
    """
    check_opset(opset)
    b = _Builder(state)
    keep = graph.inference_nodes()
    values: dict[Ref, str] = {Ref(INPUT): INPUT_NAME}
    for node in graph.nodes.values():
        if node.op == "input" or node.name not in keep:
            continue
        rule = node.opdef.to_onnx
        if rule is None:
            raise ExportError(f"op '{node.op}' has no ONNX lowering", node.name, node.where)
        emit = OnnxEmitter(b, node, [graph.shape(r) for r in node.inputs], opset)
        out = rule(emit, node.attrs, *[values[r] for r in node.inputs])
        if emit._composite is not None and len(emit.emitted) > 1:
            b.composites[node.name] = {**emit._composite, "nodes": list(emit.emitted)}
        outs = out if isinstance(out, list) else [out]
        assert len(outs) == len(node.shapes), f"{node.name}: {len(outs)} outputs for {len(node.shapes)} shapes"
        values.update({Ref(node.name, i): o for i, o in enumerate(outs)})

    final = values[graph.main_output]
    producers = {o: nd for nd in b.nodes for o in nd.output}
    if final in producers and final != INPUT_NAME:  # rename the value, the node keeps its IR name
        for nd in b.nodes:
            for seq in (nd.input, nd.output):
                for i, t in enumerate(seq):
                    if t == final:
                        seq[i] = OUTPUT_NAME
    else:  # the output is the graph input itself (every node passed it through): an Identity writes `output`
        b.nodes.append(helper.make_node("Identity", [final], [OUTPUT_NAME], name=graph.main_output.node))

    in_shape: list[str | int] = [BATCH_DIM, *graph.input.shape]
    out_shape: list[str | int] = [BATCH_DIM, *graph.shape(graph.main_output)]
    g = helper.make_graph(
        b.nodes,
        graph.name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, out_shape)],
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(g, opset_imports=opsets, producer_name=PRODUCER, producer_version=_producer_version())
    if b.composites:
        entry = model.metadata_props.add()
        entry.key = COMPOSITES_KEY
        entry.value = json.dumps(b.composites, sort_keys=True, separators=(",", ":"))
    b.write_initializers(model.graph)
    model.ir_version = helper.find_min_ir_version_for(opsets, ignore_unknown=True)
    return model


def node_of(onnx_node_name: str) -> str:
    """The IR node an ONNX node belongs to (`a.b/transpose` -> `a.b`); passes keep this true (a folded BN's
    affine keeps the BN's name, onnxsim keeps names)."""
    return onnx_node_name.split("/", 1)[0]
