"""Layout patterns: ShuffleNet's channel shuffle, channel ops between a Transpose to NHWC and one back (read in
NCHW), attention's unbind of a batch axis moved off the front, and Slices (kept whole, covering the channels, or of
several axes).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ..ops import CHANNEL_LINEAR, CHANNEL_SHUFFLE, LAYER_NORM, slice_ranges
from .graph import Index, attr, replaced, reshape_node

_NHWC, _NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
_UNARY = ("Relu", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Gelu", "Clip", "Identity", "Dropout")


def channel_shuffles(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """ShuffleNet's channel shuffle as exporters write it: Reshape to [N, g, C/g, H, W], Transpose (0, 2, 1, 3, 4),
    Reshape back to [N, C, H, W], each read only by the next: one ChannelShuffle(groups=g) node."""
    index = Index(nodes, const)
    matches = []
    for n in nodes:
        shape = const.get(n.input[1]) if n.op_type == "Reshape" and len(n.input) > 1 else None
        t = index.only_reader(n.output[0], "Transpose") if shape is not None and shape.size == 5 else None
        back = index.only_reader(t.output[0], "Reshape") if t is not None else None
        if (
            back is not None
            and shape is not None
            and list(attr(t, "perm", [])) == [0, 2, 1, 3, 4]
            and const.get(back.input[1]) is not None
            and const[back.input[1]].size == 4
        ):
            shuffle = helper.make_node(
                CHANNEL_SHUFFLE, [n.input[0]], [back.output[0]], name=back.name or n.name, groups=int(shape[1])
            )
            matches.append((shuffle, [n, t, back]))
    return replaced(nodes, matches)


def _channels_last(first, index: Index):
    """(nodes, matched) where `first` transposes NCHW to NHWC and every node up to the transpose back works on the
    last axis, each read only by the next (ConvNeXt's block, LayerNorm2d): the same ops on NCHW's channels."""
    chain: list = []
    value = first.output[0]
    while True:
        node = index.only_reader(value, *_UNARY, LAYER_NORM, "LayerNormalization", "MatMul", "Add", "Mul", "Transpose")
        if node is None:
            return None
        if node.op_type == "Transpose":
            if list(attr(node, "perm", [])) != _NCHW or not chain:
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


def _in_channels(chain: list, index: Index) -> list | None:
    """The NHWC nodes as their NCHW equivalents (new nodes: the graph's own are the reference ORT runs)."""
    rewritten, k = [], 0
    while k < len(chain):
        node = chain[k]
        if node.op_type in (LAYER_NORM, "LayerNormalization"):
            if int(attr(node, "axis", -1)) not in (-1, 3):
                return None
            new = helper.make_node(
                LAYER_NORM,
                list(node.input),
                list(node.output),
                name=node.name,
                axis=1,
                epsilon=float(attr(node, "epsilon", 1e-5)),
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


def channels_last_runs(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """Ops applied over the channels between a Transpose to NHWC and one back, read in NCHW (see _channels_last)."""
    index = Index(nodes, const)
    out: list = []
    done: set = set()
    runs = {}
    for n in nodes:
        if n.op_type == "Transpose" and list(attr(n, "perm", [])) == _NHWC:
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


def batch_axis_unbinds(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """Attention's `qkv.permute(2, 0, 3, 1, 4).unbind(0)` (timm's DeiT, EdgeNeXt): a Transpose that moves the batch
    axis off the front, read only by a Split of its first axis into ones whose every part is squeezed, per sample:
    a Split of the input's axis that went first, each part reshaped without it and permuted with the batch first.
    The same values, in forms the spec says (its permute keeps the batch axis first)."""
    index = Index(nodes, const)
    matches: list[tuple[object, list]] = []
    for t in (n for n in nodes if n.op_type == "Transpose"):
        perm = [int(p) for p in attr(t, "perm", [])]
        split = index.only_reader(t.output[0], "Split") if len(perm) > 2 and perm[0] != 0 and perm[1] == 0 else None
        shape = shapes.get(t.input[0])
        if split is None or shape is None or int(attr(split, "axis", 0)) != 0:
            continue
        squeezes = [index.only_reader(o, "Squeeze") for o in split.output]
        sizes = index.const.get(split.input[1]) if len(split.input) > 1 else attr(split, "split")
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
            flat = reshape_node(made, const, shapes, part, f"{name}/squeezed{k}", kept[1:])
            inner = [p - (p > axis) for p in perm[1:]]
            made.append(helper.make_node("Transpose", [flat], list(squeeze.output), name=squeeze.name, perm=inner))
        matches.append((made, [t, split, *squeezes]))
    return replaced(nodes, matches)


def _slice_bounds(node, index: Index, shape: tuple) -> dict[int, tuple[int, int]] | None:
    """{axis (with the batch): (start, end)} of a Slice with constant bounds and steps of 1, clamped to the shape."""
    found = slice_ranges(node, index.const, shape)
    if found is None or any(step != 1 for _, _, step in found.values()):
        return None
    return {a: (start, end) for a, (start, end, _) in found.items()}


def slices(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """A Slice that keeps everything (GhostNet's `out[:, :out_chs]` where nothing is cut) as Identity; Slices of
    one value along the channels that together cover it once (torchvision's `chunk`, ReXNet's partial residual) as
    one Split, its outputs in channel order."""
    index = Index(nodes, const)
    by_input: dict[str, list] = defaultdict(list)
    kept = {}
    for n in nodes:
        shape = shapes.get(n.input[0]) if n.op_type == "Slice" and n.input else None
        bounds = _slice_bounds(n, index, shape) if shape else None
        if bounds is None or shape is None:
            continue
        dims = (1, *shape)
        cut = {a: b for a, b in bounds.items() if b != (0, dims[a])}
        if not cut:
            kept[id(n)] = helper.make_node("Identity", [n.input[0]], [n.output[0]], name=n.name)
        elif list(cut) == [1]:
            by_input[n.input[0]].append((cut[1], n))
    matches: list[tuple[int, Any]] = list(kept.items())
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


def single_axis_slices(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """A Slice of several axes (onnxsim merges Swin's patch-merging `x[:, 0::2, 0::2]` into one) as a chain of
    Slices of one axis each, in the axes' order: the spec's slice takes one axis."""
    out = []
    for n in nodes:
        shape = shapes.get(n.input[0]) if n.op_type == "Slice" and n.input else None
        ranges = slice_ranges(n, const, shape) if shape is not None else None
        if (
            not ranges
            or shape is None
            or len(ranges) < 2
            or 0 in ranges
            or any(step < 1 for _, _, step in ranges.values())
        ):
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
