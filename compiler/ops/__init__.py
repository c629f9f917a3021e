"""THE op table: every op is defined once here, and everything else is derived from it.

An `OpDef` holds an op's arguments (types, defaults, limits), its shape rule, its parameters (shapes, which are
trainable), its MAC count, its PyTorch lowering and its ONNX lowering. The spec checker, the JSON Schema generator,
the IR, weight import and every lowering read this table; none of them re-describes an op. Later lowerings (the
integer reference) add their rule as one more field. The tensor, norm, spatial and attention ops are defined in this
package's modules of those names and join `OPS` here; `base` holds what every definition is made of.

Shapes are per sample (`(C, H, W)` or `(F,)`), the batch is implicit. Axes in arguments are NCHW axes (1 = C).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..errors import ShapeError
from .attention import ATTENTION_OPS
from .base import (
    MAX_CHANNELS,
    MAX_KERNEL,
    MAX_SPATIAL,
    REQUIRED,
    WINDOW_BIAS,
    WINDOW_DILATION,
    WINDOW_GROUPS,
    WINDOW_KERNEL,
    WINDOW_OUT,
    WINDOW_PADDING,
    WINDOW_STRIDE,
    Arg,
    Attrs,
    OnnxEmit,
    OnnxRule,
    OpDef,
    ParamSpec,
    Shape,
    TorchEmit,
    TorchRule,
    axis_of,
    check_rank,
    f32_const,
    same_shape,
    torch_modules,
)
from .norm import NORM_OPS
from .spatial import SPATIAL_OPS
from .tensor import TENSOR_OPS

__all__ = ["MAX_CHANNELS", "MAX_KERNEL", "MAX_SPATIAL", "OPS", "REQUIRED", "Arg", "OpDef", "ParamSpec", "Shape"]


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
def _conv_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    check_rank(shapes[0], 3, "conv2d")
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


def _conv_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    check_rank(shapes[0], 3, "conv2d")
    c, h, w = shapes[0]
    g = a["groups"]
    if c % g or a["out"] % g:
        raise ShapeError(f"groups={g} must divide both input channels {c} and output channels {a['out']}")
    t, l, b, r = a["pads"]
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
    return [(a["out"], _window_out(h, kh, sh, t, b, dh, False), _window_out(w, kw, sw, l, r, dw, False))]


def _conv_params(a: Attrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    kh, kw = a["kernel"]
    p = {"weight": ParamSpec((a["out"], a["in_channels"] // a["groups"], kh, kw))}
    if a["bias"]:
        p["bias"] = ParamSpec((a["out"],))
    return p


def _conv_macs(a: Attrs, shapes: list[Shape], outs: list[Shape]) -> int:
    kh, kw = a["kernel"]
    per_output: int = (a["in_channels"] // a["groups"]) * kh * kw
    return math.prod(outs[0]) * per_output


def _conv_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    t, l, b, r = a["pads"]
    symmetric = t == b and l == r
    if not symmetric:
        x = emit.call(F.pad, x, (l, r, t, b))
    conv = nn.Conv2d(
        a["in_channels"],
        a["out"],
        a["kernel"],
        a["stride"],
        (t, l) if symmetric else 0,
        a["dilation"],
        a["groups"],
        a["bias"],
    )
    return emit.module(conv, x)


def _conv_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    inputs = [x, emit.param("weight")] + ([emit.param("bias")] if a["bias"] else [])
    return emit.op(
        "Conv",
        inputs,
        kernel_shape=list(a["kernel"]),
        strides=list(a["stride"]),
        pads=list(a["pads"]),
        dilations=list(a["dilation"]),
        group=a["groups"],
    )


# ---------------------------------------------------------------------------------------------------- batchnorm
def _bn_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    if len(shapes[0]) not in (1, 3):
        raise ShapeError(f"batchnorm expects [C, H, W] or [F], got {list(shapes[0])}")
    return [shapes[0]]


def _bn_params(a: Attrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    c = shapes[0][0]
    return {
        "weight": ParamSpec((c,)),
        "bias": ParamSpec((c,)),
        "running_mean": ParamSpec((c,), trainable=False),
        "running_var": ParamSpec((c,), trainable=False),
        "num_batches_tracked": ParamSpec((), trainable=False, dtype="int64"),
    }


def _bn_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    cls = nn.BatchNorm2d if len(emit.in_shapes[0]) == 3 else nn.BatchNorm1d
    return emit.module(cls(emit.in_shapes[0][0], eps=a["eps"], momentum=a["momentum"]), x)


def _bn_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    stats = [emit.param(k) for k in ("weight", "bias", "running_mean", "running_var")]
    return emit.op("BatchNormalization", [x, *stats], epsilon=a["eps"])


# ---------------------------------------------------------------------------------------------------- elementwise
def _unary(fn_name: str) -> TorchRule:
    def lower(emit: TorchEmit, a: Attrs, x: Any) -> Any:
        torch, nn, F = torch_modules()
        return emit.call(getattr(F, fn_name), x)

    return lower


def _onnx_op(op_type: str) -> OnnxRule:
    def lower(emit: OnnxEmit, a: Attrs, x: str) -> str:
        return emit.op(op_type, [x])

    return lower


def _relu6_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    return emit.clip(x, 0.0, 6.0)


def _hardswish_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    if emit.opset >= 14:
        return emit.op("HardSwish", [x])
    # x * relu6(x + 3) / 6 == x * HardSigmoid(x; alpha=1/6, beta=1/2) (HardSwish is opset 14)
    gate = emit.op("HardSigmoid", [x], suffix="hardsigmoid", alpha=1 / 6, beta=0.5)
    return emit.op("Mul", [x, gate])


def _silu_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    return emit.op("Mul", [x, emit.op("Sigmoid", [x], suffix="sigmoid")])


def _broadcast_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    out = list(shapes[0])
    for s in shapes[1:]:
        if len(s) != len(out):  # the batch axis is implicit: shapes of two ranks would align it with a sample axis
            raise ShapeError(
                f"shapes {[list(x) for x in shapes]} have different numbers of axes per sample; "
                "broadcasting takes size-1 axes of the same rank (reshape one to add them)"
            )
        for i, (p, q) in enumerate(zip(out, s)):
            if p != q and 1 not in (p, q):
                raise ShapeError(f"shapes {[list(x) for x in shapes]} do not broadcast (axis {i + 1}: {p} vs {q})")
            out[i] = max(p, q)
    return [tuple(out)]


def _nary(fn_name: str) -> TorchRule:
    def lower(emit: TorchEmit, a: Attrs, *xs: Any) -> Any:
        torch, nn, F = torch_modules()
        fn = getattr(torch, fn_name)
        out = xs[0]
        for x in xs[1:]:
            out = emit.call(fn, out, x)
        return out

    return lower


def _nary_onnx(op_type: str) -> OnnxRule:
    def lower(emit: OnnxEmit, a: Attrs, *xs: str) -> str:
        out = xs[0]
        for k, x in enumerate(xs[1:], 1):  # a left fold of binary ops, as the PyTorch lowering; the last is the node
            last = k == len(xs) - 1
            out = emit.op(op_type, [out, x], suffix=None if last else f"{op_type.lower()}{k}")
        return out

    return lower


def _concat_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    ax = axis_of(a, shapes)
    first = shapes[0]
    for s in shapes[1:]:
        if len(s) != len(first) or any(p != q for i, (p, q) in enumerate(zip(first, s)) if i != ax):
            raise ShapeError(
                f"concat along axis {ax + 1} needs equal other dimensions, got {[list(x) for x in shapes]}"
            )
    return [tuple(sum(s[ax] for s in shapes) if i == ax else d for i, d in enumerate(first))]


def _concat_torch(emit: TorchEmit, a: Attrs, *xs: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(torch.cat, list(xs), a["axis"])


def _concat_onnx(emit: OnnxEmit, a: Attrs, *xs: str) -> str:
    return emit.op("Concat", list(xs), axis=axis_of(a, emit.in_shapes) + 1)


def channel_shuffle(x: Any, groups: int) -> Any:
    """ShuffleNet's shuffle written with view/transpose so torch.compile and exporters see plain ops."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _shuffle_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    c, h, w = emit.in_shapes[0]
    g = a["groups"]
    x = emit.op("Reshape", [x, emit.const("shape5", [-1, g, c // g, h, w])], suffix="reshape")
    x = emit.op("Transpose", [x], suffix="transpose", perm=[0, 2, 1, 3, 4])
    return emit.op("Reshape", [x, emit.const("shape4", [-1, c, h, w])])


def _shuffle_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    check_rank(shapes[0], 3, "channel_shuffle")
    if shapes[0][0] % a["groups"]:
        raise ShapeError(f"groups={a['groups']} does not divide {shapes[0][0]} channels")
    return [shapes[0]]


def _split_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    ax = axis_of(a, shapes)
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


def _split_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    ax = axis_of(a, shapes)
    return [tuple(n if i == ax else d for i, d in enumerate(shapes[0])) for n in a["split_sizes"]]


def _split_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    parts = emit.call(torch.split, x, list(a["split_sizes"]), a["axis"])
    return [emit.getitem(parts, i) for i in range(len(a["split_sizes"]))]


def _split_onnx(emit: OnnxEmit, a: Attrs, x: str) -> list[str]:
    axis, sizes, n = axis_of(a, emit.in_shapes) + 1, list(a["split_sizes"]), len(a["split_sizes"])
    if emit.opset >= 13:  # split sizes became an input in opset 13
        return emit.op("Split", [x, emit.const("split", sizes)], outputs=n, axis=axis)
    return emit.op("Split", [x], outputs=n, axis=axis, split=sizes)


# ---------------------------------------------------------------------------------------------------- pooling
def _pool_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    return {**a, "stride": a["stride"] if a["stride"] is not None else a["kernel"]}


def _pool_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    check_rank(shapes[0], 3, "pooling")
    c, h, w = shapes[0]
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    if ph * 2 > kh or pw * 2 > kw:
        raise ShapeError(f"padding {[ph, pw]} must be at most half the kernel {[kh, kw]}")
    dh, dw = a.get("dilation", (1, 1))
    ceil = a["ceil_mode"]
    return [(c, _window_out(h, kh, sh, ph, ph, dh, ceil), _window_out(w, kw, sw, pw, pw, dw, ceil))]


def _maxpool_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(F.max_pool2d, x, a["kernel"], a["stride"], a["padding"], a["dilation"], ceil_mode=a["ceil_mode"])


def _avgpool_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(
        F.avg_pool2d,
        x,
        a["kernel"],
        a["stride"],
        a["padding"],
        ceil_mode=a["ceil_mode"],
        count_include_pad=a["count_include_pad"],
    )


def _pool_onnx_geometry(emit: OnnxEmit, a: Attrs) -> tuple[list[int], int, bool]:
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
    naive = tuple(
        -(-(n + 2 * p - d * (k - 1) - 1) // s) + 1 for n, p, d, k, s in ((h, ph, dh, kh, sh), (w, pw, dw, kw, sw))
    )
    if (oh, ow) == naive and emit.opset >= 10:
        return pads, 1, False
    ends = [
        (o - 1) * s + d * (k - 1) + 1 - n - p for o, s, d, k, n, p in ((oh, sh, dh, kh, h, ph), (ow, sw, dw, kw, w, pw))
    ]
    return [ph, pw, max(ends[0], ph), max(ends[1], pw)], 0, True


def _maxpool_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    pads, ceil, _ = _pool_onnx_geometry(emit, a)
    attrs: dict[str, Any] = {"kernel_shape": list(a["kernel"]), "strides": list(a["stride"]), "pads": pads}
    if ceil:
        attrs["ceil_mode"] = 1
    if tuple(a["dilation"]) != (1, 1):
        emit.require(10, "dilation")
        attrs["dilations"] = list(a["dilation"])
    out: str = emit.op("MaxPool", [x], **attrs)  # (an attrs dict of Any leaves the overload to pick open)
    return out


def _avgpool_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    pads, ceil, extended = _pool_onnx_geometry(emit, a)
    attrs: dict[str, Any] = {"kernel_shape": list(a["kernel"]), "strides": list(a["stride"])}
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
    out: str = emit.op("AveragePool", [x], pads=pads, count_include_pad=int(include), **attrs)
    return out


def _gap_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    check_rank(shapes[0], 3, "global_avgpool")
    return [(shapes[0][0], 1, 1)]


def _gap_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(torch.mean, x, (2, 3), keepdim=True)


def _adaptive_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    check_rank(shapes[0], 3, "adaptive_avgpool")
    return [(shapes[0][0], *a["size"])]


def _adaptive_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(F.adaptive_avg_pool2d, x, a["size"])


def _adaptive_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
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
def _linear_axis(a: Attrs, shape: Shape) -> int:
    """The per-sample axis a linear layer applies over: [F]'s only axis, the channels of [C, H, W], or the last."""
    if a["axis"] is None:
        if len(shape) != 1:
            raise ShapeError(
                f"linear expects a [F] input, got {list(shape)} (`axis: 1` applies it over the "
                "channels of a [C, H, W] input at every position, `axis: -1` over the last axis)"
            )
        return 0
    ax = axis_of(a, [shape])
    if ax != len(shape) - 1 and not (ax == 0 and len(shape) == 3):
        raise ShapeError(
            f"linear applies over the channels of a [C, H, W] input (axis: 1) or over the last axis "
            f"(axis: -1), not over axis {a['axis']} of {list(shape)}",
            "axis",
        )
    return ax


def _linear_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    _linear_axis(a, shapes[0])
    return a


def _linear_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    ax = _linear_axis(a, shapes[0])
    return [tuple(a["out"] if i == ax else d for i, d in enumerate(shapes[0]))]


def _linear_params(a: Attrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    p = {"weight": ParamSpec((a["out"], shapes[0][_linear_axis(a, shapes[0])]))}
    if a["bias"]:
        p["bias"] = ParamSpec((a["out"],))
    return p


def _linear_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    shape = emit.in_shapes[0]
    ax, c_in = _linear_axis(a, shape), shape[_linear_axis(a, shape)]
    if len(shape) == 3 and ax == 0:  # over the channels at every position: a 1x1 conv with the same parameters
        inputs = [x, emit.param("weight", (a["out"], c_in, 1, 1))] + ([emit.param("bias")] if a["bias"] else [])
        return emit.op("Conv", inputs, kernel_shape=[1, 1])
    if len(shape) > 1:  # over the last axis of tokens: rows [N ..., in] through one Gemm, the same parameters
        rows = emit.op("Reshape", [x, emit.const("rows_shape", [-1, c_in])], suffix="rows")
        inputs = [rows, emit.param("weight")] + ([emit.param("bias")] if a["bias"] else [])
        if not a["bias"] and emit.opset < 11:
            inputs.append(emit.const("zero_bias", [0.0] * a["out"], "float32"))
        product = emit.op("Gemm", inputs, suffix="gemm", transB=1)
        return emit.op("Reshape", [product, emit.const("shape", [-1, *emit.out_shapes[0]])])
    inputs = [x, emit.param("weight")]
    if a["bias"]:
        inputs.append(emit.param("bias"))
    elif emit.opset < 11:  # Gemm's C is optional from opset 11
        inputs.append(emit.const("zero_bias", [0.0] * a["out"], "float32"))
    return emit.op("Gemm", inputs, transB=1)


def _linear_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    shape = emit.in_shapes[0]
    ax = _linear_axis(a, shape)
    if ax != len(shape) - 1:
        from ..torch_ops import ChannelLinear  # deferred for start-up: loads jsonschema, networkx, torch

        return emit.module(ChannelLinear(shape[ax], a["out"], a["bias"]), x)
    return emit.module(nn.Linear(shape[ax], a["out"], a["bias"]), x)


def _dropout_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.module(nn.Dropout(a["p"]), x)  # a module, so .train()/.eval() switch it


def _softmax_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    axis_of(a, shapes)
    return [shapes[0]]


def _softmax_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(torch.softmax, x, a["axis"])


def _softmax_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    rank = len(emit.in_shapes[0]) + 1
    axis = axis_of(a, emit.in_shapes) + 1
    if emit.opset >= 13 or axis == rank - 1:
        return emit.op("Softmax", [x], axis=axis)
    # Before opset 13 Softmax flattens everything from `axis` on: move the axis last, softmax it, move it back.
    perm = [i for i in range(rank) if i != axis] + [axis]
    inverse = [perm.index(i) for i in range(rank)]
    x = emit.op("Transpose", [x], suffix="to_last", perm=perm)
    x = emit.op("Softmax", [x], suffix="softmax", axis=rank - 1)
    return emit.op("Transpose", [x], perm=inverse)


def _identity_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    return x


# ---------------------------------------------------------------------------------------------------- more activations
def _hardsigmoid_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    return emit.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)  # relu6(x + 3) / 6 == clip(x / 6 + 1 / 2, 0, 1)


def _gelu_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(F.gelu, x, approximate=a["approximate"])


def _gelu_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    approximate = a["approximate"]
    emit.composite("Gelu", approximate=approximate)
    if emit.opset >= 20:
        return emit.op("Gelu", [x], approximate=approximate)
    if approximate == "none":  # x / 2 (1 + erf(x / sqrt 2)), as PyTorch writes it
        t = emit.op("Div", [x, f32_const(emit, "sqrt2", math.sqrt(2.0))], suffix="scaled")
        t = emit.op("Erf", [t], suffix="erf")
    else:  # x / 2 (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))); x^3 as products (not every NPU has Pow)
        cube = emit.op("Mul", [emit.op("Mul", [x, x], suffix="square"), x], suffix="cube")
        t = emit.op(
            "Add", [x, emit.op("Mul", [cube, f32_const(emit, "coefficient", 0.044715)], suffix="cubic")], suffix="inner"
        )
        t = emit.op("Mul", [t, f32_const(emit, "sqrt_2_over_pi", math.sqrt(2.0 / math.pi))], suffix="scaled")
        t = emit.op("Tanh", [t], suffix="tanh")
    t = emit.op("Add", [t, f32_const(emit, "one", 1.0)], suffix="plus_one")
    # x * (the gate): a last Mul by a constant would be folded into a following conv by onnxsim
    return emit.op("Mul", [x, emit.op("Mul", [t, f32_const(emit, "half", 0.5)], suffix="gate")])


def _leaky_relu_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(F.leaky_relu, x, a["negative_slope"])


def _elu_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(F.elu, x, a["alpha"])


def _channel_shape(shape: Shape) -> Shape:
    """A per-channel parameter's shape that broadcasts along the other per-sample axes: [C, 1, 1] or [F]."""
    return (shape[0], *[1] * (len(shape) - 1))


def _prelu_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    c, n = shapes[0][0], a["num_parameters"]
    if n not in (1, c):
        raise ShapeError(f"num_parameters={n} must be 1 (one slope) or the input's {c} channels", "num_parameters")
    return a


def _prelu_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.module(nn.PReLU(a["num_parameters"]), x)


def _prelu_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    slope = emit.param("weight", (a["num_parameters"], *[1] * (len(emit.in_shapes[0]) - 1)))  # along the channels
    return emit.op("PRelu", [x, slope])


def _scale_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    from ..torch_ops import Scale  # deferred for start-up: loads jsonschema, networkx, torch

    return emit.module(Scale(_channel_shape(emit.in_shapes[0]), a["init"]), x)


def _global_maxpool_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    from ..torch_ops import global_max_pool  # deferred for start-up: loads jsonschema, networkx, torch

    return emit.call(global_max_pool, x)


def _stochastic_depth_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    from ..torch_ops import StochasticDepth  # deferred for start-up: loads jsonschema, networkx, torch

    return emit.module(StochasticDepth(a["p"], a["mode"]), x)  # a module, so .train()/.eval() switch it


# ---------------------------------------------------------------------------------------------------- the table
_AXIS = Arg("axis", "int", 1, lo=-8, hi=8, doc="NCHW axis")
_CEIL = Arg("ceil_mode", "bool", False)
_K = WINDOW_KERNEL
_S_POOL = Arg("stride", "pair", None, lo=1, hi=MAX_KERNEL)
_PAD_POOL = Arg("padding", "pair", 0, lo=0, hi=MAX_KERNEL)
_OUT = WINDOW_OUT
_ANY = (2, -1)


def _activation(name: str, fn: str, doc: str, onnx: Callable) -> OpDef:
    return OpDef(name, (), same_shape, _unary(fn), doc=doc, to_onnx=onnx)


OPS: dict[str, OpDef] = {
    op.name: op
    for op in [
        OpDef(
            "conv2d",
            (
                WINDOW_OUT,
                WINDOW_KERNEL,
                WINDOW_STRIDE,
                WINDOW_PADDING,
                WINDOW_DILATION,
                WINDOW_GROUPS,
                WINDOW_BIAS,
            ),
            _conv_infer,
            _conv_torch,
            prepare=_conv_prepare,
            params=_conv_params,
            macs=_conv_macs,
            to_onnx=_conv_onnx,
            doc="2-D convolution (grouped/depthwise, dilated; padding int, [h, w], [t, l, b, r], same, valid)",
        ),
        OpDef(
            "batchnorm",
            (Arg("eps", "float", 1e-5, lo=0, hi=1), Arg("momentum", "float", 0.1, lo=0, hi=1)),
            _bn_infer,
            _bn_torch,
            params=_bn_params,
            doc="batch normalisation over channels",
            to_onnx=_bn_onnx,
        ),
        _activation("relu", "relu", "max(x, 0)", _onnx_op("Relu")),
        _activation("relu6", "relu6", "min(max(x, 0), 6)", _relu6_onnx),
        _activation("sigmoid", "sigmoid", "1 / (1 + exp(-x))", _onnx_op("Sigmoid")),
        _activation("tanh", "tanh", "tanh(x)", _onnx_op("Tanh")),
        _activation("hardswish", "hardswish", "x * relu6(x + 3) / 6", _hardswish_onnx),
        _activation("silu", "silu", "x * sigmoid(x)", _silu_onnx),
        _activation("hardsigmoid", "hardsigmoid", "relu6(x + 3) / 6", _hardsigmoid_onnx),
        OpDef(
            "gelu",
            (Arg("approximate", "str", "none", choices=("none", "tanh")),),
            same_shape,
            _gelu_torch,
            doc="x * Phi(x), exact (erf) or its tanh approximation (PyTorch's two forms)",
            to_onnx=_gelu_onnx,
        ),
        OpDef(
            "leaky_relu",
            (Arg("negative_slope", "float", 0.01),),
            same_shape,
            _leaky_relu_torch,
            doc="x if x >= 0 else negative_slope * x",
            to_onnx=lambda emit, a, x: emit.op("LeakyRelu", [x], alpha=a["negative_slope"]),
        ),
        OpDef(
            "elu",
            (Arg("alpha", "float", 1.0),),
            same_shape,
            _elu_torch,
            doc="x if x > 0 else alpha (e^x - 1)",
            to_onnx=lambda emit, a, x: emit.op("Elu", [x], alpha=a["alpha"]),
        ),
        OpDef(
            "prelu",
            (Arg("num_parameters", "int", 1, lo=1, hi=MAX_CHANNELS),),
            same_shape,
            _prelu_torch,
            prepare=_prelu_prepare,
            params=lambda a, s: {"weight": ParamSpec((a["num_parameters"],))},
            doc="x if x >= 0 else weight * x, a learnable slope (one, or one per channel: nn.PReLU)",
            to_onnx=_prelu_onnx,
        ),
        OpDef(
            "scale",
            (Arg("init", "float", 1.0, doc="the factors' initial value"),),
            same_shape,
            _scale_torch,
            params=lambda a, s: {"weight": ParamSpec(_channel_shape(s[0]))},
            doc="x * weight, a learnable factor per channel ([C, 1, 1] or [F]; ConvNeXt's layer scale)",
            to_onnx=lambda emit, a, x: emit.op("Mul", [x, emit.param("weight")]),
        ),
        OpDef(
            "identity", (), same_shape, _identity_torch, doc="passes its input through", to_onnx=_onnx_op("Identity")
        ),
        OpDef(
            "add",
            (),
            _broadcast_infer,
            _nary("add"),
            arity=_ANY,
            doc="elementwise sum, broadcasting",
            to_onnx=_nary_onnx("Add"),
        ),
        OpDef(
            "mul",
            (),
            _broadcast_infer,
            _nary("mul"),
            arity=_ANY,
            doc="elementwise product, broadcasting",
            to_onnx=_nary_onnx("Mul"),
        ),
        OpDef(
            "sub",
            (),
            _broadcast_infer,
            _nary("sub"),
            arity=(2, 2),
            doc="elementwise difference a - b, broadcasting",
            to_onnx=_nary_onnx("Sub"),
        ),
        OpDef(
            "div",
            (),
            _broadcast_infer,
            _nary("div"),
            arity=(2, 2),
            doc="elementwise quotient a / b, broadcasting",
            to_onnx=_nary_onnx("Div"),
        ),
        OpDef(
            "concat",
            (_AXIS,),
            _concat_infer,
            _concat_torch,
            arity=_ANY,
            doc="concatenation along an axis",
            to_onnx=_concat_onnx,
        ),
        OpDef(
            "channel_shuffle",
            (Arg("groups", "int", REQUIRED, lo=1, hi=MAX_CHANNELS),),
            _shuffle_infer,
            lambda emit, a, x: emit.call(channel_shuffle, x, a["groups"]),
            doc="ShuffleNet channel shuffle",
            to_onnx=_shuffle_onnx,
        ),
        OpDef(
            "split",
            (
                Arg("parts", "int", None, lo=1, hi=MAX_CHANNELS),
                Arg("sizes", "ints", None, lo=1, hi=MAX_CHANNELS),
                _AXIS,
            ),
            _split_infer,
            _split_torch,
            prepare=_split_prepare,
            doc="split into parts; outputs id.0, id.1, ...",
            to_onnx=_split_onnx,
        ),
        OpDef(
            "maxpool",
            (_K, _S_POOL, _PAD_POOL, Arg("dilation", "pair", 1, lo=1, hi=MAX_KERNEL), _CEIL),
            _pool_infer,
            _maxpool_torch,
            prepare=_pool_prepare,
            doc="max pooling",
            to_onnx=_maxpool_onnx,
        ),
        OpDef(
            "avgpool",
            (_K, _S_POOL, _PAD_POOL, _CEIL, Arg("count_include_pad", "bool", True)),
            _pool_infer,
            _avgpool_torch,
            prepare=_pool_prepare,
            doc="average pooling",
            to_onnx=_avgpool_onnx,
        ),
        OpDef(
            "global_avgpool",
            (),
            _gap_infer,
            _gap_torch,
            doc="mean over H and W, keeps [C, 1, 1]",
            to_onnx=_onnx_op("GlobalAveragePool"),
        ),
        OpDef(
            "global_maxpool",
            (),
            _gap_infer,
            _global_maxpool_torch,
            doc="max over H and W, keeps [C, 1, 1]",
            to_onnx=_onnx_op("GlobalMaxPool"),
        ),
        OpDef(
            "adaptive_avgpool",
            (Arg("size", "pair", REQUIRED, lo=1, hi=MAX_SPATIAL),),
            _adaptive_infer,
            _adaptive_torch,
            doc="PyTorch's adaptive average pooling to a fixed size",
            to_onnx=_adaptive_onnx,
        ),
        OpDef(
            "linear",
            (
                _OUT,
                Arg("bias", "bool", True),
                Arg(
                    "axis",
                    "int",
                    None,
                    lo=-8,
                    hi=8,
                    doc="1: over the channels of a [C, H, W] input, per position; -1: the last axis",
                ),
            ),
            _linear_infer,
            _linear_torch,
            prepare=_linear_prepare,
            params=_linear_params,
            macs=lambda a, s, o: math.prod(o[0]) * s[0][_linear_axis(a, s[0])],
            doc="fully connected layer ([F] -> [out]; with axis 1: [C, H, W] -> [out, H, W], nn.Linear at every "
            "position, a 1x1 conv in ONNX; with axis -1: over the last axis of tokens, [S, D] -> [S, out])",
            to_onnx=_linear_onnx,
        ),
        OpDef(
            "dropout",
            (Arg("p", "float", 0.5, lo=0, hi=1),),
            same_shape,
            _dropout_torch,
            doc="dropout",
            to_onnx=lambda emit, a, x: x,
        ),  # inference graph: dropout is the identity, no node
        OpDef(
            "stochastic_depth",
            (Arg("p", "float", REQUIRED, lo=0, hi=1), Arg("mode", "str", "row", choices=("row", "batch"))),
            same_shape,
            _stochastic_depth_torch,
            doc="torchvision's stochastic depth: drops the whole input of a sample (row) or batch in training "
            "with probability p; the identity at inference (no ONNX node)",
            to_onnx=lambda emit, a, x: x,
        ),
        OpDef("softmax", (_AXIS,), _softmax_infer, _softmax_torch, doc="softmax along an axis", to_onnx=_softmax_onnx),
        *NORM_OPS,
        *SPATIAL_OPS,
        *ATTENTION_OPS,
        *TENSOR_OPS,
    ]
}

# Ops that bind more than their first input to shape rules; single-input ops take exactly one.
MULTI_OUTPUT = {"split"}
