"""ONNX converters of dense prediction's ops: Resize, ConvTranspose, Pad, InstanceNormalization and PRelu as the
spec's resize, conv_transpose, pad, instance_norm and prelu (tcc.ops.spatial, tcc.ops.norm), joined to
`CONVERTERS` in tcc.onnx_import.ops.

Each reads every form the exporters write (Resize's scales or sizes inputs, folded from the Shape arithmetic of
`F.interpolate(size=x.shape[-2:])`; Resize-18's axes; Pad's pads as an attribute or an input) and refuses the rest
by name: anti-aliased resizes, padding of the batch or channels, ConvTranspose's output_shape.
"""

from __future__ import annotations

import math

import numpy as np

from ..ops.spatial import COORDINATES, CUBIC_COEFF_A, NEAREST_MODES
from .nodes import OnnxNode, SpecNode, Unsupported, float_arg, pads_arg, pair_arg, weight_and_bias


def _text(value, default: str) -> str:
    value = default if value is None else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _spatial_values(node: OnnxNode, values: np.ndarray, what: str, unit) -> list:
    """A Resize's scales or sizes of [N, C, H, W] (or of its axes) as [h, w]; N and C must stay."""
    given: list = [unit(v) for v in np.asarray(values).reshape(-1)]
    axes = node.attr("axes")
    rank = len(node.shapes.get(node.proto.input[0], (0, 0, 0))) + 1
    if axes is not None:
        full: list = [None] * rank
        for a, v in zip(axes, given):
            full[a % rank] = v
        given = full
    if len(given) != 4:
        raise Unsupported(f"a resize of a rank-{len(given)} tensor (the spec's resize takes [N, C, H, W])")
    if what == "scales" and any(v not in (None, 1.0) for v in given[:2]):
        raise Unsupported(f"scales {given} resize the batch or the channels")
    return given[2:]


def _resize(node: OnnxNode) -> SpecNode:
    mode = _text(node.attr("mode"), "nearest")
    if mode not in ("nearest", "linear", "cubic"):
        raise Unsupported(f"mode {mode} (the spec's resize is nearest, bilinear or bicubic)")
    coordinates = _text(node.attr("coordinate_transformation_mode"), "half_pixel")
    if len(node.proto.input) == 2:  # Resize-10: (X, scales), asymmetric
        coordinates = "asymmetric"
    if coordinates not in COORDINATES:
        raise Unsupported(f"coordinate_transformation_mode {coordinates} (the spec's: {', '.join(COORDINATES)})")
    if node.attr("antialias", 0):
        raise Unsupported("an anti-aliased resize (antialias=1)")
    if _text(node.attr("keep_aspect_ratio_policy"), "stretch") != "stretch":
        raise Unsupported("keep_aspect_ratio_policy other than stretch")
    args: dict = {"linear": {"mode": "bilinear"}, "cubic": {"mode": "bicubic"}}.get(mode, {})
    if mode == "cubic":
        a = float_arg(float(node.attr("cubic_coeff_a", CUBIC_COEFF_A)))
        if a != CUBIC_COEFF_A:
            args["cubic_coeff_a"] = a
        if node.attr("exclude_outside", 0):
            args["exclude_outside"] = True
    scales_at, sizes_at = (1, None) if len(node.proto.input) == 2 else (2, 3)
    sizes = node.constant(sizes_at) if sizes_at is not None else None
    scales = node.constant(scales_at)
    if sizes is not None and sizes.size:
        h, w = (int(v) for v in _spatial_values(node, sizes, "sizes", int))
        args["size"] = h if h == w else [h, w]
    elif scales is not None and scales.size:
        sh, sw = (float_arg(v) for v in _spatial_values(node, scales, "scales", float))
        args["scale"] = sh if sh == sw else [sh, sw]
    else:
        raise Unsupported("its scales or sizes are computed, not constants")
    if coordinates != "half_pixel":
        args["coordinates"] = coordinates
    rounding = _text(node.attr("nearest_mode"), "round_prefer_floor")
    if mode == "nearest" and rounding != "floor":
        if rounding not in NEAREST_MODES:
            raise Unsupported(f"nearest_mode {rounding}")
        args["nearest_mode"] = rounding
    return SpecNode("resize", args)


def _conv_transpose(node: OnnxNode) -> SpecNode:
    w = node.constant(1)
    if w is None:
        raise Unsupported("its weight is computed, not a constant")
    if w.ndim != 4:
        raise Unsupported(f"a {w.ndim - 2}-D transposed convolution (2-D only)")
    if node.attr("output_shape") is not None:
        raise Unsupported("output_shape (export with pads and output_padding)")
    groups = int(node.attr("group", 1))
    _, per_group, kh, kw = w.shape
    args: dict = {"out": int(per_group) * groups, "kernel": pair_arg([kh, kw], "kernel")}
    given = (
        ("stride", pair_arg(node.attr("strides", [1, 1]), "strides"), 1),
        ("padding", pads_arg(node), 0),
        ("output_padding", pair_arg(node.attr("output_padding", [0, 0]), "output_padding"), 0),
        ("dilation", pair_arg(node.attr("dilations", [1, 1]), "dilations"), 1),
        ("groups", groups, 1),
    )
    args.update({key: value for key, value, default in given if value != default})
    tensors = weight_and_bias(node, w, args)
    return SpecNode("conv_transpose", args, tensors, node.proto.input[1])


def _pad(node: OnnxNode) -> SpecNode:
    mode = _text(node.attr("mode"), "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise Unsupported(f"mode {mode} (the spec's pad: constant, reflect, edge)")
    pads = node.constant(1) if len(node.proto.input) > 1 and node.proto.input[1] else node.attr("pads")
    if pads is None:
        raise Unsupported("its pads are computed, not constants")
    pads = [int(v) for v in np.asarray(pads).reshape(-1)]
    rank = len(pads) // 2
    axes = node.constant(3)
    if axes is not None:  # Pad-18: pads of some axes only
        full = [0] * 8
        for k, a in enumerate(int(v) % 4 for v in axes.reshape(-1)):
            full[a], full[a + 4] = pads[k], pads[k + len(axes.reshape(-1))]
        pads, rank = full, 4
    if rank != 4:
        raise Unsupported(f"pads of a rank-{rank} tensor (the spec's pad takes [N, C, H, W])")
    if any(pads[i] for i in (0, 1, 4, 5)):
        raise Unsupported(f"pads {pads} pad the batch or the channels")
    if min(pads) < 0:
        raise Unsupported(f"negative pads {pads} (a crop: the spec's slice)")
    t, l, b, r = pads[2], pads[3], pads[6], pads[7]
    value = node.constant(2) if len(node.proto.input) > 2 and node.proto.input[2] else node.attr("value", 0.0)
    value = float(np.asarray(value if value is not None else 0.0).reshape(-1)[0])
    args: dict = {"pads": (t if t == l else [t, l]) if (t, l) == (b, r) else [t, l, b, r]}
    if mode != "constant":
        args["mode"] = mode
    if value != 0.0:
        args["value"] = float_arg(value)
    return SpecNode("pad", args)


def _instance_norm(node: OnnxNode) -> SpecNode:
    scale, bias = node.constant(1), node.constant(2)
    if scale is None or bias is None:
        raise Unsupported("its scale or bias is computed, not a constant")
    args: dict = {}
    eps = float(node.attr("epsilon", 1e-5))
    if not math.isclose(eps, 1e-5, rel_tol=1e-6):
        args["eps"] = float_arg(eps)
    if np.all(scale == 1) and np.all(bias == 0):  # nn.InstanceNorm2d's default: no affine
        return SpecNode("instance_norm", args)
    tensors = {"weight": scale.astype(np.float32), "bias": bias.astype(np.float32)}
    return SpecNode("instance_norm", {**args, "affine": True}, tensors, node.proto.input[1])


def _prelu(node: OnnxNode) -> SpecNode:
    slope = node.constant(1)
    if slope is None:
        raise Unsupported("its slope is computed, not a constant")
    shape = node.shapes.get(node.proto.input[0], ())
    dims = list(slope.shape)
    while dims and dims[0] == 1 and len(dims) > len(shape):
        dims.pop(0)
    if slope.size != 1 and (not shape or dims != [shape[0]] + [1] * (len(shape) - 1)):
        raise Unsupported(f"a slope of shape {list(slope.shape)} (PReLU's: one, or one per channel)")
    weight = slope.reshape(-1).astype(np.float32)
    args = {"num_parameters": int(weight.size)} if weight.size > 1 else {}
    return SpecNode("prelu", args, {"weight": weight}, node.proto.input[1])


SPATIAL_CONVERTERS = {
    "Resize": _resize,
    "ConvTranspose": _conv_transpose,
    "Pad": _pad,
    "InstanceNormalization": _instance_norm,
    "PRelu": _prelu,
}
