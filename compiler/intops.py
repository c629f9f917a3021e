"""THE integer op table: every op kind of a quantized graph is defined once here (the INT8 twin of tcc.ops).

An `IntOp` states, for one kind of integer node:
- its calibration `Role` (which tensors get a scale of their own, which share one: `shares_scale`);
- the ONNX ops it stands for (`onnx`; two-node patterns such as x * sigmoid(x) are in `PATTERNS`; an op the ONNX
  lowering wrote as several nodes, GELU below opset 20, counts as its ONNX op: tcc.passes.composites) and the
  limits of its integer form (`check`: the reason a node cannot be taken, or None; where two kinds take one ONNX
  op, Mul, the first whose check passes takes the node), and what a lowering further takes (`limits`: TFLite's
  int8 builtins, e.g. the unary ops LiteRT has an int8 kernel for, TFLITE_LOOKUPS; how those kernels compute is
  LiteRT's, reproduced in tcc.quant.intgraph.litert_unary);
- which of the node's inputs are the activations it computes on (`reads`), the rest being constants;
- whether a following Relu / Clip folds into it (`fuses_activation`; the pass `mark_fused_activations` reads this);
- what the plan records of a node of the kind beyond its inputs and outputs (`fields`: the weight and bias of a
  weighted producer, the factor of a channel scale, the function of a lookup), and the layout of a weighted
  producer's weight codes in the quantized graph (`weight_layout`);
- whether it is a candidate for a float island when placement weighs accuracy and speed (`placeable`, from its role:
  the roles that compute, COMPUTING_ROLES; moving codes gains nothing), what it costs there (`macs_per_output`), and
  whether it commutes with a positive factor per channel (`channelwise`: cross-layer equalization rescales through
  it);
- whether calibration takes its tensors' whole range (`full_range`), and the range its outputs lie in whatever the
  input (`output_range`);
- the interpreters that implement it (`lowerings`).

What a kind computes is written once per stage, as the method named after the kind of one interpreter class:

    tcc.quant.intgraph.match.plan(onnx)          FP32 ONNX after the passes -> IntGraph (matching; refuses what no
                                                entry takes)
    tcc.quant.intgraph.qgraph.Quantizer         IntGraph + calibration table -> QGraph: every integer constant
                                                (weight and bias codes, fixed-point multipliers, clamp bounds, lookup
                                                tables)
    tcc.quant.intgraph.reach.Reach              QGraph -> the codes each tensor can hold (the quantizer's int32
                                                guards)
    tcc.quant.intgraph.reference.Reference      QGraph -> numpy integer results (the golden INT8 model)
    tcc.backends.tvm.int8.lower.RelaxLowering   QGraph -> TVM Relax integer ops (a translation of the same constants)
    tcc.backends.tflite.lower.TfliteLowering    QGraph -> a LiteRT flatbuffer (the same constants as TFLite tensors)
    tcc.quant.lower.qdq.QdqLowering             the QDQ form's part of each kind (ORT, the AX kits): weight and bias
                                                codes
    tcc.train.qat.quant_points.QatPlanner       QGraph -> where quantization-aware training fake-quantizes
                                                (PyTorch)

A subclass of `Interpreter` names its lowering; at class creation it must implement exactly the kinds whose
`lowerings` name it, so the table is the queryable list of what each backend takes (`supported`), and a backend
that lacks a kind says so from the table before any work is done, not by crashing.

Precision placement: any node of a quantized graph may be a *float island* (`precision == "float"`): its inputs
dequantized, the FP32 op computed in float32, its outputs quantized again where an integer node reads them. Kinds of
the `Role.FLOAT` role (no integer form: layer norm), and kinds whose integer form a target's kernels do not compute
(`TargetRules.float_kinds`: softmax on ONNX Runtime, TFLite, the NPUs), are islands wherever the target rules allow
float ops; any other node is one where the calibration table places it (tcc.quant.table.placement). Every
interpreter handles islands in one method, `float_island`, which runs the node's own FP32 lowering on that backend
(ONNX Runtime's float kernels, TVM's ONNX frontend, TFLite's float builtins): no second copy of an op's math.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from .ops.spatial import COORDINATES, linear_denominator


class Role(Enum):
    WEIGHTED = "weighted producer"  # int8 weights x codes -> int32 accumulator + int32 bias -> requantized
    ELEMENTWISE = "requantizing elementwise"  # two inputs at their own scales -> the output's scale
    LOOKUP = "lookup table"  # 256 input codes -> output codes (any unary float function)
    CHANNEL_SCALE = "per-channel requantizing multiply"  # codes times a constant factor per channel (by sign)
    ACTIVATION = "activation"  # relu / clip on its own: rescale, then clamp
    POOL = "requantizing pool"  # window sums of codes, requantized by s_in / (s_out * count)
    PASS_THROUGH = "scale-sharing pass-through"  # moves codes: max pool, reshape, transpose, split
    CONCAT = "concatenation"  # moves codes; inputs share the output's scale where the target rules say so
    CONSTANT = "constant"  # a constant broadcast over the batch: its codes at its output's scale
    SOFTMAX = "integer softmax"  # exp of each code's distance below its row's maximum from a table, normalized by
    # one integer division per row
    FLOAT = "float only"  # no integer form: float lowerings of the same graph (TFLite fp32 / fp16 / dynamic), and
    # in an INT8 graph a float island where the target rules allow float ops (TargetRules.float_ops)


# The roles whose integer form computes (sums of products or of codes, two tensors combined, codes mapped through a
# function or normalized): placement weighs keeping a node of them in float, for accuracy and for speed. The others
# move codes or only rescale them (pass-through, concat, clamp, channel scale, a constant's broadcast): an island
# there gains no integer kernel and costs a rounding, so placement keeps them in float only between float nodes
# (tcc.quant.place.placer.absorbed). FLOAT has no integer form to weigh.
COMPUTING_ROLES = frozenset({Role.WEIGHTED, Role.ELEMENTWISE, Role.LOOKUP, Role.POOL, Role.SOFTMAX})


# Lowerings: the interpreters of a quantized graph. `quantize` and `reference` take every kind; `qat` is
# quantization-aware training's (tcc.train.qat: where the fake quantization goes in the PyTorch model).
QUANTIZE, REFERENCE, TVM, QDQ, TFLITE, QAT = "quantize", "reference", "tvm", "qdq", "tflite", "qat"
# a backend names its own: Capabilities.int8_lowering
ALL_LOWERINGS = frozenset({QUANTIZE, REFERENCE, TVM, QDQ, TFLITE, QAT})


@dataclass(frozen=True)
class NodeView:
    """What `IntOp.check` sees of one ONNX node: attributes, tensor shapes (None where unknown, batch included) and
    which inputs are constants."""

    op_type: str
    attrs: dict
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    shapes: dict
    constants: frozenset

    def shape(self, name: str | None) -> tuple[Any, ...] | None:
        """The tensor's shape; None where unknown (or for no tensor: `channel_factor_input`'s None)."""
        shape: tuple[Any, ...] | None = self.shapes.get(name) if name is not None else None
        return shape

    def rank(self, name: str) -> int | None:
        s = self.shapes.get(name)
        return None if s is None else len(s)


def _ok(view: NodeView) -> str | None:
    return None


@dataclass(frozen=True)
class IntOp:
    kind: str
    role: Role
    onnx: tuple[str, ...]
    doc: str
    check: Callable[[NodeView], str | None] = _ok
    shares_scale: bool = False  # every output takes the first input's scale (calibration unites them)
    fuses_activation: bool = False  # a Relu / Clip reading only this node's output is folded into its clamp
    reads: str = "first"  # its activation inputs: "first" (the rest are constants), "all", "variable" (the
    # inputs that are not constants, in any position: Mul(c, x)), "none" (a constant's broadcast)
    lowerings: frozenset = field(default=ALL_LOWERINGS)
    limits: dict = field(default_factory=dict)  # lowering -> a further check of what that lowering takes
    # the plan's record of a node of this kind: INode fields, and under "attrs" the attributes it keeps if not all
    fields: Callable[[NodeView], dict] = lambda view: {}
    # weighted: the layout of its weight codes in the quantized graph (QNode.weight; "O" the output channels): a
    # conv's OIHW, a gemm's [K, N] ("IO"), whatever the ONNX node's own (IntOp.fields' w_axis)
    weight_layout: str | None = None
    # commutes with a positive factor per channel (c * f(x) == f(c * x) channel by channel), so cross-layer
    # equalization rescales through it; a function of the node's view where it depends on the shapes
    channelwise: bool | Callable[[NodeView], bool] = False
    # its inputs and outputs are calibrated on their whole observed range (min / max), never clipped by KL: where
    # the largest values are the signal (attention scores and the softmax's peak probabilities select the tokens
    # attended to; measured in docs/notes/attention-int8.md)
    full_range: bool = False
    # the values every output lies in whatever the input (a softmax's probabilities: [0, 1]): a 16-bit grid covers
    # it whole (32,768 levels over it lose nothing), where the range calibration saw can be exceeded by data it did
    # not see (MobileViTv2's W8A16 softmax, measured in
    # docs/notes/attention-int8.md#three-fixes-and-where-orts-8-bits-stop-2026-11-26-later)
    output_range: tuple[float, float] | None = None
    # a normalization (x - mean) / std: the axes of its first input the statistics are taken over, or None where
    # the view has none; the calibration chooses that input's scale by the normalized output's cosine
    # (tcc.quant.scales.norm_search: a range clipped or coarse there moves every value the statistics normalize)
    normalizes: Callable[[NodeView], tuple[int, ...] | None] | None = None

    def commutes_per_channel(self, view: NodeView) -> bool:
        return self.channelwise(view) if callable(self.channelwise) else self.channelwise

    @property
    def placeable(self) -> bool:
        """Placement weighs keeping a node of the kind in float, for accuracy and for speed: its role computes
        (COMPUTING_ROLES)."""
        return self.role in COMPUTING_ROLES

    def macs_per_output(self, weight_shape: tuple[int, ...], w_axis: int) -> int:
        """Multiply-accumulates per output element, what placement costs a node by (tcc.quant.place.search): a
        weighted producer's weight elements per output channel (`weight_shape` as the ONNX node has it, `w_axis` its
        output-channel axis: a conv's C_in / group x kh x kw, a pooled conv's C_in, a gemm's K); 1 for the other
        kinds, whose work grows with their outputs."""
        if self.role is not Role.WEIGHTED or not weight_shape or not weight_shape[w_axis]:
            return 1
        return max(math.prod(weight_shape) // weight_shape[w_axis], 1)

    def weight_rows(self, codes: np.ndarray) -> np.ndarray:
        """A weighted node's weight codes (`weight_layout`) as [output channels, products per output channel]."""
        if self.weight_layout is None:
            raise TypeError(f"{self.kind} has no weight")
        axis = self.weight_layout.index("O")
        return np.moveaxis(codes, axis, 0).reshape(codes.shape[axis], -1)


# ---------------------------------------------------------------------------------------------------- limits
def _static(view: NodeView, name: str) -> bool:
    s = view.shape(name)
    return s is not None and all(isinstance(d, int) and d > 0 for d in s[1:])


def _activations_only(view: NodeView) -> str | None:
    const = [i for i in view.inputs if i in view.constants]
    if const:
        return f"a constant input ({const[0]!r}) has no integer form here: both inputs must be activations"
    return None


def _check_conv(v: NodeView) -> str | None:
    if len(v.inputs) < 2 or v.inputs[1] not in v.constants:
        return "the weight must be a constant (an initializer)"
    if len(v.inputs) > 2 and v.inputs[2] and v.inputs[2] not in v.constants:
        return "the bias must be a constant (an initializer)"
    if v.rank(v.inputs[0]) != 4:
        return "only 2-D convolutions (NCHW input) have an integer form"
    if v.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
        return "auto_pad is not supported (tcc writes explicit pads)"
    return None


def _check_gemm(v: NodeView) -> str | None:
    if len(v.inputs) < 2 or v.inputs[1] not in v.constants:
        return "the weight must be a constant (an initializer)"
    if v.op_type == "Gemm":
        if v.attrs.get("transA", 0):
            return "transA=1 is not supported"
        if float(v.attrs.get("alpha", 1.0)) != 1.0 or float(v.attrs.get("beta", 1.0)) != 1.0:
            return "alpha and beta must be 1"
        if len(v.inputs) > 2 and v.inputs[2] and v.inputs[2] not in v.constants:
            return "the bias must be a constant (an initializer)"
    elif v.rank(v.inputs[0]) not in (2, None) or v.rank(v.inputs[1]) != 2:
        return "MatMul needs a 2-D input and a 2-D weight"
    return None


def _two_activations(v: NodeView) -> str | None:
    return "exactly two inputs" if len(v.inputs) != 2 else _activations_only(v)


def _check_binary(v: NodeView) -> str | None:
    wrong = _two_activations(v)
    if wrong:
        return wrong
    ra, rb = v.rank(v.inputs[0]), v.rank(v.inputs[1])
    if ra is None or rb is None or ra != rb:
        return f"inputs of equal rank are needed (got ranks {ra} and {rb})"
    return None


def _check_matmul(v: NodeView) -> str | None:
    """A product of two activations (attention's q k^T and weights x v): equal ranks of at least 3, so the batch
    axis stays a batch axis of both; broadcast batch axes are not taken."""
    wrong = _two_activations(v)
    if wrong:
        return wrong
    a, b = v.shape(v.inputs[0]), v.shape(v.inputs[1])
    if a is None or b is None or len(a) != len(b) or len(a) < 3:
        return "both inputs need known shapes of one rank, at least 3 (batch, ..., rows, columns)"
    if tuple(a[1:-2]) != tuple(b[1:-2]):
        return f"the batch axes of {list(a)} and {list(b)} differ (broadcasting is not taken)"
    return None


def _check_add_constant(v: NodeView) -> str | None:
    """x + a constant (a relative position bias, a shifted-window mask): the constant broadcasts over x, never over
    the batch."""
    const = channel_factor_input(v)
    if len(v.inputs) != 2 or const is None:
        return "exactly one input must be a constant (an initializer)"
    x = next(i for i in v.inputs if i != const)
    xs, cs = v.shape(x), v.shape(const)
    if xs is None or cs is None or len(cs) > len(xs):
        return "the constant must have at most the input's rank"
    padded = (1,) * (len(xs) - len(cs)) + tuple(cs)
    if padded[0] != 1 or any(c not in (1, d) for c, d in zip(padded[1:], xs[1:])):
        return f"the constant's shape {list(cs)} does not broadcast to the input's {list(xs)} per sample"
    return None


def _check_broadcast(v: NodeView) -> str | None:
    """A learned tensor [1, ...] expanded to the batch (tcc's `param`: ViT's class token and position embedding);
    the target shape is shape arithmetic on the input (the plan leaves that out), or a constant where the batch
    is fixed (tcc.passes.batch)."""
    if len(v.inputs) != 2 or v.inputs[0] not in v.constants:
        return "only a constant expanded over the batch has an integer form"
    c, y = v.shape(v.inputs[0]), v.shape(v.outputs[0])
    if c is None or y is None or len(c) != len(y) or c[0] != 1 or tuple(c[1:]) != tuple(y[1:]):
        return "only an expansion over the batch axis (the constant [1, ...], the output [batch, ...])"
    return None


def _constant_fields(v: NodeView) -> dict:
    return {"weight": v.inputs[0]}


def _check_clamp(v: NodeView) -> str | None:
    if v.op_type == "Clip" and any(i and i not in v.constants for i in v.inputs[1:]):
        return "Clip bounds must be constants"
    return None


def _check_pool(v: NodeView) -> str | None:
    if v.rank(v.inputs[0]) != 4:
        return "only 2-D pooling (NCHW input) has an integer form"
    if v.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
        return "auto_pad is not supported (tcc writes explicit pads)"
    if any(d != 1 for d in v.attrs.get("dilations", [1, 1])):
        return "dilated pooling is not supported"
    if not _static(v, v.inputs[0]):
        return "the input's C, H, W must be known"
    if (
        v.op_type == "AveragePool"
        and not v.attrs.get("count_include_pad", 0)
        and (any(v.attrs.get("pads", [0])) or v.attrs.get("ceil_mode", 0))
    ):
        return (
            "padded average pooling that does not count the padding (count_include_pad=0) divides by a "
            "different count at the border: not supported"
        )
    return None


def _unset(auto_pad: str | bytes | None) -> bool:
    return auto_pad in ("NOTSET", b"NOTSET", "VALID", b"VALID")


def pool_commutes_with_conv(pool: dict[str, Any], conv: dict[str, Any], weight_shape: tuple[int, ...]) -> bool:
    """Whether an average pool (its ONNX attributes) and a conv (attributes, weight shape) commute, so that the pool
    can run first and the conv on the pooled pixels only (tcc.passes.pool) and the pair be one `pooled_conv`: the
    conv 1 x 1 at stride 1 unpadded (it acts on each pixel alone), the pool unpadded over whole 2-D windows (the
    count is the area everywhere) with a stride that reduces the pixels."""
    kernel, strides = list(pool.get("kernel_shape", [])), list(pool.get("strides", [1, 1]))
    return (
        len(weight_shape) == 4
        and tuple(weight_shape[2:]) == (1, 1)
        and all(s == 1 for s in conv.get("strides", [1, 1]))
        and not any(conv.get("pads", [0, 0, 0, 0]))
        and _unset(conv.get("auto_pad", "NOTSET"))
        and len(kernel) == 2
        and len(strides) == 2
        and strides[0] * strides[1] > 1
        and not any(pool.get("pads", [0, 0, 0, 0]))
        and not pool.get("ceil_mode", 0)
        and _unset(pool.get("auto_pad", "NOTSET"))
        and all(d == 1 for d in pool.get("dilations", [1, 1]))
    )


def _check_shape_op(v: NodeView) -> str | None:
    for t in (*v.inputs[:1], *v.outputs):
        if not _static(v, t):
            return f"the shape of {t!r} must be known (all but the batch dimension)"
    return None


def _check_slice(v: NodeView) -> str | None:
    if len(v.inputs) < 3 or any(i and i not in v.constants for i in v.inputs[1:]):
        return "starts, ends, axes and steps must be constants (initializers)"
    wrong = _check_shape_op(v)
    if wrong:
        return wrong
    src, out = v.shape(v.inputs[0]), v.shape(v.outputs[0])
    assert src is not None and out is not None  # _check_shape_op: both known
    if src[0] != out[0]:
        return "a slice of the batch axis"
    return None


def _check_softmax(v: NodeView) -> str | None:
    rank = v.rank(v.inputs[0])
    axis = int(v.attrs.get("axis", -1))
    if rank is None or axis % rank != rank - 1:
        return "softmax over an axis other than the last"
    return None


def _check_lookup(v: NodeView) -> str | None:
    if v.op_type not in LOOKUP_FUNCTIONS:
        return f"no lookup-table form for {v.op_type}"
    return None


def channel_factor_input(v: NodeView) -> str | None:
    """The constant of a per-channel multiply (PRelu's slope, the constant operand of a Mul), or None."""
    if v.op_type == "PRelu":
        return v.inputs[1] if len(v.inputs) == 2 and v.inputs[1] in v.constants else None
    const = [i for i in v.inputs if i in v.constants]
    return const[0] if len(v.inputs) == 2 and len(const) == 1 else None


def _check_channel_scale(v: NodeView) -> str | None:
    factor = channel_factor_input(v)
    if factor is None:
        what = "the slope" if v.op_type == "PRelu" else "exactly one input"
        return f"{what} must be a constant (an initializer)"
    x = next(i for i in v.inputs if i != factor)
    rank, shape = v.rank(x), v.shape(factor)
    if rank is None or rank < 2 or shape is None or len(shape) > rank:
        return "the input's rank must be known and at least 2"
    padded = (1,) * (rank - len(shape)) + tuple(shape)
    channels = (v.shape(x) or (None, None))[1]
    if padded[0] != 1 or any(d != 1 for d in padded[2:]) or padded[1] not in (1, channels):
        return f"the constant {factor!r} (shape {list(shape)}) must vary along the channel axis only"
    return None


def _check_global_pool(v: NodeView) -> str | None:
    if v.rank(v.inputs[0]) != 4 or not _static(v, v.inputs[0]):
        return "only 2-D pooling of an NCHW input whose C, H, W are known has an integer form"
    return None


def layernorm_axis(v: NodeView) -> int | None:
    """The one axis a layer norm normalizes over (batch axis 0), or None where it is several: `axes` where tcc's
    ONNX lowering says so (its composite marks), else a LayerNormalization's axis when it is the last (it
    normalizes from `axis` to the last)."""
    rank = v.rank(v.inputs[0])
    if rank is None:
        return None
    if "axes" in v.attrs:
        axes = [int(a) % rank for a in v.attrs["axes"]]
        return axes[0] if len(axes) == 1 else None
    axis = int(v.attrs.get("axis", -1)) % rank
    return axis if axis == rank - 1 else None


def _layernorm_axes(v: NodeView) -> tuple[int, ...] | None:
    axis = layernorm_axis(v)
    return None if axis is None else (axis,)


def _instancenorm_axes(v: NodeView) -> tuple[int, ...] | None:
    """Each channel of each sample over its positions: the axes after N and C."""
    rank = v.rank(v.inputs[0])
    return None if rank is None else tuple(range(2, rank))


def _check_layernorm(v: NodeView) -> str | None:
    if layernorm_axis(v) is None:
        return "normalization over more than one axis (tcc writes one axis, the last or moved last)"
    return None


def _attr_text(v: NodeView, name: str, default: str) -> str:
    value = v.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _check_resize(v: NodeView) -> str | None:
    """A resize of H and W whose sampling tcc.ops.spatial defines: static shapes, constant scales (or sizes)."""
    if v.rank(v.inputs[0]) != 4 or not (_static(v, v.inputs[0]) and _static(v, v.outputs[0])):
        return "only a resize of an NCHW input whose C, H, W and output size are known"
    src, out = v.shape(v.inputs[0]), v.shape(v.outputs[0])
    assert src is not None and out is not None  # _static: both known
    if src[1] != out[1]:
        return "a resize of the channels"
    coordinates = _attr_text(v, "coordinate_transformation_mode", "half_pixel")
    if len(v.inputs) > 2 and coordinates not in COORDINATES:
        return f"coordinate_transformation_mode {coordinates}"
    scales = v.inputs[2] if len(v.inputs) > 2 else (v.inputs[1] if len(v.inputs) == 2 else "")
    if scales and scales not in v.constants:
        return "the scales must be a constant"
    return None


def _check_resize_nearest(v: NodeView) -> str | None:
    if _attr_text(v, "mode", "nearest") != "nearest":
        return "a bilinear or cubic resize moves no codes: it interpolates"
    return _check_resize(v)


RESIZE_DENOMINATOR_MAX = 1 << 15  # d_h d_w: times a 16-bit code range it stays within int32


def _check_resize_bilinear(v: NodeView) -> str | None:
    """A bilinear resize whose exact weights (tcc.ops.spatial.linear_rational) keep its sums within int32."""
    why = _check_resize_linear(v)
    if why:
        return why
    src, out = v.shape(v.inputs[0]) or (), v.shape(v.outputs[0]) or ()
    coordinates = _attr_text(v, "coordinate_transformation_mode", "half_pixel")
    if len(v.inputs) == 2:  # Resize-10
        coordinates = "asymmetric"
    d = math.prod(linear_denominator(int(i), int(o), coordinates) for i, o in zip(src[2:], out[2:]))
    if d > RESIZE_DENOMINATOR_MAX:
        return f"its exact weights need a denominator of {d:,} (at most {RESIZE_DENOMINATOR_MAX:,} keeps int32 sums)"
    return None


def _check_resize_linear(v: NodeView) -> str | None:
    if _attr_text(v, "mode", "nearest") != "linear":
        return "only nearest and bilinear resizes"
    return _check_resize(v)


def _check_resize_interpolating(v: NodeView) -> str | None:
    if _attr_text(v, "mode", "nearest") not in ("linear", "cubic"):
        return "only bilinear and bicubic resizes"
    return _check_resize(v)


def _check_pad(v: NodeView) -> str | None:
    mode = _attr_text(v, "mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        return f"mode {mode}"
    if any(i and i not in v.constants for i in v.inputs[1:]):
        return "the pads and the value must be constants"
    if v.rank(v.inputs[0]) != 4 or not _static(v, v.inputs[0]):
        return "only a pad of an NCHW input whose C, H, W are known"
    src, out = v.shape(v.inputs[0]), v.shape(v.outputs[0])
    if src is None or out is None or src[1] != out[1]:
        return "a pad of the channels"
    return None


def _check_conv_transpose(v: NodeView) -> str | None:
    """A transposed conv the integer kind computes natively (the NPUs' rules, whose toolchains take ConvTranspose):
    one group, no dilation, its pads stated (the other forms stay float: `conv_transpose_float`)."""
    wrong = _check_conv(v)
    if wrong:
        return wrong
    if int(v.attrs.get("group", 1)) != 1:
        return "a grouped transposed conv: its weight's output-channel axis holds one group's channels"
    if any(int(d) != 1 for d in v.attrs.get("dilations", [1, 1])):
        return "a dilated transposed conv"
    if "output_shape" in v.attrs:
        return "output_shape instead of pads"
    return None


def _check_instancenorm(v: NodeView) -> str | None:
    if v.rank(v.inputs[0]) not in (3, 4) or any(i not in v.constants for i in v.inputs[1:]):
        return "an NCHW or NCL input and a constant scale and bias"
    return None


def _pad_channelwise(v: NodeView) -> bool:
    """A pad commutes with a positive factor per channel unless it writes a constant other than 0."""
    return _attr_text(v, "mode", "constant") != "constant" or len(v.inputs) < 3 or not v.inputs[2]


# ---------------------------------------------------------------------------------------------------- TFLite limits
@dataclass(frozen=True)
class TfliteLookup:
    """One of LiteRT's int8 kernels of a unary op: the builtin the `tflite` lowering writes for the ONNX op, and
    `takes`, the reason an attribute value has no such kernel. What the lowering takes of the lookup kind; how each
    kernel computes its table is LiteRT's, reproduced beside the integer reference (tcc.quant.intgraph.litert_unary)."""

    builtin: str
    takes: Callable[[dict], str | None] = lambda attrs: None


TFLITE_LOOKUPS: dict[str, TfliteLookup] = {
    "Sigmoid": TfliteLookup("LOGISTIC"),
    "Tanh": TfliteLookup("TANH"),
    "Gelu": TfliteLookup("GELU"),
    # LiteRT's optimized int8 ELU is a table; its reference op resolver, which the int8 self-check runs bit for
    # bit, has no ELU kernel at all: refused for an int8 build (float ELU builds), the table serves predictions
    "Elu": TfliteLookup(
        "ELU",
        lambda a: (
            f"ELU with alpha {float(a['alpha']):g}: TFLite's ELU has alpha 1 only"
            if float(a.get("alpha", 1.0)) != 1.0
            else "LiteRT's reference kernels, which an int8 build is checked on bit for bit, have no ELU"
        ),
    ),
    "LeakyRelu": TfliteLookup(
        "LEAKY_RELU",
        lambda a: (
            None
            if float(a.get("alpha", 0.01)) >= 0
            else "a negative slope: LiteRT's int8 LEAKY_RELU takes a slope >= 0"
        ),
    ),
}


def _tflite_conv(v: NodeView) -> str | None:
    group = int(v.attrs.get("group", 1))
    c_in = (v.shape(v.inputs[0]) or (None, None))[1]
    if group not in (1, c_in):
        return f"grouped convolution (group={group}) has no TFLite int8 kernel: only group 1 or depthwise"
    return None


def _tflite_lookup(v: NodeView) -> str | None:
    kernel = TFLITE_LOOKUPS.get(v.op_type)
    if kernel is None:
        return (
            f"{v.op_type} has no TFLite int8 kernel that computes it as one table or rounding (TFLite's: "
            f"{', '.join(k.builtin for k in TFLITE_LOOKUPS.values())})"
        )
    return kernel.takes(v.attrs)


def _tflite_channel_scale(v: NodeView) -> str | None:
    factor = v.shape(channel_factor_input(v)) or ()
    if v.op_type == "Mul" and math.prod(factor) == 1:  # one factor: a MUL by an int8 scalar, any rank
        return None
    if v.op_type == "Mul" and v.rank(next(i for i in v.inputs if i not in v.constants)) != 4:
        return "a per-channel factor on a [N, F] tensor: TFLite's int8 form (a 1x1 DEPTHWISE_CONV_2D) needs NHWC"
    return None


# ---------------------------------------------------------------------------------------------------- lookup tables
def _sigmoid(x: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)) without overflow for large |x|


def _hardsigmoid(x: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    return np.clip(float(a.get("alpha", 0.2)) * x + float(a.get("beta", 0.5)), 0.0, 1.0)


def _hardswish(x: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def _gelu(x: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    from scipy.special import erfc  # deferred for start-up: loads scipy, for GELU's tables only

    if a.get("approximate", "none") == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    y: np.ndarray = 0.5 * x * erfc(-x / math.sqrt(2.0))  # = x Phi(x), without erf's cancellation for large negative x
    return y


def _leaky_relu(x: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    return np.where(x >= 0, x, float(a.get("alpha", 0.01)) * x)


def _elu(x: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    return np.where(x > 0, x, float(a.get("alpha", 1.0)) * np.expm1(np.minimum(x, 0.0)))


# ONNX unary op -> f(x, attributes) in float64: the function its 256-entry table samples at the input codes
LOOKUP_FUNCTIONS: dict[str, Callable[[np.ndarray, dict], np.ndarray]] = {
    "Sigmoid": _sigmoid,
    "HardSigmoid": _hardsigmoid,
    "HardSwish": _hardswish,
    "Tanh": lambda x, a: np.tanh(x),
    "Gelu": _gelu,
    "LeakyRelu": _leaky_relu,
    "Elu": _elu,
}
# the lookups whose outputs are bounded, and so used as gates (a squeeze-excite's sigmoid scales whole channels):
# calibration takes their whole observed range, never KL's clipping (tcc.quant.intgraph.match.IntGraph.gates). KL on
# a gate's few values far from zero clipped SemNASNet's first one at its minimum (0.218 of values up to 0.778): every
# channel then scaled alike (docs/notes/method-choice.md)
BOUNDED_LOOKUPS = ("Sigmoid", "HardSigmoid", "Tanh")


@dataclass(frozen=True)
class Pattern:
    """Two ONNX nodes as one lookup table: `gate(x)` read only by a `Mul` whose other input is x itself, i.e.
    x * gate(x): SiLU (x * sigmoid(x), EfficientNet) and hard-swish below opset 14 (x * hardsigmoid(x))."""

    name: str
    gate: str  # the ONNX op of the gate


PATTERNS: tuple[Pattern, ...] = (
    Pattern("silu", "Sigmoid"),
    Pattern("hardswish", "HardSigmoid"),
    Pattern("x*tanh", "Tanh"),
)


def gated(gate: str) -> Callable[[np.ndarray, dict], np.ndarray]:
    """x * gate(x) as a lookup function."""
    g = LOOKUP_FUNCTIONS[gate]
    return lambda x, a: x * g(x, a)


# ---------------------------------------------------------------------------------------------------- plan fields
def _weighted_fields(v: NodeView) -> dict:
    """The weight and bias initializers and the weight's output-channel axis (Gemm with transB and Conv: 0)."""
    w_axis = 0 if (v.op_type == "Gemm" and v.attrs.get("transB", 0)) or v.op_type == "Conv" else 1
    return {"weight": v.inputs[1], "bias": v.inputs[2] if len(v.inputs) > 2 and v.inputs[2] else None, "w_axis": w_axis}


def _lookup_fields(v: NodeView) -> dict:
    return {"lookup": v.op_type}


def _channel_scale_fields(v: NodeView) -> dict:
    return {"factor": channel_factor_input(v)}


def _norm_fields(v: NodeView) -> dict:
    """The scale and the bias of a normalization: a composite of tcc's ONNX lowering (one input) names them in its
    attributes (they leave the attributes), a LayerNormalization node as its inputs."""
    attrs = {k: a for k, a in v.attrs.items() if k not in ("weight", "bias")}
    if len(v.inputs) < 2:
        return {"attrs": attrs, "weight": v.attrs.get("weight"), "bias": v.attrs.get("bias")}
    return {"attrs": attrs, "weight": v.inputs[1], "bias": v.inputs[2] if len(v.inputs) > 2 and v.inputs[2] else None}


def _layernorm_fields(v: NodeView) -> dict:
    """_norm_fields, and the one axis recorded in the attributes."""
    fields = _norm_fields(v)
    return fields | {"attrs": fields["attrs"] | {"axes": [layernorm_axis(v)]}}


def _check_reduction(v: NodeView) -> str | None:
    if len(v.inputs) > 1 and v.inputs[1] and v.inputs[1] not in v.constants:
        return "the axes must be a constant"
    if len(v.inputs) < 2 and "axes" not in v.attrs:
        return f"a {v.op_type} over every axis (the batch's too)"
    return None


def _check_l2_normalize(v: NodeView) -> str | None:
    return None if int(v.attrs.get("p", 2)) == 2 else f"an L{v.attrs.get('p')} normalization (only L2 has a form)"


def _flattens_channels(v: NodeView) -> bool:
    """A reshape of [N, C, 1, 1] to [N, C]: channel i stays feature i."""
    src, dst = v.shape(v.inputs[0]), v.shape(v.outputs[0])
    return (
        src is not None
        and dst is not None
        and len(src) == 4
        and len(dst) == 2
        and tuple(src[2:]) == (1, 1)
        and src[1] == dst[1]
    )


# ---------------------------------------------------------------------------------------------------- the table
ACTIVATION_OPS = ("Relu", "Clip")  # the ONNX activations a producer may fold into its clamp

INT_OPS: dict[str, IntOp] = {
    op.kind: op
    for op in [
        IntOp(
            "conv",
            Role.WEIGHTED,
            ("Conv",),
            "2-D convolution (grouped, depthwise, dilated): int8 weights per "
            "output channel, int32 accumulator and bias, requantized per channel",
            _check_conv,
            fuses_activation=True,
            limits={TFLITE: _tflite_conv},
            fields=_weighted_fields,
            weight_layout="OIHW",
        ),
        # no ONNX op of its own: the plan pairs an unpadded AveragePool with the 1 x 1 conv that alone reads it
        # (the pool first: tcc.passes.pool), under rules that take the pair (TargetRules.pooled_conv)
        IntOp(
            "pooled_conv",
            Role.WEIGHTED,
            (),
            "a 1 x 1 conv on the window sums of an unpadded average pool: the "
            "sums of zero-point-free codes kept exact (10 bits for 2 x 2 windows of 8-bit codes, never rounded "
            "to 8), times int8 weights per output channel in int32, bias at s_in s_w / area, requantized once by "
            "s_in s_w / (area s_out)",
            _check_conv,
            fuses_activation=True,
            fields=_weighted_fields,
            weight_layout="OIHW",
            lowerings=ALL_LOWERINGS - {TFLITE},
        ),
        IntOp(
            "gemm",
            Role.WEIGHTED,
            ("Gemm", "MatMul"),
            "fully connected layer: int8 weights per output feature, "
            "int32 accumulator and bias, requantized per feature",
            _check_gemm,
            fuses_activation=True,
            fields=_weighted_fields,
            weight_layout="IO",
        ),
        IntOp(
            "add",
            Role.ELEMENTWISE,
            ("Add",),
            "sum of two tensors at their own scales (TFLite's integer ADD: "
            "both inputs << 20 to a common scale, summed, requantized); broadcasting",
            _check_binary,
            fuses_activation=True,
            reads="all",
        ),
        IntOp(
            "add_constant",
            Role.ELEMENTWISE,
            ("Add",),
            "x plus a constant broadcast over it (attention's "
            "relative position bias, the shifted-window mask): the constant as int8 codes at max |c| / 127, "
            "then TFLite's integer ADD",
            _check_add_constant,
            reads="variable",
            fields=_channel_scale_fields,
        ),
        IntOp(
            "mul",
            Role.ELEMENTWISE,
            ("Mul",),
            "product of two tensors ((a - za) (b - zb) in int32, requantized "
            "by s_a s_b / s_out); broadcasting, e.g. squeeze-excite scaling",
            _check_binary,
            reads="all",
        ),
        IntOp(
            "channel_scale",
            Role.CHANNEL_SCALE,
            ("PRelu", "Mul"),
            "x times a constant factor per channel, one "
            "for codes >= the zero point and one below (PReLU's slope; a Mul by a constant: layer scale): the "
            "zero-point-free code requantized by s_in * factor / s_out per channel",
            _check_channel_scale,
            reads="variable",
            limits={TFLITE: _tflite_channel_scale},
            fields=_channel_scale_fields,
        ),
        IntOp(
            "lookup",
            Role.LOOKUP,
            tuple(LOOKUP_FUNCTIONS),
            "a unary function as a 256-entry table from input "
            "codes to output codes (sigmoid, hard-sigmoid, hard-swish, tanh, GELU, leaky ReLU, ELU, and x * g(x) "
            "patterns: SiLU)",
            _check_lookup,
            limits={TFLITE: _tflite_lookup},
            fields=_lookup_fields,
        ),
        IntOp(
            "clamp",
            Role.ACTIVATION,
            ACTIVATION_OPS,
            "Relu / Clip not folded into a producer: rescale to the "
            "output's scale, then clamp at the codes of the bounds",
            _check_clamp,
        ),
        IntOp(
            "max_pool",
            Role.PASS_THROUGH,
            ("MaxPool",),
            "max over windows of codes (padding: the lowest code; ceil_mode: extra end padding)",
            _check_pool,
            shares_scale=True,
            channelwise=True,
        ),
        IntOp(
            "avg_pool",
            Role.POOL,
            ("AveragePool",),
            "window sums of zero-point-free codes, requantized by s_in / (s_out * window area)",
            _check_pool,
            shares_scale=True,
            channelwise=True,
        ),
        IntOp(
            "global_avg_pool",
            Role.POOL,
            ("GlobalAveragePool",),
            "sum over H x W, requantized by s_in / (s_out * H * W)",
            _check_pool,
            channelwise=True,
        ),
        IntOp(
            "global_max_pool",
            Role.PASS_THROUGH,
            ("GlobalMaxPool",),
            "max of codes over H x W: moves codes",
            _check_global_pool,
            shares_scale=True,
        ),
        IntOp(
            "concat",
            Role.CONCAT,
            ("Concat",),
            "concatenation; each input rescaled to the output's scale (a copy where they are equal)",
            reads="all",
        ),
        IntOp(
            "reshape",
            Role.PASS_THROUGH,
            ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"),
            "new shape, same element order (NCHW): moves codes",
            _check_shape_op,
            shares_scale=True,
            channelwise=_flattens_channels,
        ),
        IntOp(
            "transpose",
            Role.PASS_THROUGH,
            ("Transpose",),
            "permutes axes (channel shuffle): moves codes",
            _check_shape_op,
            shares_scale=True,
        ),
        IntOp(
            "split",
            Role.PASS_THROUGH,
            ("Split",),
            "splits along an axis: moves codes",
            _check_shape_op,
            shares_scale=True,
        ),
        IntOp(
            "slice",
            Role.PASS_THROUGH,
            ("Slice",),
            "a strided range of codes along some axes (the batch axis "
            "whole): moves codes, e.g. q, k and v out of one projection",
            _check_slice,
            shares_scale=True,
        ),
        IntOp(
            "matmul",
            Role.ELEMENTWISE,
            ("MatMul",),
            "batched product of two activations at their own per-tensor "
            "scales (attention's q k^T and weights x v): the zero-point-free codes multiplied and summed in "
            "int32, requantized by s_a s_b / s_out (times the scalar of a Mul it covers)",
            _check_matmul,
            reads="all",
            full_range=True,
        ),
        IntOp(
            "broadcast",
            Role.CONSTANT,
            ("Expand",),
            "a constant [1, ...] repeated over the batch (a learned "
            "class token or position embedding): its codes at the output's scale",
            _check_broadcast,
            reads="none",
            fields=_constant_fields,
            full_range=True,
        ),
        IntOp(
            "softmax",
            Role.SOFTMAX,
            ("Softmax",),
            "softmax over the last axis: e = table[min(row max - code, "
            "L - 1)] (2^15 exp(-d s_in), rounded), per row r = C // sum(e), out = (e r + 2^(k-1)) >> k + zp "
            "(C = 2^k / s_out); under LiteRT's rules its int8 SOFTMAX (gemmlowp fixed point, output at 1/256); a "
            "float island under rules that list it in float_kinds",
            _check_softmax,
            reads="first",
            lowerings=ALL_LOWERINGS,
            full_range=True,
            output_range=(0.0, 1.0),
        ),
        IntOp(
            "resize_nearest",
            Role.PASS_THROUGH,
            ("Resize",),
            "nearest resize of H and W: a gather of codes, the input row and "
            "column each output reads as ONNX Runtime chooses them (tcc.ops.spatial.nearest_indices)",
            _check_resize_nearest,
            shares_scale=True,
            channelwise=True,
        ),
        IntOp(
            "resize_bilinear",
            Role.POOL,
            ("Resize",),
            "bilinear resize of H and W in exact integers: per output the four "
            "codes it reads times their weights (d_h - r_h or r_h, times d_w - r_w or r_w), summed, then divided by "
            "d_h d_w rounding half up (tcc.ops.spatial.linear_rational); LiteRT's int8 RESIZE_BILINEAR where it "
            "computes the same (an integer upsampling factor, half-pixel or asymmetric)",
            _check_resize_bilinear,
            shares_scale=True,
            channelwise=True,
        ),
        IntOp(
            "pad",
            Role.PASS_THROUGH,
            ("Pad",),
            "pads H and W: the constant's code (0: the zero point), or a gather of codes (reflect, edge)",
            _check_pad,
            shares_scale=True,
            channelwise=_pad_channelwise,
        ),
        IntOp(
            "resize",
            Role.FLOAT,
            ("Resize",),
            "bilinear resize whose exact integer weights would overflow, and bicubic resize (its weights are no "
            "small fractions): in an INT8 graph a float island where the target allows float ops",
            _check_resize_interpolating,
            lowerings=frozenset({TFLITE}),
        ),
        # the NPUs' rules keep a transposed conv one node (their toolchains take ConvTranspose); the other rules
        # compute it as the integer conv of its stride's phases (tcc.passes.conv_transpose), so this kind never
        # reaches TVM's lowering, nor TFLite's at int8 (its method is the FP32 TRANSPOSE_CONV)
        IntOp(
            "conv_transpose",
            Role.WEIGHTED,
            ("ConvTranspose",),
            "transposed convolution kept one node (the NPUs' rules): int8 "
            "weights per output channel ([C_in, C_out, k_h, k_w], axis 1), the zero-point-free input codes scattered "
            "through them into an int32 accumulator with the int32 bias, requantized per channel",
            _check_conv_transpose,
            # (a ReLU after it stays a clamp: the activation marks are made before the other rules' phase rewrite,
            # which puts the interleave between the phase conv and the ReLU)
            fields=_weighted_fields,
            weight_layout="IOHW",
            lowerings=ALL_LOWERINGS - {TVM},
        ),
        IntOp(
            "conv_transpose_float",
            Role.FLOAT,
            ("ConvTranspose",),
            "a grouped or dilated transposed convolution where the rules "
            "keep it one node: a float island; elsewhere the graph the rules quantize computes a grouped one as the "
            "integer conv of its stride's phases (tcc.passes.conv_transpose)",
            _check_conv,
            lowerings=frozenset({TFLITE}),
            fields=_weighted_fields,
        ),
        IntOp(
            "instancenorm",
            Role.FLOAT,
            ("InstanceNormalization",),
            "instance normalization (each channel over its positions): no "
            "integer form; in an INT8 graph a float island where the target allows float ops",
            _check_instancenorm,
            lowerings=frozenset({TFLITE}),
            fields=_norm_fields,
            normalizes=_instancenorm_axes,
        ),
        IntOp(
            "sub",
            Role.FLOAT,
            ("Sub",),
            "difference of two tensors: no integer form yet; in an INT8 graph a float island where the target allows "
            "float ops (a constant subtrahend is imported as the sum with its negation: `add`)",
            _check_binary,
            reads="all",
            lowerings=frozenset({TFLITE}),
        ),
        IntOp(
            "div",
            Role.FLOAT,
            ("Div",),
            "quotient of two tensors: no integer form; in an INT8 graph a float island where the target allows float "
            "ops (a constant divisor is imported as the product with its reciprocal)",
            _check_binary,
            reads="all",
            lowerings=frozenset({TFLITE}),
        ),
        IntOp(
            "groupnorm",
            Role.FLOAT,
            ("GroupNormalization",),
            "group normalization (MobileViTv2's one-group "
            "norm): no integer form; in an INT8 graph a float island where the target allows float ops",
            lowerings=frozenset({TFLITE}),
            fields=_norm_fields,
        ),
        IntOp(
            "reduce_sum",
            Role.FLOAT,
            ("ReduceSum",),
            "sum over constant axes (MobileViTv2's context vector): "
            "no integer form; in an INT8 graph a float island where the target allows float ops",
            _check_reduction,
            lowerings=frozenset({TFLITE}),
        ),
        IntOp(
            "reduce_mean",
            Role.FLOAT,
            ("ReduceMean",),
            "mean over constant axes other than H and W together (LeViT's over its tokens; a mean over H and W is "
            "the global average pool): no integer form; in an INT8 graph a float island where the target allows "
            "float ops",
            _check_reduction,
            lowerings=frozenset({TFLITE}),
        ),
        IntOp(
            "l2_normalize",
            Role.FLOAT,
            ("LpNormalization",),
            "L2 normalization of one axis, x / max(||x||, eps) (F.normalize; tcc's ONNX lowering writes it as "
            "ReduceL2, Max and Div, one region): no integer form; in an INT8 graph a float island where the target "
            "allows float ops",
            _check_l2_normalize,
            lowerings=frozenset({TFLITE}),
        ),
        IntOp(
            "layernorm",
            Role.FLOAT,
            ("LayerNormalization",),
            "layer normalization over one axis: no integer "
            "form; in an INT8 graph a float island where the target allows float ops",
            _check_layernorm,
            lowerings=frozenset({TFLITE}),
            fields=_layernorm_fields,
            normalizes=_layernorm_axes,
        ),
    ]
}

# ONNX op -> the kinds that take it, in table order (the first whose check passes takes a node)
ONNX_TO_KINDS: dict[str, tuple[str, ...]] = {
    o: tuple(k for k, op in INT_OPS.items() if o in op.onnx) for op in INT_OPS.values() for o in op.onnx
}
FUSES_ACTIVATION: tuple[str, ...] = tuple(o for op in INT_OPS.values() if op.fuses_activation for o in op.onnx)


def supported(kind: str, lowering: str) -> bool:
    op = INT_OPS.get(kind)
    return op is not None and lowering in op.lowerings


# ---------------------------------------------------------------------------------------------------- interpreters
FLOAT_ISLAND = "float_island"  # the one method of every interpreter that runs a node kept in float


class Interpreter:
    """Walks a quantized graph (tcc.quant.intgraph.qgraph.QGraph) in order; `run_node` dispatches a node to the method
    named
    after its kind, like torch.fx's Interpreter, and a float island to `float_island`. A subclass sets `lowering`
    and implements exactly the kinds whose entry lists that lowering, and `float_island` (checked when the class is
    created)."""

    lowering: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.lowering:
            return
        want = {k for k, op in INT_OPS.items() if cls.lowering in op.lowerings}
        have = {k for k in INT_OPS if callable(getattr(cls, k, None))}
        if want != have:
            raise TypeError(
                f"{cls.__name__} (lowering {cls.lowering!r}): the integer op table lists "
                f"{sorted(want - have)} without a method here, methods {sorted(have - want)} not listed"
            )
        if not callable(getattr(cls, FLOAT_ISLAND, None)):
            raise TypeError(
                f"{cls.__name__} (lowering {cls.lowering!r}) has no {FLOAT_ISLAND} method: every "
                "lowering of a quantized graph takes float islands"
            )

    def run_node(self, node: Any, *args: Any) -> Any:
        if getattr(node, "precision", "int8") == "float":
            return getattr(self, FLOAT_ISLAND)(node, *args)
        return getattr(self, node.kind)(node, *args)
