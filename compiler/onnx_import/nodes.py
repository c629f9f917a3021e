"""What the ONNX converters are made of: an ONNX node with its constant inputs (`OnnxNode`), the spec node a
converter returns (`SpecNode`), the refusal (`Unsupported`), and the readings of attributes they share (pads,
pairs, float32 values as short decimals).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper


class Unsupported(Exception):
    """This node has no spec equivalent (the message says why)."""


@dataclass
class OnnxNode:
    proto: onnx.NodeProto
    const: dict[str, np.ndarray]  # constant inputs (initializers, folded constants) by name
    shapes: dict[str, tuple]  # inferred per-sample shapes of value names

    @property
    def op_type(self) -> str:
        return self.proto.op_type

    def attr(self, name: str, default=None):
        for a in self.proto.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def inputs(self) -> list[str]:
        return [i for i in self.proto.input if i]

    def activations(self) -> list[str]:
        """The inputs that are computed values (not constants)."""
        return [i for i in self.inputs() if i not in self.const]

    def constant(self, k: int) -> np.ndarray | None:
        ins = list(self.proto.input)
        return self.const.get(ins[k]) if k < len(ins) and ins[k] else None


@dataclass
class SpecNode:
    op: str
    args: dict = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # parameter name -> value (the state_dict's)
    weight_name: str | None = None  # the ONNX initializer that names the node (`features.0.weight` -> features.0)
    block: bool = False  # `op` names a block (the zoo's conv_bn_act), not an op of the table


def pads_arg(node: OnnxNode, spatial: int = 2):
    """ONNX pads [x1_begin, x2_begin, x1_end, x2_end] as the spec's padding: an int, [h, w] or [t, l, b, r]."""
    auto = node.attr("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "VALID"):
        raise Unsupported(f"auto_pad {auto} (export with explicit pads)")
    pads = list(node.attr("pads", [0] * 2 * spatial)) if auto == "NOTSET" else [0] * 2 * spatial
    top, left, bottom, right = pads
    if (top, left) == (bottom, right):
        return top if top == left else [top, left]
    return [top, left, bottom, right]


def pair_arg(values, what: str):
    values = list(values)
    if len(values) != 2:
        raise Unsupported(f"{what} of {len(values)} dimensions (2-D only)")
    return values[0] if values[0] == values[1] else values


def weight_and_bias(node: OnnxNode, weight: np.ndarray, args: dict) -> dict[str, np.ndarray]:
    """A weighted node's tensors: its weight, and its bias (input 2) or `bias: false` in `args` without one."""
    bias = node.constant(2)
    if len(node.inputs()) > 2 and bias is None:
        raise Unsupported("its bias is computed, not a constant")
    if bias is None:
        args["bias"] = False
        return {"weight": weight}
    return {"weight": weight, "bias": bias}


def float_arg(v: float) -> float:
    """A float32 attribute as the shortest decimal that reads back to it (1e-3, not 0.0010000000474974513)."""
    return float(np.format_float_positional(np.float32(v), unique=True, trim="-"))
