"""Normalizations and reductions written in parts: LayerNorm and GELU as arithmetic, F.normalize, nn.GroupNorm's
export, LeViT's BatchNorm1d over tokens, and ReduceMean / ReduceMax over H and W (the global pools).
"""

from __future__ import annotations

import math

import numpy as np
from onnx import helper

from ..ops import GROUP_NORM, L2_NORMALIZE, LAYER_NORM
from .graph import Index, attr, replaced, without_leading_ones


def _reduce_axes(node, index: Index) -> list[int] | None:
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1:  # opset 18: the axes are an input
        axes = index.const.get(node.input[1])
    return None if axes is None or not int(attr(node, "keepdims", 1)) else [int(a) for a in np.ravel(axes)]


def _layer_norm(mean, index: Index):
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
    if sqrt is None or found is None or list(div.input) != [centered, sqrt.output[0]]:
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


def _gelu(erf, index: Index):
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


def layer_norms_and_gelus(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """LayerNorm and GELU written as arithmetic (below opsets 17 and 20) as one node each."""
    index = Index(nodes, const)
    matches = []
    for n in nodes:
        found = _layer_norm(n, index) if n.op_type == "ReduceMean" else _gelu(n, index) if n.op_type == "Erf" else None
        if found is not None:
            matches.append(found)
    return replaced(nodes, matches)


def l2_normalizations(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """`F.normalize(x, dim=d)` as torch exports it, x / expand(clip(ReduceL2(x, [d], keepdims), eps), shape(x)): one
    L2Normalize of x (the Expand is optional; each inner value read only by the next)."""
    index = Index(nodes, const)
    matches: list[tuple[object, list]] = []
    for norm in (n for n in nodes if n.op_type == "ReduceL2" and int(attr(n, "keepdims", 1))):
        axes = attr(norm, "axes") if len(norm.input) < 2 else index.const.get(norm.input[1])
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
    return replaced(nodes, matches)


def group_norms(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """nn.GroupNorm as tcc and torch export it: a Reshape of x to [N, groups, -1], an InstanceNormalization of unit
    scale and zero bias, a Reshape back to x's shape, then (affine) a Mul and an Add of one value per channel: one
    GroupNorm of x (its weight and bias the Mul's and Add's constants)."""
    index = Index(nodes, const)
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
            value = without_leading_ones(operand[1], len(along)) if operand is not None else None
            if operand is None or operand[0] != out or value is None or value.shape != along:
                break
            params.append(next(i for i in step.input if i in index.const))
            found.append(step)
            out = step.output[0]
        if len(params) == 1:  # a scale without its shift: not the norm's affine
            found, out, params = found[:3], back.output[0], []
        made = helper.make_node(
            GROUP_NORM, [grouped.input[0], *params], [out], name=found[-1].name, groups=groups,
            epsilon=float(attr(norm, "epsilon", 1e-5)),
        )  # fmt: skip
        matches.append((made, found))
    return replaced(nodes, matches)


def folded_batch_norms(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """LeViT's BatchNorm1d over tokens, `bn(x.flatten(0, 1)).reshape_as(x)`: a Flatten of every axis but the last, a
    BatchNormalization, a Reshape back. Per sample it is the inference BN's affine over the last axis, x * a + b,
    written as a Mul and an Add of constants (the spec's params, tcc.onnx_import.patterns.constant_operands)."""
    index = Index(nodes, const)
    matches: list[tuple[object, list]] = []
    for flat in (n for n in nodes if n.op_type == "Flatten"):
        shape = shapes.get(flat.input[0])
        bn = index.only_reader(flat.output[0], "BatchNormalization")
        back = index.only_reader(bn.output[0], "Reshape") if bn is not None else None
        if shape is None or back is None or int(attr(flat, "axis", 1)) != len(shape):
            continue
        target, params = index.const.get(back.input[1]), [index.const.get(i) for i in bn.input[1:5]]
        if target is None or [int(d) for d in target] != [1, *shape] or any(p is None for p in params):
            continue
        gamma, beta, mean, var = (np.asarray(p, np.float64) for p in params)
        a = gamma / np.sqrt(var + float(attr(bn, "epsilon", 1e-5)))
        name = bn.name or bn.output[0]
        const[f"{name}/a"], const[f"{name}/b"] = a.astype(np.float32), (beta - mean * a).astype(np.float32)
        scaled = f"{name}/scaled"
        shapes[scaled] = tuple(shape)
        made = [
            helper.make_node("Mul", [flat.input[0], f"{name}/a"], [scaled], name=f"{name}/scale"),
            helper.make_node("Add", [scaled, f"{name}/b"], [back.output[0]], name=name),
        ]
        matches.append((made, [flat, bn, back]))
    return replaced(nodes, matches)


def global_reductions(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """ReduceMean / ReduceMax over H and W (timm's `x.mean((2, 3), keepdim=True)`) as the global pool; without
    keepdims, the pool then a Flatten."""
    index = Index(nodes, const)
    out = []
    for n in nodes:
        pool = {"ReduceMean": "GlobalAveragePool", "ReduceMax": "GlobalMaxPool"}.get(n.op_type)
        axes = attr(n, "axes")
        if axes is None and len(n.input) > 1:
            axes = index.const.get(n.input[1])
        rank = len(shapes.get(n.input[0], ())) + 1 if n.input else 0
        if pool is None or axes is None or rank != 4 or sorted(int(a) % 4 for a in np.ravel(axes)) != [2, 3]:
            out.append(n)
        elif int(attr(n, "keepdims", 1)):
            out.append(helper.make_node(pool, [n.input[0]], [n.output[0]], name=n.name))
        else:
            pooled = f"{n.output[0]}/pooled"
            out += [
                helper.make_node(pool, [n.input[0]], [pooled], name=n.name),
                helper.make_node("Flatten", [pooled], [n.output[0]], name=f"{n.name}/flatten", axis=1),
            ]
    return out
