"""BatchNormalization out of the graph: folded into the Conv/Gemm that produces its input, else into the Convs
that read its output when none of them pads (FastNet: ReLU -> BN -> a valid conv; with zero padding the border
would differ: the padded zeros are not shifted), and where neither applies (pre-activation BN: BN -> ReLU -> Conv
after a concat, as in DDSNet's transitions and head and DenseNet) turned into a per-channel affine the NPUs accept:
a depthwise 1x1 Conv with bias (Mul + Add for [N, C] tensors).

The same fold takes a Mul by a constant per-channel factor (the `scale` op: ConvNeXt's layer scale after its
pointwise conv), as a BatchNormalization without shift; both in one pass, so Conv -> BN -> scale and
Conv -> scale -> BN fold alike.

Both keep names: a folded Conv keeps its name and output tensor, the BN's readers read the Conv's output (unless
the BN's output is the graph output, which the Conv then writes); the affine takes the BN's node and tensor names.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from .base import Rule, const, const_value, disconnect, fresh_name, only_feeds, producer, replace_uses, rewrite_pass


def _bn_affine(bn: gs.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) in float64 with y = scale * x + shift per channel, or None if the statistics are not constant."""
    params = [const(t) for t in bn.inputs[1:5]]
    values = [p for p in params if p is not None]
    if len(params) != 4 or len(values) != 4 or len(bn.outputs) != 1 or bn.attrs.get("training_mode"):
        return None  # batch statistics (training mode), or its running-statistics outputs are in use
    gamma, beta, mean, var = (p.astype(np.float64) for p in values)
    scale = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    return scale, beta - mean * scale


def _channel_factor(mul: gs.Node, x: gs.Tensor, n: int) -> np.ndarray | None:
    """The factor per channel (n of them, float64) of Mul(x, c) when c is a constant that varies at most along
    axis 1 (a scalar, [C, 1, 1], [1, C, 1, 1]; [F] or [1, F] after a Gemm), else None."""
    other = [t for t in mul.inputs if t is not x]
    c = const(other[0]) if len(mul.inputs) == 2 and len(other) == 1 else None
    if c is None or x.shape is None or len(x.shape) < max(2, c.ndim):
        return None
    padded = c.reshape((1,) * (len(x.shape) - c.ndim) + c.shape)
    if padded.shape[0] != 1 or any(d != 1 for d in padded.shape[2:]) or padded.shape[1] not in (1, n):
        return None
    return np.broadcast_to(padded.reshape(-1).astype(np.float64), (n,)).copy()


def _match_producer(bn: gs.Node, graph: gs.Graph, op: str) -> dict | None:
    """A BatchNormalization (or a constant per-channel Mul: `_match_scale`) whose input only `op` produces."""
    if bn.op == "Mul":
        return _match_scale(bn, graph, op)
    x = bn.inputs[0]
    prod = producer(x)
    if prod is None or prod.op != op or not only_feeds(x, bn, graph):
        return None
    weights = _producer_weights(prod)
    if weights is None:
        return None
    affine = _bn_affine(bn)
    if affine is None:
        return None
    return {"bn": bn, "node": prod, **weights, "scale": affine[0], "shift": affine[1]}


def _producer_weights(prod: gs.Node) -> dict | None:
    weight = prod.inputs[1]
    if const(weight) is None or len(weight.outputs) != 1:
        return None
    bias = prod.inputs[2] if len(prod.inputs) > 2 else None
    if bias is not None and (const(bias) is None or len(bias.outputs) != 1):
        return None
    return {"weight": weight, "bias": bias}


def _output_channels(prod: gs.Node) -> int:
    """How many output channels (Conv: the weight's axis 0; Gemm: B's output axis) `prod` has."""
    w = const_value(prod.inputs[1])
    if prod.op == "Conv":
        return w.shape[0]
    return w.shape[0] if prod.attrs.get("transB", 0) else w.shape[1]


def _match_scale(mul: gs.Node, graph: gs.Graph, op: str) -> dict | None:
    x = next((t for t in mul.inputs if (p := producer(t)) is not None and p.op == op), None)
    if x is None or not only_feeds(x, mul, graph):
        return None
    prod = producer(x)
    assert prod is not None  # found by its producer above
    weights = _producer_weights(prod)
    if weights is None:
        return None
    factor = _channel_factor(mul, x, _output_channels(prod))
    if factor is None:
        return None
    return {"bn": mul, "node": prod, **weights, "scale": factor, "shift": np.zeros_like(factor)}


def _match_conv_bn(bn, graph):
    return _match_producer(bn, graph, "Conv")


def _match_gemm_bn(bn, graph):
    m = _match_producer(bn, graph, "Gemm")
    if m is None or m["node"].attrs.get("transA", 0):
        return None
    if m["bias"] is not None:  # C must broadcast along the batch, not vary per row
        c = const_value(m["bias"])
        if c.ndim == 2 and c.shape[0] != 1:
            return None
    return m


def _take_output(graph: gs.Graph, node: gs.Node, bn: gs.Node) -> None:
    """After folding, `node` computes what `bn` did."""
    out, bn_out = node.outputs[0], bn.outputs[0]
    disconnect(bn)
    if bn_out in graph.outputs:
        node.outputs[0] = bn_out
    else:
        replace_uses(graph, bn_out, out)


def _put_bias(graph: gs.Graph, node: gs.Node, values: np.ndarray) -> None:
    """`node`'s bias input (a Conv's B, a Gemm's C) becomes the constant `values`, under its old name or a new one."""
    old = node.inputs[2] if len(node.inputs) > 2 else None
    bias = gs.Constant(old.name if old is not None else fresh_name(graph, f"{node.name}.bias"), values)
    if old is not None:
        node.inputs[2] = bias
    else:
        node.inputs.append(bias)


def _fold_into_conv(graph: gs.Graph, m: dict) -> None:
    conv, w, b, scale, shift = m["node"], const_value(m["weight"]), m["bias"], m["scale"], m["shift"]
    w_new = (w.astype(np.float64) * scale.reshape(-1, *[1] * (w.ndim - 1))).astype(w.dtype)
    b_old = const_value(b).astype(np.float64) if b is not None else 0.0
    b_new = (b_old * scale + shift).astype(w.dtype)
    conv.inputs[1] = gs.Constant(m["weight"].name, w_new)
    _put_bias(graph, conv, b_new)
    _take_output(graph, conv, m["bn"])


def _fold_into_gemm(graph: gs.Graph, m: dict) -> None:
    gemm, w, c, scale, shift = m["node"], const_value(m["weight"]), m["bias"], m["scale"], m["shift"]
    alpha = float(gemm.attrs.get("alpha", 1.0))
    beta = float(gemm.attrs.get("beta", 1.0))
    cols = scale[:, None] if gemm.attrs.get("transB", 0) else scale[None, :]  # output channels of B
    w_new = (w.astype(np.float64) * alpha * cols).astype(w.dtype)
    n_out = scale.shape[0]
    c_old = np.broadcast_to(const_value(c).astype(np.float64).reshape(-1), (n_out,)) * beta if c is not None else 0.0
    c_new = (c_old * scale + shift).astype(w.dtype)
    gemm.inputs[1] = gs.Constant(m["weight"].name, w_new)
    _put_bias(graph, gemm, c_new)
    gemm.attrs["alpha"] = 1.0
    gemm.attrs["beta"] = 1.0
    _take_output(graph, gemm, m["bn"])


def _unpadded(conv: gs.Node) -> bool:
    """Every output of `conv` reads real input only (no zero padding): then scaling and shifting its input channels
    is the same as scaling its weights and shifting its bias, exactly."""
    return conv.attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID") and not any(
        int(p) for p in conv.attrs.get("pads", ())
    )


def _match_bn_readers(bn: gs.Node, graph: gs.Graph) -> dict | None:
    """A BatchNormalization (with no producer to fold into: conv_bn is tried first) whose output only unpadded
    Convs read, as their data input, each with constant weights of its own: FastNet's ReLU -> BN -> valid 3x3/2
    conv. Folded into those readers it costs nothing; left standing it is a per-channel affine layer (in INT8, a
    requantized 1x1 depthwise conv: 7.5 M of FastNet's 73.7 M arm-a7 instructions)."""
    affine = _bn_affine(bn)
    y = bn.outputs[0] if bn.outputs else None
    if affine is None or y is None or y in graph.outputs or not y.outputs:
        return None
    readers = list(y.outputs)  # a conv that reads y twice appears twice: refused below
    for conv in readers:
        if conv.op != "Conv" or conv.inputs[0] is not y or list(conv.inputs).count(y) != 1 or not _unpadded(conv):
            return None
        weights = _producer_weights(conv)
        w = const(conv.inputs[1]) if weights is not None else None
        if w is None or w.ndim < 3 or w.shape[1] * int(conv.attrs.get("group", 1)) != affine[0].shape[0]:
            return None
    return {"bn": bn, "readers": readers, "scale": affine[0], "shift": affine[1]}


def _fold_into_readers(graph: gs.Graph, m: dict) -> None:
    """Each reader conv: W'[o, k] = W[o, k] * scale[c], b'[o] = b[o] + sum W[o, k] * shift[c], with c the input
    channel that weight row k of output o reads (its group's block of channels)."""
    bn, scale, shift = m["bn"], m["scale"], m["shift"]
    x = bn.inputs[0]
    for conv in m["readers"]:
        w = const_value(conv.inputs[1])
        out_ch, per_group = w.shape[0], w.shape[1]
        groups = int(conv.attrs.get("group", 1))
        channel = (np.arange(out_ch)[:, None] // (out_ch // groups)) * per_group + np.arange(per_group)[None, :]
        spatial = (1,) * (w.ndim - 2)
        w64 = w.astype(np.float64)
        w_new = (w64 * scale[channel].reshape(*channel.shape, *spatial)).astype(w.dtype)
        b_add = (w64 * shift[channel].reshape(*channel.shape, *spatial)).sum(axis=tuple(range(1, w.ndim)))
        b = const_value(conv.inputs[2]).astype(np.float64) if len(conv.inputs) > 2 else 0.0
        conv.inputs[1] = gs.Constant(conv.inputs[1].name, w_new)
        _put_bias(graph, conv, (b + b_add).astype(w.dtype))
        conv.inputs[0] = x
    disconnect(bn)


fold_batchnorm = rewrite_pass(
    "fold_batchnorm",
    "BatchNormalization, and a Mul by a constant per-channel factor (layer scale), folded into the Conv/Gemm that "
    "produces its input (when that output feeds only it), else into the unpadded Convs that alone read it",
    [
        Rule("conv_bn", "BatchNormalization", _match_conv_bn, _fold_into_conv),
        Rule("gemm_bn", "BatchNormalization", _match_gemm_bn, _fold_into_gemm),
        Rule("bn_conv", "BatchNormalization", _match_bn_readers, _fold_into_readers),
        Rule("conv_scale", "Mul", _match_conv_bn, _fold_into_conv),
        Rule("gemm_scale", "Mul", _match_gemm_bn, _fold_into_gemm),
    ],
    infer_shapes=True,
)


# ---------------------------------------------------------------------------------------------------- affine
def _match_standalone_bn(bn: gs.Node, graph: gs.Graph) -> dict | None:
    affine = _bn_affine(bn)
    shape = bn.inputs[0].shape
    if affine is None or shape is None or len(shape) < 2:
        return None
    return {"bn": bn, "rank": len(shape), "scale": affine[0], "shift": affine[1]}


def _to_affine(graph: gs.Graph, m: dict) -> None:
    bn, scale, shift = m["bn"], m["scale"].astype(np.float32), m["shift"].astype(np.float32)
    x, y, c = bn.inputs[0], bn.outputs[0], scale.shape[0]
    disconnect(bn)
    if m["rank"] >= 3:  # depthwise 1x1 conv: y[n, c] = w[c] * x[n, c] + b[c]
        spatial = m["rank"] - 2
        weight = gs.Constant(fresh_name(graph, f"{bn.name}.weight"), scale.reshape(c, 1, *[1] * spatial))
        bias = gs.Constant(fresh_name(graph, f"{bn.name}.bias"), shift)
        graph.nodes.append(
            gs.Node("Conv", bn.name, {"kernel_shape": [1] * spatial, "group": c}, inputs=[x, weight, bias], outputs=[y])
        )
    else:  # [N, C]: Mul then Add
        # not "<bn>/scale": the QDQ lowering names the scale of the tensor <bn> so
        scaled = gs.Variable(fresh_name(graph, f"{bn.name}.scaled"), dtype=np.float32)
        weight = gs.Constant(fresh_name(graph, f"{bn.name}.weight"), scale)
        bias = gs.Constant(fresh_name(graph, f"{bn.name}.bias"), shift)
        graph.nodes.append(gs.Node("Mul", f"{bn.name}/scale", inputs=[x, weight], outputs=[scaled]))
        graph.nodes.append(gs.Node("Add", bn.name, inputs=[scaled, bias], outputs=[y]))


batchnorm_to_affine = rewrite_pass(
    "batchnorm_to_affine",
    "a BatchNormalization with no Conv/Gemm to fold into becomes a depthwise 1x1 Conv (Mul + Add on [N, C])",
    [Rule("bn_affine", "BatchNormalization", _match_standalone_bn, _to_affine)],
    infer_shapes=True,
)
