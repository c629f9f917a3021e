"""Constant operands: a learned [1, ...] tensor added to or concatenated with a computed value (ViT's position
embedding and class token), and the float constant of any other Add / Sub / Mul / Div, as the spec's param.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..ops import LEARNED_TENSOR, per_channel


def learned_tensors(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """A constant [1, ...] of the output's rank added to or concatenated with a computed value (ViT's position
    embedding and class token: the spec's `param`, which exporters write as an Expand to the batch, folded at batch
    1): a LearnedTensor(x, constant) node in front of the Add / Concat, x the other operand (the param's input gives
    the batch only)."""
    out = []
    for n in nodes:
        if n.op_type not in ("Add", "Concat"):
            out.append(n)
            continue
        computed = [i for i in n.input if i and i not in const]
        learned = [
            i
            for i in n.input
            if i in const
            and const[i].dtype.kind == "f"
            and const[i].ndim >= 2
            and const[i].shape[0] == 1
            and const[i].ndim == len(shapes.get(n.output[0], ())) + 1
        ]
        if not computed or not learned:
            out.append(n)
            continue
        renamed = {}
        for c in learned:
            renamed[c] = f"{c}/learned"
            out.append(helper.make_node(LEARNED_TENSOR, [computed[0], c], [renamed[c]], name=c))
        new = onnx.NodeProto()
        new.CopyFrom(n)
        new.ClearField("input")
        new.input.extend([renamed.get(i, i) for i in n.input])
        out.append(new)
    return out


def constant_operands(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """An Add / Sub / Mul / Div of a computed value and a float constant that no other pattern took (a bias after a
    MatMul, a layer scale, a position embedding of any broadcast shape): a divisor as the product with its
    reciprocal, a subtrahend as the sum with its negation; then, but for a Mul by one factor per channel (the
    spec's scale), the constant in the output's rank as a LearnedTensor (the spec's param) in front of the node."""
    out = []
    for n in nodes:
        operands = [i in const for i in n.input]
        if n.op_type not in ("Add", "Sub", "Mul", "Div") or len(n.input) != 2 or operands.count(True) != 1:
            out.append(n)
            continue
        at = operands.index(True)
        c, x = const[n.input[at]], n.input[1 - at]
        rank = len(shapes.get(n.output[0], ())) + 1
        if c.dtype.kind != "f" or c.ndim > rank or rank < 2:
            out.append(n)
            continue
        c = c.reshape((1,) * (rank - c.ndim) + c.shape)
        if c.shape[0] != 1:
            out.append(n)
            continue
        op, suffix = n.op_type, "sample"
        if at == 1 and op == "Div":
            op, c, suffix = "Mul", (1 / c).astype(c.dtype), "reciprocal"
        elif at == 1 and op == "Sub":
            op, c, suffix = "Add", -c, "negated"
        name = f"{n.input[at]}/{suffix}"
        const[name] = c
        operand = name
        shape = shapes.get(x)
        if op != "Mul" or not shape or per_channel(c, shape) is None:
            operand = f"{name}/learned"
            out.append(helper.make_node(LEARNED_TENSOR, [x, name], [operand], name=name))
        inputs = [operand, x] if at == 0 else [x, operand]
        out.append(helper.make_node(op, inputs, list(n.output), name=n.name))
    return out
