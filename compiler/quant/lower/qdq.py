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

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...intops import QDQ, Interpreter
from ...lower.to_onnx import COMPOSITES_KEY
from ..intgraph.layers import find_layers, layer_of
from ..intgraph.node_constants import constant_codes
from ..intgraph.plan import plan, quantized_form
from ..table.file import CalibrationTable
from ..table.placement import float_nodes
from ..table.steps import calibrated_parameters, with_initializers
from ..table.weight_codes import weight_codes

PER_AXIS_OPSET = 13  # QuantizeLinear / DequantizeLinear take `axis` (per-channel) from opset 13
MS_DOMAIN = "com.microsoft"  # ONNX Runtime's contrib DequantizeLinear: per-axis at any opset
INT16_OPSET = 21  # QuantizeLinear / DequantizeLinear take int16 codes from opset 21
Q_TYPES = {(8, True): TensorProto.INT8, (8, False): TensorProto.UINT8, (16, True): TensorProto.INT16}  # (bits,
# signed) -> the zero point's type, which sets the codes' type


def planned(model: onnx.ModelProto, table: CalibrationTable):
    """The model's integer graph under the table's rules and placement (tcc.quant.intgraph.plan)."""
    return plan(model, rules=table.rules, floats=float_nodes(table))


def quant_points(model: onnx.ModelProto, table: CalibrationTable, graph=None) -> list[str]:
    """Activation tensors that get a Q/DQ pair, in table order: every activation of the table that the model
    consumes and its integer graph quantizes, except graph outputs and tensors computed inside one integer op (a
    conv output read only by its ReLU, the gate of x * sigmoid(x)) or between float islands: tcc.quant.intgraph.plan
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


def to_qdq(  # noqa: PLR0915
    model: onnx.ModelProto, table: CalibrationTable, compact: bool = False, rewrites: bool | None = None
) -> onnx.ModelProto:
    """The QDQ model, at the model's own opset. rewrites (default: the table rules' `kernel_rewrites`, on for ORT):
    exact graph rewrites that let ORT pick its fast integer kernels (AveragePool -> depthwise conv, space-to-depth
    stem). compact: the deployment form (`compact_qdq`): short names, no redundant nodes or tensors; the same values.

    Per-channel weights need a per-axis DequantizeLinear, which the standard domain has from opset 13 only; below
    it (opset 11 for the AX toolchains) the weights' DequantizeLinear is ONNX Runtime's contrib op of the same
    name and meaning (domain com.microsoft), which ORT fuses into QLinearConv all the same, and the model keeps
    the opset it was asked for."""
    model = quantized_form(model, table.rules)  # the graph the table was calibrated on
    if rewrites is None:
        rewrites = table.rules.kernel_rewrites
    model = with_initializers(model, calibrated_parameters(model, table))  # the table's steps: equalized
    # weights, corrected biases (its rounding is in tcc.quant.table.weight_codes)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    graph = planned(model, table)
    island_nodes = {c for n in graph.islands for c in n.covers}
    points = quant_points(model, table, graph)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), PER_AXIS_OPSET)
    per_axis_domain = "" if opset >= PER_AXIS_OPSET else MS_DOMAIN
    # int16 codes: QuantizeLinear / DequantizeLinear of opset 21, else ONNX Runtime's contrib pair (raising the
    # model's opset would change other ops' meaning: ReduceMean's axes became an input at 18)
    wide_domain = "" if opset >= INT16_OPSET else MS_DOMAIN
    contrib = per_axis_domain or (wide_domain and any(table.tensors[p].get("bits", 8) > 8 for p in points))
    if contrib and not any(o.domain == MS_DOMAIN for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    inits = {t.name: t for t in g.initializer}
    new_inits, new_nodes = [], []

    # ---- activations
    rename = {}
    for name in points:
        s, zp, signed = table.act_scale(name)
        # a grid narrowed below 16 bits (tcc.quant.calibrate's accumulator headroom) is int16 here: beyond its
        # range, far outside the calibrated one, QuantizeLinear saturates at int16's ends, the integer graph at its own
        wide = table.tensors[name].get("bits", 8) > 8
        ztype = Q_TYPES[16 if wide else 8, signed]
        domain = wide_domain if wide else ""
        new_inits.append(helper.make_tensor(f"{name}/scale", TensorProto.FLOAT, [], [s]))
        new_inits.append(helper.make_tensor(f"{name}/zero_point", ztype, [], [zp]))
        new_nodes.append(
            (
                name,
                [
                    helper.make_node(
                        "QuantizeLinear",
                        [name, f"{name}/scale", f"{name}/zero_point"],
                        [f"{name}/q"],
                        name=f"{name}/quantize",
                        domain=domain,
                    ),
                    helper.make_node(
                        "DequantizeLinear",
                        [f"{name}/q", f"{name}/scale", f"{name}/zero_point"],
                        [f"{name}/dq"],
                        name=f"{name}/dequantize",
                        domain=domain,
                    ),
                ],
            )
        )
        rename[name] = f"{name}/dq"
    dequantized = {}  # quantized tensor -> its Cast/Sub/Mul dequantization, made once, for float islands
    for n in g.node:
        island = (n.name or n.output[0]) in island_nodes
        for k, i in enumerate(n.input):
            if i in rename and island:
                if i not in dequantized:
                    dequantized[i] = _float_dequantize(i, table, new_inits)
                    next(pair for name, pair in new_nodes if name == i).extend(dequantized[i])
                n.input[k] = dequantized[i][-1].output[0]
            elif i in rename:
                n.input[k] = rename[i]
    head = _pools_as_convs(model, g, rename, set(points), new_inits, island_nodes) if rewrites else []

    nodes_by_name = {n.name or n.output[0]: n for n in g.node}
    s2d = _stem_space_to_depth(model, g, nodes_by_name, rename, new_nodes, island_nodes) if rewrites else {}

    # ---- weights and biases, kind by kind (float islands keep theirs)
    weights = QdqLowering(table, inits, nodes_by_name, rename, s2d, head, new_inits)
    for n in graph.nodes:
        weights.run_node(n)
    drop = weights.drop
    for n in head:  # per-axis DequantizeLinears below opset 13: the contrib op
        if per_axis_domain and any(a.name == "axis" for a in n.attribute):
            n.domain = per_axis_domain

    kept = [t for t in g.initializer if t.name not in drop]
    del g.initializer[:]
    g.initializer.extend(kept + new_inits)
    # node order: weight DQs first, then each Q/DQ pair right after its producer (graph inputs: at the front)
    after = {}
    front = list(head)
    inputs = {i.name for i in g.input}
    for name, pair in new_nodes:
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
    nodes = [n for n in nodes if n.op_type != "DequantizeLinear" or n.output[0] in read]  # only islands read it
    del g.node[:]
    g.node.extend(nodes)
    if compact:
        m = compact_qdq(m)
    onnx.checker.check_model(m)
    return m


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
                _bias(
                    l,
                    self.inits,
                    table,
                    self.nodes_by_name,
                    self.drop,
                    self.head,
                    self.new_inits,
                    unique=True,
                    area=area,
                )
            return
        w = numpy_helper.to_array(self.inits[l.weight]).astype(np.float32)
        sw = table.weight_scale(l.weight)
        wq = weight_codes(table, l.weight, w).astype(np.int8)
        if l.name in self.s2d:
            wq = self.s2d[l.name](wq)
        self.head.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{l.weight}/q", f"{l.weight}/scale", f"{l.weight}/zero_point"],
                [l.weight],
                name=f"{l.weight}/dequantize",
                axis=l.w_axis,
            )
        )
        self.new_inits += [
            numpy_helper.from_array(wq, f"{l.weight}/q"),
            numpy_helper.from_array(sw.astype(np.float32), f"{l.weight}/scale"),
            numpy_helper.from_array(np.zeros(len(sw), np.int8), f"{l.weight}/zero_point"),
        ]
        self.drop.add(l.weight)
        if l.bias and l.input in self.rename:
            _bias(
                l,
                self.inits,
                table,
                self.nodes_by_name,
                self.drop,
                self.head,
                self.new_inits,
                unique=l.bias in self.drop,
                area=area,
            )

    def add_constant(self, node) -> None:
        """The constant as its int8 codes behind a DequantizeLinear (node_constants.constant_codes), so that ONNX
        Runtime adds the operand the integer graph adds."""
        name = node.factor
        if name in self.drop:  # shared by several adds: one copy
            return
        codes, scale = constant_codes(numpy_helper.to_array(self.inits[name]))
        self.head.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}/q", f"{name}/scale", f"{name}/zero_point"],
                [name],
                name=f"{name}/dequantize",
            )
        )
        self.new_inits += [
            numpy_helper.from_array(codes.astype(np.int8), f"{name}/q"),
            numpy_helper.from_array(np.array(scale, np.float32), f"{name}/scale"),
            numpy_helper.from_array(np.array(0, np.int8), f"{name}/zero_point"),
        ]
        self.drop.add(name)

    def _own_op(self, node) -> None:
        """Nothing of its own: the node keeps its float ONNX op, reading and writing through Q/DQ pairs."""

    conv = gemm = _weighted
    # its pool's windows summed in float (no Q/DQ pair between: the sums never round to 8 bits), under rules that
    # take the pair as an integer node (tvm: the QDQ form as the reference's fake quantization)
    pooled_conv = _weighted
    add = mul = matmul = channel_scale = lookup = clamp = _own_op
    max_pool = avg_pool = global_avg_pool = global_max_pool = concat = reshape = transpose = split = _own_op
    slice = broadcast = _own_op
    softmax = _own_op  # a table of rules whose softmax is integer (tvm, tflite-int) runs it as float fake-quant here

    def float_island(self, node) -> None:
        """Float weights and biases stay; its quantized inputs reach it dequantized in plain ops (above)."""


def compact_qdq(model: onnx.ModelProto) -> onnx.ModelProto:  # noqa: PLR0915
    """The deployment form of a QDQ model: ONNX Runtime fuses it into the same integer kernels, and run as float
    fake-quant it gives the same values (bit for bit on DDSNet). DDSNet: 0.43x -> 0.2995x of the FP32 file, of
    which the int8 weights are 0.24x and float32 biases + per-channel weight scales 0.045x; the rest was names
    (a tensor name is stored at every use) and redundant tensors:
    - a Relu in front of a QuantizeLinear whose zero point is the code minimum is dropped (Q clamps there anyway);
    - conv biases are float initializers holding exactly DQ(int32 bias) (ORT quantizes a float bias back to the
      same int32 at s_in * s_w when it fuses QLinearConv): no int32 copy, per-channel bias scale or zero point
      (from opset 13: ORT's re-quantization writes a per-axis DequantizeLinear);
    - conv weight DequantizeLinears leave out their all-zero int8 zero points (the int8 input sets the type);
      activations and the Gemm keep theirs (without them ORT leaves MaxPool / Gemm unfused);
    - identical constants (the shared scale of a concat group) are stored once; a weight of one repeated value
      (AveragePool as conv) is a ConstantOfShape, which ORT folds at load;
    - every tensor but the graph inputs / outputs gets a short name (most used: shortest), nodes lose names and
      doc strings, Conv attributes at their defaults (and kernel_shape, implied by the weight) are dropped, and the
      tcc.passes fused-activation marks, which name nodes this form renames, are dropped.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    def const(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def at_code_min(q):  # QuantizeLinear whose zero point is the lowest code of its type
        zp = const(q.input[2]) if len(q.input) > 2 and q.input[2] else np.uint8(0)
        return zp is not None and zp.size == 1 and int(zp.reshape(-1)[0]) == np.iinfo(zp.dtype).min

    drop_nodes = set()
    for n in g.node:
        if (
            n.op_type == "Relu"
            and n.output[0] not in outputs
            and len(consumers.get(n.output[0], [])) == 1
            and consumers[n.output[0]][0].op_type == "QuantizeLinear"
            and at_code_min(consumers[n.output[0]][0])
        ):
            consumers[n.output[0]][0].input[0] = n.input[0]
            drop_nodes.add(id(n))
    new_inits = []
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), PER_AXIS_OPSET)
    # below opset 13 the int32 bias keeps its (contrib, per-axis) DequantizeLinear: from a float bias ONNX Runtime
    # derives one itself, as a standard-domain per-axis DequantizeLinear that such an opset does not have
    fold_bias = opset >= PER_AXIS_OPSET
    for n in g.node:
        if not fold_bias or n.op_type != "Conv" or len(n.input) < 3 or n.input[2] not in producer:
            continue
        dq = producer[n.input[2]]
        if dq.op_type != "DequantizeLinear" or len(consumers[dq.output[0]]) != 1 or dq.input[0] not in inits:
            continue
        q, sc = const(dq.input[0]), const(dq.input[1])
        zp = const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else 0
        b = ((q.astype(np.int64) - zp).astype(np.float32) * sc).astype(np.float32)  # what DQ computes
        new_inits.append(numpy_helper.from_array(b, dq.output[0]))
        drop_nodes.add(id(dq))
    for n in g.node:  # conv weights: no all-zero int8 zero point (activations and Gemm weights keep theirs)
        if (
            id(n) not in drop_nodes
            and n.op_type == "DequantizeLinear"
            and n.input[0] in inits
            and len(n.input) > 2
            and all(c.op_type == "Conv" for c in consumers.get(n.output[0], []))
        ):
            zp = const(n.input[2])
            if zp is not None and zp.dtype == np.int8 and not zp.any():
                del n.input[2]
    fills = []
    for n in g.node:  # a weight of one repeated value (AveragePool as conv): ConstantOfShape, which ORT folds
        if id(n) in drop_nodes or n.op_type != "DequantizeLinear" or n.input[0] not in inits:
            continue
        w = const(n.input[0])
        if (
            w.size < 16
            or not (w == w.reshape(-1)[0]).all()
            or n.input[0] in {f.output[0] for f in fills}
            or len(consumers[n.input[0]]) != 1
        ):
            continue
        new_inits.append(numpy_helper.from_array(np.array(w.shape, np.int64), f"{n.input[0]}/shape"))
        fills.append(
            helper.make_node(
                "ConstantOfShape",
                [f"{n.input[0]}/shape"],
                [n.input[0]],
                value=numpy_helper.from_array(w.reshape(-1)[:1]),
            )
        )
    nodes = fills + [n for n in g.node if id(n) not in drop_nodes]
    for n in nodes:
        n.ClearField("doc_string")
        if n.op_type == "Conv":  # kernel_shape is optional (the weight's shape), the rest at default values
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
    used = {i for n in nodes for i in n.input if i} - {o for n in nodes for o in n.output}
    keep_names = {i.name for i in g.input} | outputs
    all_inits, same = [], {}
    for t in list(g.initializer) + new_inits:  # identical constants (shared scales of a concat group): one copy
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
            all_inits.append(t)
    uses: dict[str, int] = {}  # the most used names get the shortest codes
    for t in [i for n in nodes for i in [*n.input, *n.output]] + [t.name for t in all_inits]:
        if t and t not in keep_names:
            uses[t] = uses.get(t, 0) + 1
    digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    short = {}
    for k, t in enumerate(sorted(uses, key=lambda t: -uses[t])):
        code = ""
        while True:
            code = digits[k % len(digits)] + code
            k //= len(digits)
            if not k:
                break
        short[t] = "_" + code if code in keep_names else code

    def name(t):
        return short.get(t, t)

    for n in nodes:
        n.ClearField("name")
        for k, i in enumerate(n.input):
            n.input[k] = name(i)
        for k, o in enumerate(n.output):
            n.output[k] = name(o)
    for t in all_inits:
        t.name = name(t.name)
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(all_inits)
    del g.value_info[:]
    # tcc.passes' fused-activation marks and the lowering's composite marks name nodes this form renames or
    # removes (the Relus live on in the zero points): stale here
    kept = [p for p in m.metadata_props if p.key not in ("tcc.fused_activations", COMPOSITES_KEY)]
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    return m


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


def _pools_as_convs(model, g, rename, points, new_inits, islands=frozenset()) -> list:
    """A quantized AveragePool with a power-of-two window and no padding becomes a depthwise Conv with weights
    1/area (int8 64 at scale 64/area: exact, so fake-quant is unchanged). Why: ORT 1.31 runs QLinearAveragePool
    (NHWC) about 10x slower than its float pool (DDSNet transitions: 440 us of 2.7 ms), while a depthwise
    QLinearConv takes the MLAS u8s8 depthwise kernel. Returns the weight DequantizeLinear nodes."""
    from onnx import shape_inference

    head = []
    pools = [
        n
        for n in g.node
        if n.op_type == "AveragePool"
        and n.input[0] in rename.values()
        and n.output[0] in points
        and (n.name or n.output[0]) not in islands
    ]
    if not pools:
        return head
    vi = {v.name: v for v in shape_inference.infer_shapes(model).graph.value_info}
    orig = {v: k for k, v in rename.items()}
    for n in pools:
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        k = list(a.get("kernel_shape", []))
        area = int(np.prod(k)) if k else 0
        t = vi.get(orig[n.input[0]])
        dims = t.type.tensor_type.shape.dim if t is not None else []
        if (
            len(k) != 2
            or area & (area - 1)
            or area > 64
            or any(a.get("pads", [0]))
            or a.get("ceil_mode", 0)
            or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or len(dims) != 4
            or not dims[1].HasField("dim_value")
        ):
            continue
        c = dims[1].dim_value
        w = f"{n.name or n.output[0]}/avg"
        new_inits += [
            numpy_helper.from_array(np.full((c, 1, *k), 64, np.int8), f"{w}/q"),
            numpy_helper.from_array(np.float32(1.0 / (64 * area)), f"{w}/scale"),
        ]
        head.append(helper.make_node("DequantizeLinear", [f"{w}/q", f"{w}/scale"], [w], name=f"{w}/dequantize"))
        strides = list(a.get("strides", [1, 1]))
        del n.attribute[:]
        n.op_type = "Conv"
        n.input.append(w)
        n.attribute.extend(
            [
                helper.make_attribute("kernel_shape", k),
                helper.make_attribute("strides", strides),
                helper.make_attribute("group", c),
            ]
        )
    return head


def _stem_space_to_depth(model, g, nodes_by_name, rename, new_nodes, islands=frozenset()) -> dict:
    """A stride-2 conv reading the graph input with C % 4 != 0 channels (DDSNet's 7x7 stem on RGB) reads
    SpaceToDepth(input) instead: a stride-1 conv with 4C channels and a ceil((k + p % 2) / 2) kernel, the
    weights rearranged (zeros where the kernel was padded). The same products and sums, so the fake-quant
    semantics are unchanged (up to float summation order). Why: ORT's symmetric u8s8 indirect-conv kernel
    (MlasConvSym, AVX2/AVX512-VNNI) needs input channels % 4 == 0; with 3 channels QLinearConv falls back to
    im2col + GEMM (measured 920 us for the DDSNet stem vs 510 us after this rewrite, FP32 1090 us). The
    SpaceToDepth runs in float before the input QuantizeLinear (Q commutes with it).
    Returns {layer name: function rewriting its int8 weight}."""
    inputs = {i.name: i for i in model.graph.input}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for l in find_layers(model):
        src = inputs.get(l.input)
        node = nodes_by_name.get(l.name)
        if (
            l.op != "Conv"
            or src is None
            or len(consumers.get(l.input, [])) != 1
            or l.input not in rename
            or node is None
            or l.weight not in inits
            or l.name in islands
        ):
            continue
        wshape = list(inits[l.weight].dims)
        dims = src.type.tensor_type.shape.dim
        a = l.attrs
        k = list(a.get("kernel_shape", wshape[2:]))
        pads = list(a.get("pads", [0] * 4))
        if (
            len(wshape) != 4
            or wshape[1] % 4 == 0
            or a.get("group", 1) != 1
            or list(a.get("strides", [1, 1])) != [2, 2]
            or any(d != 1 for d in a.get("dilations", [1, 1]))
            or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or len(dims) != 4
            or not all(d.HasField("dim_value") and d.dim_value % 2 == 0 for d in dims[2:])
        ):
            continue
        size = [d.dim_value for d in dims[2:]]
        e = [p % 2 for p in pads[:2]]  # leading zero taps so that the window starts on an even row / column
        kk = [(k[i] + e[i] + 1) // 2 for i in range(2)]
        begin = [(pads[i] + e[i]) // 2 for i in range(2)]
        o = [(size[i] + pads[i] + pads[i + 2] - k[i]) // 2 + 1 for i in range(2)]
        end = [o[i] - 1 - begin[i] + kk[i] - size[i] // 2 for i in range(2)]
        if min(end) < 0:
            continue
        c = wshape[1]

        def rewrite(wq, c=c, e=e, kk=kk, k=k):
            wp = np.zeros((wq.shape[0], c, 2 * kk[0], 2 * kk[1]), wq.dtype)
            wp[:, :, e[0] : e[0] + k[0], e[1] : e[1] + k[1]] = wq
            # SpaceToDepth channel order: (row offset * 2 + column offset) * C + c
            return np.concatenate([wp[:, :, rh::2, rw::2] for rh in range(2) for rw in range(2)], axis=1)

        out[l.name] = rewrite
        del node.attribute[:]
        node.attribute.extend(
            [
                helper.make_attribute("kernel_shape", kk),
                helper.make_attribute("strides", [1, 1]),
                helper.make_attribute("pads", begin + end),
            ]
        )
        for name, pair in new_nodes:  # the input's QuantizeLinear reads SpaceToDepth(input)
            if name == l.input:
                pair[0].input[0] = f"{name}/s2d"
                pair.insert(
                    0, helper.make_node("SpaceToDepth", [name], [f"{name}/s2d"], name=f"{name}/s2d", blocksize=2)
                )
    return out


def _bias(l, inits, table, nodes_by_name, drop, head, new_inits, unique: bool, area: int = 1) -> None:  # noqa: PLR0913
    """int32 bias at s_in * s_w (a pooled conv's: / area) behind a DequantizeLinear; a bias shared by layers with
    different inputs gets one copy per layer (its scale depends on the layer's input scale)."""
    b = numpy_helper.to_array(inits[l.bias]).astype(np.float64)
    sw = table.weight_scale(l.weight)
    s_in = table.act_scale(l.input)[0] / area
    sb = (np.float64(np.float32(s_in)) * sw.astype(np.float64)).astype(np.float32)
    bq = np.clip(np.rint(b / sb), -(2**31), 2**31 - 1).astype(np.int32)
    name = f"{l.bias}@{l.name}" if unique else l.bias
    if unique:
        node = nodes_by_name[l.name]
        node.input[2] = name
    head.append(
        helper.make_node(
            "DequantizeLinear",
            [f"{name}/q", f"{name}/scale", f"{name}/zero_point"],
            [name],
            name=f"{name}/dequantize",
            axis=0,
        )
    )
    new_inits += [
        numpy_helper.from_array(bq, f"{name}/q"),
        numpy_helper.from_array(sb, f"{name}/scale"),
        numpy_helper.from_array(np.zeros(len(sb), np.int32), f"{name}/zero_point"),
    ]
    drop.add(l.bias)


def run(model: onnx.ModelProto, x: np.ndarray, optimize: bool = True, threads: int | None = None) -> np.ndarray:
    """Run with ONNX Runtime; optimize=False gives exact fake-quant semantics (no kernel fusion)."""
    import onnxruntime as ort

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
