"""The patterns' shared reading of the graph: who makes and who reads each value (Index), a node's attributes, a
match's nodes replaced by its new ones, and the per-sample Reshape nodes (with their shape constants) that patterns add.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from onnx import helper


class Index:
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


def attr(node, name: str, default=None):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def replaced(nodes: list, matches: Sequence[tuple[object, list]]) -> list:
    """The nodes with each match's nodes replaced by its new node (or list of nodes), placed where the match's last
    node was."""
    last = {id(found[-1]): new if isinstance(new, list) else [new] for new, found in matches}
    gone = {id(n) for _, found in matches for n in found}
    return [m for n in nodes for m in last.get(id(n), [] if id(n) in gone else [n])]


def without_leading_ones(c: np.ndarray, rank: int) -> np.ndarray | None:
    """`c` at `rank` dimensions, the leading ones the broadcast added dropped; None where they are not ones."""
    extra = c.ndim - rank
    return c.reshape(c.shape[extra:]) if extra >= 0 and all(d == 1 for d in c.shape[:extra]) else None


def shape_constant(const: dict, name: str, per_sample) -> str:
    const[f"{name}/shape"] = np.array([-1, *per_sample], np.int64)
    return f"{name}/shape"


def reshape_node(made: list, const: dict, shapes: dict, x: str, name: str, per_sample) -> str:
    made.append(helper.make_node("Reshape", [x, shape_constant(const, name, per_sample)], [name], name=name))
    shapes[name] = tuple(per_sample)
    return name
