"""QDQ lowering: an FP32 ONNX graph + calibration table -> a QuantizeLinear/DequantizeLinear ONNX graph.

- weights: int8 per-output-channel symmetric initializers (`name/q`) behind a DequantizeLinear whose output keeps
  the original name, so the conv/gemm node itself is untouched;
- biases: int32 at scale s_in * s_w (per output channel), behind a DequantizeLinear;
- activations: a QuantizeLinear -> DequantizeLinear pair after every quantized tensor (u8 with zero point 0 for
  tensors the table marks unsigned, else int8), every consumer rewired to the DQ output. A conv/gemm output read
  only by a Relu/Clip is not quantized: the activation is fused into the producer's output range (ORT removes a
  Relu in front of a Q whose zero point is the code minimum and fuses DQ -> Conv -> Q into QLinearConv). Graph
  outputs stay float.

With graph optimisations disabled, ONNX Runtime runs this model as exact float fake-quant (equation 8 at every
quantization point); with them enabled it runs the integer kernels.

Float islands (the table's placement, tcc.quant.table.placement) keep their float weights and biases and no Q/DQ of
their own; a quantized tensor they read reaches them as Cast -> (Sub zero point) -> Mul scale, DequantizeLinear's
arithmetic in three plain ops: a DequantizeLinear in front of a float Conv / Gemm makes ONNX Runtime quantize its
weights itself (its WeightBiasQuantization pass: per-tensor int8, not what the island means), and in front of any
other op lets its QDQ fusions take the node back into an integer kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...intops import QDQ, Interpreter
from ..intgraph.layers import layer_of
from ..intgraph.match import IntGraph, plan, quantized_form
from ..intgraph.node_constants import constant_codes
from ..table.file import CalibrationTable
from ..table.placement import float_nodes
from ..table.steps import calibrated_parameters, with_initializers
from ..table.weight_codes import weight_codes
from .compact import PER_AXIS_OPSET, compact_qdq
from .kernel_rewrites import pools_as_convs, stem_space_to_depth

MS_DOMAIN = "com.microsoft"  # ONNX Runtime's contrib DequantizeLinear: per-axis at any opset
INT16_OPSET = 21  # QuantizeLinear / DequantizeLinear take int16 codes from opset 21
Q_TYPES = {(8, True): TensorProto.INT8, (8, False): TensorProto.UINT8, (16, True): TensorProto.INT16}  # (bits,
# signed) -> the zero point's type, which sets the codes' type


def planned(model: onnx.ModelProto, table: CalibrationTable):
    """The model's integer graph under the table's rules and placement (tcc.quant.intgraph.match)."""
    return plan(model, rules=table.rules, floats=float_nodes(table))


def quant_points(model: onnx.ModelProto, table: CalibrationTable, graph=None) -> list[str]:
    """Activation tensors that get a Q/DQ pair, in table order: every activation of the table that the model
    consumes and its integer graph quantizes, except graph outputs and tensors computed inside one integer op (a
    conv output read only by its ReLU, the gate of x * sigmoid(x)) or between float islands: tcc.quant.intgraph.match
    says
    which."""
    graph = graph or planned(model, table)
    model = graph.model  # the table's quantized form of the model
    outputs = {o.name for o in model.graph.output}
    consumed = {i for n in model.graph.node for i in n.input}
    inside, quantized = graph.internal, set(graph.quantized)
    return [
        name
        for name, t in table.tensors.items()
        if t["kind"] == "activation"
        and name in consumed
        and name not in outputs
        and name not in inside
        and name in quantized
    ]


def to_qdq(
    model: onnx.ModelProto, table: CalibrationTable, compact: bool = False, rewrites: bool | None = None
) -> onnx.ModelProto:
    """The QDQ model, at the model's own opset. rewrites (default: the table rules' `kernel_rewrites`, on for ORT):
    exact graph rewrites that let ORT pick its fast integer kernels (AveragePool -> depthwise conv, space-to-depth
    stem: tcc.quant.lower.kernel_rewrites). compact: the deployment form (tcc.quant.lower.compact): short names, no
    redundant nodes or tensors; the same values.

    Per-channel weights need a per-axis DequantizeLinear, which the standard domain has from opset 13 only; below
    it (opset 11 for the AX toolchains) the weights' DequantizeLinear is ONNX Runtime's contrib op of the same
    name and meaning (domain com.microsoft), which ORT fuses into QLinearConv all the same, and the model keeps
    the opset it was asked for."""
    model = quantized_form(model, table.rules)  # the graph the table was calibrated on
    if rewrites is None:
        rewrites = table.rules.kernel_rewrites
    model = with_initializers(model, calibrated_parameters(model, table))  # the table's steps: equalized
    # weights, corrected biases (its rounding is in tcc.quant.table.weight_codes)
    e = _Emission.of(model, table)
    e.activation_pairs()
    e.rewire()
    head = pools_as_convs(model, e.g, e.rename, set(e.points), e.new_inits, e.island_nodes) if rewrites else []
    nodes_by_name = {n.name or n.output[0]: n for n in e.g.node}
    s2d = stem_space_to_depth(model, e.g, nodes_by_name, e.rename, e.new_nodes, e.island_nodes) if rewrites else {}
    # ---- weights and biases, kind by kind (float islands keep theirs)
    weights = QdqLowering(table, e.inits, nodes_by_name, e.rename, s2d, head, e.new_inits)
    for n in e.graph.nodes:
        weights.run_node(n)
    for n in head:  # per-axis DequantizeLinears below opset 13: the contrib op
        if e.per_axis_domain and any(a.name == "axis" for a in n.attribute):
            n.domain = e.per_axis_domain
    e.write(head, weights.drop)
    m = compact_qdq(e.m) if compact else e.m
    onnx.checker.check_model(m)
    return m


@dataclass
class _Emission:
    """to_qdq's model in the making: the copy it edits, its integer graph, the quantization points, and the nodes
    and initializers it adds."""

    table: CalibrationTable
    m: onnx.ModelProto
    graph: IntGraph
    points: list[str]
    island_nodes: set[str]
    per_axis_domain: str  # "" (the standard one) or ONNX Runtime's contrib domain, below opset 13
    wide_domain: str  # the same for int16 codes, below opset 21
    inits: dict
    rename: dict[str, str] = field(default_factory=dict)  # quantized tensor -> its DequantizeLinear's output
    new_nodes: list[tuple[str, list]] = field(default_factory=list)  # (tensor, the nodes after its producer)
    new_inits: list = field(default_factory=list)

    @classmethod
    def of(cls, model: onnx.ModelProto, table: CalibrationTable) -> _Emission:
        m = onnx.ModelProto()
        m.CopyFrom(model)
        graph = planned(model, table)
        points = quant_points(model, table, graph)
        opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), PER_AXIS_OPSET)
        per_axis_domain = "" if opset >= PER_AXIS_OPSET else MS_DOMAIN
        # int16 codes: QuantizeLinear / DequantizeLinear of opset 21, else ONNX Runtime's contrib pair (raising the
        # model's opset would change other ops' meaning: ReduceMean's axes became an input at 18)
        wide_domain = "" if opset >= INT16_OPSET else MS_DOMAIN
        contrib = per_axis_domain or (wide_domain and any(table.tensors[p].get("bits", 8) > 8 for p in points))
        if contrib and not any(o.domain == MS_DOMAIN for o in m.opset_import):
            m.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
        island_nodes = {c for n in graph.islands for c in n.covers}
        inits = {t.name: t for t in m.graph.initializer}
        return cls(table, m, graph, points, island_nodes, per_axis_domain, wide_domain, inits)

    @property
    def g(self) -> onnx.GraphProto:
        return self.m.graph

    def activation_pairs(self) -> None:
        """A QuantizeLinear -> DequantizeLinear pair for every quantization point."""
        for name in self.points:
            s, zp, signed = self.table.act_scale(name)
            # a grid narrowed below 16 bits (tcc.quant.calibrate's accumulator headroom) is int16 here: beyond its
            # range, far outside the calibrated one, QuantizeLinear saturates at int16's ends, the integer graph at
            # its own
            wide = self.table.tensors[name].get("bits", 8) > 8
            ztype = Q_TYPES[16 if wide else 8, signed]
            domain = self.wide_domain if wide else ""
            self.new_inits.append(helper.make_tensor(f"{name}/scale", TensorProto.FLOAT, [], [s]))
            self.new_inits.append(helper.make_tensor(f"{name}/zero_point", ztype, [], [zp]))
            params = [f"{name}/scale", f"{name}/zero_point"]
            quantize = helper.make_node(
                "QuantizeLinear", [name, *params], [f"{name}/q"], name=f"{name}/quantize", domain=domain
            )
            dequantize = helper.make_node(
                "DequantizeLinear", [f"{name}/q", *params], [f"{name}/dq"], name=f"{name}/dequantize", domain=domain
            )
            self.new_nodes.append((name, [quantize, dequantize]))
            self.rename[name] = f"{name}/dq"

    def rewire(self) -> None:
        """Every reader of a quantized tensor reads its DequantizeLinear, a float island its Cast / Sub / Mul."""
        dequantized: dict[str, list] = {}  # quantized tensor -> its dequantization for float islands, made once
        for n in self.g.node:
            island = (n.name or n.output[0]) in self.island_nodes
            for k, i in enumerate(n.input):
                if i in self.rename and island:
                    if i not in dequantized:
                        dequantized[i] = _float_dequantize(i, self.table, self.new_inits)
                        next(pair for name, pair in self.new_nodes if name == i).extend(dequantized[i])
                    n.input[k] = dequantized[i][-1].output[0]
                elif i in self.rename:
                    n.input[k] = self.rename[i]

    def write(self, head: list, drop: set[str]) -> None:
        """The graph's initializers (less the float ones `drop` replaced) and nodes in their order: the weights'
        DequantizeLinears (`head`) first, then each Q/DQ pair right after its producer (graph inputs': at the
        front); a DequantizeLinear nothing reads (one only islands read) left out."""
        g = self.g
        kept = [t for t in g.initializer if t.name not in drop]
        del g.initializer[:]
        g.initializer.extend(kept + self.new_inits)
        after = {}
        front = list(head)
        inputs = {i.name for i in g.input}
        for name, pair in self.new_nodes:
            if name in inputs:
                front += pair
            else:
                after[name] = pair
        nodes = front
        for n in g.node:
            nodes.append(n)
            for o in n.output:
                nodes += after.get(o, [])
        read = {i for n in nodes for i in n.input} | {o.name for o in g.output}
        nodes = [n for n in nodes if n.op_type != "DequantizeLinear" or n.output[0] in read]
        del g.node[:]
        g.node.extend(nodes)


class QdqLowering(Interpreter):
    """The QDQ form's part of each kind (tcc.intops: every kind whose lowerings name QDQ has its method here): a
    weighted producer's int8 weights per output channel and int32 bias behind DequantizeLinears; every other kind
    stays its own float ONNX op between the Q/DQ pairs of its quantized tensors (made for every tensor alike, above),
    with nothing of its own; a float island keeps its float weights and biases."""

    lowering = QDQ

    def __init__(
        self,
        table: CalibrationTable,
        inits: dict,
        nodes_by_name: dict,
        rename: dict,
        s2d: dict,
        head: list,
        new_inits: list,
    ):
        self.table, self.inits, self.nodes_by_name, self.rename, self.s2d = table, inits, nodes_by_name, rename, s2d
        self.head, self.new_inits = head, new_inits
        self.drop: set[str] = set()  # float initializers replaced by their codes

    def _weighted(self, node) -> None:
        l, table = layer_of(node), self.table
        pool = node.attrs.get("pool") if node.kind == "pooled_conv" else None
        area = int(np.prod(pool["kernel_shape"])) if pool else 1  # the bias at the window sums' s_in s_w / area
        if l.weight not in table.tensors:
            return
        if l.weight in self.drop:  # a weight shared by several layers: one int8 copy
            if l.bias and l.input in self.rename:
                self._bias(l, unique=True, area=area)
            return
        w = numpy_helper.to_array(self.inits[l.weight]).astype(np.float32)
        sw = table.weight_scale(l.weight)
        wq = weight_codes(table, l.weight, w).astype(np.int8)
        if l.name in self.s2d:
            wq = self.s2d[l.name](wq)
        self._dequantized(l.weight, wq, sw.astype(np.float32), np.zeros(len(sw), np.int8), l.w_axis)
        self.drop.add(l.weight)
        if l.bias and l.input in self.rename:
            self._bias(l, unique=l.bias in self.drop, area=area)

    def _bias(self, l, unique: bool, area: int = 1) -> None:
        """int32 bias at s_in * s_w (a pooled conv's: / area) behind a DequantizeLinear; a bias shared by layers
        with different inputs gets one copy per layer (its scale depends on the layer's input scale)."""
        b = numpy_helper.to_array(self.inits[l.bias]).astype(np.float64)
        sw = self.table.weight_scale(l.weight)
        s_in = self.table.act_scale(l.input)[0] / area
        sb = (np.float64(np.float32(s_in)) * sw.astype(np.float64)).astype(np.float32)
        bq = np.clip(np.rint(b / sb), -(2**31), 2**31 - 1).astype(np.int32)
        name = f"{l.bias}@{l.name}" if unique else l.bias
        if unique:
            self.nodes_by_name[l.name].input[2] = name
        self._dequantized(name, bq, sb, np.zeros(len(sb), np.int32), axis=0)
        self.drop.add(l.bias)

    def _dequantized(self, name: str, codes, scale, zero_point, axis: int | None = None) -> None:
        """Initializer `name` as `codes` (NAME/q) at `scale` and `zero_point` behind a DequantizeLinear (per `axis`
        where given) in front of the graph."""
        per_axis: dict[str, Any] = {"axis": axis} if axis is not None else {}
        self.head.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}/q", f"{name}/scale", f"{name}/zero_point"],
                [name],
                name=f"{name}/dequantize",
                **per_axis,
            )
        )
        self.new_inits += [
            numpy_helper.from_array(codes, f"{name}/q"),
            numpy_helper.from_array(scale, f"{name}/scale"),
            numpy_helper.from_array(zero_point, f"{name}/zero_point"),
        ]

    def add_constant(self, node) -> None:
        """The constant as its int8 codes behind a DequantizeLinear (node_constants.constant_codes), so that ONNX
        Runtime adds the operand the integer graph adds."""
        name = node.factor
        if name in self.drop:  # shared by several adds: one copy
            return
        codes, scale = constant_codes(numpy_helper.to_array(self.inits[name]))
        self._dequantized(name, codes.astype(np.int8), np.array(scale, np.float32), np.array(0, np.int8))
        self.drop.add(name)

    def _own_op(self, node) -> None:
        """Nothing of its own: the node keeps its float ONNX op, reading and writing through Q/DQ pairs."""

    conv = gemm = conv_transpose = _weighted  # a transposed conv's weight per channel along its axis 1
    # its pool's windows summed in float (no Q/DQ pair between: the sums never round to 8 bits), under rules that
    # take the pair as an integer node (tvm: the QDQ form as the reference's fake quantization)
    pooled_conv = _weighted
    add = mul = matmul = channel_scale = lookup = clamp = _own_op
    max_pool = avg_pool = global_avg_pool = global_max_pool = concat = reshape = transpose = split = _own_op
    slice = broadcast = resize_nearest = resize_bilinear = pad = _own_op
    softmax = _own_op  # a table of rules whose softmax is integer (tvm, tflite-int) runs it as float fake-quant here

    def float_island(self, node) -> None:
        """Float weights and biases stay; its quantized inputs reach it dequantized in plain ops (above)."""


def _float_dequantize(name: str, table: CalibrationTable, new_inits: list) -> list:
    """(q - zp) * s for a float island's input: Cast to float, Sub the zero point (when not 0), Mul the scale: the
    same float32 arithmetic as DequantizeLinear, in ops ONNX Runtime's QDQ passes leave alone. Its tensors are named
    `NAME/island_*`: the ONNX lowering names a node's own tensors `NODE/SUFFIX` (a layer norm's `NAME/centered`)."""
    s, zp, _ = table.act_scale(name)
    nodes = [
        helper.make_node(
            "Cast", [f"{name}/q"], [f"{name}/island_codes"], name=f"{name}/island_cast", to=TensorProto.FLOAT
        )
    ]
    value = f"{name}/island_codes"
    if zp:
        new_inits.append(helper.make_tensor(f"{name}/island_zero_point", TensorProto.FLOAT, [], [float(zp)]))
        nodes.append(
            helper.make_node(
                "Sub", [value, f"{name}/island_zero_point"], [f"{name}/island_centered"], name=f"{name}/island_center"
            )
        )
        value = f"{name}/island_centered"
    nodes.append(
        helper.make_node("Mul", [value, f"{name}/scale"], [f"{name}/island_float"], name=f"{name}/island_dequantize")
    )
    return nodes


def run(model: onnx.ModelProto, x: np.ndarray, optimize: bool = True, threads: int | None = None) -> np.ndarray:
    """Run with ONNX Runtime; optimize=False gives exact fake-quant semantics (no kernel fusion)."""
    import onnxruntime as ort  # deferred for start-up: loads ONNX Runtime, which only running needs

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m_bytes(model), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x})[0]


def m_bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()
