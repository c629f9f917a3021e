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


def layer_rows(layer: Layer, x: np.ndarray, w_shape: tuple, count: int, rng: np.random.Generator) -> np.ndarray:
    """im2col rows of input batch `x` at `count` random output positions: [R, groups, K_per_group]."""
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
    """The weight as [groups, C_out per group, K per group], output channels in their original order."""
    if layer.op == "Conv":
        groups = int(layer.attrs.get("group", 1))
        return w.reshape(groups, w.shape[0] // groups, -1).astype(np.float32)
    wt = w if layer.w_axis == 0 else w.T  # [C_out, K]
    return wt[None].astype(np.float32)


def layer_output(a: np.ndarray, wg: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """[groups, R, C_out per group] = rows [groups, R, K] x weights [groups, C_out, K] (+ bias)."""
    y = np.matmul(a, wg.transpose(0, 2, 1))
    if bias is not None:
        y += bias.reshape(wg.shape[0], 1, wg.shape[1])
    return y
