"""The op table's spatial ops of dense prediction: resize (nearest, bilinear and bicubic, ONNX's coordinate and
rounding modes), transposed convolution and explicit padding (constant, reflect, edge).

Resize is computed everywhere from one definition of its sampling, `resize_axis`: per output row (or column) the
input rows it reads and the weight of the second, exactly as ONNX Runtime's Resize computes them in float32. The
PyTorch lowering gathers by those tables (so training, the ONNX form and every INT8 interpreter agree on which
input element each output reads), and a nearest resize in an INT8 graph is the same gather of codes.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ..errors import ShapeError
from .base import (
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
    OpDef,
    ParamSpec,
    Shape,
    TorchEmit,
    torch_modules,
)

if TYPE_CHECKING:
    import numpy as np

RESIZE_MODES = ("nearest", "bilinear", "bicubic")
CUBIC_COEFF_A = -0.75  # ONNX's default cubic_coeff_a, and PyTorch's bicubic (TensorFlow's is -0.5)
COORDINATES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST_MODES = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")


# ---------------------------------------------------------------------------------------------------- resize
def source_coordinates(in_size: int, out_size: int, scale: float, coordinates: str) -> np.ndarray:
    """ONNX Resize's coordinate transformation: the input coordinate of each output position (`scale`: out / in,
    or the scale the model states, a float32). In float64: that is what equals ONNX Runtime's indices where a
    coordinate lands on a half (x / (16 / 7) at x = 8 is 3.5, not float32's 3.4999998)."""
    import numpy as np  # deferred: the op table loads without numpy (tcc.backends.tvm.runtime)

    x = np.arange(out_size, dtype=np.float64)
    if coordinates == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if coordinates == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_size > 1 else np.zeros(1)
    if coordinates == "align_corners":
        return x * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros(1)
    if coordinates == "asymmetric":
        return x / scale
    raise AssertionError(coordinates)


def nearest_indices(in_size: int, out_size: int, scale: float, coordinates: str, rounding: str) -> np.ndarray:
    """The input index each output position of a nearest resize reads (int64), clamped to the input."""
    import numpy as np  # deferred: the op table loads without numpy (tcc.backends.tvm.runtime)

    c = source_coordinates(in_size, out_size, scale, coordinates)
    if rounding == "floor":
        i = np.floor(c)
    elif rounding == "ceil":
        i = np.ceil(c)
    else:
        half = c - np.floor(c) == 0.5
        i = np.where(half, np.floor(c) if rounding == "round_prefer_floor" else np.ceil(c), np.round(c))
    indices: np.ndarray = np.clip(i, 0, in_size - 1).astype(np.int64)
    return indices


def linear_taps(in_size: int, out_size: int, scale: float, coordinates: str) -> tuple[np.ndarray, np.ndarray, Any]:
    """A linear resize along one axis: (i0, i1, w), each output = in[i0] * (1 - w) + in[i1] * w; the coordinate
    clamped to [0, in - 1] first, as ONNX Runtime's bilinear kernel does."""
    import numpy as np  # deferred: the op table loads without numpy (tcc.backends.tvm.runtime)

    c = np.clip(source_coordinates(in_size, out_size, scale, coordinates), 0, in_size - 1)
    i0 = np.floor(c).astype(np.int64)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (c - i0).astype(np.float32)


def cubic_taps(
    in_size: int, out_size: int, scale: float, coordinates: str, a: float = CUBIC_COEFF_A, exclude_outside: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A cubic resize along one axis as ONNX Runtime computes it: (taps [out, 4] int64, weights [out, 4] float32),
    each output = sum_k in[taps[k]] * weights[k]. The coordinate c (not clamped, unlike the linear one) reads the
    rows floor(c) - 1 .. floor(c) + 2, clamped to the input (its edge repeated), weighted by Keys' kernel with
    coefficient `a` at their distances; `exclude_outside` gives the rows outside the input weight 0 and renormalizes
    the rest. PyTorch's bicubic is a = -0.75 with half_pixel (or align_corners), exclude_outside off."""
    import numpy as np  # deferred: the op table loads without numpy (tcc.backends.tvm.runtime)

    c = source_coordinates(in_size, out_size, scale, coordinates)
    first = np.floor(c)
    s = c - first
    rows = first[:, None].astype(np.int64) + np.arange(-1, 3)
    d = np.abs(s[:, None] - np.arange(-1, 3))  # each row's distance from c
    near = ((a + 2) * d - (a + 3)) * d * d + 1  # |d| <= 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a  # 1 < |d| < 2
    weights = np.where(d <= 1, near, np.where(d < 2, far, 0.0))
    if exclude_outside:
        weights = np.where((rows < 0) | (rows >= in_size), 0.0, weights)
        weights = weights / weights.sum(axis=1, keepdims=True)
    return np.clip(rows, 0, in_size - 1), weights.astype(np.float32)


def linear_rational(in_size: int, out_size: int, scale: Fraction, coordinates: str) -> dict[str, Any]:
    """A linear resize along one axis in exact integers, the INT8 kinds' form: output = (in[i0] (d - r) + in[i1] r)
    / d, the coordinate N / d as a fraction (`scale`: the exact out / in, or the stated float32 scale as the
    fraction it is). The taps and weights of `linear_taps`, without its float rounding."""
    import numpy as np  # deferred: the op table loads without numpy (tcc.backends.tvm.runtime)

    y = np.arange(out_size, dtype=np.int64)
    if coordinates == "align_corners" or (coordinates == "pytorch_half_pixel" and out_size == 1):
        step = Fraction(in_size - 1, out_size - 1) if out_size > 1 and coordinates == "align_corners" else Fraction(0)
        num, d = y * step.numerator, step.denominator
    elif coordinates == "asymmetric":  # y / s
        num, d = y * scale.denominator, scale.numerator
    else:  # half_pixel: (y + 1/2) / s - 1/2 = ((2y + 1) b - a) / (2a) for s = a / b
        num, d = (2 * y + 1) * scale.denominator - scale.numerator, 2 * scale.numerator
    i = np.floor_divide(num, d)
    return {
        "i0": np.clip(i, 0, in_size - 1).tolist(),
        "i1": np.clip(i + 1, 0, in_size - 1).tolist(),
        "r": (num - i * d).tolist(),
        "d": int(d),
    }


def linear_denominator(in_size: int, out_size: int, coordinates: str) -> int:
    """`linear_rational`'s d for a resize to a size (the scale out / in)."""
    return int(linear_rational(in_size, out_size, Fraction(out_size, in_size), coordinates)["d"])


def resize_axis(a: Attrs, axis: int) -> dict[str, Any]:
    """The sampling of one spatial axis (0: H, 1: W) of a prepared resize: its sizes, scale and tables."""
    n_in, n_out, scale = a["in_hw"][axis], a["out_hw"][axis], a["scales"][axis]
    if a["mode"] == "nearest":
        return {"index": nearest_indices(n_in, n_out, scale, a["coordinates"], a["nearest_mode"])}
    if a["mode"] == "bicubic":
        taps, weights = cubic_taps(n_in, n_out, scale, a["coordinates"], a["cubic_coeff_a"], a["exclude_outside"])
        return {"taps": taps, "weights": weights}
    i0, i1, w = linear_taps(n_in, n_out, scale, a["coordinates"])
    return {"i0": i0, "i1": i1, "w": w}


def _resize_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    import numpy as np  # deferred: the op table loads without numpy (tcc.backends.tvm.runtime)

    if len(shapes[0]) != 3:
        raise ShapeError(f"resize expects a [C, H, W] input, got {list(shapes[0])}")
    _, h, w = shapes[0]
    given = [k for k in ("scale", "size") if a[k] is not None] + (["like"] if len(shapes) > 1 else [])
    if len(given) != 1:
        raise ShapeError(
            "resize needs exactly one of `scale`, `size` or a second input whose size it takes"
            + (f" (got {' and '.join(given)})" if given else ""),
            "scale",
        )
    if a["scale"] is not None:  # ONNX: the output is floor(in * scale), the coordinates use the scale as given
        scales = tuple(float(np.float32(s)) for s in a["scale"])
        out = (math.floor(h * scales[0]), math.floor(w * scales[1]))
    else:
        if len(shapes) > 1 and len(shapes[1]) != 3:
            raise ShapeError(f"resize to the size of a [C, H, W] input, got {list(shapes[1])}")
        out = (a["size"][0], a["size"][1]) if a["size"] is not None else (shapes[1][-2], shapes[1][-1])
        scales = (out[0] / h, out[1] / w)
    if min(out) < 1 or max(out) > MAX_SPATIAL:
        raise ShapeError(f"resize of {h}x{w} gives {out[0]}x{out[1]}: each side must be 1 to {MAX_SPATIAL}")
    if a["mode"] != "nearest" and a["nearest_mode"] != "floor":
        raise ShapeError("nearest_mode applies to mode nearest only", "nearest_mode")
    for arg, default in (("cubic_coeff_a", CUBIC_COEFF_A), ("exclude_outside", False)):
        if a["mode"] != "bicubic" and a[arg] != default:
            raise ShapeError(f"{arg} applies to mode bicubic only", arg)
    return {**a, "in_hw": (h, w), "out_hw": out, "scales": scales}


def _resize_torch(emit: TorchEmit, a: Attrs, x: Any, *like: Any) -> Any:
    from ..torch_ops import Resize  # deferred for start-up: loads torch

    return emit.module(Resize([resize_axis(a, 0), resize_axis(a, 1)]), x)


def _resize_onnx(emit: OnnxEmit, a: Attrs, x: str, *like: str) -> str:
    emit.require(11, "resize with ONNX's coordinate modes (Resize-11)")
    attrs: dict[str, Any] = {
        "mode": {"nearest": "nearest", "bilinear": "linear", "bicubic": "cubic"}[a["mode"]],
        "coordinate_transformation_mode": a["coordinates"],
    }
    if a["mode"] == "nearest":
        attrs["nearest_mode"] = a["nearest_mode"]
    if a["mode"] == "bicubic":
        attrs["cubic_coeff_a"] = float(a["cubic_coeff_a"])
        attrs["exclude_outside"] = int(a["exclude_outside"])
    # roi and (with sizes) scales: absent from opset 13, empty tensors before (some readers take an empty scales
    # tensor for given scales: TVM's ONNX frontend)
    roi = "" if emit.opset >= 13 else emit.const("roi", [], "float32")
    out: str
    if a["scale"] is not None:
        out = emit.op("Resize", [x, roi, emit.const("scales", [1.0, 1.0, *a["scales"]], "float32")], **attrs)
        return out
    no_scales = "" if emit.opset >= 13 else emit.const("scales", [], "float32")
    if emit.opset >= 18:  # sizes of H and W alone (axes), the batch left free
        out = emit.op("Resize", [x, roi, no_scales, emit.const("sizes", list(a["out_hw"]))], axes=[2, 3], **attrs)
        return out
    # before opset 18 sizes names every axis: the batch read from the input (Shape -> Slice), as exporters write it
    batch = emit.op(
        "Slice",
        [emit.op("Shape", [x], suffix="shape"), emit.const("zero", [0]), emit.const("one", [1])],
        suffix="batch",
    )
    sizes = emit.op(
        "Concat", [batch, emit.const("sample_size", [emit.in_shapes[0][0], *a["out_hw"]])], suffix="sizes", axis=0
    )
    out = emit.op("Resize", [x, roi, no_scales, sizes], **attrs)
    return out


# ---------------------------------------------------------------------------------------------------- conv_transpose
def _numbers(padding: Any, what: str, arg: str) -> Any:
    if isinstance(padding, str):
        raise ShapeError(f"{what} takes its {arg} as numbers (int, [h, w] or [t, l, b, r]), not {padding!r}", arg)
    return padding


def _deconv_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    if len(shapes[0]) != 3:
        raise ShapeError(f"conv_transpose expects a [C, H, W] input, got {list(shapes[0])}")
    c = shapes[0][0]
    g = a["groups"]
    _numbers(a["padding"], "conv_transpose", "padding")
    if c % g or a["out"] % g:
        raise ShapeError(f"groups={g} must divide both input channels {c} and output channels {a['out']}", "groups")
    pad = a["padding"]
    pads = tuple(pad) if len(pad) == 4 else (pad[0], pad[1], pad[0], pad[1])
    for (s, d), op in zip(zip(a["stride"], a["dilation"]), a["output_padding"]):
        if op >= max(s, d):
            raise ShapeError(
                f"output_padding {list(a['output_padding'])} must be smaller than the stride or the dilation "
                f"({list(a['stride'])}, {list(a['dilation'])})",
                "output_padding",
            )
    return {**a, "pads": pads, "in_channels": c}


def _deconv_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    _, h, w = shapes[0]
    t, l, b, r = a["pads"]
    out = []
    for n, k, s, d, p, op in zip(
        (h, w), a["kernel"], a["stride"], a["dilation"], ((t, b), (l, r)), a["output_padding"]
    ):
        size = (n - 1) * s - p[0] - p[1] + d * (k - 1) + op + 1
        if size < 1:
            raise ShapeError(f"conv_transpose of a {h}x{w} input gives no output (padding {list(a['pads'])})")
        out.append(size)
    return [(a["out"], *out)]


def _deconv_params(a: Attrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    kh, kw = a["kernel"]
    p = {"weight": ParamSpec((a["in_channels"], a["out"] // a["groups"], kh, kw))}  # nn.ConvTranspose2d's layout
    if a["bias"]:
        p["bias"] = ParamSpec((a["out"],))
    return p


def _deconv_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    t, l, b, r = a["pads"]
    symmetric = (t, l) == (b, r)
    deconv = nn.ConvTranspose2d(
        a["in_channels"],
        a["out"],
        a["kernel"],
        a["stride"],
        (t, l) if symmetric else 0,
        a["output_padding"],
        a["groups"],
        a["bias"],
        a["dilation"],
    )
    y = emit.module(deconv, x)
    if symmetric:
        return y
    from ..torch_ops import crop  # deferred for start-up: loads torch

    return emit.call(crop, y, (t, l, b, r))  # the full output cropped by the pads, as ONNX's pads attribute does


def _deconv_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    inputs = [x, emit.param("weight")] + ([emit.param("bias")] if a["bias"] else [])
    attrs: dict[str, Any] = dict(
        kernel_shape=list(a["kernel"]),
        strides=list(a["stride"]),
        pads=list(a["pads"]),
        dilations=list(a["dilation"]),
        group=a["groups"],
    )
    if any(a["output_padding"]):
        attrs["output_padding"] = list(a["output_padding"])
    out: str = emit.op("ConvTranspose", inputs, **attrs)
    return out


def _deconv_macs(a: Attrs, shapes: list[Shape], outs: list[Shape]) -> int:
    kh, kw = a["kernel"]
    per_input: int = (a["out"] // a["groups"]) * kh * kw
    return math.prod(shapes[0]) * per_input  # every input element times its kernel


# ---------------------------------------------------------------------------------------------------- pad
PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}  # ONNX's mode -> PyTorch's


def _pad_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    if len(shapes[0]) != 3:
        raise ShapeError(f"pad expects a [C, H, W] input, got {list(shapes[0])}")
    p = _numbers(a["pads"], "pad", "pads")
    pads = tuple(p) if len(p) == 4 else (p[0], p[1], p[0], p[1])
    _, h, w = shapes[0]
    if a["mode"] == "reflect" and (max(pads[0], pads[2]) >= h or max(pads[1], pads[3]) >= w):
        raise ShapeError(f"reflect padding {list(pads)} must be smaller than the input's {h}x{w}", "pads")
    if a["mode"] != "constant" and a["value"] != 0.0:
        raise ShapeError(f"value applies to mode constant only, not {a['mode']}", "value")
    return {**a, "pads": pads}


def _pad_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    c, h, w = shapes[0]
    t, l, b, r = a["pads"]
    return [(c, h + t + b, w + l + r)]


def _pad_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    t, l, b, r = a["pads"]
    mode = PAD_MODES[a["mode"]]
    if mode == "constant":
        return emit.call(F.pad, x, (l, r, t, b), mode, a["value"])
    return emit.call(F.pad, x, (l, r, t, b), mode)


def _pad_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    emit.require(11, "pad with its pads as an input (Pad-11)")
    t, l, b, r = a["pads"]
    inputs = [x, emit.const("pads", [0, 0, t, l, 0, 0, b, r])]
    if a["mode"] == "constant" and a["value"] != 0.0:
        inputs.append(emit.const("value", a["value"], "float32"))
    return emit.op("Pad", inputs, mode=a["mode"])


# ---------------------------------------------------------------------------------------------------- the ops

SPATIAL_OPS = [
    OpDef(
        "resize",
        (
            Arg("mode", "str", "nearest", choices=RESIZE_MODES),
            Arg("scale", "float_pair", None, lo=1 / 64, hi=64, doc="factor of H and W (one number, or [h, w])"),
            Arg("size", "pair", None, lo=1, hi=MAX_SPATIAL, doc="the output's [H, W]"),
            Arg("coordinates", "str", "half_pixel", choices=COORDINATES, doc="ONNX's coordinate_transformation_mode"),
            Arg("nearest_mode", "str", "floor", choices=NEAREST_MODES, doc="ONNX's rounding of a nearest resize"),
            Arg("cubic_coeff_a", "float", CUBIC_COEFF_A, lo=-1, hi=0, doc="a bicubic resize's kernel coefficient"),
            Arg("exclude_outside", "bool", False, doc="a bicubic resize: rows outside the input weigh 0"),
        ),
        lambda a, s: [(s[0][0], *a["out_hw"])],
        _resize_torch,
        arity=(1, 2),
        prepare=_resize_prepare,
        to_onnx=_resize_onnx,
        doc="upsampling or downsampling of H and W, nearest, bilinear or bicubic, by `scale`, to `size`, or to the "
        "size of a second input; ONNX Resize's coordinate modes (PyTorch's bilinear and bicubic: half_pixel; "
        "align_corners=True: align_corners; its nearest: asymmetric with floor)",
    ),
    OpDef(
        "conv_transpose",
        (
            WINDOW_OUT,
            WINDOW_KERNEL,
            WINDOW_STRIDE,
            WINDOW_PADDING,  # int, [h, w] or [t, l, b, r]: cut from the full output (same / valid refused)
            Arg("output_padding", "pair", 0, lo=0, hi=MAX_KERNEL),
            WINDOW_DILATION,
            WINDOW_GROUPS,
            WINDOW_BIAS,
        ),
        _deconv_infer,
        _deconv_torch,
        prepare=_deconv_prepare,
        params=_deconv_params,
        macs=_deconv_macs,
        to_onnx=_deconv_onnx,
        doc="2-D transposed convolution (nn.ConvTranspose2d: weight [in, out / groups, kh, kw]; grouped, "
        "depthwise, dilated, output_padding; padding crops the full output)",
    ),
    OpDef(
        "pad",
        (
            Arg("pads", "padding", REQUIRED, lo=0, hi=MAX_SPATIAL, doc="int, [h, w] or [t, l, b, r]"),
            Arg("mode", "str", "constant", choices=tuple(PAD_MODES)),
            Arg("value", "float", 0.0, doc="the constant of mode constant"),
        ),
        _pad_infer,
        _pad_torch,
        prepare=_pad_prepare,
        to_onnx=_pad_onnx,
        doc="pads H and W: a constant, the reflection without the edge (reflect) or the edge repeated (edge; "
        "PyTorch's replicate)",
    ),
]
