"""Layers: the conv / linear nodes of an integer graph whose weight is an initializer, and their geometry as the
calibration steps see it (im2col rows of the FP32 input at sampled output positions, the weight grouped as
[groups, C_out per group, K]). The statistics, the cosine search, rounding and bias correction all read layers
through here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from .match import plan


@dataclass(frozen=True)
class Layer:
    """A conv or linear node whose weight is an initializer: the unit the cosine search works on."""

    name: str
    op: str  # Conv | Gemm | MatMul
    input: str  # activation tensor
    weight: str  # initializer
    bias: str | None
    output: str
    w_axis: int  # output-channel axis of the weight tensor
    attrs: dict = field(default_factory=dict, hash=False, compare=False)


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def layer_of(node) -> Layer:
    """The Layer of a weighted node of the integer graph (tcc.quant.intgraph.match.INode): its raw output is the tensor
    before a folded activation."""
    return Layer(
        node.name,
        node.op_type,
        node.inputs[0],
        node.weight,
        node.bias,
        node.raw_output or node.outputs[0],
        node.w_axis,
        node.attrs,
    )


def find_layers(model: onnx.ModelProto) -> list[Layer]:
    """The conv / gemm nodes of the model's integer graph (tcc.quant.intgraph.match), in topological order (nodes
    without an
    integer form are let through: they are no layers)."""
    return [layer_of(n) for n in plan(model, integer=False).weighted]


def _conv_geometry(layer: Layer, x_shape: tuple, w_shape: tuple):
    a = layer.attrs
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError(f"{layer.name}: auto_pad is not supported by the cosine search (pads expected)")
    kh, kw = w_shape[2:]
    sh, sw = a.get("strides", [1, 1])
    dh, dw = a.get("dilations", [1, 1])
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    h, w = x_shape[2:]
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    return (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr), (oh, ow)


def _as_conv(layer: Layer, x: np.ndarray, w_shape: tuple) -> tuple[Layer, np.ndarray, tuple]:
    """A transposed conv (one group) as the stride-1 conv it equals: x with s - 1 zeros between its pixels, padded
    by d (k - 1) - pad at each end (output_padding's rows at the far end; a negative pad cuts), read by the flipped
    weight [C_out, C_in, k_h, k_w] (`grouped_weight`) at the transposed conv's dilation."""
    a = layer.attrs
    (sh, sw), (dh, dw) = a.get("strides", [1, 1]), a.get("dilations", [1, 1])
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    oph, opw = a.get("output_padding", [0, 0])
    c_in, c_out, kh, kw = w_shape
    n, c, h, w = x.shape
    up = np.zeros((n, c, sh * (h - 1) + 1, sw * (w - 1) + 1), np.float32)
    up[:, :, ::sh, ::sw] = x
    ends = [(dh * (kh - 1) - pt, dh * (kh - 1) - pb + oph), (dw * (kw - 1) - pl, dw * (kw - 1) - pr + opw)]
    up = np.pad(up, [(0, 0), (0, 0)] + [(max(b, 0), max(e, 0)) for b, e in ends])
    up = up[
        :,
        :,
        max(-ends[0][0], 0) : up.shape[2] - max(-ends[0][1], 0),
        max(-ends[1][0], 0) : up.shape[3] - max(-ends[1][1], 0),
    ]
    conv = Layer(layer.name, "Conv", layer.input, layer.weight, layer.bias, layer.output, 0, {"dilations": [dh, dw]})
    return conv, up, (c_out, c_in, kh, kw)


def layer_rows(layer: Layer, x: np.ndarray, w_shape: tuple, count: int, rng: np.random.Generator) -> np.ndarray:
    """im2col rows of input batch `x` at `count` random output positions: [R, groups, K_per_group]; a transposed
    conv's those of the conv it equals (`_as_conv`)."""
    if layer.op == "ConvTranspose":
        layer, x, w_shape = _as_conv(layer, x, w_shape)
    if layer.op == "Conv":
        (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr), (oh, ow) = _conv_geometry(layer, x.shape, w_shape)
        n, c = x.shape[:2]
        groups = int(layer.attrs.get("group", 1))
        total = n * oh * ow
        pick = rng.choice(total, size=min(count, total), replace=False)
        bi, rest = np.divmod(pick, oh * ow)
        yi, xi = np.divmod(rest, ow)
        ky, kx = np.meshgrid(np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij")
        rows_y = (yi * sh)[:, None] + ky.ravel()[None, :] - pt  # [R, kk], in the unpadded input
        rows_x = (xi * sw)[:, None] + kx.ravel()[None, :] - pl
        h, w = x.shape[2:]
        pad = (rows_y < 0) | (rows_y >= h) | (rows_x < 0) | (rows_x >= w)  # taps on the zero padding
        patches = x[
            bi[:, None, None],
            np.arange(c)[None, :, None],
            np.clip(rows_y, 0, h - 1)[:, None, :],
            np.clip(rows_x, 0, w - 1)[:, None, :],
        ].astype(np.float32, copy=False)  # [R, C, kk]
        np.copyto(patches, np.float32(0), where=pad[:, None, :])  # no padded copy of x
        return patches.reshape(len(pick), groups, (c // groups) * kh * kw)  # -> groups
    x2 = x.reshape(-1, x.shape[-1]) if layer.op == "MatMul" else x.reshape(x.shape[0], -1)
    pick = rng.choice(len(x2), size=min(count, len(x2)), replace=False)
    return x2[pick][:, None, :].astype(np.float32)


def grouped_weight(layer: Layer, w: np.ndarray) -> np.ndarray:
    """The weight as [groups, C_out per group, K per group], output channels in their original order; a transposed
    conv's (one group, [C_in, C_out, k_h, k_w]) as the flipped weight of the conv it equals (`_as_conv`)."""
    if layer.op == "ConvTranspose":
        return w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1].reshape(1, w.shape[1], -1).astype(np.float32)
    if layer.op == "Conv":
        groups = int(layer.attrs.get("group", 1))
        return w.reshape(groups, w.shape[0] // groups, -1).astype(np.float32)
    wt = w if layer.w_axis == 0 else w.T  # [C_out, K]
    return wt[None].astype(np.float32)


def ungrouped_weight(layer: Layer, wg: np.ndarray, shape: tuple) -> np.ndarray:
    """`grouped_weight`'s inverse: [groups, C_out per group, K per group] back to the weight's own `shape`."""
    if layer.op == "ConvTranspose":
        c_in, c_out, kh, kw = shape
        return np.ascontiguousarray(wg.reshape(c_out, c_in, kh, kw)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    if layer.op == "Conv":
        return wg.reshape(shape)
    return wg[0] if layer.w_axis == 0 else wg[0].T


def layer_output(a: np.ndarray, wg: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """[groups, R, C_out per group] = rows [groups, R, K] x weights [groups, C_out, K] (+ bias)."""
    y = np.matmul(a, wg.transpose(0, 2, 1))
    if bias is not None:
        y += bias.reshape(wg.shape[0], 1, wg.shape[1])
    return y
