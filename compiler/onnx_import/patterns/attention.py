"""Attention's patterns: a linear layer over the tokens' last axis (Reshape, Gemm, Reshape), the scores' scaled
MatMul, and the window constants (relative position bias, shifted-window mask) exporters fold into the scores.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import helper

from ...ops.attention import relative_position_index, shifted_window_mask
from ..ops import RELATIVE_POSITION_BIAS, ROWS_LINEAR, SCALED_MATMUL, WINDOW_MASK
from .graph import Index, attr, replaced, reshape_node, shape_constant, without_leading_ones


def rows_linears(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """A linear layer over the last axis of tokens as tcc's ONNX lowering writes it (nn.Linear on [N, ..., D] too):
    Reshape to [-1, D], Gemm with a constant weight, Reshape to [N, ...]; each read only by the next. D may merge
    the last axes of the input (attention heads [..., h, d] into h d) and the last Reshape may split the output
    (into q, k, v and heads): one RowsLinear(x, weight, bias) node over the tokens' last axis, with a per-sample
    Reshape before and after it where the shapes say so (new constants and shapes are added to `const` and
    `shapes`)."""
    index = Index(nodes, const)
    matches = []
    for n in nodes:
        rows = const.get(n.input[1]) if n.op_type == "Reshape" and len(n.input) > 1 else None
        given = shapes.get(n.input[0]) if rows is not None else None
        if rows is None or not given or len(given) < 2 or np.ravel(rows).size != 2 or int(np.ravel(rows)[0]) != -1:
            continue
        width = int(np.ravel(rows)[1])
        split = next((j for j in range(len(given) - 1, 0, -1) if math.prod(given[j:]) == width), None)
        gemm = index.only_reader(n.output[0], "Gemm")
        back = index.only_reader(gemm.output[0], "Reshape") if gemm is not None else None
        shape = const.get(back.input[1]) if back is not None else None
        weight = const.get(gemm.input[1]) if gemm is not None else None
        if (
            split is None
            or gemm is None
            or back is None
            or shape is None
            or weight is None
            or (len(gemm.input) > 2 and gemm.input[2] and gemm.input[2] not in const)
        ):
            continue
        out = int(weight.shape[0] if attr(gemm, "transB", 0) else weight.shape[1])
        tokens = (*given[:split], width)
        target = [int(d) for d in np.ravel(shape)]
        if (
            target[0] not in (0, -1)
            or any(d <= 0 for d in target[1:])
            or math.prod(target[1:]) != math.prod(tokens[:-1]) * out
        ):
            continue
        made: list = []
        x, name = n.input[0], gemm.name or back.name
        if tokens != tuple(given):  # the heads merged first: a per-sample reshape
            x = reshape_node(made, const, shapes, x, f"{name}/tokens", tokens)
        attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
        linear_out = back.output[0] if target[1:] == [*tokens[:-1], out] else f"{name}/linear"
        made.append(helper.make_node(ROWS_LINEAR, [x, *gemm.input[1:]], [linear_out], name=name, **attrs))
        shapes[linear_out] = (*tokens[:-1], out)
        if linear_out != back.output[0]:  # the output split (q, k, v and heads): a per-sample reshape after
            made.append(
                helper.make_node(
                    "Reshape",
                    [linear_out, shape_constant(const, f"{name}/split", target[1:])],
                    [back.output[0]],
                    name=back.name or f"{name}/split",
                )
            )
        matches.append((made, [n, gemm, back]))
    return replaced(nodes, matches)


def scaled_products(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """Attention's scores as exporters write them: MatMul of two computed values (the second a Transpose of its last
    two axes, read only here: transpose_b), then a Mul by one constant factor read only by it (1 / sqrt(d)): one
    ScaledMatMul(a, b) node, the spec's matmul with `scale` and `transpose_b`, no learnable factor."""
    index = Index(nodes, const)
    matches = []
    for n in nodes:
        if n.op_type != "MatMul" or len(n.input) != 2 or any(i in const for i in n.input):
            continue
        mul = index.only_reader(n.output[0], "Mul")
        found = index.operands(mul) if mul is not None else None
        if found is None or found[1].size != 1:
            continue
        found_b, b, matched = index.producer.get(n.input[1]), n.input[1], [n, mul]
        rank = len(shapes.get(b, ())) + 1
        swapped = list(range(rank - 2)) + [rank - 1, rank - 2]
        transpose_b = (
            found_b is not None
            and found_b.op_type == "Transpose"
            and rank >= 3
            and [int(p) for p in attr(found_b, "perm", [])] == swapped
            and index.only_reader(b, "MatMul") is n
        )
        if transpose_b and found_b is not None:
            b, matched = found_b.input[0], [found_b, n, mul]
        product = helper.make_node(
            SCALED_MATMUL,
            [n.input[0], b],
            [mul.output[0]],
            name=n.name or mul.name,
            scale=float(found[1].reshape(-1)[0]),
            transpose_b=int(transpose_b),
        )
        matches.append((product, matched))
    return replaced(nodes, matches)


def window_attention_constants(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """What windowed attention adds to its scores [..., heads, N, N], folded by the exporter into a constant (N = w^2
    positions of a square window): a bias [heads, N, N] that is a table of (2w - 1)^2 rows per head gathered by the
    relative offset of the two positions (Swin, MaxViT: a RelativePositionBias node with the table recovered), and
    a mask [windows, 1, N, N] equal to Swin's shifted-window mask of some map and shift (a WindowMask node). Each
    is checked value for value; another constant stays an Add."""
    out = []
    for n in nodes:
        found = _window_constant(n, const, shapes) if n.op_type == "Add" else None
        if found is None:
            out.append(n)
            continue
        x, kind, attrs, table = found
        if kind == RELATIVE_POSITION_BIAS:
            const[f"{n.name}/table"] = table
            out.append(helper.make_node(kind, [x, f"{n.name}/table"], list(n.output), name=n.name, **attrs))
        else:
            out.append(helper.make_node(kind, [x], list(n.output), name=n.name, **attrs))
    return out


def _window_constant(n, const: dict, shapes: dict):
    """(the scores, the pseudo-op, its attributes, the bias table or None) of an Add of scores and a window
    constant, else None."""
    computed = [i for i in n.input if i and i not in const]
    folded = [i for i in n.input if i in const]
    scores = shapes.get(computed[0]) if len(computed) == 1 and len(folded) == 1 else None
    if scores is None or len(scores) < 3 or scores[-1] != scores[-2]:
        return None
    c, n_pos = const[folded[0]], scores[-1]
    w = math.isqrt(n_pos)
    if w < 2 or w * w != n_pos or c.dtype.kind != "f":  # (a window of one position is a plain bias: [C, 1, 1])
        return None
    bias = without_leading_ones(c, 3)
    if bias is not None and bias.shape == (scores[-3], n_pos, n_pos):  # a bias per head: table[index]?
        index = relative_position_index(w, w)
        _, first = np.unique(index, return_index=True)  # each table row's first (i, j)
        table = np.ascontiguousarray(bias.reshape(len(bias), -1)[:, first].T)  # [rows, heads]
        if not np.array_equal(table[index].transpose(2, 0, 1), bias):
            return None
        return computed[0], RELATIVE_POSITION_BIAS, {"window": w}, table.astype(np.float32)
    c = without_leading_ones(c, 4)
    if len(scores) >= 4 and c is not None and c.shape == (scores[-4], 1, n_pos, n_pos):  # which map and shift?
        windows = scores[-4]
        for rows in (r for r in range(1, windows + 1) if windows % r == 0):
            size = (rows * w, windows // rows * w)
            for shift in ((a, b) for a in range(w) for b in range(w) if a or b):
                if np.array_equal(shifted_window_mask(size, (w, w), shift), c):
                    return computed[0], WINDOW_MASK, {"size": list(size), "window": w, "shift": list(shift)}, None
    return None
