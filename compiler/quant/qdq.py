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
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .stats import find_layers, fused_away
from .table import CalibrationTable

def quant_points(model: onnx.ModelProto, table: CalibrationTable) -> list[str]:
    """Activation tensors that get a Q/DQ pair, in table order: every activation of the table that the model
    consumes, except graph outputs and tensors fused away (a conv output read only by its ReLU)."""
    outputs = {o.name for o in model.graph.output}
    consumed = {i for n in model.graph.node for i in n.input}
    gone = fused_away(model)
    return [name for name, t in table.tensors.items()
            if t["kind"] == "activation" and name in consumed and name not in outputs and name not in gone]


def to_qdq(model: onnx.ModelProto, table: CalibrationTable, opset: int = 13) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for imp in m.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version < 13:
            imp.version = 13  # per-axis QuantizeLinear/DequantizeLinear
    inits = {t.name: t for t in g.initializer}
    new_inits, new_nodes = [], []

    # ---- activations
    points = quant_points(model, table)
    rename = {}
    for name in points:
        s, zp, signed = table.act_scale(name)
        ztype = TensorProto.INT8 if signed else TensorProto.UINT8
        new_inits.append(helper.make_tensor(f"{name}/scale", TensorProto.FLOAT, [], [s]))
        new_inits.append(helper.make_tensor(f"{name}/zero_point", ztype, [], [zp]))
        new_nodes.append((name, [
            helper.make_node("QuantizeLinear", [name, f"{name}/scale", f"{name}/zero_point"], [f"{name}/q"],
                             name=f"{name}/quantize"),
            helper.make_node("DequantizeLinear", [f"{name}/q", f"{name}/scale", f"{name}/zero_point"],
                             [f"{name}/dq"], name=f"{name}/dequantize"),
        ]))
        rename[name] = f"{name}/dq"
    for n in g.node:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]

    # ---- weights and biases
    head = []
    drop = set()
    nodes_by_name = {n.name or n.output[0]: n for n in g.node}
    for l in find_layers(model):
        if l.weight not in table.tensors:
            continue
        if l.weight in drop:  # a weight shared by several layers: one int8 copy
            if l.bias and l.input in rename:
                _bias(l, inits, table, nodes_by_name, drop, head, new_inits, unique=True)
            continue
        w = numpy_helper.to_array(inits[l.weight]).astype(np.float32)
        sw = table.weight_scale(l.weight)
        shape = [1] * w.ndim
        shape[l.w_axis] = -1
        wq = np.clip(np.rint(w / sw.reshape(shape)), -128, 127).astype(np.int8)
        head.append(helper.make_node("DequantizeLinear", [f"{l.weight}/q", f"{l.weight}/scale", f"{l.weight}/zero_point"],
                                     [l.weight], name=f"{l.weight}/dequantize", axis=l.w_axis))
        new_inits += [numpy_helper.from_array(wq, f"{l.weight}/q"),
                      numpy_helper.from_array(sw.astype(np.float32), f"{l.weight}/scale"),
                      numpy_helper.from_array(np.zeros(len(sw), np.int8), f"{l.weight}/zero_point")]
        drop.add(l.weight)
        if l.bias and l.input in rename:
            _bias(l, inits, table, nodes_by_name, drop, head, new_inits, unique=l.bias in drop)

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
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    return m


def _bias(l, inits, table, nodes_by_name, drop, head, new_inits, unique: bool) -> None:
    """int32 bias at s_in * s_w behind a DequantizeLinear; a bias shared by layers with different inputs gets one
    copy per layer (its scale depends on the layer's input scale)."""
    b = numpy_helper.to_array(inits[l.bias]).astype(np.float64)
    sw = table.weight_scale(l.weight)
    s_in = table.act_scale(l.input)[0]
    sb = (np.float64(np.float32(s_in)) * sw.astype(np.float64)).astype(np.float32)
    bq = np.clip(np.rint(b / sb), -(2**31), 2**31 - 1).astype(np.int32)
    name = f"{l.bias}@{l.name}" if unique else l.bias
    if unique:
        node = nodes_by_name[l.name]
        node.input[2] = name
    head.append(helper.make_node("DequantizeLinear", [f"{name}/q", f"{name}/scale", f"{name}/zero_point"],
                                 [name], name=f"{name}/dequantize", axis=0))
    new_inits += [numpy_helper.from_array(bq, f"{name}/q"), numpy_helper.from_array(sb, f"{name}/scale"),
                  numpy_helper.from_array(np.zeros(len(sb), np.int32), f"{name}/zero_point")]
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
