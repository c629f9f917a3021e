"""The deployment form of a QDQ model (tcc.quant.lower.qdq.to_qdq's `compact`): ONNX Runtime fuses it into the same
integer kernels, and run as float fake-quant it gives the same values (bit for bit on DDSNet). DDSNet: 0.43x ->
0.2995x of the FP32 file, of which the int8 weights are 0.24x and float32 biases + per-channel weight scales 0.045x;
the rest was names (a tensor name is stored at every use) and redundant tensors.

    compact_qdq(model)    # a compacted copy

The rules, in the order they run (RULES; each one pass over the nodes):
- a Relu in front of a QuantizeLinear whose zero point is the code minimum is dropped (Q clamps there anyway),
  unless it reads a DequantizeLinear at another scale: ONNX Runtime would merge the DequantizeLinear -> QuantizeLinear
  left behind with the pair before it (its double-QDQ removal), which changes the codes;
- conv biases are float initializers holding exactly DQ(int32 bias) (ORT quantizes a float bias back to the
  same int32 at s_in * s_w when it fuses QLinearConv): no int32 copy, per-channel bias scale or zero point
  (from opset 13: ORT's re-quantization writes a per-axis DequantizeLinear);
- conv weight DequantizeLinears leave out their all-zero int8 zero points (the int8 input sets the type);
  activations and the Gemm keep theirs (without them ORT leaves MaxPool / Gemm unfused);
- a weight of one repeated value (AveragePool as conv) is a ConstantOfShape, which ORT folds at load;
then the tidying, on what is left:
- nodes lose doc strings, Conv attributes at their defaults (and kernel_shape, implied by the weight) are dropped;
- identical constants (the shared scale of a concat group) are stored once;
- every tensor but the graph inputs / outputs gets a short name (most used: shortest), nodes lose names, and the
  tcc.passes fused-activation marks, which name nodes this form renames, are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...lower.to_onnx import COMPOSITES_KEY

PER_AXIS_OPSET = 13  # QuantizeLinear / DequantizeLinear take `axis` (per-channel) from opset 13
NAME_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
STALE_MARKS = ("tcc.fused_activations", COMPOSITES_KEY)  # metadata naming nodes this form renames or removes


@dataclass
class Compaction:
    """A QDQ model being compacted: its graph's indexes, and what the rules drop and add."""

    m: onnx.ModelProto
    inits: dict
    producer: dict
    consumers: dict[str, list]
    outputs: set
    drop_nodes: set[int] = field(default_factory=set)  # id() of each node dropped
    new_inits: list = field(default_factory=list)
    fills: list = field(default_factory=list)  # ConstantOfShape nodes, in front of the others

    @classmethod
    def of(cls, model: onnx.ModelProto) -> Compaction:
        m = onnx.ModelProto()
        m.CopyFrom(model)
        g = m.graph
        consumers: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        return cls(
            m, {t.name: t for t in g.initializer}, {o: n for n in g.node for o in n.output}, consumers, _outputs(g)
        )

    @property
    def nodes(self) -> list:
        return list(self.m.graph.node)

    def const(self, name: str):
        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    def requantizes(self, value: str, q) -> bool:
        """Whether `value` is a DequantizeLinear's output at another scale than the QuantizeLinear q's."""
        dq = self.producer.get(value)
        if dq is None or dq.op_type != "DequantizeLinear":
            return False
        s_dq, s_q = self.const(dq.input[1]), self.const(q.input[1])
        return s_dq is None or s_q is None or not np.array_equal(s_dq, s_q)

    def at_code_min(self, q) -> bool:
        """A QuantizeLinear whose zero point is the lowest code of its type."""
        zp = self.const(q.input[2]) if len(q.input) > 2 and q.input[2] else np.uint8(0)
        return zp is not None and zp.size == 1 and int(zp.reshape(-1)[0]) == np.iinfo(zp.dtype).min


def _outputs(g) -> set:
    return {o.name for o in g.output}


def _drop_relus_before_code_min(c: Compaction) -> None:
    for n in c.nodes:
        readers = c.consumers.get(n.output[0], [])
        if (
            n.op_type == "Relu"
            and n.output[0] not in c.outputs
            and len(readers) == 1
            and readers[0].op_type == "QuantizeLinear"
            and c.at_code_min(readers[0])
            and not c.requantizes(n.input[0], readers[0])
        ):
            readers[0].input[0] = n.input[0]
            c.drop_nodes.add(id(n))


def _fold_conv_biases(c: Compaction) -> None:
    opset = next((o.version for o in c.m.opset_import if o.domain in ("", "ai.onnx")), PER_AXIS_OPSET)
    # below opset 13 the int32 bias keeps its (contrib, per-axis) DequantizeLinear: from a float bias ONNX Runtime
    # derives one itself, as a standard-domain per-axis DequantizeLinear that such an opset does not have
    if opset < PER_AXIS_OPSET:
        return
    for n in c.nodes:
        if n.op_type != "Conv" or len(n.input) < 3 or n.input[2] not in c.producer:
            continue
        dq = c.producer[n.input[2]]
        if dq.op_type != "DequantizeLinear" or len(c.consumers[dq.output[0]]) != 1 or dq.input[0] not in c.inits:
            continue
        q, sc = c.const(dq.input[0]), c.const(dq.input[1])
        zp = c.const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else 0
        b = ((q.astype(np.int64) - zp).astype(np.float32) * sc).astype(np.float32)  # what DQ computes
        c.new_inits.append(numpy_helper.from_array(b, dq.output[0]))
        c.drop_nodes.add(id(dq))


def _drop_zero_weight_zero_points(c: Compaction) -> None:
    """Conv weights: no all-zero int8 zero point (activations and Gemm weights keep theirs)."""
    for n in c.nodes:
        if (
            id(n) not in c.drop_nodes
            and n.op_type == "DequantizeLinear"
            and n.input[0] in c.inits
            and len(n.input) > 2
            and all(r.op_type == "Conv" for r in c.consumers.get(n.output[0], []))
        ):
            zp = c.const(n.input[2])
            if zp is not None and zp.dtype == np.int8 and not zp.any():
                del n.input[2]


def _fill_repeated_weights(c: Compaction) -> None:
    """A weight of one repeated value (AveragePool as conv): ConstantOfShape, which ORT folds."""
    for n in c.nodes:
        if id(n) in c.drop_nodes or n.op_type != "DequantizeLinear" or n.input[0] not in c.inits:
            continue
        w = c.const(n.input[0])
        if (
            w.size < 16
            or not (w == w.reshape(-1)[0]).all()
            or n.input[0] in {f.output[0] for f in c.fills}
            or len(c.consumers[n.input[0]]) != 1
        ):
            continue
        c.new_inits.append(numpy_helper.from_array(np.array(w.shape, np.int64), f"{n.input[0]}/shape"))
        c.fills.append(
            helper.make_node(
                "ConstantOfShape",
                [f"{n.input[0]}/shape"],
                [n.input[0]],
                value=numpy_helper.from_array(w.reshape(-1)[:1]),
            )
        )


RULES: tuple[tuple[str, Callable[[Compaction], None]], ...] = (
    ("a Relu before a QuantizeLinear at the code minimum: dropped", _drop_relus_before_code_min),
    ("a conv's DequantizeLinear'd int32 bias: its float value", _fold_conv_biases),
    ("a conv weight's all-zero int8 zero point: left out", _drop_zero_weight_zero_points),
    ("a weight of one repeated value: ConstantOfShape", _fill_repeated_weights),
)


def compact_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """The deployment form of a QDQ model (the module's docstring lists what changes): the same values."""
    c = Compaction.of(model)
    for _, rule in RULES:
        rule(c)
    g = c.m.graph
    nodes = c.fills + [n for n in g.node if id(n) not in c.drop_nodes]
    for n in nodes:
        _tidy(n)
    keep_names = {i.name for i in g.input} | c.outputs
    inits = _unique_constants(nodes, list(g.initializer) + c.new_inits)
    _short_names(nodes, inits, keep_names)
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    # the Relus live on in the zero points
    kept = [p for p in c.m.metadata_props if p.key not in STALE_MARKS]
    del c.m.metadata_props[:]
    c.m.metadata_props.extend(kept)
    return c.m


def _tidy(n) -> None:
    """No doc string; a Conv without kernel_shape (the weight's shape) and attributes at their default values."""
    n.ClearField("doc_string")
    if n.op_type != "Conv":
        return
    keep = []
    for a in n.attribute:
        v = helper.get_attribute_value(a)
        if not (
            (a.name in ("dilations", "strides") and all(x == 1 for x in v))
            or a.name == "kernel_shape"
            or (a.name == "pads" and not any(v))
            or (a.name == "group" and v == 1)
        ):
            keep.append(a)
    del n.attribute[:]
    n.attribute.extend(keep)


def _unique_constants(nodes: list, candidates: list) -> list:
    """The initializers the nodes read, identical constants (shared scales of a concat group) once: the nodes are
    rewired to the first."""
    used = {i for n in nodes for i in n.input if i} - {o for n in nodes for o in n.output}
    kept: list = []
    same: dict[tuple, str] = {}
    for t in candidates:
        if t.name not in used:
            continue
        key = (t.data_type, tuple(t.dims), numpy_helper.to_array(t).tobytes())
        if key in same:
            same_as = same[key]
            for n in nodes:
                for k, i in enumerate(n.input):
                    if i == t.name:
                        n.input[k] = same_as
        else:
            same[key] = t.name
            kept.append(t)
    return kept


def _short_names(nodes: list, inits: list, keep_names: set) -> None:
    """Every tensor but `keep_names` renamed to a short code, the most used the shortest; nodes lose their names."""
    uses: dict[str, int] = {}
    for t in [i for n in nodes for i in [*n.input, *n.output]] + [t.name for t in inits]:
        if t and t not in keep_names:
            uses[t] = uses.get(t, 0) + 1
    short = {}
    for k, t in enumerate(sorted(uses, key=lambda t: -uses[t])):
        code = _code(k)
        short[t] = "_" + code if code in keep_names else code
    for n in nodes:
        n.ClearField("name")
        for k, i in enumerate(n.input):
            n.input[k] = short.get(i, i)
        for k, o in enumerate(n.output):
            n.output[k] = short.get(o, o)
    for t in inits:
        t.name = short.get(t.name, t.name)


def _code(k: int) -> str:
    """The k-th short name: k in base 62, most significant digit first."""
    code = ""
    while True:
        code = NAME_DIGITS[k % len(NAME_DIGITS)] + code
        k //= len(NAME_DIGITS)
        if not k:
            return code
