"""ONNX ops -> spec nodes: one converter per ONNX op type, in one table (`CONVERTERS`).

A converter reads an ONNX node whose constant inputs are numpy arrays (`Node.const`) and returns the spec node's
op and arguments plus the tensors of its state_dict entry, or raises Unsupported saying why (the importer names the
node and refuses the model before writing anything). Nodes that compute nothing at inference (Identity, Dropout)
alias their input.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import helper

from ..ops.attention import relative_position_index
from .nodes import OnnxNode, SpecNode, Unsupported, float_arg, pads_arg, pair_arg, weight_and_bias
from .spatial import SPATIAL_CONVERTERS

__all__ = ["ALIASES", "CONVERTERS", "OnnxNode", "SpecNode", "Unsupported"]


def _conv(node: OnnxNode) -> SpecNode:
    w = node.constant(1)
    if w is None:
        raise Unsupported("its weight is computed, not a constant")
    if w.ndim != 4:
        raise Unsupported(f"a {w.ndim - 2}-D convolution (2-D only)")
    co, _, kh, kw = w.shape
    args = {"out": int(co), "kernel": pair_arg([kh, kw], "kernel")}
    stride = pair_arg(node.attr("strides", [1, 1]), "strides")
    dilation = pair_arg(node.attr("dilations", [1, 1]), "dilations")
    padding = pads_arg(node)
    groups = int(node.attr("group", 1))
    defaults = (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1), ("groups", groups, 1))
    args.update({key: value for key, value, default in defaults if value != default})
    tensors = weight_and_bias(node, w, args)
    return SpecNode("conv2d", args, tensors, node.proto.input[1])


def _batchnorm(node: OnnxNode) -> SpecNode:
    scale, bias, mean, var = (node.constant(k) for k in range(1, 5))
    if any(t is None for t in (scale, bias, mean, var)):
        raise Unsupported("its statistics are computed, not constants")
    if len(node.proto.output) > 1 and any(node.proto.output[1:]):
        raise Unsupported("training mode (running statistics as outputs)")
    args = {}
    eps = float(node.attr("epsilon", 1e-5))
    if not math.isclose(eps, 1e-5, rel_tol=1e-6):
        args["eps"] = float_arg(eps)
    momentum = 1.0 - float(node.attr("momentum", 0.9))  # ONNX keeps the old statistics' share; PyTorch the new's
    if not math.isclose(momentum, 0.1, rel_tol=1e-6):
        args["momentum"] = float_arg(momentum)
    return SpecNode(
        "batchnorm",
        args,
        {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var},
        node.proto.input[1],
    )


def _clip(node: OnnxNode) -> SpecNode:
    lo, hi = node.attr("min"), node.attr("max")
    if lo is None and node.constant(1) is not None:
        lo = float(node.constant(1))
    if hi is None and node.constant(2) is not None:
        hi = float(node.constant(2))
    if lo == 0 and hi == 6:
        return SpecNode("relu6")
    if lo == 0 and hi is None:
        return SpecNode("relu")
    raise Unsupported(f"Clip to [{lo}, {hi}] (only relu6's [0, 6] and relu's [0, inf) have a spec op)")


def _hardsigmoid(node: OnnxNode) -> SpecNode:
    alpha, beta = float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
    if not (math.isclose(alpha, 1 / 6, rel_tol=1e-5) and math.isclose(beta, 0.5)):
        raise Unsupported(f"HardSigmoid with alpha {alpha}, beta {beta} (the spec's is PyTorch's: 1/6, 0.5)")
    return SpecNode("hardsigmoid")


def _pool(op: str):
    def convert(node: OnnxNode) -> SpecNode:
        kernel = list(node.attr("kernel_shape"))
        args = {"kernel": pair_arg(kernel, "kernel"), "stride": pair_arg(node.attr("strides", kernel), "strides")}
        padding = pads_arg(node)
        if isinstance(padding, list) and len(padding) == 4:
            raise Unsupported(f"asymmetric pads {padding} (a pool takes [h, w] padding)")
        if padding != 0:
            args["padding"] = padding
        if node.attr("ceil_mode", 0):
            args["ceil_mode"] = True
        if op == "maxpool":
            dilation = pair_arg(node.attr("dilations", [1, 1]), "dilations")
            if dilation != 1:
                args["dilation"] = dilation
            if len(node.proto.output) > 1 and any(node.proto.output[1:]):
                raise Unsupported("MaxPool's indices output")
        elif not node.attr("count_include_pad", 0) and padding != 0:
            args["count_include_pad"] = False
        return SpecNode(op, args)

    return convert


def _gemm(node: OnnxNode) -> SpecNode:
    b, c = node.constant(1), node.constant(2)
    if b is None:
        raise Unsupported("its weight is computed, not a constant (a product of two activations)")
    if node.attr("transA", 0) or float(node.attr("alpha", 1.0)) != 1.0 or float(node.attr("beta", 1.0)) != 1.0:
        raise Unsupported("transA, alpha or beta other than Linear's")
    weight = b if node.attr("transB", 0) else b.T
    out = int(weight.shape[0])
    args = {"out": out}
    tensors = {"weight": np.ascontiguousarray(weight)}
    if c is None:
        args["bias"] = False
    elif c.size in (1, out):  # [out], [1, out] or a scalar broadcast over the outputs
        tensors["bias"] = np.broadcast_to(c.reshape(-1), (out,)).copy()
    else:
        raise Unsupported(f"a bias of shape {list(c.shape)} for {out} outputs")
    return SpecNode("linear", args, tensors, node.proto.input[1])


def _matmul(node: OnnxNode) -> SpecNode:
    a_shape = node.shapes.get(node.proto.input[0], ())
    if len(node.activations()) == 2:  # attention's q k^T and weights x v: batched over the leading axes
        b_shape = node.shapes.get(node.proto.input[1], ())
        if len(a_shape) < 2 or len(a_shape) != len(b_shape) or a_shape[:-2] != b_shape[:-2]:
            raise Unsupported(
                f"a product of shapes {list(a_shape)} and {list(b_shape)} (the spec's matmul takes equal batch axes)"
            )
        return SpecNode("matmul")
    b = node.constant(1)
    if b is None or b.ndim != 2:
        raise Unsupported("a product with a constant of more than two axes (a spec linear layer takes [in, out])")
    args = {"out": int(b.shape[1]), "bias": False}
    if len(a_shape) != 1:  # over the last axis of tokens
        args["axis"] = -1
    return SpecNode("linear", args, {"weight": np.ascontiguousarray(b.T)}, node.proto.input[1])


def _elementwise(op: str):
    def convert(node: OnnxNode) -> SpecNode:
        if len(node.activations()) != len(node.inputs()):
            raise Unsupported(f"{node.op_type} with a constant operand (the spec's {op} takes computed values)")
        return SpecNode(op)

    return convert


def _axis_op(op: str, default: int):
    def convert(node: OnnxNode) -> SpecNode:
        axis = int(node.attr("axis", default))
        return SpecNode(op, {"axis": axis} if axis != 1 else {})

    return convert


def _flatten(node: OnnxNode) -> SpecNode:
    if int(node.attr("axis", 1)) != 1:
        raise Unsupported(f"Flatten from axis {node.attr('axis')} (the spec's flatten keeps the batch axis only)")
    return SpecNode("flatten")


def _sample_shape(dims: list[int], given: tuple | None) -> list[int] | None:
    """A Reshape's target dimensions after the batch as explicit sizes (0: the input's, -1: inferred), or None where
    they do not hold the sample's elements."""
    if not given:
        return None
    n = math.prod(given)
    out = [int(given[i]) if d == 0 and i < len(given) else int(d) for i, d in enumerate(dims)]
    if out.count(-1) > 1 or any(d == 0 or d < -1 for d in out):
        return None
    known = math.prod(d for d in out if d != -1)
    if -1 in out:
        if known == 0 or n % known:
            return None
        out[out.index(-1)] = n // known
    return out if math.prod(out) == n else None


def _reshape(node: OnnxNode) -> SpecNode:
    shape = node.constant(1)
    if shape is not None and shape.ndim == 1 and len(shape) == 2 and shape[1] == -1 and shape[0] in (0, 1, -1):
        return SpecNode("flatten")  # x.view(x.size(0), -1): the flatten torch writes through Reshape
    given = node.shapes.get(node.proto.input[0])
    # per sample: the batch axis kept (0, -1, or 1: the import folds the graph at batch 1, so a batch the exporter
    # computed from the input's shape reads 1); a 0 copies the input's dimension, one -1 is inferred
    per_sample = _sample_shape(shape[1:].tolist(), given) if shape is not None and shape.ndim == 1 else None
    if per_sample is not None and len(shape) > 1 and shape[0] in (0, 1, -1):
        return SpecNode("reshape", {"shape": per_sample})
    raise Unsupported(
        f"Reshape to {None if shape is None else shape.tolist()} (the spec reshapes each sample: "
        "[N, ...] with the sample's element count, or a flatten to [N, -1])"
    )


def _squeeze(node: OnnxNode) -> SpecNode:
    """Squeeze / Unsqueeze of axes other than the batch: the spec's reshape to the output's per-sample shape."""
    axes = node.constant(1) if len(node.inputs()) > 1 else node.attr("axes")
    given, out = node.shapes.get(node.proto.input[0]), node.shapes.get(node.proto.output[0])
    if axes is None and node.op_type == "Squeeze":
        raise Unsupported("a Squeeze of every size-1 axis (the batch's too)")
    listed = [int(a) for a in np.asarray(axes).reshape(-1)] if axes is not None else None
    ranked = out if node.op_type == "Unsqueeze" else given  # the axes count in the larger of the two
    if ranked is None:
        raise Unsupported("its output shape is not known")
    if listed is None or any(a % (len(ranked) + 1) == 0 for a in listed):
        raise Unsupported(f"{node.op_type} of axes {listed} (the batch axis)")
    if not out or not given or math.prod(out) != math.prod(given):
        raise Unsupported("its output shape is not known")
    return SpecNode("reshape", {"shape": [int(d) for d in out]})


def _sample_axes(node: OnnxNode, axes, what: str) -> list[int]:
    """ONNX axes of `node`'s input as the spec's (NCHW, the batch 0), refused where one is the batch."""
    given = node.shapes.get(node.proto.input[0])
    if given is None:
        raise Unsupported("its input shape is not known")
    out = [int(a) % (len(given) + 1) for a in np.ravel(axes)]
    if 0 in out:
        raise Unsupported(f"{what} along the batch axis")
    return out


def _gather(node: OnnxNode) -> SpecNode:
    """One constant position along a sample axis (a ViT's class token, `x[:, 0]`): the spec's select, or a slice of
    one where the index keeps its axis ([i])."""
    index = node.constant(1)
    if index is None or index.size != 1 or index.ndim > 1:
        raise Unsupported("a Gather of computed or several indices")
    (axis,) = _sample_axes(node, [node.attr("axis", 0)], "a Gather")
    i = int(index.reshape(-1)[0])
    if index.ndim == 0:
        return SpecNode("select", {"axis": axis, "index": i})
    size = node.shapes[node.proto.input[0]][axis - 1]
    return SpecNode("slice", {"axis": axis, "start": i % size, "end": i % size + 1})


def _reduction(op: str):
    def convert(node: OnnxNode) -> SpecNode:
        """A reduction over sample axes (a mean the global pooling did not take, LeViT's over its tokens;
        MobileViTv2's context sum): the spec's reduction `op`."""
        axes = node.attr("axes") if len(node.inputs()) < 2 else node.constant(1)
        if axes is None:
            raise Unsupported(f"a {node.op_type} over every axis (the batch's too) or over computed axes")
        args: dict = {"axes": _sample_axes(node, axes, f"a {node.op_type}")}
        return SpecNode(op, args | ({"keepdims": True} if int(node.attr("keepdims", 1)) else {}))

    return convert


def _l2_normalize(node: OnnxNode) -> SpecNode:
    """tcc.onnx_import.patterns' L2Normalize: the spec's l2_normalize (its axis in NCHW terms, the batch refused)."""
    (axis,) = _sample_axes(node, [node.attr("axis")], "an L2 normalization")
    rank = len(node.shapes[node.proto.input[0]]) + 1
    eps = float(node.attr("epsilon"))
    args: dict = {} if axis == 1 else {"axis": -1 if axis == rank - 1 else axis}
    return SpecNode("l2_normalize", args | ({} if math.isclose(eps, 1e-12, rel_tol=1e-6) else {"eps": float_arg(eps)}))


def _transpose(node: OnnxNode) -> SpecNode:
    perm = [int(p) for p in node.attr("perm", [])]
    if not perm or perm[0] != 0:
        raise Unsupported(f"Transpose with perm {perm} (the spec's permute keeps the batch axis first)")
    return SpecNode("permute", {"perm": perm})


def slice_ranges(proto, const: dict, shape: tuple) -> dict[int, tuple[int, int, int]] | None:
    """{axis (with the batch): (start, end, step)} of a Slice whose bounds are constants (inputs from opset 10,
    attributes before), start and end clamped to the axis; None where a bound is computed."""
    if len(proto.input) > 1:
        starts, ends, axes, steps = (const.get(i) if i else None for i in (list(proto.input[1:]) + [""] * 4)[:4])
        if starts is None or ends is None or any(i and const.get(i) is None for i in proto.input[3:5]):
            return None
    else:
        attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
        starts, ends, axes, steps = attrs.get("starts"), attrs.get("ends"), attrs.get("axes"), None
    dims = (1, *shape)
    axes = list(range(len(starts))) if axes is None else [int(a) % len(dims) for a in np.ravel(axes)]
    steps = [1] * len(axes) if steps is None else [int(v) for v in np.ravel(steps)]
    ranges = {}
    for a, start, end, step in zip(axes, np.ravel(starts), np.ravel(ends), steps):
        start, end = (max(int(v) + dims[a], 0) if int(v) < 0 else min(int(v), dims[a]) for v in (start, end))
        ranges[a] = (start, end, step)
    return ranges


def _slice(node: OnnxNode) -> SpecNode:
    ranges = slice_ranges(node.proto, node.const, node.shapes.get(node.proto.input[0], ()))
    if ranges is None:
        raise Unsupported("starts, ends, axes and steps must be constants")
    if len(ranges) != 1 or 0 in ranges or next(iter(ranges.values()))[2] < 1:
        raise Unsupported(
            f"a Slice of axes {list(ranges)} with steps {[r[2] for r in ranges.values()]} (the spec's "
            "slice: one axis other than the batch, a positive step)"
        )
    ((axis, (start, end, step)),) = ranges.items()
    return SpecNode("slice", {"axis": axis, "start": start, "end": end} | ({"step": step} if step != 1 else {}))


def _learned_tensor(node: OnnxNode) -> SpecNode:
    """tcc.onnx_import.patterns' LearnedTensor: the spec's param (a learned [1, ...] tensor, its input the value
    whose batch it takes)."""
    value = node.constant(1)
    return SpecNode(
        "param", {"shape": [int(d) for d in value.shape[1:]]}, {"weight": value.astype(np.float32)}, node.proto.input[1]
    )


def _relative_position_bias(node: OnnxNode) -> SpecNode:
    """tcc.onnx_import.patterns' RelativePositionBias: the spec's relative_position_bias, its table recovered from
    the folded bias (the index is the op's own constant)."""
    w = int(node.attr("window"))
    index = relative_position_index(w, w).reshape(-1)
    return SpecNode(
        "relative_position_bias", {"window": w}, {"weight": node.constant(1).astype(np.float32), "index": index}
    )


def _window_mask(node: OnnxNode) -> SpecNode:
    """tcc.onnx_import.patterns' WindowMask: the spec's window_mask (a constant: no tensor)."""
    return SpecNode(
        "window_mask",
        {
            "size": [int(v) for v in node.attr("size")],
            "window": int(node.attr("window")),
            "shift": [int(v) for v in node.attr("shift")],
        },
    )


def _scaled_matmul(node: OnnxNode) -> SpecNode:
    """tcc.onnx_import.patterns' ScaledMatMul: the spec's matmul with its constant `scale` (and `transpose_b`)."""
    args = {"scale": float_arg(float(node.attr("scale")))}
    return SpecNode("matmul", args | ({"transpose_b": True} if node.attr("transpose_b", 0) else {}))


def _rows_linear(node: OnnxNode) -> SpecNode:
    """tcc.onnx_import.patterns' RowsLinear: Reshape to [-1, in], Gemm, Reshape back, read as the spec's linear over
    the last axis of tokens (`axis: -1`)."""
    spec = _gemm(node)
    return SpecNode("linear", {**spec.args, "axis": -1}, spec.tensors, spec.weight_name)


def _simple(op: str, **attrs):
    def convert(node: OnnxNode) -> SpecNode:
        args = {}
        for onnx_name, (spec_name, default) in attrs.items():
            value = float(node.attr(onnx_name, default))
            if not math.isclose(value, default, rel_tol=1e-6):
                args[spec_name] = float_arg(value)
        return SpecNode(op, args)

    return convert


def _gelu(node: OnnxNode) -> SpecNode:
    approximate = node.attr("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    return SpecNode("gelu", {"approximate": approximate} if approximate != "none" else {})


def per_channel(factors: np.ndarray, shape: tuple) -> np.ndarray | None:
    """Constant factors as one per channel of a [C, ...] or [F] value, where they broadcast along it alone."""
    channels = shape[0]
    if factors.size == 1:
        return np.full(channels, float(factors.reshape(-1)[0]), np.float32)
    dims, want = list(factors.shape), [channels] + [1] * (len(shape) - 1)
    while len(dims) > len(want) and dims[0] == 1:
        dims.pop(0)
    return factors.reshape(-1).astype(np.float32) if dims == want else None


def _mul(node: OnnxNode) -> SpecNode:
    """Mul of two computed values (a gate), or of one by constant factors per channel (a layer scale: the spec's
    scale)."""
    consts = [k for k in range(2) if node.constant(k) is not None]
    if not consts:
        return SpecNode("mul")
    shape = node.shapes.get(node.proto.input[1 - consts[0]], ())
    factors = node.constant(consts[0])
    weight = per_channel(factors, shape) if len(consts) == 1 and shape else None
    if weight is None:
        raise Unsupported(f"Mul by a constant of shape {list(factors.shape)} (a scale takes one factor per channel)")
    weight = weight.reshape((-1,) + (1,) * (len(shape) - 1))  # the spec's scale: [C, 1, ...] per sample
    return SpecNode("scale", {}, {"weight": weight}, node.proto.input[consts[0]])


def _layer_norm(node: OnnxNode) -> SpecNode:
    """LayerNormalization over its last axis, or tcc.onnx_import.patterns' LayerNorm (the arithmetic form) over one
    axis: the spec's layernorm (`axis` with the batch counted, as ONNX's; -1 the last)."""
    x = node.proto.input[0]
    rank = len(node.shapes.get(x, ())) + 1
    axis = int(node.attr("axis", -1)) % rank
    if node.op_type == "LayerNormalization":
        if axis != rank - 1:
            raise Unsupported(f"LayerNormalization over axes {axis}..{rank - 1} (the spec's layernorm takes one)")
        if len(node.proto.output) > 1 and any(node.proto.output[1:]):
            raise Unsupported("LayerNormalization's mean and inverse deviation as outputs")
    size = node.shapes[x][axis - 1]
    weight, bias = node.constant(1), node.constant(2)
    if weight is None and len(node.inputs()) > 1:
        raise Unsupported("its weight is computed, not a constant")
    weight = np.ones(size, np.float32) if weight is None else np.broadcast_to(weight.reshape(-1), (size,))
    bias = np.zeros(size, np.float32) if bias is None else np.broadcast_to(bias.reshape(-1), (size,))
    args = {} if axis == 1 else {"axis": -1 if axis == rank - 1 else axis}
    eps = float(node.attr("epsilon", 1e-5))
    if not math.isclose(eps, 1e-5, rel_tol=1e-6):
        args["eps"] = float_arg(eps)
    tensors = {"weight": weight.astype(np.float32).copy(), "bias": bias.astype(np.float32).copy()}
    return SpecNode("layernorm", args, tensors, node.proto.input[1] if len(node.inputs()) > 1 else None)


def _group_norm(node: OnnxNode) -> SpecNode:
    """tcc.onnx_import.patterns' GroupNorm (tcc's own ONNX form of nn.GroupNorm, and torch's): the spec's groupnorm,
    its weight and bias those of the Mul and Add after it (none: `affine: false`)."""
    channels = node.shapes[node.proto.input[0]][0]
    args: dict = {"groups": int(node.attr("groups"))}
    eps = float(node.attr("epsilon"))
    if not math.isclose(eps, 1e-5, rel_tol=1e-6):
        args["eps"] = float_arg(eps)
    weight, bias = node.constant(1), node.constant(2)
    if weight is None:
        return SpecNode("groupnorm", args | {"affine": False})
    tensors = {k: np.broadcast_to(v.reshape(-1), (channels,)).astype(np.float32).copy() for k, v in
               (("weight", weight), ("bias", bias))}  # fmt: skip
    return SpecNode("groupnorm", args, tensors, node.proto.input[1])


def _channel_linear(node: OnnxNode) -> SpecNode:
    """tcc.onnx_import.patterns' ChannelLinear: a MatMul (+ bias) over NHWC's last axis, read as the spec's linear
    over the channels (`axis: 1`, nn.Linear's [out, in] weight)."""
    weight, bias = node.constant(1), node.constant(2)
    out = int(weight.shape[1])
    tensors = {"weight": np.ascontiguousarray(weight.T)}
    args = {"out": out, "axis": 1}
    if bias is None:
        args["bias"] = False
    else:
        tensors["bias"] = np.broadcast_to(bias.reshape(-1), (out,)).copy()
    names = [i for i in node.proto.input[1:] if i and "::" not in i]
    return SpecNode("linear", args, tensors, names[0] if names else None)


def _split(node: OnnxNode) -> SpecNode:
    axis = int(node.attr("axis", 0))
    sizes = node.constant(1) if len(node.inputs()) > 1 else node.attr("split")
    outputs = len(node.proto.output)
    if sizes is None:
        return SpecNode("split", {"parts": outputs, **({"axis": axis} if axis != 1 else {})})
    sizes = [int(v) for v in np.asarray(sizes).ravel()]
    args = {"parts": outputs} if len(set(sizes)) == 1 else {"sizes": sizes}
    return SpecNode("split", {**args, **({"axis": axis} if axis != 1 else {})})


def _channel_shuffle(node: OnnxNode) -> SpecNode:
    return SpecNode("channel_shuffle", {"groups": int(node.attr("groups"))})


ALIASES = ("Identity", "Dropout")  # the identity at inference: their output is their input
# pseudo-ops: what tcc.onnx_import.patterns finds written as several ONNX nodes, as one node
CHANNEL_SHUFFLE = "ChannelShuffle"  # Reshape / Transpose / Reshape
LAYER_NORM = "LayerNorm"  # ReduceMean / Sub / Pow / ReduceMean / Add / Sqrt / Div (/ Mul / Add)
CHANNEL_LINEAR = "ChannelLinear"  # MatMul (/ Add) on the last axis of an NHWC run
LEARNED_TENSOR = "LearnedTensor"  # a constant [1, ...] added to or concatenated with a computed value
SCALED_MATMUL = "ScaledMatMul"  # MatMul of two computed values (the second maybe transposed) / Mul by a constant
ROWS_LINEAR = "RowsLinear"  # Reshape to [-1, in] / Gemm / Reshape back: a linear layer over the last axis of tokens
RELATIVE_POSITION_BIAS = "RelativePositionBias"  # scores + a folded [heads, N, N] that a relative-offset table makes
WINDOW_MASK = "WindowMask"  # scores + a folded [windows, 1, N, N] that is Swin's shifted-window mask
L2_NORMALIZE = "L2Normalize"  # ReduceL2 / Clip (min eps) / Expand / Div: F.normalize
GROUP_NORM = "GroupNorm"  # Reshape to [N, groups, -1] / InstanceNormalization / Reshape back (/ Mul / Add per channel)

CONVERTERS = {
    "Conv": _conv,
    "BatchNormalization": _batchnorm,
    "Relu": _simple("relu"),
    "Sigmoid": _simple("sigmoid"),
    "Tanh": _simple("tanh"),
    "HardSwish": _simple("hardswish"),
    "HardSigmoid": _hardsigmoid,
    "LeakyRelu": _simple("leaky_relu", alpha=("negative_slope", 0.01)),
    "Elu": _simple("elu", alpha=("alpha", 1.0)),
    "Gelu": _gelu,
    "Clip": _clip,
    "Add": _elementwise("add"),
    "Sub": _elementwise("sub"),
    "Div": _elementwise("div"),
    "Mul": _mul,
    "Concat": _axis_op("concat", 1),
    "Softmax": _axis_op("softmax", -1),
    "MaxPool": _pool("maxpool"),
    "AveragePool": _pool("avgpool"),
    "GlobalAveragePool": _simple("global_avgpool"),
    "GlobalMaxPool": _simple("global_maxpool"),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "Unsqueeze": _squeeze,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Split": _split,
    "Transpose": _transpose,
    "Slice": _slice,
    "Gather": _gather,
    "ReduceMean": _reduction("mean"),
    "ReduceSum": _reduction("sum"),
    "LayerNormalization": _layer_norm,
    CHANNEL_SHUFFLE: _channel_shuffle,
    LAYER_NORM: _layer_norm,
    CHANNEL_LINEAR: _channel_linear,
    ROWS_LINEAR: _rows_linear,
    SCALED_MATMUL: _scaled_matmul,
    LEARNED_TENSOR: _learned_tensor,
    RELATIVE_POSITION_BIAS: _relative_position_bias,
    WINDOW_MASK: _window_mask,
    L2_NORMALIZE: _l2_normalize,
    GROUP_NORM: _group_norm,
    **SPATIAL_CONVERTERS,
}
