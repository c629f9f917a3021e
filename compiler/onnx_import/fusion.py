"""Spec-level patterns over the converted nodes: what exporters write in parts read back as the spec's one op or block.

Each pass takes the imported nodes (topological order) and returns them with the pattern replaced; the replacing node
keeps the id of the pattern's last node, so the nodes reading it are unchanged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from .ops import SpecNode
from .reader import ImportedNode

_GATES = {"hardsigmoid": "hardswish", "sigmoid": "silu"}  # x * gate(x): the activation exporters write in parts

CONV_BN_ACT = "conv_bn_act"  # the zoo's block (zoo/blocks/conv_bn_act.yaml): conv (no bias, "same") -> BN -> act
CONV_BN_ACT_DEFAULTS = {"kernel": 3, "stride": 1, "groups": 1, "eps": 1e-5, "momentum": 0.1, "act": "relu"}
_BLOCK_ACTS = ("relu", "relu6", "silu", "hardswish", "sigmoid")  # the block's `act` choices (besides none)


def readers(nodes: list[ImportedNode]) -> Counter:
    """How many inputs of the nodes read each value."""
    return Counter(i for n in nodes for i in n.inputs)


def gated_activations(nodes: list[ImportedNode], output: str) -> list[ImportedNode]:
    """`x * hardsigmoid(x)` read back as hardswish and `x * sigmoid(x)` as silu (opset 13 has no HardSwish; torch
    writes SiLU as Sigmoid and Mul), where the gate feeds nothing else: the spec says what the model computes."""
    read = readers(nodes)
    by_id = {n.id: n for n in nodes}
    dropped = set()
    for n in nodes:
        if n.node.op != "mul" or len(n.inputs) != 2:
            continue
        for x, gate in (n.inputs, n.inputs[::-1]):
            g = by_id.get(gate)
            if g is not None and g.node.op in _GATES and g.inputs == [x] and read[gate] == 1 and gate != output:
                n.node.op, n.inputs = _GATES[g.node.op], [x]
                dropped.add(gate)
                break
    return [n for n in nodes if n.id not in dropped]


def nary_adds(nodes: list[ImportedNode], output: str) -> list[ImportedNode]:
    """`(a + b) + c`, the inner sum read only by the outer, as one add of a, b, c (ONNX's Add takes two; tcc writes
    an add of n values as such a chain, and sums left to right as it does, so the result is the same)."""
    read = readers(nodes)
    by_id = {n.id: n for n in nodes}
    merged: set[str] = set()
    for n in nodes:
        inner = by_id.get(n.inputs[0]) if n.node.op == "add" and n.inputs else None
        if inner is not None and inner.node.op == "add" and read[inner.id] == 1 and inner.id != output:
            n.inputs = inner.inputs + n.inputs[1:]
            merged.add(inner.id)
    return [n for n in nodes if n.id not in merged]


def _same_padding(conv: SpecNode) -> bool:
    kernel = conv.args["kernel"]
    return isinstance(kernel, int) and conv.args.get("padding", 0) == (kernel - 1) // 2


def _fits_block(conv: ImportedNode) -> bool:
    """A conv the block can write: no bias, a square kernel with (kernel - 1) // 2 padding, no dilation."""
    args = conv.node.args
    return (
        conv.node.op == "conv2d"
        and args.get("bias") is False
        and _same_padding(conv.node)
        and "dilation" not in args
        and isinstance(args.get("stride", 1), int)
    )


def _module_of(parts: list[ImportedNode], nodes: list[ImportedNode]) -> tuple[str, ...]:
    """The fused node's module path: the one module the parts make up whole (torchvision's Conv2dNormActivation,
    `features.0`), else the conv's own (ResNet's conv1 / bn1 / relu sit in a module with more)."""
    common = parts[0].path
    for p in parts[1:]:
        k = 0
        while k < min(len(common), len(p.path)) and common[k] == p.path[k]:
            k += 1
        common = common[:k]
    if common and sum(n.path[: len(common)] == common for n in nodes) == len(parts):
        return common
    return parts[0].path


def conv_bn_act(nodes: list[ImportedNode], output: str) -> list[ImportedNode]:
    """Conv (no bias, "same" padding) -> BatchNorm (-> relu / relu6 / silu / hardswish / sigmoid), each read only
    by the next, as one call of the zoo's conv_bn_act block; its tensors are the block's (`conv.weight`, `bn.*`)."""
    read = readers(nodes)
    next_of = {n.inputs[0]: n for n in nodes if len(n.inputs) == 1 and read[n.inputs[0]] == 1}
    fused: dict[str, ImportedNode] = {}  # id of the pattern's first node -> the fused node
    dropped: set[str] = set()
    for conv in nodes:
        bn = next_of.get(conv.id)
        if not _fits_block(conv) or bn is None or bn.node.op != "batchnorm" or conv.id == output:
            continue
        act = next_of.get(bn.id)
        parts = [conv, bn] + ([act] if act is not None and act.node.op in _BLOCK_ACTS and bn.id != output else [])
        args = {k: v for k, v in conv.node.args.items() if k in ("out", "kernel", "stride", "groups")}
        args.update(bn.node.args)  # eps, momentum where not BatchNorm's defaults
        args["act"] = parts[2].node.op if len(parts) == 3 else "none"
        args = {k: v for k, v in args.items() if v != CONV_BN_ACT_DEFAULTS.get(k)}
        tensors = {f"conv.{k}": v for k, v in conv.node.tensors.items()}
        tensors.update({f"bn.{k}": v for k, v in bn.node.tensors.items()})
        spec = SpecNode(CONV_BN_ACT, args, tensors, conv.node.weight_name, block=True)
        last = parts[-1]
        fused[conv.id] = replace(last, node=spec, inputs=conv.inputs, path=_module_of(parts, nodes))
        dropped.update(p.id for p in parts)
    out = []
    for n in nodes:
        if n.id in fused:
            out.append(fused[n.id])
        elif n.id not in dropped:
            out.append(n)
    return out
