"""ONNX-level patterns: what exporters write as several ONNX nodes for one spec op, found before conversion and
replaced by one node (an ONNX op, or a pseudo-op of tcc.onnx_import.ops such as ChannelShuffle).

Each pass takes the graph's nodes (topological order) and its constants and returns the nodes with the pattern
replaced; a pattern matches only where its inner values feed nothing else, so the rest of the graph is unchanged.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import onnx
from onnx import helper

from ..ops.attention import relative_position_index, shifted_window_mask
from .ops import (
    CHANNEL_LINEAR,
    CHANNEL_SHUFFLE,
    GROUP_NORM,
    L2_NORMALIZE,
    LAYER_NORM,
    LEARNED_TENSOR,
    RELATIVE_POSITION_BIAS,
    ROWS_LINEAR,
    SCALED_MATMUL,
    WINDOW_MASK,
    per_channel,
    slice_ranges,
)

_NHWC, _NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
_UNARY = ("Relu", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Gelu", "Clip", "Identity", "Dropout")


class _Index:
    """Who makes and who reads each value, and the constants."""

    def __init__(self, nodes: list, const: dict[str, np.ndarray]):
        self.const = const
        self.readers: dict[str, list] = defaultdict(list)
        for n in nodes:
            for i in n.input:
                if i:
                    self.readers[i].append(n)
        self.producer = {o: n for n in nodes for o in n.output}

    def only_reader(self, value: str, *op_types: str):
        """The one node reading `value`, if it is of one of `op_types`."""
        found = self.readers.get(value, [])
        return found[0] if len(found) == 1 and found[0].op_type in op_types else None

    def operands(self, node) -> tuple[str, np.ndarray] | None:
        """(the computed operand, the constant one) of a binary node with one constant operand."""
        if len(node.input) != 2:
            return None
        a, b = node.input
        if b in self.const and a not in self.const:
            return a, self.const[b]
        if a in self.const and b not in self.const:
            return b, self.const[a]
        return None

    def scalar(self, node, value: float) -> str | None:
        """The computed operand of `node`, where its other operand is the constant `value`."""
        found = self.operands(node)
        if found is None or found[1].size != 1 or not math.isclose(float(found[1].reshape(-1)[0]), value, rel_tol=1e-6):
            return None
        return found[0]


def _attr(node, name: str, default=None):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _replaced(nodes: list, matches: list[tuple[object, list]]) -> list:
    """The nodes with each match's nodes replaced by its new node (or list of nodes), placed where the match's last
    node was."""
    last = {id(found[-1]): new if isinstance(new, list) else [new] for new, found in matches}
    gone = {id(n) for _, found in matches for n in found}
    return [m for n in nodes for m in last.get(id(n), [] if id(n) in gone else [n])]


def channel_shuffles(nodes: list, const: dict[str, np.ndarray]) -> list:
    """ShuffleNet's channel shuffle as exporters write it: Reshape to [N, g, C/g, H, W], Transpose (0, 2, 1, 3, 4),
    Reshape back to [N, C, H, W], each read only by the next: one ChannelShuffle(groups=g) node."""
    index = _Index(nodes, const)
    matches = []
    for n in nodes:
        shape = const.get(n.input[1]) if n.op_type == "Reshape" and len(n.input) > 1 else None
        t = index.only_reader(n.output[0], "Transpose") if shape is not None and shape.size == 5 else None
        back = index.only_reader(t.output[0], "Reshape") if t is not None else None
        if (
            back is not None
            and list(_attr(t, "perm", [])) == [0, 2, 1, 3, 4]
            and const.get(back.input[1]) is not None
            and const[back.input[1]].size == 4
        ):
            shuffle = helper.make_node(
                CHANNEL_SHUFFLE, [n.input[0]], [back.output[0]], name=back.name or n.name, groups=int(shape[1])
            )
            matches.append((shuffle, [n, t, back]))
    return _replaced(nodes, matches)


def _reduce_axes(node, index: _Index) -> list[int] | None:
    axes = _attr(node, "axes")
    if axes is None and len(node.input) > 1:  # opset 18: the axes are an input
        axes = index.const.get(node.input[1])
    return None if axes is None or not int(_attr(node, "keepdims", 1)) else [int(a) for a in np.ravel(axes)]


def _layer_norm(mean, index: _Index):
    """(new node, matched nodes) where `mean` starts (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) over one
    axis, then * weight + bias (torch.onnx.export's F.layer_norm below opset 17, tcc's own layernorm)."""
    axes = _reduce_axes(mean, index)
    x = mean.input[0]
    sub = index.only_reader(mean.output[0], "Sub")
    if axes is None or len(axes) != 1 or sub is None or list(sub.input) != [x, mean.output[0]]:
        return None
    centered = sub.output[0]
    readers = index.readers[centered]
    square = next((n for n in readers if n.op_type in ("Pow", "Mul")), None)
    div = next((n for n in readers if n.op_type == "Div"), None)
    if square is None or div is None or len({id(n) for n in readers}) != 2:
        return None
    if not (list(square.input) == [centered, centered] or index.scalar(square, 2.0) == centered):
        return None
    variance = index.only_reader(square.output[0], "ReduceMean")
    if variance is None or _reduce_axes(variance, index) != axes:
        return None
    plus = index.only_reader(variance.output[0], "Add")
    found = index.operands(plus) if plus is not None else None
    sqrt = index.only_reader(plus.output[0], "Sqrt") if found is not None and found[1].size == 1 else None
    if sqrt is None or list(div.input) != [centered, sqrt.output[0]]:
        return None
    matched, end, weight, bias = [mean, sub, square, variance, plus, sqrt, div], div, None, None
    scaled = index.only_reader(div.output[0], "Mul")
    if scaled is not None and index.operands(scaled) is not None:
        matched.append(scaled)
        end, weight = scaled, next(i for i in scaled.input if i in index.const)
        shifted = index.only_reader(scaled.output[0], "Add")
        if shifted is not None and index.operands(shifted) is not None:
            matched.append(shifted)
            end, bias = shifted, next(i for i in shifted.input if i in index.const)
    inputs = [x, weight or "", bias or ""]
    node = helper.make_node(
        LAYER_NORM, inputs, [end.output[0]], name=end.name, axis=axes[0], epsilon=float(found[1].reshape(-1)[0])
    )
    return node, matched


def _gelu(erf, index: _Index):
    """(Gelu node, matched nodes) where `erf` is in x * 0.5 * (1 + erf(x / sqrt(2))), in the orders torch and tcc
    write it (x * (1 + erf) * 0.5; (1 + erf) * 0.5 * x)."""
    scaled = index.producer.get(erf.input[0])
    x = index.scalar(scaled, math.sqrt(2)) if scaled is not None and scaled.op_type == "Div" else None
    if x is None and scaled is not None and scaled.op_type == "Mul":
        x = index.scalar(scaled, 1 / math.sqrt(2))
    plus = index.only_reader(erf.output[0], "Add")
    if x is None or plus is None or index.scalar(plus, 1.0) != erf.output[0]:
        return None
    first = index.only_reader(plus.output[0], "Mul")
    second = index.only_reader(first.output[0], "Mul") if first is not None else None
    if second is None:
        return None
    others = [next((i for i in m.input if i != v), v) for m, v in ((first, plus.output[0]), (second, first.output[0]))]
    halves = [index.scalar(m, 0.5) is not None for m in (first, second)]
    if sorted(halves) != [False, True] or others[halves.index(False)] != x:
        return None
    return helper.make_node("Gelu", [x], [second.output[0]], name=second.name), [scaled, erf, plus, first, second]


def layer_norms_and_gelus(nodes: list, const: dict[str, np.ndarray]) -> list:
    """LayerNorm and GELU written as arithmetic (below opsets 17 and 20) as one node each."""
    index = _Index(nodes, const)
    matches = []
    for n in nodes:
        found = _layer_norm(n, index) if n.op_type == "ReduceMean" else _gelu(n, index) if n.op_type == "Erf" else None
        if found is not None:
            matches.append(found)
    return _replaced(nodes, matches)


def _channels_last(first, index: _Index):
    """(nodes, matched) where `first` transposes NCHW to NHWC and every node up to the transpose back works on the
    last axis, each read only by the next (ConvNeXt's block, LayerNorm2d): the same ops on NCHW's channels."""
    chain, value = [], first.output[0]
    while True:
        node = index.only_reader(value, *_UNARY, LAYER_NORM, "LayerNormalization", "MatMul", "Add", "Mul", "Transpose")
        if node is None:
            return None
        if node.op_type == "Transpose":
            if list(_attr(node, "perm", [])) != _NCHW or not chain:
                return None
            back = node
            break
        chain.append(node)
        value = node.output[0]
    rewritten = _in_channels(chain, index)
    if rewritten is None:
        return None
    rewritten[0].input[0] = first.input[0]
    rewritten[-1].output[0] = back.output[0]
    return rewritten, [first, *chain, back]


def _in_channels(chain: list, index: _Index) -> list | None:
    """The NHWC nodes as their NCHW equivalents (new nodes: the graph's own are the reference ORT runs)."""
    rewritten, k = [], 0
    while k < len(chain):
        node = chain[k]
        if node.op_type in (LAYER_NORM, "LayerNormalization"):
            if int(_attr(node, "axis", -1)) not in (-1, 3):
                return None
            new = helper.make_node(
                LAYER_NORM,
                list(node.input),
                list(node.output),
                name=node.name,
                axis=1,
                epsilon=float(_attr(node, "epsilon", 1e-5)),
            )
        elif node.op_type == "MatMul":
            weight = index.const.get(node.input[1])
            bias = chain[k + 1] if k + 1 < len(chain) and chain[k + 1].op_type == "Add" else None
            if weight is None or weight.ndim != 2 or (bias is not None and index.operands(bias) is None):
                return None
            end = bias or node
            b = next((i for i in bias.input if i in index.const), "") if bias else ""
            new = helper.make_node(CHANNEL_LINEAR, [node.input[0], node.input[1], b], [end.output[0]], name=node.name)
            k += bias is not None
        elif node.op_type in ("Add", "Mul"):
            return None  # an add or product of the NHWC value itself: no NCHW form here
        else:
            new = onnx.NodeProto()
            new.CopyFrom(node)
        rewritten.append(new)
        k += 1
    return rewritten


def channels_last_runs(nodes: list, const: dict[str, np.ndarray]) -> list:
    """Ops applied over the channels between a Transpose to NHWC and one back, read in NCHW (see _channels_last)."""
    index = _Index(nodes, const)
    out, done = [], set()
    runs = {}
    for n in nodes:
        if n.op_type == "Transpose" and list(_attr(n, "perm", [])) == _NHWC:
            found = _channels_last(n, index)
            if found is not None:
                runs[id(found[1][-1])] = found
                done.update(id(m) for m in found[1])
    for n in nodes:
        if id(n) in runs:
            out += runs[id(n)][0]
        elif id(n) not in done:
            out.append(n)
    return out


def global_reductions(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """ReduceMean / ReduceMax over H and W (timm's `x.mean((2, 3), keepdim=True)`) as the global pool; without
    keepdims, the pool then a Flatten."""
    index = _Index(nodes, const)
    out = []
    for n in nodes:
        pool = {"ReduceMean": "GlobalAveragePool", "ReduceMax": "GlobalMaxPool"}.get(n.op_type)
        axes = _attr(n, "axes")
        if axes is None and len(n.input) > 1:
            axes = index.const.get(n.input[1])
        rank = len(shapes.get(n.input[0], ())) + 1 if n.input else 0
        if pool is None or axes is None or rank != 4 or sorted(int(a) % 4 for a in np.ravel(axes)) != [2, 3]:
            out.append(n)
        elif int(_attr(n, "keepdims", 1)):
            out.append(helper.make_node(pool, [n.input[0]], [n.output[0]], name=n.name))
        else:
            pooled = f"{n.output[0]}/pooled"
            out += [
                helper.make_node(pool, [n.input[0]], [pooled], name=n.name),
                helper.make_node("Flatten", [pooled], [n.output[0]], name=f"{n.name}/flatten", axis=1),
            ]
    return out


def _slice_bounds(node, index: _Index, shape: tuple) -> dict[int, tuple[int, int]] | None:
    """{axis (with the batch): (start, end)} of a Slice with constant bounds and steps of 1, clamped to the shape."""
    found = slice_ranges(node, index.const, shape)
    if found is None or any(step != 1 for _, _, step in found.values()):
        return None
    return {a: (start, end) for a, (start, end, _) in found.items()}


def slices(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """A Slice that keeps everything (GhostNet's `out[:, :out_chs]` where nothing is cut) as Identity; Slices of
    one value along the channels that together cover it once (torchvision's `chunk`, ReXNet's partial residual) as
    one Split, its outputs in channel order."""
    index = _Index(nodes, const)
    by_input: dict[str, list] = defaultdict(list)
    kept = {}
    for n in nodes:
        shape = shapes.get(n.input[0]) if n.op_type == "Slice" and n.input else None
        bounds = _slice_bounds(n, index, shape) if shape else None
        if bounds is None:
            continue
        dims = (1, *shape)
        cut = {a: b for a, b in bounds.items() if b != (0, dims[a])}
        if not cut:
            kept[id(n)] = helper.make_node("Identity", [n.input[0]], [n.output[0]], name=n.name)
        elif list(cut) == [1]:
            by_input[n.input[0]].append((cut[1], n))
    matches = list(kept.items())
    for value, parts in by_input.items():
        parts.sort(key=lambda p: p[0])
        ends = [0] + [end for (_, end), _ in parts]
        if len(parts) > 1 and [start for (start, _), _ in parts] == ends[:-1] and ends[-1] == shapes[value][0]:
            split = helper.make_node(
                "Split",
                [value],
                [n.output[0] for _, n in parts],
                name=parts[0][1].name,
                axis=1,
                split=[end - start for (start, end), _ in parts],
            )
            matches.append((id(parts[0][1]), split))
            matches += [(id(n), None) for _, n in parts[1:]]
    new = dict(matches)
    return [new.get(id(n), n) for n in nodes if new.get(id(n), n) is not None]


def rows_linears(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """A linear layer over the last axis of tokens as tcc's ONNX lowering writes it (nn.Linear on [N, ..., D] too):
    Reshape to [-1, D], Gemm with a constant weight, Reshape to [N, ...]; each read only by the next. D may merge
    the last axes of the input (attention heads [..., h, d] into h d) and the last Reshape may split the output
    (into q, k, v and heads): one RowsLinear(x, weight, bias) node over the tokens' last axis, with a per-sample
    Reshape before and after it where the shapes say so (new constants and shapes are added to `const` and
    `shapes`)."""
    index = _Index(nodes, const)
    matches = []
    for n in nodes:
        rows = const.get(n.input[1]) if n.op_type == "Reshape" and len(n.input) > 1 else None
        given = shapes.get(n.input[0]) if rows is not None else None
        if not given or len(given) < 2 or np.ravel(rows).size != 2 or int(np.ravel(rows)[0]) != -1:
            continue
        width = int(np.ravel(rows)[1])
        split = next((j for j in range(len(given) - 1, 0, -1) if math.prod(given[j:]) == width), None)
        gemm = index.only_reader(n.output[0], "Gemm")
        back = index.only_reader(gemm.output[0], "Reshape") if gemm is not None else None
        shape = const.get(back.input[1]) if back is not None else None
        weight = const.get(gemm.input[1]) if gemm is not None else None
        if (
            split is None
            or shape is None
            or weight is None
            or (len(gemm.input) > 2 and gemm.input[2] and gemm.input[2] not in const)
        ):
            continue
        out = int(weight.shape[0] if _attr(gemm, "transB", 0) else weight.shape[1])
        tokens = (*given[:split], width)
        target = [int(d) for d in np.ravel(shape)]
        if (
            target[0] not in (0, -1)
            or any(d <= 0 for d in target[1:])
            or math.prod(target[1:]) != math.prod(tokens[:-1]) * out
        ):
            continue
        made, x, name = [], n.input[0], gemm.name or back.name
        if tokens != tuple(given):  # the heads merged first: a per-sample reshape
            x = _reshape_node(made, const, shapes, x, f"{name}/tokens", tokens)
        attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
        linear_out = back.output[0] if target[1:] == [*tokens[:-1], out] else f"{name}/linear"
        made.append(helper.make_node(ROWS_LINEAR, [x, *gemm.input[1:]], [linear_out], name=name, **attrs))
        shapes[linear_out] = (*tokens[:-1], out)
        if linear_out != back.output[0]:  # the output split (q, k, v and heads): a per-sample reshape after
            made.append(
                helper.make_node(
                    "Reshape",
                    [linear_out, _shape_constant(const, f"{name}/split", target[1:])],
                    [back.output[0]],
                    name=back.name or f"{name}/split",
                )
            )
        matches.append((made, [n, gemm, back]))
    return _replaced(nodes, matches)


def scaled_products(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """Attention's scores as exporters write them: MatMul of two computed values (the second a Transpose of its last
    two axes, read only here: transpose_b), then a Mul by one constant factor read only by it (1 / sqrt(d)): one
    ScaledMatMul(a, b) node, the spec's matmul with `scale` and `transpose_b`, no learnable factor."""
    index = _Index(nodes, const)
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
            and [int(p) for p in _attr(found_b, "perm", [])] == swapped
            and index.only_reader(b, "MatMul") is n
        )
        if transpose_b:
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
    return _replaced(nodes, matches)


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


def single_axis_slices(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """A Slice of several axes (onnxsim merges Swin's patch-merging `x[:, 0::2, 0::2]` into one) as a chain of
    Slices of one axis each, in the axes' order: the spec's slice takes one axis."""
    out = []
    for n in nodes:
        shape = shapes.get(n.input[0]) if n.op_type == "Slice" and n.input else None
        ranges = slice_ranges(n, const, shape) if shape is not None else None
        if not ranges or len(ranges) < 2 or 0 in ranges or any(step < 1 for _, _, step in ranges.values()):
            out.append(n)  # one axis, or a Slice no chain of the spec's slices takes: its converter says why
            continue
        x, dims = n.input[0], [1, *shape]
        for k, (axis, (start, end, step)) in enumerate(sorted(ranges.items())):
            name = f"{n.name or n.output[0]}/axis{axis}"
            last = k == len(ranges) - 1
            y = n.output[0] if last else name
            for part, value in (("starts", start), ("ends", end), ("axes", axis), ("steps", step)):
                const[f"{name}/{part}"] = np.array([value], np.int64)
            out.append(
                helper.make_node(
                    "Slice", [x, *(f"{name}/{p}" for p in ("starts", "ends", "axes", "steps"))], [y], name=name
                )
            )
            dims[axis] = len(range(start, end, step))
            if not last:
                shapes[y] = tuple(dims[1:])
            x = y
    return out


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
    bias = _without_leading_ones(c, 3)
    if bias is not None and bias.shape == (scores[-3], n_pos, n_pos):  # a bias per head: table[index]?
        index = relative_position_index(w, w)
        _, first = np.unique(index, return_index=True)  # each table row's first (i, j)
        table = np.ascontiguousarray(bias.reshape(len(bias), -1)[:, first].T)  # [rows, heads]
        if not np.array_equal(table[index].transpose(2, 0, 1), bias):
            return None
        return computed[0], RELATIVE_POSITION_BIAS, {"window": w}, table.astype(np.float32)
    c = _without_leading_ones(c, 4)
    if len(scores) >= 4 and c is not None and c.shape == (scores[-4], 1, n_pos, n_pos):  # which map and shift?
        windows = scores[-4]
        for rows in (r for r in range(1, windows + 1) if windows % r == 0):
            size = (rows * w, windows // rows * w)
            for shift in ((a, b) for a in range(w) for b in range(w) if a or b):
                if np.array_equal(shifted_window_mask(size, (w, w), shift), c):
                    return computed[0], WINDOW_MASK, {"size": list(size), "window": w, "shift": list(shift)}, None
    return None


def _without_leading_ones(c: np.ndarray, rank: int) -> np.ndarray | None:
    """`c` at `rank` dimensions, the leading ones the broadcast added dropped; None where they are not ones."""
    extra = c.ndim - rank
    return c.reshape(c.shape[extra:]) if extra >= 0 and all(d == 1 for d in c.shape[:extra]) else None


def _shape_constant(const: dict, name: str, per_sample) -> str:
    const[f"{name}/shape"] = np.array([-1, *per_sample], np.int64)
    return f"{name}/shape"


def _reshape_node(made: list, const: dict, shapes: dict, x: str, name: str, per_sample) -> str:
    made.append(helper.make_node("Reshape", [x, _shape_constant(const, name, per_sample)], [name], name=name))
    shapes[name] = tuple(per_sample)
    return name


def batch_axis_unbinds(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """Attention's `qkv.permute(2, 0, 3, 1, 4).unbind(0)` (timm's DeiT, EdgeNeXt): a Transpose that moves the batch
    axis off the front, read only by a Split of its first axis into ones whose every part is squeezed, per sample:
    a Split of the input's axis that went first, each part reshaped without it and permuted with the batch first.
    The same values, in forms the spec says (its permute keeps the batch axis first)."""
    index = _Index(nodes, const)
    matches: list[tuple[object, list]] = []
    for t in (n for n in nodes if n.op_type == "Transpose"):
        perm = [int(p) for p in _attr(t, "perm", [])]
        split = index.only_reader(t.output[0], "Split") if len(perm) > 2 and perm[0] != 0 and perm[1] == 0 else None
        shape = shapes.get(t.input[0])
        if split is None or shape is None or int(_attr(split, "axis", 0)) != 0:
            continue
        squeezes = [index.only_reader(o, "Squeeze") for o in split.output]
        sizes = index.const.get(split.input[1]) if len(split.input) > 1 else _attr(split, "split")
        if any(s is None or index.const.get(s.input[1] if len(s.input) > 1 else "") is None for s in squeezes):
            continue
        if [int(a) for s in squeezes for a in np.ravel(index.const[s.input[1]])] != [0] * len(squeezes):
            continue
        axis, dims = perm[0], (1, *shape)
        if len(squeezes) != dims[axis] or (sizes is not None and list(np.ravel(sizes)) != [1] * len(squeezes)):
            continue
        name = split.name or split.output[0]
        const[f"{name}/sizes"] = np.ones(len(squeezes), np.int64)
        parts = [f"{name}/part{k}" for k in range(len(squeezes))]
        made = [helper.make_node("Split", [t.input[0], f"{name}/sizes"], parts, name=name, axis=axis)]
        kept = [d for i, d in enumerate(dims) if i != axis]  # a part without the split axis, the batch first
        for k, (part, squeeze) in enumerate(zip(parts, squeezes)):
            shapes[part] = tuple(1 if i == axis else d for i, d in enumerate(dims))[1:]
            flat = _reshape_node(made, const, shapes, part, f"{name}/squeezed{k}", kept[1:])
            inner = [p - (p > axis) for p in perm[1:]]
            made.append(helper.make_node("Transpose", [flat], list(squeeze.output), name=squeeze.name, perm=inner))
        matches.append((made, [t, split, *squeezes]))
    return _replaced(nodes, matches)


def l2_normalizations(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """`F.normalize(x, dim=d)` as torch exports it, x / expand(clip(ReduceL2(x, [d], keepdims), eps), shape(x)): one
    L2Normalize of x (the Expand is optional; each inner value read only by the next)."""
    index = _Index(nodes, const)
    matches: list[tuple[object, list]] = []
    for norm in (n for n in nodes if n.op_type == "ReduceL2" and int(_attr(n, "keepdims", 1))):
        axes = _attr(norm, "axes") if len(norm.input) < 2 else index.const.get(norm.input[1])
        clip = index.only_reader(norm.output[0], "Clip")
        if axes is None or np.size(axes) != 1 or clip is None or len(clip.input) < 2:
            continue
        eps = index.const.get(clip.input[1])
        if eps is None or eps.size != 1 or (len(clip.input) > 2 and clip.input[2]):
            continue
        found = [norm, clip]
        expand = index.only_reader(clip.output[0], "Expand")
        divisor = expand.output[0] if expand is not None else clip.output[0]
        found += [expand] if expand is not None else []
        div = index.only_reader(divisor, "Div")
        if div is None or list(div.input) != [norm.input[0], divisor]:
            continue
        found.append(div)
        made = helper.make_node(
            L2_NORMALIZE, [norm.input[0]], [div.output[0]], name=div.name, axis=int(np.ravel(axes)[0]),
            epsilon=float(eps.reshape(-1)[0]),
        )  # fmt: skip
        matches.append((made, found))
    return _replaced(nodes, matches)


def group_norms(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """nn.GroupNorm as tcc and torch export it: a Reshape of x to [N, groups, -1], an InstanceNormalization of unit
    scale and zero bias, a Reshape back to x's shape, then (affine) a Mul and an Add of one value per channel: one
    GroupNorm of x (its weight and bias the Mul's and Add's constants)."""
    index = _Index(nodes, const)
    matches: list[tuple[object, list]] = []
    for grouped in (n for n in nodes if n.op_type == "Reshape" and len(n.input) == 2):
        shape, target = shapes.get(grouped.input[0]), index.const.get(grouped.input[1])
        norm = index.only_reader(grouped.output[0], "InstanceNormalization")
        back = index.only_reader(norm.output[0], "Reshape") if norm is not None else None
        if shape is None or target is None or back is None or len(target) != 3 or len(shape) < 2:
            continue
        groups, ones, zeros = int(target[1]), index.const.get(norm.input[1]), index.const.get(norm.input[2])
        restored = index.const.get(back.input[1])
        if ones is None or zeros is None or restored is None or groups < 1 or shape[0] % groups:
            continue
        if not (np.all(ones == 1) and np.all(zeros == 0)) or [int(d) for d in restored[1:]] != list(shape):
            continue
        found, out, params = [grouped, norm, back], back.output[0], []
        along = (shape[0],) + (1,) * (len(shape) - 1)
        for op in ("Mul", "Add"):  # the affine: one constant per channel each
            step = index.only_reader(out, op)
            operand = index.operands(step) if step is not None else None
            value = _without_leading_ones(operand[1], len(along)) if operand is not None else None
            if operand is None or operand[0] != out or value is None or value.shape != along:
                break
            params.append(next(i for i in step.input if i in index.const))
            found.append(step)
            out = step.output[0]
        if len(params) == 1:  # a scale without its shift: not the norm's affine
            found, out, params = found[:3], back.output[0], []
        made = helper.make_node(
            GROUP_NORM, [grouped.input[0], *params], [out], name=found[-1].name, groups=groups,
            epsilon=float(_attr(norm, "epsilon", 1e-5)),
        )  # fmt: skip
        matches.append((made, found))
    return _replaced(nodes, matches)


def folded_batch_norms(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """LeViT's BatchNorm1d over tokens, `bn(x.flatten(0, 1)).reshape_as(x)`: a Flatten of every axis but the last, a
    BatchNormalization, a Reshape back. Per sample it is the inference BN's affine over the last axis, x * a + b,
    written as a Mul and an Add of constants (the spec's params, tcc.onnx_import.patterns.constant_operands)."""
    index = _Index(nodes, const)
    matches: list[tuple[object, list]] = []
    for flat in (n for n in nodes if n.op_type == "Flatten"):
        shape = shapes.get(flat.input[0])
        bn = index.only_reader(flat.output[0], "BatchNormalization")
        back = index.only_reader(bn.output[0], "Reshape") if bn is not None else None
        if shape is None or back is None or int(_attr(flat, "axis", 1)) != len(shape):
            continue
        target, params = index.const.get(back.input[1]), [index.const.get(i) for i in bn.input[1:5]]
        if target is None or [int(d) for d in target] != [1, *shape] or any(p is None for p in params):
            continue
        gamma, beta, mean, var = (np.asarray(p, np.float64) for p in params)
        a = gamma / np.sqrt(var + float(_attr(bn, "epsilon", 1e-5)))
        name = bn.name or bn.output[0]
        const[f"{name}/a"], const[f"{name}/b"] = a.astype(np.float32), (beta - mean * a).astype(np.float32)
        scaled = f"{name}/scaled"
        shapes[scaled] = tuple(shape)
        made = [
            helper.make_node("Mul", [flat.input[0], f"{name}/a"], [scaled], name=f"{name}/scale"),
            helper.make_node("Add", [scaled, f"{name}/b"], [back.output[0]], name=name),
        ]
        matches.append((made, [flat, bn, back]))
    return _replaced(nodes, matches)


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


def rewrite_patterns(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """Every ONNX-level pattern replaced, in order: the arithmetic forms first, then the NHWC runs made of them,
    then the reductions the layer norms did not take, last the constant operands no pattern took."""
    nodes = window_attention_constants(single_axis_slices(nodes, const, shapes), const, shapes)
    nodes = folded_batch_norms(batch_axis_unbinds(nodes, const, shapes), const, shapes)
    nodes = group_norms(l2_normalizations(nodes, const, shapes), const, shapes)
    nodes = learned_tensors(rows_linears(channel_shuffles(nodes, const), const, shapes), const, shapes)
    nodes = layer_norms_and_gelus(slices(scaled_products(nodes, const, shapes), const, shapes), const)
    return constant_operands(global_reductions(channels_last_runs(nodes, const), const, shapes), const, shapes)
