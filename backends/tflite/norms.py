"""The TFLite lowering's normalizations (float only: in an INT8 graph they are float islands): layer norm over one
axis and group norm, as MEAN / SUB / MUL / RSQRT builtins, with their affine. A mixin of TfliteLowering
(backends/tflite/lower.py), which provides the tensors (`act`, `const`, `out`, `float_weight`, layouts)."""

from __future__ import annotations

import numpy as np

from tcc.quant.intgraph.match import INode

from .model import options
from .values import NHWC, Value


class Normalizations:
    def normalized(self, x: Value, ax: int | list[int], eps: float, name: str, y: Value | None = None) -> Value:
        """(x - mean) * rsqrt(variance + eps) over axis `ax` (or axes) of x's own layout (MEAN, SUB, MUL, MEAN, ADD,
        RSQRT, MUL), float only, into `y` (else a new tensor)."""
        shape = self.m.shape(x.index)
        keep = options("ReducerOptions", keepDims=True)
        over = [ax] if isinstance(ax, int) else list(ax)
        axes = self.const(f"{name}/axes", np.array(over, np.int32), "int32")
        reduced = [d if i not in over else 1 for i, d in enumerate(shape)]
        mean = self.act(f"{name}/mean", reduced, None, x.nhwc)
        self.m.operator("MEAN", [x.index, axes], [mean.index], keep)
        centered = self.act(f"{name}/centered", shape, None, x.nhwc)
        self.m.operator("SUB", [x.index, mean.index], [centered.index], options("SubOptions"))
        square = self.act(f"{name}/square", shape, None, x.nhwc)
        self.m.operator("MUL", [centered.index, centered.index], [square.index], options("MulOptions"))
        var = self.act(f"{name}/variance", reduced, None, x.nhwc)
        self.m.operator("MEAN", [square.index, axes], [var.index], keep)
        shifted = self.binary_const("ADD", var, eps, f"{name}/plus_epsilon")
        inv = self.act(f"{name}/rsqrt", reduced, None, x.nhwc)
        self.m.operator("RSQRT", [shifted.index], [inv.index])
        y = y if y is not None else self.act(f"{name}/normalized", shape, None, x.nhwc)
        self.m.operator("MUL", [centered.index, inv.index], [y.index], options("MulOptions"))
        return y

    def affine(self, y: Value, n: INode, along: list[int], out: Value) -> Value:
        """y * weight + bias into `out`, the parameters shaped `along` to broadcast (float only)."""
        scaled = self.act(f"{n.name}/scaled", self.m.shape(y.index), None, y.nhwc)
        gamma = self.float_weight(n.weight, self.inits[n.weight].reshape(along).astype(np.float32))
        self.m.operator("MUL", [y.index, gamma], [scaled.index], options("MulOptions"))
        beta = (
            self.float_weight(n.bias, self.inits[n.bias].reshape(along).astype(np.float32))
            if n.bias
            else self.const(f"{n.name}/bias", np.zeros(along, np.float32), "float32")
        )
        self.m.operator("ADD", [scaled.index, beta], [out.index], options("AddOptions"))
        return out

    def layernorm(self, n: INode, x: Value) -> list:
        """`normalized` over the one axis, then the affine, in the tensor's own layout."""
        shape = self.m.shape(x.index)
        axis = int(n.attrs["axes"][0])
        ax = NHWC.index(axis) if x.nhwc else axis
        eps = float(n.attrs["epsilon"])
        if n.weight is None:
            return [self.normalized(x, ax, eps, n.name, self.out(n))]
        y = self.normalized(x, ax, eps, n.name)
        along = [shape[ax]] + [1] * (len(shape) - 1 - ax)  # broadcasts along the axis (right-aligned)
        return [self.affine(y, n, along, self.out(n))]

    def l2_normalize(self, n: INode, x: Value) -> list:
        """x / max(sqrt(sum(x * x)), eps) over the axis, in the tensor's own layout (MUL, SUM, SQRT, MAXIMUM,
        DIV), float only; LiteRT's L2_NORMALIZATION would floor the squared norm at 1e-6 instead."""
        shape = self.m.shape(x.index)
        axis = int(n.attrs["axis"]) % len(shape)
        ax = NHWC.index(axis) if x.nhwc else axis
        reduced = [d if i != ax else 1 for i, d in enumerate(shape)]
        square = self.act(f"{n.name}/square", shape, None, x.nhwc)
        self.m.operator("MUL", [x.index, x.index], [square.index], options("MulOptions"))
        total = self.act(f"{n.name}/sum", reduced, None, x.nhwc)
        axes = self.const(f"{n.name}/axes", np.array([ax], np.int32), "int32")
        self.m.operator("SUM", [square.index, axes], [total.index], options("ReducerOptions", keepDims=True))
        norm = self.act(f"{n.name}/norm", reduced, None, x.nhwc)
        self.m.operator("SQRT", [total.index], [norm.index])
        floored = self.binary_const("MAXIMUM", norm, float(n.attrs["epsilon"]), f"{n.name}/floored")
        y = self.out(n)
        self.m.operator("DIV", [x.index, floored.index], [y.index], options("DivOptions"))
        return [y]

    def groupnorm(self, n: INode, x: Value) -> list:
        """In the graph's order: RESHAPE to [1, groups, C H W / groups], `normalized` over the last axis, RESHAPE
        back, then the per-channel affine (float only)."""
        x = self.as_nchw(x, f"{n.name}/nchw")
        shape, groups = self.m.shape(x.index), int(n.attrs["num_groups"])
        four_d, last = len(shape) == 4, n.weight is None
        grouped = self.reshape_value(x, [1, groups, int(np.prod(shape)) // groups], f"{n.name}/grouped", None)
        named = (f"{n.outputs[0]}/nchw" if four_d else n.outputs[0]) if last else f"{n.name}/ungrouped"
        y = self.reshape_value(self.normalized(grouped, 2, float(n.attrs["epsilon"]), n.name), shape, named, None)
        if not last:
            out = self.act(f"{n.outputs[0]}/nchw", shape, None, False) if four_d else self.out(n)
            y = self.affine(y, n, [shape[1]] + [1] * (len(shape) - 2), out)  # per channel
        return [self.as_nhwc_named(y, n.outputs[0]) if four_d else y]
