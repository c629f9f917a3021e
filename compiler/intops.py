"""THE integer op table: every op kind of a quantized graph is defined once here (the INT8 twin of tcc.ops).

An `IntOp` states, for one kind of integer node:
- its calibration `Role` (which tensors get a scale of their own, which share one: `shares_scale`);
- the ONNX ops it stands for (`onnx`; two-node patterns such as x * sigmoid(x) are in `PATTERNS`) and the limits
  of its integer form (`check`: the reason a node cannot be taken, or None);
- whether a following Relu / Clip folds into it (`fuses_activation`; the pass `mark_fused_activations` reads this);
- the interpreters that implement it (`lowerings`).

What a kind computes is written once per stage, as the method named after the kind of one interpreter class:

    tcc.quant.plan.plan(onnx)             FP32 ONNX after the passes -> IntGraph (matching; refuses what no entry takes)
    tcc.quant.qgraph.Quantizer            IntGraph + calibration table -> QGraph: every integer constant (weight and
                                          bias codes, fixed-point multipliers, clamp bounds, lookup tables)
    tcc.quant.reference.Reference         QGraph -> numpy integer results (the golden INT8 model)
    tcc.backends.tvm_int8.RelaxLowering   QGraph -> TVM Relax integer ops (a translation of the same constants)

A subclass of `Interpreter` names its lowering; at class creation it must implement exactly the kinds whose
`lowerings` name it, so the table is the queryable list of what each backend takes (`supported`), and a backend
that lacks a kind says so from the table before any work is done, not by crashing.

Precision placement: any node of a quantized graph may be a *float island* (`precision == "float"`): its inputs
dequantized, the FP32 op computed in float32, its outputs quantized again where an integer node reads them. Kinds
of the `Role.FLOAT` role (no integer form: softmax) are islands wherever the target rules allow float ops; any
other node is one where the calibration table places it (tcc.quant.placement). Every interpreter handles islands
in one method, `float_island`, which runs the node's own FP32 lowering on that backend (ONNX Runtime's float
kernels, TVM's ONNX frontend, TFLite's float builtins): no second copy of an op's math.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

import numpy as np


class Role(Enum):
    WEIGHTED = "weighted producer"  # int8 weights x codes -> int32 accumulator + int32 bias -> requantized
    ELEMENTWISE = "requantizing elementwise"  # two inputs at their own scales -> the output's scale
    LOOKUP = "lookup table"  # 256 input codes -> output codes (any unary float function)
    ACTIVATION = "activation"  # relu / clip on its own: rescale, then clamp
    POOL = "requantizing pool"  # window sums of codes, requantized by s_in / (s_out * count)
    PASS_THROUGH = "scale-sharing pass-through"  # moves codes: max pool, reshape, transpose, split
    CONCAT = "concatenation"  # moves codes; inputs share the output's scale where the target rules say so
    FLOAT = "float only"  # no integer form: float lowerings of the same graph (TFLite fp32 / fp16 / dynamic), and
    # in an INT8 graph a float island where the target rules allow float ops (TargetRules.float_ops)


# Lowerings: the interpreters of a quantized graph. `quantize` and `reference` take every kind.
QUANTIZE, REFERENCE, TVM, QDQ, TFLITE = "quantize", "reference", "tvm", "qdq", "tflite"
ALL_LOWERINGS = frozenset({QUANTIZE, REFERENCE, TVM, QDQ, TFLITE})  # a backend names its own: Capabilities.int8_lowering


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

    def shape(self, name: str):
        return self.shapes.get(name)

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
    lowerings: frozenset = field(default=ALL_LOWERINGS)
    limits: dict = field(default_factory=dict)  # lowering -> a further check of what that lowering takes


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


def _check_binary(v: NodeView) -> str | None:
    if len(v.inputs) != 2:
        return "exactly two inputs"
    const = _activations_only(v)
    if const:
        return const
    ra, rb = v.rank(v.inputs[0]), v.rank(v.inputs[1])
    if ra is None or rb is None or ra != rb:
        return f"inputs of equal rank are needed (got ranks {ra} and {rb})"
    return None


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
    if (v.op_type == "AveragePool" and not v.attrs.get("count_include_pad", 0) and
            (any(v.attrs.get("pads", [0])) or v.attrs.get("ceil_mode", 0))):
        return ("padded average pooling that does not count the padding (count_include_pad=0) divides by a "
                "different count at the border: not supported")
    return None


def _check_shape_op(v: NodeView) -> str | None:
    for t in (*v.inputs[:1], *v.outputs):
        if not _static(v, t):
            return f"the shape of {t!r} must be known (all but the batch dimension)"
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


# ---------------------------------------------------------------------------------------------------- TFLite limits
TFLITE_LOOKUPS = {"Sigmoid": "LOGISTIC", "Tanh": "TANH"}  # int8 TFLite ops that are lookup tables in every kernel


# the same functions as TFLite's int8 kernels evaluate them to fill their tables: in float32, as LUTPopulate does
FLOAT32_LOOKUPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Sigmoid": lambda x: (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32),
    "Tanh": lambda x: np.tanh(x).astype(np.float32),
}


def _tflite_conv(v: NodeView) -> str | None:
    group = int(v.attrs.get("group", 1))
    c_in = (v.shape(v.inputs[0]) or (None, None))[1]
    if group not in (1, c_in):
        return f"grouped convolution (group={group}) has no TFLite int8 kernel: only group 1 or depthwise"
    return None


def _tflite_lookup(v: NodeView) -> str | None:
    if v.op_type not in TFLITE_LOOKUPS:
        return (f"{v.op_type} has no TFLite int8 kernel that computes it as one rounding (TFLite has "
                f"{', '.join(TFLITE_LOOKUPS.values())})")
    return None


# ---------------------------------------------------------------------------------------------------- lookup tables
def _sigmoid(x, a):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)) without overflow for large |x|


def _hardsigmoid(x, a):
    return np.clip(float(a.get("alpha", 0.2)) * x + float(a.get("beta", 0.5)), 0.0, 1.0)


def _hardswish(x, a):
    return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)


# ONNX unary op -> f(x, attributes) in float64: the function its 256-entry table samples at the input codes
LOOKUP_FUNCTIONS: dict[str, Callable[[np.ndarray, dict], np.ndarray]] = {
    "Sigmoid": _sigmoid,
    "HardSigmoid": _hardsigmoid,
    "HardSwish": _hardswish,
    "Tanh": lambda x, a: np.tanh(x),
}


@dataclass(frozen=True)
class Pattern:
    """Two ONNX nodes as one lookup table: `gate(x)` read only by a `Mul` whose other input is x itself, i.e.
    x * gate(x): SiLU (x * sigmoid(x), EfficientNet) and hard-swish below opset 14 (x * hardsigmoid(x))."""

    name: str
    gate: str  # the ONNX op of the gate


PATTERNS: tuple[Pattern, ...] = (Pattern("silu", "Sigmoid"), Pattern("hardswish", "HardSigmoid"),
                                 Pattern("x*tanh", "Tanh"))


def gated(gate: str) -> Callable[[np.ndarray, dict], np.ndarray]:
    """x * gate(x) as a lookup function."""
    g = LOOKUP_FUNCTIONS[gate]
    return lambda x, a: x * g(x, a)


# ---------------------------------------------------------------------------------------------------- the table
ACTIVATION_OPS = ("Relu", "Clip")  # the ONNX activations a producer may fold into its clamp

INT_OPS: dict[str, IntOp] = {
    op.kind: op
    for op in [
        IntOp("conv", Role.WEIGHTED, ("Conv",), "2-D convolution (grouped, depthwise, dilated): int8 weights per "
              "output channel, int32 accumulator and bias, requantized per channel", _check_conv,
              fuses_activation=True, limits={TFLITE: _tflite_conv}),
        IntOp("gemm", Role.WEIGHTED, ("Gemm", "MatMul"), "fully connected layer: int8 weights per output feature, "
              "int32 accumulator and bias, requantized per feature", _check_gemm, fuses_activation=True),
        IntOp("add", Role.ELEMENTWISE, ("Add",), "sum of two tensors at their own scales (TFLite's integer ADD: "
              "both inputs << 20 to a common scale, summed, requantized); broadcasting", _check_binary,
              fuses_activation=True),
        IntOp("mul", Role.ELEMENTWISE, ("Mul",), "product of two tensors ((a - za) (b - zb) in int32, requantized "
              "by s_a s_b / s_out); broadcasting, e.g. squeeze-excite scaling", _check_binary),
        IntOp("lookup", Role.LOOKUP, tuple(LOOKUP_FUNCTIONS), "a unary function as a 256-entry table from input "
              "codes to output codes (sigmoid, hard-sigmoid, hard-swish, tanh, and x * g(x) patterns: SiLU)",
              _check_lookup, limits={TFLITE: _tflite_lookup}),
        IntOp("clamp", Role.ACTIVATION, ACTIVATION_OPS, "Relu / Clip not folded into a producer: rescale to the "
              "output's scale, then clamp at the codes of the bounds", _check_clamp),
        IntOp("max_pool", Role.PASS_THROUGH, ("MaxPool",), "max over windows of codes (padding: the lowest code; "
              "ceil_mode: extra end padding)", _check_pool, shares_scale=True),
        IntOp("avg_pool", Role.POOL, ("AveragePool",), "window sums of zero-point-free codes, requantized by "
              "s_in / (s_out * window area)", _check_pool, shares_scale=True),
        IntOp("global_avg_pool", Role.POOL, ("GlobalAveragePool",), "sum over H x W, requantized by "
              "s_in / (s_out * H * W)", _check_pool),
        IntOp("concat", Role.CONCAT, ("Concat",), "concatenation; each input rescaled to the output's scale "
              "(a copy where they are equal)"),
        IntOp("reshape", Role.PASS_THROUGH, ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"),
              "new shape, same element order (NCHW): moves codes", _check_shape_op, shares_scale=True),
        IntOp("transpose", Role.PASS_THROUGH, ("Transpose",), "permutes axes (channel shuffle): moves codes",
              _check_shape_op, shares_scale=True),
        IntOp("split", Role.PASS_THROUGH, ("Split",), "splits along an axis: moves codes", _check_shape_op,
              shares_scale=True),
        IntOp("softmax", Role.FLOAT, ("Softmax",), "softmax over the last axis: no integer form; in an INT8 graph a "
              "float island where the target allows float ops", _check_softmax, lowerings=frozenset({TFLITE})),
    ]
}

ONNX_TO_KIND: dict[str, str] = {onnx_op: op.kind for op in INT_OPS.values() for onnx_op in op.onnx}
FUSES_ACTIVATION: tuple[str, ...] = tuple(o for op in INT_OPS.values() if op.fuses_activation for o in op.onnx)


def supported(kind: str, lowering: str) -> bool:
    op = INT_OPS.get(kind)
    return op is not None and lowering in op.lowerings


# ---------------------------------------------------------------------------------------------------- interpreters
FLOAT_ISLAND = "float_island"  # the one method of every interpreter that runs a node kept in float


class Interpreter:
    """Walks a quantized graph (tcc.quant.qgraph.QGraph) in order; `run_node` dispatches a node to the method named
    after its kind, like torch.fx's Interpreter, and a float island to `float_island`. A subclass sets `lowering`
    and implements exactly the kinds whose entry lists that lowering, and `float_island` (checked when the class is
    created)."""

    lowering: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.lowering:
            return
        want = {k for k, op in INT_OPS.items() if cls.lowering in op.lowerings}
        have = {k for k in INT_OPS if callable(getattr(cls, k, None))}
        if want != have:
            raise TypeError(f"{cls.__name__} (lowering {cls.lowering!r}): the integer op table lists "
                            f"{sorted(want - have)} without a method here, methods {sorted(have - want)} not listed")
        if not callable(getattr(cls, FLOAT_ISLAND, None)):
            raise TypeError(f"{cls.__name__} (lowering {cls.lowering!r}) has no {FLOAT_ISLAND} method: every "
                            "lowering of a quantized graph takes float islands")

    def run_node(self, node, *args):
        if getattr(node, "precision", "int8") == "float":
            return getattr(self, FLOAT_ISLAND)(node, *args)
        return getattr(self, node.kind)(node, *args)
