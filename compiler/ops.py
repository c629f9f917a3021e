"""THE op table: every op is defined once here, and everything else is derived from it.

An `OpDef` holds an op's arguments (types, defaults, limits), its shape rule, its parameters (shapes, which are
trainable), its MAC count, its PyTorch lowering and its ONNX lowering. The spec checker, the JSON Schema generator,
the IR, weight import and every lowering read this table; none of them re-describes an op. Later lowerings (the
integer reference) add their rule as one more field.

Shapes are per sample (`(C, H, W)` or `(F,)`), the batch is implicit. Axes in arguments are NCHW axes (1 = C).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from .errors import ShapeError

REQUIRED = object()
MAX_CHANNELS = 65_536
MAX_SPATIAL = 16_384
MAX_KERNEL = 64

Shape = tuple


# ---------------------------------------------------------------------------------------------------- arguments
@dataclass(frozen=True)
class Arg:
    """One op argument. kind: int | float | bool | pair | padding | ints | str."""

    name: str
    kind: str
    default: object = REQUIRED
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def coerce(self, value):
        """Validate and normalise one value; raises ValueError with a user-facing message."""
        k = self.kind
        if k == "int":
            return self._bounded(_as_int(value))
        if k == "float":
            if not _finite(value) or abs(value) > 1e308:  # an int beyond float range is no float either
                raise ValueError(f"expected a finite number, got {value!r}")
            return self._bounded(float(value))
        if k == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
            return value
        if k == "str":
            if value not in self.choices:
                raise ValueError(f"expected one of {', '.join(self.choices)}, got {value!r}")
            return value
        if k == "pair":
            pair = _as_pair(value)
            return tuple(self._bounded(v) for v in pair)
        if k == "padding":
            if value in ("same", "valid"):
                return value
            if isinstance(value, list) and len(value) == 4:
                return tuple(self._bounded(_as_int(v)) for v in value)
            return tuple(self._bounded(v) for v in _as_pair(value))
        if k == "ints":
            if not isinstance(value, list) or not value:
                raise ValueError(f"expected a non-empty list of integers, got {value!r}")
            return tuple(self._bounded(_as_int(v)) for v in value)
        raise AssertionError(k)

    def _bounded(self, v):
        if self.lo is not None and v < self.lo:
            raise ValueError(f"must be >= {self.lo}, got {v}")
        if self.hi is not None and v > self.hi:
            raise ValueError(f"must be <= {self.hi}, got {v}")
        return v


def _as_int(value) -> int:
    if not _finite(value) or value != int(value):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def _finite(value) -> bool:
    """A real, finite number (not a bool, NaN or infinity)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _as_pair(value) -> tuple:
    if isinstance(value, list):
        if len(value) != 2:
            raise ValueError(f"expected an integer or a list of 2 integers, got {value!r}")
        return _as_int(value[0]), _as_int(value[1])
    v = _as_int(value)
    return v, v


@dataclass(frozen=True)
class ParamSpec:
    shape: tuple
    trainable: bool = True
    dtype: str = "float32"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


# ---------------------------------------------------------------------------------------------------- the OpDef
@dataclass(frozen=True)
class OpDef:
    name: str
    args: tuple[Arg, ...]
    infer: Callable[[dict, list[Shape]], list[Shape]]
    to_torch: Callable  # (emit, attrs, *inputs) -> output(s); see lower_torch.TorchEmitter
    arity: tuple[int, int] = (1, 1)  # min, max inputs (max -1: any)
    prepare: Callable[[dict, list[Shape]], dict] | None = None  # derive attrs that depend on input shapes
    params: Callable[[dict, list[Shape]], dict[str, ParamSpec]] = lambda a, s: {}
    macs: Callable[[dict, list[Shape], list[Shape]], int] = lambda a, s, o: 0
    doc: str = ""
    # (emit, attrs, *input tensor names) -> output tensor name(s); see lower_onnx.OnnxEmitter. None: no ONNX form.
    to_onnx: Callable | None = None
    fields: dict = field(default_factory=dict)  # room for later lowerings (reference)

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)


# ---------------------------------------------------------------------------------------------------- helpers
def _torch():
    import torch
    import torch.nn.functional as F
    from torch import nn

    return torch, nn, F


def _rank(shape, want: int, what: str):
    if len(shape) != want:
        kind = {3: "[C, H, W]", 1: "[F]"}[want]
        raise ShapeError(f"{what} expects a {kind} input, got {list(shape)}")


def _window_out(size: int, k: int, s: int, p_lo: int, p_hi: int, d: int, ceil: bool) -> int:
    """PyTorch's output size of a sliding window (conv/pool), with its ceil_mode rule."""
    span = size + p_lo + p_hi - d * (k - 1) - 1
    if span < 0:
        raise ShapeError(f"window {k} (dilation {d}) is larger than the padded input {size + p_lo + p_hi}")
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p_lo:  # the last window must start inside the input or left padding
        out -= 1
    return out


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TF/ONNX SAME_UPPER: output ceil(size / s), extra padding at the end."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


# ---------------------------------------------------------------------------------------------------- conv2d
def _conv_prepare(a, shapes):
    _rank(shapes[0], 3, "conv2d")
    c, h, w = shapes[0]
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
    pad = a["padding"]
    if pad == "valid":
        pads = (0, 0, 0, 0)
    elif pad == "same":
        t, b = _same_pads(h, kh, sh, dh)
        l, r = _same_pads(w, kw, sw, dw)
        pads = (t, l, b, r)
    elif len(pad) == 4:
        pads = pad
    else:
        pads = (pad[0], pad[1], pad[0], pad[1])
    return {**a, "pads": pads, "in_channels": c}


def _conv_infer(a, shapes):
    _rank(shapes[0], 3, "conv2d")
    c, h, w = shapes[0]
    g = a["groups"]
    if c % g or a["out"] % g:
        raise ShapeError(f"groups={g} must divide both input channels {c} and output channels {a['out']}")
    t, l, b, r = a["pads"]
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
    return [(a["out"], _window_out(h, kh, sh, t, b, dh, False), _window_out(w, kw, sw, l, r, dw, False))]


def _conv_params(a, shapes):
    kh, kw = a["kernel"]
    p = {"weight": ParamSpec((a["out"], a["in_channels"] // a["groups"], kh, kw))}
    if a["bias"]:
        p["bias"] = ParamSpec((a["out"],))
    return p


def _conv_macs(a, shapes, outs):
    kh, kw = a["kernel"]
    return math.prod(outs[0]) * (a["in_channels"] // a["groups"]) * kh * kw


def _conv_torch(emit, a, x):
    torch, nn, F = _torch()
    t, l, b, r = a["pads"]
    symmetric = t == b and l == r
    if not symmetric:
        x = emit.call(F.pad, x, (l, r, t, b))
    conv = nn.Conv2d(
        a["in_channels"], a["out"], a["kernel"], a["stride"], (t, l) if symmetric else 0,
        a["dilation"], a["groups"], a["bias"],
    )
    return emit.module(conv, x)


def _conv_onnx(emit, a, x):
    inputs = [x, emit.param("weight")] + ([emit.param("bias")] if a["bias"] else [])
    return emit.op(
        "Conv", inputs, kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=list(a["pads"]),
        dilations=list(a["dilation"]), group=a["groups"],
    )


# ---------------------------------------------------------------------------------------------------- batchnorm
def _bn_infer(a, shapes):
    if len(shapes[0]) not in (1, 3):
        raise ShapeError(f"batchnorm expects [C, H, W] or [F], got {list(shapes[0])}")
    return [shapes[0]]


def _bn_params(a, shapes):
    c = shapes[0][0]
    return {
        "weight": ParamSpec((c,)),
        "bias": ParamSpec((c,)),
        "running_mean": ParamSpec((c,), trainable=False),
        "running_var": ParamSpec((c,), trainable=False),
        "num_batches_tracked": ParamSpec((), trainable=False, dtype="int64"),
    }


def _bn_torch(emit, a, x):
    torch, nn, F = _torch()
    cls = nn.BatchNorm2d if len(emit.in_shapes[0]) == 3 else nn.BatchNorm1d
    return emit.module(cls(emit.in_shapes[0][0], eps=a["eps"], momentum=a["momentum"]), x)


def _bn_onnx(emit, a, x):
    stats = [emit.param(k) for k in ("weight", "bias", "running_mean", "running_var")]
    return emit.op("BatchNormalization", [x, *stats], epsilon=a["eps"])


# ---------------------------------------------------------------------------------------------------- elementwise
def _same_shape(a, shapes):
    return [shapes[0]]


def _unary(fn_name: str):
    def lower(emit, a, x):
        torch, nn, F = _torch()
        return emit.call(getattr(F, fn_name), x)

    return lower


def _onnx_op(op_type: str):
    def lower(emit, a, x):
        return emit.op(op_type, [x])

    return lower


def _relu6_onnx(emit, a, x):
    return emit.clip(x, 0.0, 6.0)


def _hardswish_onnx(emit, a, x):
    if emit.opset >= 14:
        return emit.op("HardSwish", [x])
    # x * relu6(x + 3) / 6 == x * HardSigmoid(x; alpha=1/6, beta=1/2) (HardSwish is opset 14)
    gate = emit.op("HardSigmoid", [x], suffix="hardsigmoid", alpha=1 / 6, beta=0.5)
    return emit.op("Mul", [x, gate])


def _silu_onnx(emit, a, x):
    return emit.op("Mul", [x, emit.op("Sigmoid", [x], suffix="sigmoid")])


def _broadcast_infer(a, shapes):
    out = list(shapes[0])
    for s in shapes[1:]:
        if len(s) > len(out):
            out = [1] * (len(s) - len(out)) + out
        s = [1] * (len(out) - len(s)) + list(s)
        for i, (p, q) in enumerate(zip(out, s)):
            if p != q and 1 not in (p, q):
                raise ShapeError(f"shapes {[list(x) for x in shapes]} do not broadcast (axis {i + 1}: {p} vs {q})")
            out[i] = max(p, q)
    return [tuple(out)]


def _nary(fn_name: str):
    def lower(emit, a, *xs):
        torch, nn, F = _torch()
        fn = getattr(torch, fn_name)
        out = xs[0]
        for x in xs[1:]:
            out = emit.call(fn, out, x)
        return out

    return lower


def _nary_onnx(op_type: str):
    def lower(emit, a, *xs):
        out = xs[0]
        for k, x in enumerate(xs[1:], 1):  # a left fold of binary ops, as the PyTorch lowering; the last is the node
            last = k == len(xs) - 1
            out = emit.op(op_type, [out, x], suffix=None if last else f"{op_type.lower()}{k}")
        return out

    return lower


def _axis(a, shapes) -> int:
    """The per-sample axis of an NCHW `axis` argument."""
    rank = len(shapes[0])
    ax = a["axis"]
    if ax < 0:
        ax += rank + 1
    if not 1 <= ax <= rank:
        raise ShapeError(f"axis {a['axis']} is out of range for a rank-{rank + 1} NCHW tensor (batch axis 0 excluded)",
                         "axis")
    return ax - 1


def _concat_infer(a, shapes):
    ax = _axis(a, shapes)
    first = shapes[0]
    for s in shapes[1:]:
        if len(s) != len(first) or any(p != q for i, (p, q) in enumerate(zip(first, s)) if i != ax):
            raise ShapeError(
                f"concat along axis {ax + 1} needs equal other dimensions, got {[list(x) for x in shapes]}"
            )
    return [tuple(sum(s[ax] for s in shapes) if i == ax else d for i, d in enumerate(first))]


def _concat_torch(emit, a, *xs):
    torch, nn, F = _torch()
    return emit.call(torch.cat, list(xs), a["axis"])


def _concat_onnx(emit, a, *xs):
    return emit.op("Concat", list(xs), axis=_axis(a, emit.in_shapes) + 1)


def channel_shuffle(x, groups: int):
    """ShuffleNet's shuffle written with view/transpose so torch.compile and exporters see plain ops."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _shuffle_onnx(emit, a, x):
    c, h, w = emit.in_shapes[0]
    g = a["groups"]
    x = emit.op("Reshape", [x, emit.const("shape5", [-1, g, c // g, h, w])], suffix="reshape")
    x = emit.op("Transpose", [x], suffix="transpose", perm=[0, 2, 1, 3, 4])
    return emit.op("Reshape", [x, emit.const("shape4", [-1, c, h, w])])


def _shuffle_infer(a, shapes):
    _rank(shapes[0], 3, "channel_shuffle")
    if shapes[0][0] % a["groups"]:
        raise ShapeError(f"groups={a['groups']} does not divide {shapes[0][0]} channels")
    return [shapes[0]]


def _split_prepare(a, shapes):
    ax = _axis(a, shapes)
    size = shapes[0][ax]
    if (a["parts"] is None) == (a["sizes"] is None):
        raise ShapeError("split needs exactly one of `parts` or `sizes`")
    if a["parts"] is not None:
        if size % a["parts"]:
            raise ShapeError(f"cannot split {size} into {a['parts']} equal parts")
        sizes = (size // a["parts"],) * a["parts"]
    else:
        sizes = a["sizes"]
        if sum(sizes) != size:
            raise ShapeError(f"split sizes {list(sizes)} add up to {sum(sizes)}, not {size}")
    return {**a, "split_sizes": sizes}


def _split_infer(a, shapes):
    ax = _axis(a, shapes)
    return [tuple(n if i == ax else d for i, d in enumerate(shapes[0])) for n in a["split_sizes"]]


def _split_torch(emit, a, x):
    torch, nn, F = _torch()
    parts = emit.call(torch.split, x, list(a["split_sizes"]), a["axis"])
    return [emit.getitem(parts, i) for i in range(len(a["split_sizes"]))]


def _split_onnx(emit, a, x):
    axis, sizes, n = _axis(a, emit.in_shapes) + 1, list(a["split_sizes"]), len(a["split_sizes"])
    if emit.opset >= 13:  # split sizes became an input in opset 13
        return emit.op("Split", [x, emit.const("split", sizes)], outputs=n, axis=axis)
    return emit.op("Split", [x], outputs=n, axis=axis, split=sizes)


# ---------------------------------------------------------------------------------------------------- pooling
def _pool_prepare(a, shapes):
    return {**a, "stride": a["stride"] if a["stride"] is not None else a["kernel"]}


def _pool_infer(a, shapes):
    _rank(shapes[0], 3, "pooling")
    c, h, w = shapes[0]
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    if ph * 2 > kh or pw * 2 > kw:
        raise ShapeError(f"padding {[ph, pw]} must be at most half the kernel {[kh, kw]}")
    dh, dw = a.get("dilation", (1, 1))
    ceil = a["ceil_mode"]
    return [(c, _window_out(h, kh, sh, ph, ph, dh, ceil), _window_out(w, kw, sw, pw, pw, dw, ceil))]


def _maxpool_torch(emit, a, x):
    torch, nn, F = _torch()
    return emit.call(
        F.max_pool2d, x, a["kernel"], a["stride"], a["padding"], a["dilation"], ceil_mode=a["ceil_mode"]
    )


def _avgpool_torch(emit, a, x):
    torch, nn, F = _torch()
    return emit.call(
        F.avg_pool2d, x, a["kernel"], a["stride"], a["padding"],
        ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"],
    )


def _pool_onnx_geometry(emit, a) -> tuple[list[int], int, bool]:
    """ONNX pads, ceil_mode, and whether the pads were extended at the end to emulate PyTorch's ceil_mode.

    ONNX's shape inference uses the plain ceil formula, PyTorch (and ONNX Runtime) drop a last window that would
    start in the right padding. Where these differ, ceil_mode=1 would leave the model's inferred shapes wrong, so
    the same windows are written with ceil_mode=0 and extra end padding (that window set is exactly PyTorch's).
    Before opset 10 (no ceil_mode attribute) the extra end padding is always used.
    """
    _, h, w = emit.in_shapes[0]
    _, oh, ow = emit.out_shapes[0]
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    dh, dw = a.get("dilation", (1, 1))
    pads = [ph, pw, ph, pw]
    if not a["ceil_mode"]:
        return pads, 0, False
    floor = (_window_out(h, kh, sh, ph, ph, dh, False), _window_out(w, kw, sw, pw, pw, dw, False))
    if (oh, ow) == floor:
        return pads, 0, False  # ceil_mode changes nothing here
    naive = tuple(-(-(n + 2 * p - d * (k - 1) - 1) // s) + 1
                  for n, p, d, k, s in ((h, ph, dh, kh, sh), (w, pw, dw, kw, sw)))
    if (oh, ow) == naive and emit.opset >= 10:
        return pads, 1, False
    ends = [(o - 1) * s + d * (k - 1) + 1 - n - p
            for o, s, d, k, n, p in ((oh, sh, dh, kh, h, ph), (ow, sw, dw, kw, w, pw))]
    return [ph, pw, max(ends[0], ph), max(ends[1], pw)], 0, True


def _maxpool_onnx(emit, a, x):
    pads, ceil, _ = _pool_onnx_geometry(emit, a)
    attrs = {"kernel_shape": list(a["kernel"]), "strides": list(a["stride"]), "pads": pads}
    if ceil:
        attrs["ceil_mode"] = 1
    if tuple(a["dilation"]) != (1, 1):
        emit.require(10, "dilation")
        attrs["dilations"] = list(a["dilation"])
    return emit.op("MaxPool", [x], **attrs)


def _avgpool_onnx(emit, a, x):
    pads, ceil, extended = _pool_onnx_geometry(emit, a)
    attrs = {"kernel_shape": list(a["kernel"]), "strides": list(a["stride"])}
    include = a["count_include_pad"] and any(a["padding"])
    if extended and include:
        # PyTorch divides by the window's overlap with the padded input: pad explicitly, count what is inside.
        ph, pw = a["padding"]
        x = emit.pad(x, [0, 0, ph, pw, 0, 0, ph, pw])
        pads = [0, 0, pads[2] - ph, pads[3] - pw]
        include = False
    elif extended:
        include = False  # no padding counted: the extra end padding must not count either
    if ceil:
        attrs["ceil_mode"] = 1
    return emit.op("AveragePool", [x], pads=pads, count_include_pad=int(include), **attrs)


def _gap_infer(a, shapes):
    _rank(shapes[0], 3, "global_avgpool")
    return [(shapes[0][0], 1, 1)]


def _gap_torch(emit, a, x):
    torch, nn, F = _torch()
    return emit.call(torch.mean, x, (2, 3), keepdim=True)


def _adaptive_infer(a, shapes):
    _rank(shapes[0], 3, "adaptive_avgpool")
    return [(shapes[0][0], *a["size"])]


def _adaptive_torch(emit, a, x):
    torch, nn, F = _torch()
    return emit.call(F.adaptive_avg_pool2d, x, a["size"])


def _adaptive_onnx(emit, a, x):
    _, h, w = emit.in_shapes[0]
    oh, ow = a["size"]
    if (oh, ow) == (h, w):
        return emit.op("Identity", [x])
    if (oh, ow) == (1, 1):
        return emit.op("GlobalAveragePool", [x])
    if h % oh or w % ow:
        emit.unsupported(
            f"adaptive_avgpool from {h}x{w} to {oh}x{ow}: ONNX has no adaptive pooling and {h}x{w} is not a "
            f"multiple of {oh}x{ow}, so it is not one AveragePool; use a divisible size or avgpool"
        )
    return emit.op("AveragePool", [x], kernel_shape=[h // oh, w // ow], strides=[h // oh, w // ow])


# ---------------------------------------------------------------------------------------------------- shape ops
def _flatten_infer(a, shapes):
    return [(math.prod(shapes[0]),)]


def _flatten_torch(emit, a, x):
    torch, nn, F = _torch()
    return emit.call(torch.flatten, x, 1)


def _linear_prepare(a, shapes):
    if a["axis"] is None:
        if len(shapes[0]) != 1:
            raise ShapeError(f"linear expects a [F] input, got {list(shapes[0])} (`axis: 1` applies it over the "
                             "channels of a [C, H, W] input, at every position)")
    elif _axis(a, shapes) != 0:
        raise ShapeError(f"linear applies over the channel axis (axis: 1), not axis {a['axis']}", "axis")
    return a


def _linear_infer(a, shapes):
    return [(a["out"], *shapes[0][1:])]


def _linear_params(a, shapes):
    p = {"weight": ParamSpec((a["out"], shapes[0][0]))}
    if a["bias"]:
        p["bias"] = ParamSpec((a["out"],))
    return p


def _linear_onnx(emit, a, x):
    c_in = emit.in_shapes[0][0]
    if len(emit.in_shapes[0]) == 3:  # over the channels at every position: a 1x1 conv with the same parameters
        inputs = [x, emit.param("weight", (a["out"], c_in, 1, 1))] + ([emit.param("bias")] if a["bias"] else [])
        return emit.op("Conv", inputs, kernel_shape=[1, 1])
    inputs = [x, emit.param("weight")]
    if a["bias"]:
        inputs.append(emit.param("bias"))
    elif emit.opset < 11:  # Gemm's C is optional from opset 11
        inputs.append(emit.const("zero_bias", [0.0] * a["out"], "float32"))
    return emit.op("Gemm", inputs, transB=1)


def _linear_torch(emit, a, x):
    torch, nn, F = _torch()
    c_in = emit.in_shapes[0][0]
    if len(emit.in_shapes[0]) == 3:
        from .torch_ops import ChannelLinear  # deferred for start-up: loads jsonschema, networkx, torch

        return emit.module(ChannelLinear(c_in, a["out"], a["bias"]), x)
    return emit.module(nn.Linear(c_in, a["out"], a["bias"]), x)


def _dropout_torch(emit, a, x):
    torch, nn, F = _torch()
    return emit.module(nn.Dropout(a["p"]), x)  # a module, so .train()/.eval() switch it


def _softmax_infer(a, shapes):
    _axis(a, shapes)
    return [shapes[0]]


def _softmax_torch(emit, a, x):
    torch, nn, F = _torch()
    return emit.call(torch.softmax, x, a["axis"])


def _softmax_onnx(emit, a, x):
    rank = len(emit.in_shapes[0]) + 1
    axis = _axis(a, emit.in_shapes) + 1
    if emit.opset >= 13 or axis == rank - 1:
        return emit.op("Softmax", [x], axis=axis)
    # Before opset 13 Softmax flattens everything from `axis` on: move the axis last, softmax it, move it back.
    perm = [i for i in range(rank) if i != axis] + [axis]
    inverse = [perm.index(i) for i in range(rank)]
    x = emit.op("Transpose", [x], suffix="to_last", perm=perm)
    x = emit.op("Softmax", [x], suffix="softmax", axis=rank - 1)
    return emit.op("Transpose", [x], perm=inverse)


def _identity_torch(emit, a, x):
    return x


# ---------------------------------------------------------------------------------------------------- more activations
def _f32(emit, suffix: str, value: float) -> str:
    """A float32 scalar constant `name/suffix`."""
    return emit.const(suffix, value, "float32")


def _hardsigmoid_onnx(emit, a, x):
    return emit.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)  # relu6(x + 3) / 6 == clip(x / 6 + 1 / 2, 0, 1)


def _gelu_torch(emit, a, x):
    torch, nn, F = _torch()
    return emit.call(F.gelu, x, approximate=a["approximate"])


def _gelu_onnx(emit, a, x):
    approximate = a["approximate"]
    emit.composite("Gelu", approximate=approximate)
    if emit.opset >= 20:
        return emit.op("Gelu", [x], approximate=approximate)
    if approximate == "none":  # x / 2 (1 + erf(x / sqrt 2)), as PyTorch writes it
        t = emit.op("Div", [x, _f32(emit, "sqrt2", math.sqrt(2.0))], suffix="scaled")
        t = emit.op("Erf", [t], suffix="erf")
    else:  # x / 2 (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))); x^3 as products (not every NPU has Pow)
        cube = emit.op("Mul", [emit.op("Mul", [x, x], suffix="square"), x], suffix="cube")
        t = emit.op("Add", [x, emit.op("Mul", [cube, _f32(emit, "coefficient", 0.044715)], suffix="cubic")],
                    suffix="inner")
        t = emit.op("Mul", [t, _f32(emit, "sqrt_2_over_pi", math.sqrt(2.0 / math.pi))], suffix="scaled")
        t = emit.op("Tanh", [t], suffix="tanh")
    t = emit.op("Add", [t, _f32(emit, "one", 1.0)], suffix="plus_one")
    # x * (the gate): a last Mul by a constant would be folded into a following conv by onnxsim
    return emit.op("Mul", [x, emit.op("Mul", [t, _f32(emit, "half", 0.5)], suffix="gate")])


def _leaky_relu_torch(emit, a, x):
    torch, nn, F = _torch()
    return emit.call(F.leaky_relu, x, a["negative_slope"])


def _elu_torch(emit, a, x):
    torch, nn, F = _torch()
    return emit.call(F.elu, x, a["alpha"])


def _channel_shape(shape) -> tuple:
    """A per-channel parameter's shape that broadcasts along the other per-sample axes: [C, 1, 1] or [F]."""
    return (shape[0], *[1] * (len(shape) - 1))


def _prelu_prepare(a, shapes):
    c, n = shapes[0][0], a["num_parameters"]
    if n not in (1, c):
        raise ShapeError(f"num_parameters={n} must be 1 (one slope) or the input's {c} channels", "num_parameters")
    return a


def _prelu_torch(emit, a, x):
    torch, nn, F = _torch()
    return emit.module(nn.PReLU(a["num_parameters"]), x)


def _prelu_onnx(emit, a, x):
    slope = emit.param("weight", (a["num_parameters"], *[1] * (len(emit.in_shapes[0]) - 1)))  # along the channels
    return emit.op("PRelu", [x, slope])


def _scale_torch(emit, a, x):
    from .torch_ops import Scale  # deferred for start-up: loads jsonschema, networkx, torch

    return emit.module(Scale(_channel_shape(emit.in_shapes[0]), a["init"]), x)


def _global_maxpool_torch(emit, a, x):
    from .torch_ops import global_max_pool  # deferred for start-up: loads jsonschema, networkx, torch

    return emit.call(global_max_pool, x)


def _stochastic_depth_torch(emit, a, x):
    from .torch_ops import StochasticDepth  # deferred for start-up: loads jsonschema, networkx, torch

    return emit.module(StochasticDepth(a["p"], a["mode"]), x)  # a module, so .train()/.eval() switch it


# ---------------------------------------------------------------------------------------------------- layernorm
def _layernorm_infer(a, shapes):
    _axis(a, shapes)
    return [shapes[0]]


def _layernorm_params(a, shapes):
    if not a["affine"]:
        return {}
    size = shapes[0][_axis(a, shapes)]
    return {"weight": ParamSpec((size,)), "bias": ParamSpec((size,))}


def _layernorm_torch(emit, a, x):
    from .torch_ops import AxisLayerNorm  # deferred for start-up: loads jsonschema, networkx, torch

    ax = _axis(a, emit.in_shapes)
    return emit.module(AxisLayerNorm(emit.in_shapes[0][ax], ax + 1, a["eps"], a["affine"]), x)


def _layernorm_onnx(emit, a, x):
    shape = emit.in_shapes[0]
    ax = _axis(a, emit.in_shapes)
    axis, rank, size, eps, affine = ax + 1, len(shape) + 1, shape[ax], a["eps"], a["affine"]
    emit.composite("LayerNormalization", axes=[axis], epsilon=eps,
                   weight=f"{emit.name}.weight" if affine else None, bias=f"{emit.name}.bias" if affine else None)
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
    var = emit.op("ReduceMean", [emit.op("Mul", [centered, centered], suffix="square")], suffix="variance",
                  axes=[axis], keepdims=1)
    std = emit.op("Sqrt", [emit.op("Add", [var, _f32(emit, "epsilon", eps)], suffix="plus_epsilon")], suffix="std")
    if not affine:
        return emit.op("Div", [centered, std])
    along = tuple(size if i == ax else 1 for i in range(len(shape)))  # broadcasts along the axis
    y = emit.op("Mul", [emit.op("Div", [centered, std], suffix="normalized"), emit.param("weight", along)],
                suffix="scaled")
    return emit.op("Add", [y, emit.param("bias", along)])


# ---------------------------------------------------------------------------------------------------- the table
_AXIS = Arg("axis", "int", 1, lo=-4, hi=3, doc="NCHW axis")
_CEIL = Arg("ceil_mode", "bool", False)
_K = Arg("kernel", "pair", REQUIRED, lo=1, hi=MAX_KERNEL)
_S_POOL = Arg("stride", "pair", None, lo=1, hi=MAX_KERNEL)
_PAD_POOL = Arg("padding", "pair", 0, lo=0, hi=MAX_KERNEL)
_OUT = Arg("out", "int", REQUIRED, lo=1, hi=MAX_CHANNELS)
_ANY = (2, -1)


def _activation(name: str, fn: str, doc: str, onnx: Callable) -> OpDef:
    return OpDef(name, (), _same_shape, _unary(fn), doc=doc, to_onnx=onnx)


OPS: dict[str, OpDef] = {
    op.name: op
    for op in [
        OpDef(
            "conv2d",
            (
                _OUT,
                _K,
                Arg("stride", "pair", 1, lo=1, hi=MAX_KERNEL),
                Arg("padding", "padding", 0, lo=0, hi=MAX_KERNEL),
                Arg("dilation", "pair", 1, lo=1, hi=MAX_KERNEL),
                Arg("groups", "int", 1, lo=1, hi=MAX_CHANNELS),
                Arg("bias", "bool", True),
            ),
            _conv_infer, _conv_torch, prepare=_conv_prepare, params=_conv_params, macs=_conv_macs, to_onnx=_conv_onnx,
            doc="2-D convolution (grouped/depthwise, dilated; padding int, [h, w], [t, l, b, r], same, valid)",
        ),
        OpDef(
            "batchnorm",
            (Arg("eps", "float", 1e-5, lo=0, hi=1), Arg("momentum", "float", 0.1, lo=0, hi=1)),
            _bn_infer, _bn_torch, params=_bn_params, doc="batch normalisation over channels", to_onnx=_bn_onnx,
        ),
        _activation("relu", "relu", "max(x, 0)", _onnx_op("Relu")),
        _activation("relu6", "relu6", "min(max(x, 0), 6)", _relu6_onnx),
        _activation("sigmoid", "sigmoid", "1 / (1 + exp(-x))", _onnx_op("Sigmoid")),
        _activation("hardswish", "hardswish", "x * relu6(x + 3) / 6", _hardswish_onnx),
        _activation("silu", "silu", "x * sigmoid(x)", _silu_onnx),
        _activation("hardsigmoid", "hardsigmoid", "relu6(x + 3) / 6", _hardsigmoid_onnx),
        OpDef("gelu", (Arg("approximate", "str", "none", choices=("none", "tanh")),), _same_shape, _gelu_torch,
              doc="x * Phi(x), exact (erf) or its tanh approximation (PyTorch's two forms)", to_onnx=_gelu_onnx),
        OpDef("leaky_relu", (Arg("negative_slope", "float", 0.01),), _same_shape, _leaky_relu_torch,
              doc="x if x >= 0 else negative_slope * x",
              to_onnx=lambda emit, a, x: emit.op("LeakyRelu", [x], alpha=a["negative_slope"])),
        OpDef("elu", (Arg("alpha", "float", 1.0),), _same_shape, _elu_torch, doc="x if x > 0 else alpha (e^x - 1)",
              to_onnx=lambda emit, a, x: emit.op("Elu", [x], alpha=a["alpha"])),
        OpDef("prelu", (Arg("num_parameters", "int", 1, lo=1, hi=MAX_CHANNELS),), _same_shape, _prelu_torch,
              prepare=_prelu_prepare, params=lambda a, s: {"weight": ParamSpec((a["num_parameters"],))},
              doc="x if x >= 0 else weight * x, a learnable slope (one, or one per channel: nn.PReLU)",
              to_onnx=_prelu_onnx),
        OpDef("scale", (Arg("init", "float", 1.0, doc="the factors' initial value"),), _same_shape, _scale_torch,
              params=lambda a, s: {"weight": ParamSpec(_channel_shape(s[0]))},
              doc="x * weight, a learnable factor per channel ([C, 1, 1] or [F]; ConvNeXt's layer scale)",
              to_onnx=lambda emit, a, x: emit.op("Mul", [x, emit.param("weight")])),
        OpDef(
            "layernorm",
            (Arg("axis", "int", 1, lo=-4, hi=3, doc="NCHW axis normalized over"),
             Arg("eps", "float", 1e-5, lo=0, hi=1), Arg("affine", "bool", True)),
            _layernorm_infer, _layernorm_torch, params=_layernorm_params, to_onnx=_layernorm_onnx,
            doc="layer normalization over one axis (1: the channels, ConvNeXt's LayerNorm2d; -1: the last axis), "
                "learnable weight and bias of that axis' size",
        ),
        OpDef("identity", (), _same_shape, _identity_torch, doc="passes its input through",
              to_onnx=_onnx_op("Identity")),
        OpDef("add", (), _broadcast_infer, _nary("add"), arity=_ANY, doc="elementwise sum, broadcasting",
              to_onnx=_nary_onnx("Add")),
        OpDef("mul", (), _broadcast_infer, _nary("mul"), arity=_ANY, doc="elementwise product, broadcasting",
              to_onnx=_nary_onnx("Mul")),
        OpDef("concat", (_AXIS,), _concat_infer, _concat_torch, arity=_ANY, doc="concatenation along an axis",
              to_onnx=_concat_onnx),
        OpDef(
            "channel_shuffle", (Arg("groups", "int", REQUIRED, lo=1, hi=MAX_CHANNELS),),
            _shuffle_infer, lambda emit, a, x: emit.call(channel_shuffle, x, a["groups"]),
            doc="ShuffleNet channel shuffle", to_onnx=_shuffle_onnx,
        ),
        OpDef(
            "split",
            (Arg("parts", "int", None, lo=1, hi=MAX_CHANNELS), Arg("sizes", "ints", None, lo=1, hi=MAX_CHANNELS),
             _AXIS),
            _split_infer, _split_torch, prepare=_split_prepare, doc="split into parts; outputs id.0, id.1, ...",
            to_onnx=_split_onnx,
        ),
        OpDef(
            "maxpool", (_K, _S_POOL, _PAD_POOL, Arg("dilation", "pair", 1, lo=1, hi=MAX_KERNEL), _CEIL),
            _pool_infer, _maxpool_torch, prepare=_pool_prepare, doc="max pooling", to_onnx=_maxpool_onnx,
        ),
        OpDef(
            "avgpool", (_K, _S_POOL, _PAD_POOL, _CEIL, Arg("count_include_pad", "bool", True)),
            _pool_infer, _avgpool_torch, prepare=_pool_prepare, doc="average pooling", to_onnx=_avgpool_onnx,
        ),
        OpDef("global_avgpool", (), _gap_infer, _gap_torch, doc="mean over H and W, keeps [C, 1, 1]",
              to_onnx=_onnx_op("GlobalAveragePool")),
        OpDef("global_maxpool", (), _gap_infer, _global_maxpool_torch, doc="max over H and W, keeps [C, 1, 1]",
              to_onnx=_onnx_op("GlobalMaxPool")),
        OpDef(
            "adaptive_avgpool", (Arg("size", "pair", REQUIRED, lo=1, hi=MAX_SPATIAL),),
            _adaptive_infer, _adaptive_torch, doc="PyTorch's adaptive average pooling to a fixed size",
            to_onnx=_adaptive_onnx,
        ),
        OpDef("flatten", (), _flatten_infer, _flatten_torch, doc="flatten to [F] (from NCHW axis 1)",
              to_onnx=lambda emit, a, x: emit.op("Flatten", [x], axis=1)),
        OpDef(
            "linear",
            (_OUT, Arg("bias", "bool", True),
             Arg("axis", "int", None, lo=-4, hi=3, doc="1: over the channels of a [C, H, W] input, per position")),
            _linear_infer, _linear_torch, prepare=_linear_prepare, params=_linear_params,
            macs=lambda a, s, o: math.prod(o[0]) * s[0][0],
            doc="fully connected layer ([F] -> [out]; with axis 1: [C, H, W] -> [out, H, W], nn.Linear at every "
                "position, a 1x1 conv in ONNX)", to_onnx=_linear_onnx,
        ),
        OpDef("dropout", (Arg("p", "float", 0.5, lo=0, hi=1),), _same_shape, _dropout_torch, doc="dropout",
              to_onnx=lambda emit, a, x: x),  # inference graph: dropout is the identity, no node
        OpDef("stochastic_depth",
              (Arg("p", "float", REQUIRED, lo=0, hi=1), Arg("mode", "str", "row", choices=("row", "batch"))),
              _same_shape, _stochastic_depth_torch,
              doc="torchvision's stochastic depth: drops the whole input of a sample (row) or batch in training "
                  "with probability p; the identity at inference (no ONNX node)",
              to_onnx=lambda emit, a, x: x),
        OpDef("softmax", (_AXIS,), _softmax_infer, _softmax_torch, doc="softmax along an axis",
              to_onnx=_softmax_onnx),
    ]
}

# Ops that bind more than their first input to shape rules; single-input ops take exactly one.
MULTI_OUTPUT = {"split"}
