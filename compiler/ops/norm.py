"""The op table's normalizations over axes other than the batch: layer norm over one axis (the channels of
[C, H, W] as ConvNeXt's LayerNorm2d, the last axis of tokens as nn.LayerNorm), group norm (nn.GroupNorm;
MobileViTv2's GroupNorm1 is one group), instance norm (nn.InstanceNorm2d: each channel over its positions, the
U-Nets of MONAI) and the L2 normalization of one axis (F.normalize: EdgeNeXt's cross-covariance attention). Batch
norm, folded into convs, stays with them in `ops.py`.
"""

from __future__ import annotations

from typing import Any

from ..errors import ShapeError
from .base import Arg, Attrs, OnnxEmit, OpDef, ParamSpec, Shape, TorchEmit, axis_of, f32_const, torch_modules


# ---------------------------------------------------------------------------------------------------- layernorm
def _layernorm_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    axis_of(a, shapes)
    return [shapes[0]]


def _layernorm_params(a: Attrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    if not a["affine"]:
        return {}
    size = shapes[0][axis_of(a, shapes)]
    return {"weight": ParamSpec((size,)), "bias": ParamSpec((size,))}


def _layernorm_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    from ..torch_ops import AxisLayerNorm  # deferred for start-up: loads jsonschema, networkx, torch

    ax = axis_of(a, emit.in_shapes)
    return emit.module(AxisLayerNorm(emit.in_shapes[0][ax], ax + 1, a["eps"], a["affine"]), x)


def _layernorm_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    shape = emit.in_shapes[0]
    ax = axis_of(a, emit.in_shapes)
    axis, rank, size, eps, affine = ax + 1, len(shape) + 1, shape[ax], a["eps"], a["affine"]
    emit.composite(
        "LayerNormalization",
        axes=[axis],
        epsilon=eps,
        weight=f"{emit.name}.weight" if affine else None,
        bias=f"{emit.name}.bias" if affine else None,
    )
    if emit.opset >= 17:  # LayerNormalization normalizes the trailing axes: the one axis is moved last
        scale = emit.param("weight") if affine else emit.const("ones", [1.0] * size, "float32")
        inputs = [x, scale] + ([emit.param("bias")] if affine else [])
        if axis == rank - 1:
            return emit.op("LayerNormalization", inputs, axis=-1, epsilon=eps)
        perm = [i for i in range(rank) if i != axis] + [axis]
        inputs[0] = emit.op("Transpose", [x], suffix="to_last", perm=perm)
        y = emit.op("LayerNormalization", inputs, suffix="normalize", axis=-1, epsilon=eps)
        return emit.op("Transpose", [y], perm=[perm.index(i) for i in range(rank)])
    # below opset 17: (x - mean) / sqrt(mean((x - mean)^2) + eps) over the axis, then the affine
    mean = emit.op("ReduceMean", [x], suffix="mean", axes=[axis], keepdims=1)
    centered = emit.op("Sub", [x, mean], suffix="centered")
    var = emit.op(
        "ReduceMean",
        [emit.op("Mul", [centered, centered], suffix="square")],
        suffix="variance",
        axes=[axis],
        keepdims=1,
    )
    std = emit.op("Sqrt", [emit.op("Add", [var, f32_const(emit, "epsilon", eps)], suffix="plus_epsilon")], suffix="std")
    if not affine:
        return emit.op("Div", [centered, std])
    along = tuple(size if i == ax else 1 for i in range(len(shape)))  # broadcasts along the axis
    y = emit.op(
        "Mul", [emit.op("Div", [centered, std], suffix="normalized"), emit.param("weight", along)], suffix="scaled"
    )
    return emit.op("Add", [y, emit.param("bias", along)])


# ---------------------------------------------------------------------------------------------------- groupnorm
def _groupnorm_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    c = shapes[0][0]
    if len(shapes[0]) < 2:
        raise ShapeError(f"groupnorm normalizes channels and positions: a {list(shapes[0])} input has no positions")
    if c % a["groups"]:
        raise ShapeError(f"groups={a['groups']} does not divide the {c} channels of {list(shapes[0])}", "groups")
    return a


def _groupnorm_params(a: Attrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    return {"weight": ParamSpec((shapes[0][0],)), "bias": ParamSpec((shapes[0][0],))} if a["affine"] else {}


def _groupnorm_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.module(nn.GroupNorm(a["groups"], emit.in_shapes[0][0], a["eps"], a["affine"]), x)


def _groupnorm_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    """Reshape to [N, groups, -1], normalize each group (InstanceNormalization, every opset), reshape back, then
    the per-channel affine."""
    shape, groups, eps = emit.in_shapes[0], a["groups"], a["eps"]
    emit.composite(
        "GroupNormalization",
        num_groups=groups,
        epsilon=eps,
        weight=f"{emit.name}.weight" if a["affine"] else None,
        bias=f"{emit.name}.bias" if a["affine"] else None,
    )
    grouped = emit.op("Reshape", [x, emit.const("groups_shape", [0, groups, -1])], suffix="grouped")
    ones = emit.const("ones", [1.0] * groups, "float32")
    zeros = emit.const("zeros", [0.0] * groups, "float32")
    normalized = emit.op("InstanceNormalization", [grouped, ones, zeros], suffix="normalize", epsilon=eps)
    if not a["affine"]:
        return emit.op("Reshape", [normalized, emit.const("shape", [0, *shape])])
    y = emit.op("Reshape", [normalized, emit.const("shape", [0, *shape])], suffix="ungrouped")
    along = (shape[0], *[1] * (len(shape) - 1))
    y = emit.op("Mul", [y, emit.param("weight", along)], suffix="scaled")
    return emit.op("Add", [y, emit.param("bias", along)])


# ---------------------------------------------------------------------------------------------------- instance_norm
def _instancenorm_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    if len(shapes[0]) not in (2, 3):
        raise ShapeError(f"instance_norm expects a [C, H, W] or [C, L] input, got {list(shapes[0])}")
    return a


def _instancenorm_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    cls = nn.InstanceNorm2d if len(emit.in_shapes[0]) == 3 else nn.InstanceNorm1d
    return emit.module(cls(emit.in_shapes[0][0], eps=a["eps"], affine=a["affine"]), x)


def _instancenorm_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    c = emit.in_shapes[0][0]
    scale = emit.param("weight") if a["affine"] else emit.const("ones", [1.0] * c, "float32")
    bias = emit.param("bias") if a["affine"] else emit.const("zeros", [0.0] * c, "float32")
    return emit.op("InstanceNormalization", [x, scale, bias], epsilon=a["eps"])


# ---------------------------------------------------------------------------------------------------- l2_normalize
def _l2_normalize_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(F.normalize, x, 2.0, axis_of(a, emit.in_shapes) + 1, a["eps"])


def _l2_normalize_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    """x / max(sqrt(sum(x * x)), eps) over the axis (ReduceSumSquare with keepdims, Sqrt, Clip, Div: ReduceL2 is the
    same, but TVM's layout conversion refuses it; the sum of squares is one node, so that two normalizations of one
    tensor along other axes share nothing a pass could merge), marked as the one function ONNX has for it,
    LpNormalization (which has no eps), so the INT8 planner takes it as one node."""
    axis = axis_of(a, emit.in_shapes) + 1
    emit.composite("LpNormalization", axis=axis, p=2, epsilon=a["eps"])
    if emit.opset >= 18:  # the axes of ReduceSumSquare became an input
        total = emit.op("ReduceSumSquare", [x, emit.const("axes", [axis])], suffix="sum", keepdims=1)
    else:
        total = emit.op("ReduceSumSquare", [x], suffix="sum", axes=[axis], keepdims=1)
    norm = emit.op("Sqrt", [total], suffix="norm")
    # a Clip from below, as torch exports it: TVM's layout conversion refuses a Max with a constant operand
    floor = emit.op("Clip", [norm, f32_const(emit, "epsilon", a["eps"])], suffix="floored")
    return emit.op("Div", [x, floor])


NORM_OPS = [
    OpDef(
        "layernorm",
        (
            Arg("axis", "int", 1, lo=-8, hi=8, doc="NCHW axis normalized over"),
            Arg("eps", "float", 1e-5, lo=0, hi=1),
            Arg("affine", "bool", True),
        ),
        _layernorm_infer,
        _layernorm_torch,
        params=_layernorm_params,
        to_onnx=_layernorm_onnx,
        doc="layer normalization over one axis (1: the channels, ConvNeXt's LayerNorm2d; -1: the last axis), "
        "learnable weight and bias of that axis' size",
    ),
    OpDef(
        "groupnorm",
        (Arg("groups", "int", 1, lo=1, hi=65_536), Arg("eps", "float", 1e-5, lo=0, hi=1), Arg("affine", "bool", True)),
        lambda a, s: [s[0]],
        _groupnorm_torch,
        prepare=_groupnorm_prepare,
        params=_groupnorm_params,
        to_onnx=_groupnorm_onnx,
        doc="group normalization (nn.GroupNorm): the channels in `groups` groups, each normalized over its "
        "channels and every position, then a learnable weight and bias per channel (1 group: "
        "MobileViTv2's GroupNorm1)",
    ),
    OpDef(
        "instance_norm",
        (Arg("eps", "float", 1e-5, lo=0, hi=1), Arg("affine", "bool", False)),
        lambda a, s: [s[0]],
        _instancenorm_torch,
        prepare=_instancenorm_prepare,
        params=_groupnorm_params,
        to_onnx=_instancenorm_onnx,
        doc="instance normalization (nn.InstanceNorm2d, without running statistics): each channel of each "
        "sample normalized over its positions, then (affine) a learnable weight and bias per channel",
    ),
    OpDef(
        "l2_normalize",
        (
            Arg("axis", "int", 1, lo=-8, hi=8, doc="NCHW axis whose vectors are scaled to unit length"),
            Arg("eps", "float", 1e-12, lo=0, hi=1, doc="the smallest norm divided by"),
        ),
        _layernorm_infer,
        _l2_normalize_torch,
        to_onnx=_l2_normalize_onnx,
        doc="L2 normalization (F.normalize): x / max(||x||_2, eps) along one axis (1: the channels; -1: the last "
        "axis, EdgeNeXt's queries and keys)",
    ),
]
