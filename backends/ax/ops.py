"""What each Axera NPU accepts, as data written from the toolchains' op lists, and the checker that reads it.

    result = check_model(model, "ax620e")   # every node checked; exact rewrites tried where the docs' form differs
    result.model                            # the ONNX with the rewrites applied (what the kit ships)
    result.findings                         # [Finding]: node, op, constraint, the docs' words, the rewrite tried

An op table maps an ONNX op type to an `OpRule`: where the chip runs it (NPU, CPU, or either, the toolchain's
choice) and its constraints. A `Constraint` names a check (a module-level function of this file, in CHECKS), the
docs' words, and the exact rewrite (REWRITES) tried when a node violates it. An op missing from a chip's table is
unsupported there. Sources: [pulsar-docs] source/appendix/op_support_list.rst (AX620A/U, Chinese, translated
below), [pulsar2-docs-en] source/appendix/op_support_list_ax620e.md and op_support_list_ax650.md (backends/ax/chips.py
lists the repositories).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tcc.intops import INT_OPS


@dataclass(frozen=True)
class Constraint:
    check: str  # a key of CHECKS
    doc: str  # what the docs say (translated for Pulsar v1)
    args: tuple = ()
    rewrites: tuple[str, ...] = ()  # keys of REWRITES, tried in order: exact rewrites into a form the docs accept
    advisory: bool = False  # contradicted by the docs' own examples: reported, never refused (see `why`)
    why: str = ""


@dataclass(frozen=True)
class OpRule:
    unit: str = "NPU"  # "NPU" | "CPU" (a CPU subgraph) | "CPU/NPU" (the toolchain decides)
    constraints: tuple[Constraint, ...] = ()


@dataclass
class Finding:
    node: str
    op: str
    problem: str  # what is wrong, with the docs' words
    severity: str  # "unsupported" (refused unless --allow-cpu-fallback) | "cpu" (a CPU op) | "advisory"
    rewrite: str = ""  # the rewrite tried and its outcome

    def line(self) -> str:
        tried = f"; rewrite tried: {self.rewrite}" if self.rewrite else ""
        return f"node '{self.node}' ({self.op}): {self.problem}{tried}"

    def to_json(self) -> dict:
        return {
            "node": self.node,
            "op": self.op,
            "problem": self.problem,
            "severity": self.severity,
            **({"rewrite": self.rewrite} if self.rewrite else {}),
        }


@dataclass
class CheckResult:
    chip: str
    model: onnx.ModelProto
    findings: list[Finding] = field(default_factory=list)
    rewrites: list[dict] = field(default_factory=list)  # applied: node, rewrite, constraint
    toolchain_decides: list[str] = field(default_factory=list)  # nodes the docs list as "CPU / NPU"

    @property
    def unsupported(self) -> list[Finding]:
        return [f for f in self.findings if f.severity in ("unsupported", "cpu")]

    @property
    def advisories(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "advisory"]


# ---------------------------------------------------------------------------------------------------- context
@dataclass
class Context:
    shapes: dict[str, list[int]]
    inits: dict[str, onnx.TensorProto]
    producer: dict[str, onnx.NodeProto]

    def shape(self, name: str) -> list[int] | None:
        if name in self.inits:
            return list(self.inits[name].dims)
        return self.shapes.get(name)

    def const(self, name: str) -> np.ndarray | None:
        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None


def _context(model: onnx.ModelProto) -> Context:
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    g = model.graph
    return Context(shapes, {t.name: t for t in g.initializer}, {o: n for n in g.node for o in n.output})


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _has(node, name) -> bool:
    return any(a.name == name for a in node.attribute)


def _set_attr(node, name, value) -> None:
    _del_attr(node, name)
    node.attribute.append(helper.make_attribute(name, value))


def _del_attr(node, name) -> None:
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)


def _pads(node) -> list[int]:
    return list(_attr(node, "pads", [0, 0, 0, 0]))


# ---------------------------------------------------------------------------------------------------- checks
# Each returns None when the node satisfies the constraint, else what is wrong (a short phrase).
def two_inputs(node, ctx):
    n = len([i for i in node.input if i])
    return None if n == 2 else f"{n} inputs"


def attr_absent(node, ctx, name):
    return f"{name} is set ({_attr(node, name)!r})" if _has(node, name) else None


def attr_is(node, ctx, name, allowed, default):
    v = _attr(node, name, default)
    return None if v in allowed else f"{name} = {v!r}"


def pads_symmetric(node, ctx):
    p = _pads(node)
    half = len(p) // 2
    return None if p[:half] == p[half:] else f"pads {p} are not symmetric"


def ones(node, ctx, name):
    v = _attr(node, name)
    return None if v is None or all(int(d) == 1 for d in v) else f"{name} = {list(v)}"


def after_conv(node, ctx):
    p = ctx.producer.get(node.input[0])
    return (
        None
        if p is not None and p.op_type == "Conv"
        else f"its input comes from {p.op_type if p is not None else 'the graph input'}, not a Conv"
    )


def input_rank(node, ctx, ranks):
    s = ctx.shape(node.input[0])
    return None if s is not None and len(s) in ranks else f"input rank {len(s) if s is not None else '?'}"


def conv_groups_divide(node, ctx):
    w = ctx.shape(node.input[1])
    x = ctx.shape(node.input[0])
    g = int(_attr(node, "group", 1))
    if x is None or w is None:
        return "unknown shapes"
    return None if x[1] % g == 0 and w[0] % g == 0 else f"channels {x[1]} -> {w[0]} with group {g}"


def _kernel(node, ctx) -> list[int]:
    return [int(v) for v in _attr(node, "kernel_shape", None) or (ctx.shape(node.input[1]) or [0, 0, 0, 0])[2:]]


def conv_kernel_size(node, ctx, lo, hi):
    k = _kernel(node, ctx)
    d = list(_attr(node, "dilations", [1] * len(k)))
    eff = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
    bad = [v for v in [*k, *eff] if not lo <= v <= hi]
    return None if not bad else f"kernel {k} (dilated {eff})"


def conv_strides_ax620(node, ctx):
    s = tuple(int(v) for v in _attr(node, "strides", [1, 1]))
    k = tuple(_kernel(node, ctx))
    if s in {(1, 1), (1, 2), (2, 1), (2, 2), (3, 3)}:
        return None
    if s == k and (s[0] == s[1] or (1 in s and max(s) not in (2, 3))):
        return None
    return f"strides {list(s)} with kernel {list(k)}"


def conv_input_width(node, ctx, max_width, max_pad):
    x = ctx.shape(node.input[0])
    p = _pads(node)
    if x is None:
        return "unknown input shape"
    return None if x[-1] <= max_width and max(p) <= max_pad else f"input width {x[-1]}, pads {p}"


def conv_output_width_stride(node, ctx):
    y = ctx.shape(node.output[0])
    sw = int(_attr(node, "strides", [1, 1])[-1])
    return None if y is None or y[-1] % sw == 0 else f"output width {y[-1]} is not a multiple of stride {sw}"


def conv_kernel_volume(node, ctx, limit):
    w = ctx.shape(node.input[1])  # [out, in / group, kh, kw]
    if w is None:
        return "unknown weight shape"
    v = int(np.prod(w[1:]))
    return None if v <= limit else f"kernel_h * kernel_w * input_channel = {v}"


def pad_constant(node, ctx, values):
    mode = _attr(node, "mode", "constant")
    if mode != "constant":
        return f"mode {mode!r}"
    if values is None or len(node.input) < 3 or not node.input[2]:
        return None
    v = ctx.const(node.input[2])
    return None if v is not None and float(v) in values else f"constant value {v}"


def slice_steps_one(node, ctx):
    steps = ctx.const(node.input[4]) if len(node.input) > 4 and node.input[4] else None
    return None if steps is None or bool(np.all(steps == 1)) else f"steps {steps.tolist()}"


def gemm_alpha_beta(node, ctx):
    a, b = float(_attr(node, "alpha", 1.0)), float(_attr(node, "beta", 1.0))
    return None if (a, b) == (1.0, 1.0) else f"alpha {a}, beta {b}"


def resize_modes(node, ctx):
    mode = _attr(node, "mode", "nearest")
    if mode not in ("nearest", "linear"):
        return f"mode {mode!r}"
    nm = _attr(node, "nearest_mode", "round_prefer_floor")
    return None if mode != "nearest" or nm == "round_prefer_ceil" else f"nearest_mode {nm!r}"


def gather_indices_1d(node, ctx):
    s = ctx.shape(node.input[1])
    return None if s is not None and len(s) == 1 else f"indices of rank {len(s) if s is not None else '?'}"


def prelu_slope(node, ctx):
    x, s = ctx.shape(node.input[0]), ctx.shape(node.input[1])
    if x is None or len(x) != 4:
        return None
    return None if s in ([x[1]], [1, x[1], 1, 1]) else f"slope shape {s}"


def pow_scalar_exponent(node, ctx):
    e = ctx.const(node.input[1])
    return None if e is not None and e.size == 1 else "exponent is not a scalar initializer"


_CHECK_FUNCTIONS: list[Callable[..., str | None]] = [
    two_inputs,
    attr_absent,
    attr_is,
    pads_symmetric,
    ones,
    after_conv,
    input_rank,
    conv_groups_divide,
    conv_kernel_size,
    conv_strides_ax620,
    conv_input_width,
    conv_output_width_stride,
    conv_kernel_volume,
    pad_constant,
    slice_steps_one,
    gemm_alpha_beta,
    resize_modes,
    gather_indices_1d,
    prelu_slope,
    pow_scalar_exponent,
]
CHECKS: Mapping[str, Callable[..., str | None]] = MappingProxyType({f.__name__: f for f in _CHECK_FUNCTIONS})


# ---------------------------------------------------------------------------------------------------- rewrites
# Each rewrites one node into an exactly equivalent form the docs accept and returns what it did, or returns None
# (with nothing changed) when no exact rewrite exists for this node. `new_nodes` / `new_inits` collect additions.
def drop_zero_pad_count_include_pad(node, ctx, new_nodes, new_inits):
    """count_include_pad only matters where a window overlaps padding: without padding, drop it."""
    if any(_pads(node)) or _attr(node, "auto_pad", "NOTSET") != "NOTSET":
        return None
    _del_attr(node, "count_include_pad")
    return "removed count_include_pad (the pool has no padding, so it changes nothing)"


def zero_pad_count_include_pad_one(node, ctx, new_nodes, new_inits):
    if any(_pads(node)) or _attr(node, "auto_pad", "NOTSET") != "NOTSET":
        return None
    _set_attr(node, "count_include_pad", 1)
    return "set count_include_pad = 1 (the pool has no padding, so it changes nothing)"


def explicit_zero_pad(node, ctx, new_nodes, new_inits):
    """AveragePool(pads, count_include_pad=1) == Pad(zeros) then AveragePool without pads."""
    if int(_attr(node, "count_include_pad", 0)) != 1 or not any(_pads(node)):
        return None
    p = _pads(node)
    half = len(p) // 2
    name = f"{node.name or node.output[0]}/pad"
    pads = np.array([0, 0, *p[:half], 0, 0, *p[half:]], np.int64)
    new_inits.append(numpy_helper.from_array(pads, f"{name}/pads"))
    new_nodes.append(
        (
            node.output[0],
            helper.make_node("Pad", [node.input[0], f"{name}/pads"], [f"{name}:0"], name=name, mode="constant"),
        )
    )
    node.input[0] = f"{name}:0"
    _del_attr(node, "pads")
    _del_attr(node, "count_include_pad")
    return f"zero padding as an explicit Pad node '{name}' before the pool (the same values)"


def fold_gemm_alpha_beta(node, ctx, new_nodes, new_inits):
    b = ctx.const(node.input[1])
    c = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if b is None or (len(node.input) > 2 and node.input[2] and c is None):
        return None
    a, be = float(_attr(node, "alpha", 1.0)), float(_attr(node, "beta", 1.0))
    ctx.inits[node.input[1]].CopyFrom(numpy_helper.from_array((b * a).astype(b.dtype), node.input[1]))
    if c is not None:
        ctx.inits[node.input[2]].CopyFrom(numpy_helper.from_array((c * be).astype(c.dtype), node.input[2]))
    _del_attr(node, "alpha")
    _del_attr(node, "beta")
    return f"alpha {a} and beta {be} folded into the weight and bias initializers"


def prelu_slope_per_channel(node, ctx, new_nodes, new_inits):
    """A PRelu slope that broadcasts along the channels ([C, 1, 1], or one slope) written as [1, C, 1, 1]: the same
    values at every position of an NCHW input."""
    x, slope = ctx.shape(node.input[0]), ctx.const(node.input[1])
    if x is None or len(x) != 4 or slope is None or slope.size not in (1, x[1]):
        return None
    padded = slope.reshape((1,) * (4 - slope.ndim) + slope.shape)
    if padded.shape[0] != 1 or any(d != 1 for d in padded.shape[2:]):
        return None
    name = node.input[1]
    wide = np.broadcast_to(padded, (1, x[1], 1, 1)).astype(slope.dtype)
    ctx.inits[name].CopyFrom(numpy_helper.from_array(wide, name))
    return f"slope of shape {list(slope.shape)} written as [1, {x[1]}, 1, 1] (the same value at every position)"


REWRITES: Mapping[str, Callable] = MappingProxyType(
    {
        f.__name__: f
        for f in [
            drop_zero_pad_count_include_pad,
            zero_pad_count_include_pad_one,
            explicit_zero_pad,
            fold_gemm_alpha_beta,
            prelu_slope_per_channel,
        ]
    }
)


# ---------------------------------------------------------------------------------------------------- op tables
def C(check, doc, *args, rewrites=(), advisory=False, why=""):
    return Constraint(check, doc, args, tuple(rewrites), advisory, why)


_TWO = C("two_inputs", "only two inputs; shapes must match, automatic broadcast supported")
_AFTER_CONV = C("after_conv", "must follow a Conv")
_4D = C("input_rank", "only 4-D input tensors", (4,))

# AX620A / AX620U, Pulsar v1: [pulsar-docs] source/appendix/op_support_list.rst, translated
AX620: Mapping[str, OpRule] = MappingProxyType(
    {
        "Abs": OpRule(),
        "Add": OpRule(constraints=(_TWO,)),
        "ArgMax": OpRule(constraints=(_4D, _AFTER_CONV)),
        "ArgMin": OpRule(constraints=(_4D, _AFTER_CONV)),
        "AveragePool": OpRule(
            constraints=(
                C("attr_absent", "auto_pad / count_include_pad cannot be set", "auto_pad"),
                C(
                    "attr_absent",
                    "auto_pad / count_include_pad cannot be set",
                    "count_include_pad",
                    rewrites=("drop_zero_pad_count_include_pad", "explicit_zero_pad"),
                ),
                C("pads_symmetric", "pads must be symmetric"),
            )
        ),
        "BatchNormalization": OpRule(constraints=(_AFTER_CONV,)),
        "Clip": OpRule(),
        "Concat": OpRule(),
        "Conv": OpRule(
            constraints=(
                C("conv_groups_divide", "in_channels % groups == 0 and out_channels % groups == 0"),
                C("conv_kernel_size", "kernel size in [1, 18], also after dilation", 1, 18),
                C(
                    "conv_strides_ax620",
                    "strides usually [1, 1], [1, 2], [2, 1], [2, 2], [3, 3]; when strides == kernel "
                    "size, (n, n), (n, 1), (1, n) with n not 2 or 3 for the last two",
                ),
                C("conv_input_width", "feature-map width before padding <= 8191, padding <= 16384", 8191, 16384),
                C(
                    "conv_output_width_stride",
                    "output width % stride_w == 0",
                    advisory=True,
                    why="the docs' own quick start compiles ResNet-18 at 224 x 224, whose stride-2 convs give 7-wide "
                    "outputs",
                ),
                C("conv_kernel_volume", "kernel_w * kernel_h * input_channel <= 65535", 65535),
            )
        ),
        "ConvTranspose": OpRule(
            constraints=(
                C("attr_absent", "no auto_pad", "auto_pad"),
                C("pads_symmetric", "pads must be symmetric"),
                C("ones", "dilation 1 only", "dilations"),
            )
        ),
        "DepthToSpace": OpRule(),
        "Div": OpRule(constraints=(_TWO,)),
        "Flatten": OpRule(),
        "GRU": OpRule("CPU"),
        "Gemm": OpRule(),
        "GlobalAveragePool": OpRule(),
        "GlobalMaxPool": OpRule(),
        "HardSigmoid": OpRule(constraints=(_AFTER_CONV,)),
        "Identity": OpRule(),
        "LRN": OpRule("CPU"),
        "LSTM": OpRule("CPU/NPU"),
        "LeakyRelu": OpRule(),
        "MatMul": OpRule(),
        "MaxPool": OpRule(
            constraints=(
                C("attr_absent", "storage_order cannot be set", "storage_order"),
                C("ones", "dilation 1 only", "dilations"),
            )
        ),
        "MaxRoiPool": OpRule(),
        "Mul": OpRule(constraints=(_TWO,)),
        "PRelu": OpRule(),
        "Pad": OpRule(constraints=(C("pad_constant", "constant mode only, value 0 or -inf", (0.0, float("-inf"))),)),
        "ReduceL2": OpRule(constraints=(_4D,)),
        "ReduceMax": OpRule("CPU/NPU", (_4D,)),
        "ReduceMean": OpRule("CPU/NPU", (_4D,)),
        "ReduceSum": OpRule("CPU/NPU", (_4D,)),
        "Relu": OpRule(),
        "Reshape": OpRule(constraints=(C("input_rank", "only 3-D or 4-D input tensors", (3, 4)),)),
        "Resize": OpRule("CPU/NPU"),
        "Shape": OpRule("CPU/NPU"),
        "Sigmoid": OpRule(),
        "Slice": OpRule(constraints=(C("slice_steps_one", "step 1 only"),)),
        "Softmax": OpRule("CPU/NPU"),
        "Softplus": OpRule("CPU/NPU", (_AFTER_CONV,)),
        "SpaceToDepth": OpRule(),
        "Sub": OpRule(constraints=(_TWO,)),
        "Tanh": OpRule(),
        "Tile": OpRule("CPU/NPU"),
        "Transpose": OpRule("CPU/NPU"),
        "Unsqueeze": OpRule("CPU/NPU"),
    }
)

# Pulsar2, the constraints both lists share ([pulsar2-docs-en] op_support_list_ax620e.md / _ax650.md)
_NOTSET = C("attr_is", "auto_pad: only NOTSET", "auto_pad", ("NOTSET",), "NOTSET")
_REDUCE = OpRule(constraints=(C("attr_absent", "noop_with_empty_axes: not supported yet", "noop_with_empty_axes"),))
_PULSAR2_COMMON: dict[str, OpRule] = {
    "ArgMax": OpRule(constraints=(C("attr_is", "select_last_index: only 0", "select_last_index", (0,), 0),)),
    "ArgMin": OpRule(constraints=(C("attr_is", "select_last_index: only 0", "select_last_index", (0,), 0),)),
    "AveragePool": OpRule(
        constraints=(
            _NOTSET,
            C(
                "attr_is",
                "count_include_pad: only 1",
                "count_include_pad",
                (1,),
                0,
                rewrites=("zero_pad_count_include_pad_one",),
            ),
        )
    ),
    "BatchNormalization": OpRule(
        constraints=(
            C("attr_absent", "momentum: not supported", "momentum"),
            C("attr_is", "training_mode: not supported", "training_mode", (0,), 0),
        )
    ),
    "Cast": OpRule(
        constraints=(C("attr_is", "to: uint8/int8/uint16/int16/uint32/int32/float32", "to", (2, 3, 4, 5, 12, 6, 1), 1),)
    ),
    "Conv": OpRule(constraints=(_NOTSET,)),
    "ConvTranspose": OpRule(
        constraints=(
            _NOTSET,
            C("ones", "dilations: only 1", "dilations"),
            C("attr_absent", "output_shape: not supported yet", "output_shape"),
        )
    ),
    "DepthToSpace": OpRule(constraints=(C("attr_is", "mode: only DCR", "mode", ("DCR",), "DCR"),)),
    "Gather": OpRule(constraints=(C("gather_indices_1d", "indices: only 1 dimension"),)),
    "Gemm": OpRule(
        constraints=(C("gemm_alpha_beta", "alpha, beta: not supported yet", rewrites=("fold_gemm_alpha_beta",)),)
    ),
    "LayerNormalization": OpRule(constraints=(C("attr_is", "axis: only -1", "axis", (-1,), -1),)),
    "LpNormalization": OpRule(
        constraints=(C("attr_is", "axis: only -1", "axis", (-1,), -1), C("attr_is", "p: only 1 or 2", "p", (1, 2), 2))
    ),
    "LSTM": OpRule(constraints=(C("attr_is", "layout: only 0", "layout", (0,), 0),)),
    "MaxPool": OpRule(
        constraints=(
            _NOTSET,
            C("ones", "dilations: only 1", "dilations"),
            C("attr_is", "storage_order: only 0", "storage_order", (0,), 0),
        )
    ),
    "Pad": OpRule(constraints=(C("pad_constant", "mode: only constant", None),)),
    "Pow": OpRule(constraints=(C("pow_scalar_exponent", "exponent: a scalar initializer only"),)),
    "PRelu": OpRule(
        constraints=(
            C(
                "prelu_slope",
                "slope shape (channel,) or (1, channel, 1, 1) only",
                rewrites=("prelu_slope_per_channel",),
            ),
        )
    ),
    "ReduceL2": _REDUCE,
    "ReduceMax": _REDUCE,
    "ReduceMean": _REDUCE,
    "ReduceSum": _REDUCE,
    "Resize": OpRule(constraints=(C("resize_modes", "mode: nearest or linear; nearest_mode: round_prefer_ceil only"),)),
    **{
        op: OpRule()
        for op in (
            "Abs",
            "Add",
            "Ceil",
            "Clip",
            "Concat",
            "Constant",
            "ConstantOfShape",
            "Div",
            "Elu",
            "Equal",
            "Erf",
            "Exp",
            "Expand",
            "Flatten",
            "Gelu",
            "GlobalAveragePool",
            "GlobalMaxPool",
            "Greater",
            "GreaterOrEqual",
            "HardSigmoid",
            "HardSwish",
            "Identity",
            "InstanceNormalization",
            "LeakyRelu",
            "Less",
            "LessOrEqual",
            "MatMul",
            "Max",
            "Min",
            "Mish",
            "Mul",
            "Relu",
            "Reshape",
            "Sigmoid",
            "Silu",
            "Sin",
            "Slice",
            "Softmax",
            "Softplus",
            "SpaceToDepth",
            "Split",
            "Sqrt",
            "Squeeze",
            "Sub",
            "Swish",
            "Tanh",
            "TopK",
            "Transpose",
            "Unsqueeze",
            "Where",
        )
    },
}
AX620E: Mapping[str, OpRule] = MappingProxyType({**_PULSAR2_COMMON, "GridSample": OpRule()})
AX650: Mapping[str, OpRule] = MappingProxyType(
    {
        **_PULSAR2_COMMON,
        "GridSample": OpRule(),
        **{
            op: OpRule()
            for op in (
                "And",
                "Cos",
                "Floor",
                "GatherElements",
                "GatherND",
                "GroupNormalization",
                "Not",
                "ReduceMin",
                "Round",
                "ScatterElements",
                "ScatterND",
                "Tile",
                "Xor",
            )
        },
    }
)

OP_TABLES: Mapping[str, Mapping[str, OpRule]] = MappingProxyType({"ax620": AX620, "ax620e": AX620E, "ax650": AX650})


def kind_units(table: str) -> dict[str, dict[str, str | None]]:
    """A chip's support found from the integer op table's kinds (tcc.intops): per kind, each ONNX op it stands for
    with the unit the chip's table gives it ("NPU", "CPU", "CPU/NPU"), None where the table lacks the op."""
    ops = OP_TABLES[table]
    return {kind: {o: (ops[o].unit if o in ops else None) for o in op.onnx} for kind, op in INT_OPS.items()}


def kind_unit(table: str, kind: str) -> str:
    """One word for `tcc ops`: the unit every ONNX op of the kind runs on, "partly" where the chip lacks some of
    them (the node's own op decides), "-" where it lacks all (or the kind is a pattern of several ops that the AX
    rules never form: pooled_conv)."""
    units = set(kind_units(table)[kind].values())
    if units <= {None}:
        return "-"
    if None in units:
        return "partly"
    return cast(str, units.pop()) if len(units) == 1 else "CPU/NPU"  # (None is excluded above)


# ---------------------------------------------------------------------------------------------------- checker
def check_model(model: onnx.ModelProto, table: str) -> CheckResult:
    """Every node of `model` against the chip's op table (a key of OP_TABLES); a node that violates a constraint
    with a rewrite is rewritten (in a copy) and checked again. Nothing is refused here: the caller decides."""
    ops = OP_TABLES[table]
    m = onnx.ModelProto()
    m.CopyFrom(model)
    ctx = _context(m)
    result = CheckResult(table, m)
    new_nodes: list = []
    new_inits: list = []
    for node in m.graph.node:
        name = node.name or node.output[0]
        rule = ops.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rule is None:
            result.findings.append(
                Finding(name, node.op_type, f"{node.op_type} is not in the {table} op list", "unsupported")
            )
            continue
        if rule.unit == "CPU":
            result.findings.append(Finding(name, node.op_type, f"{node.op_type} runs on the CPU on {table}", "cpu"))
            continue
        if rule.unit == "CPU/NPU":
            result.toolchain_decides.append(name)
        for c in rule.constraints:
            problem = CHECKS[c.check](node, ctx, *c.args)
            if problem is None:
                continue
            done = None
            for rw in c.rewrites:  # each leaves the node untouched when it does not apply
                done = REWRITES[rw](node, ctx, new_nodes, new_inits)
                if done is not None:
                    break
            if done is not None and CHECKS[c.check](node, ctx, *c.args) is None:
                result.rewrites.append({"node": name, "op": node.op_type, "constraint": c.doc, "rewrite": done})
                continue
            tried = f"{', '.join(c.rewrites)} (not applicable here)" if c.rewrites else ""
            if c.advisory:
                result.findings.append(
                    Finding(name, node.op_type, f"{problem}: the docs say '{c.doc}' (advisory: {c.why})", "advisory")
                )
            else:
                result.findings.append(
                    Finding(name, node.op_type, f"{problem}: the docs say '{c.doc}'", "unsupported", tried)
                )
    if new_nodes or new_inits:
        _insert(m, new_nodes, new_inits)
    return result


def _insert(m: onnx.ModelProto, new_nodes: list, new_inits: list) -> None:
    """Add rewritten nodes in front of the node they feed, keeping the graph topologically sorted."""
    before: dict[str, list] = {}
    for anchor, n in new_nodes:  # anchor: the first output of the node the new one feeds
        before.setdefault(anchor, []).append(n)
    nodes = []
    for n in m.graph.node:
        nodes.extend(before.get(n.output[0], []))
        nodes.append(n)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.graph.initializer.extend(new_inits)


def cpu_split(model: onnx.ModelProto, cpu_nodes: set[str]) -> list[dict]:
    """The subgraphs a toolchain cuts the model into when `cpu_nodes` fall back to the CPU: maximal runs of nodes
    (in topological order) on one unit, as {unit, nodes, first, last}."""
    parts: list[dict] = []
    for node in model.graph.node:
        name = node.name or node.output[0]
        unit = "CPU" if name in cpu_nodes else "NPU"
        if parts and parts[-1]["unit"] == unit:
            parts[-1]["nodes"] += 1
            parts[-1]["last"] = name
        else:
            parts.append({"unit": unit, "nodes": 1, "first": name, "last": name})
    return parts
