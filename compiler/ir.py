"""The IR: a typed dataflow graph of named nodes, each an op from the op table with inferred output shapes.

Nodes are kept in the order the spec defines them, which is a topological order (an input can only name an
earlier node) and the parameter order used by `--by-order` weight import. The IR imports neither torch nor onnx.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from .errors import Location
from .ops import OPS, OpDef, ParamSpec, Shape

INPUT = "input"


@dataclass(frozen=True)
class Ref:
    """One output of one node."""

    node: str
    index: int = 0

    def __str__(self) -> str:
        return self.node if self.index == 0 else f"{self.node}.{self.index}"


@dataclass
class Node:
    name: str  # hierarchical, e.g. dense2.layer3.dw
    op: str  # a key of OPS, or "input"
    inputs: tuple[Ref, ...]
    attrs: dict[str, Any]
    shapes: tuple[Shape, ...]  # one per output, per sample
    params: dict[str, ParamSpec] = field(default_factory=dict)
    macs: int = 0
    where: Location | None = None

    @property
    def shape(self) -> Shape:
        return self.shapes[0]

    @property
    def opdef(self) -> OpDef:
        return OPS[self.op]

    def param_count(self, trainable_only: bool = True) -> int:
        return sum(p.numel for p in self.params.values() if p.trainable or not trainable_only)


@dataclass
class Graph:
    name: str
    nodes: dict[str, Node] = field(default_factory=dict)
    output: Ref | None = None
    aux_outputs: dict[str, Ref] = field(default_factory=dict)  # training-only heads
    # node names in parameter order where it is not the node order (a spec's `order: first`); None: node order
    param_order: list[str] | None = None

    # ------------------------------------------------------------------ construction
    def add(self, node: Node) -> Node:
        assert node.name not in self.nodes, node.name
        self.nodes[node.name] = node
        return node

    def ref_name(self, ref: Ref) -> str:
        """`node` for single-output nodes, `node.k` for outputs of multi-output nodes (split)."""
        return f"{ref.node}.{ref.index}" if len(self.nodes[ref.node].shapes) > 1 else ref.node

    def shape(self, ref: Ref) -> Shape:
        return self.nodes[ref.node].shapes[ref.index]

    @property
    def input(self) -> Node:
        return self.nodes[INPUT]

    @property
    def main_output(self) -> Ref:
        """The output (a graph being built has none yet; every loaded spec's has one)."""
        assert self.output is not None, f"graph {self.name} has no output yet"
        return self.output

    # ------------------------------------------------------------------ analysis
    def to_networkx(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for n in self.nodes.values():
            g.add_node(n.name, op=n.op)
            for r in n.inputs:
                g.add_edge(r.node, n.name)
        return g

    def inference_nodes(self) -> set[str]:
        """Nodes the main output depends on (auxiliary heads excluded)."""
        g = self.to_networkx()
        out = self.main_output.node
        ancestors: set[str] = nx.ancestors(g, out)
        return ancestors | {out}

    def live_nodes(self) -> set[str]:
        g = self.to_networkx()
        live = set()
        for r in [self.main_output, *self.aux_outputs.values()]:
            live |= nx.ancestors(g, r.node) | {r.node}
        return live

    def consumers(self) -> dict[str, list[str]]:
        users: dict[str, list[str]] = {name: [] for name in self.nodes}
        for n in self.nodes.values():
            for r in n.inputs:
                users[r.node].append(n.name)
        return users

    def parameters(self) -> list[tuple[str, ParamSpec]]:
        """Every parameter and buffer as (dotted name, spec), in parameter order: the spec's node order, except
        where a node says `order: first` (the order of `--by-order` import and of the PyTorch state_dict)."""
        nodes = [self.nodes[n] for n in self.param_order] if self.param_order else self.nodes.values()
        return [(f"{n.name}.{k}", p) for n in nodes for k, p in n.params.items()]

    # ------------------------------------------------------------------ totals
    @property
    def param_count(self) -> int:
        return sum(n.param_count() for n in self.nodes.values())

    @property
    def macs(self) -> int:
        live = self.inference_nodes()
        return sum(n.macs for n in self.nodes.values() if n.name in live)

    @property
    def size_bytes_fp32(self) -> int:
        """Bytes of every float tensor the model stores (trainable parameters and BN statistics)."""
        return sum(4 * p.numel for _, p in self.parameters() if p.dtype == "float32")

    def summary(self) -> dict[str, Any]:
        live = self.inference_nodes()
        layers = [
            {
                "name": n.name,
                "op": n.op,
                "inputs": [self.ref_name(r) for r in n.inputs],
                "shape": list(n.shape) if len(n.shapes) == 1 else [list(s) for s in n.shapes],
                "params": n.param_count(),
                "macs": n.macs if n.name in live else 0,
                **({"aux": True} if n.name not in live and n.op != "input" else {}),
            }
            for n in self.nodes.values()
        ]
        return {
            "name": self.name,
            "input": list(self.input.shape),
            "output": list(self.shape(self.main_output)),
            "params": self.param_count,
            "macs": self.macs,
            "size_bytes_fp32": self.size_bytes_fp32,
            "nodes": len(self.nodes) - 1,
            "layers": layers,
        }


def numel(shape: Iterable[int]) -> int:
    return math.prod(shape)
