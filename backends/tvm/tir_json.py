"""Editing a PrimFunc in its serialized form: this TVM exposes no TIR mutator to Python, so tcc's TIR rewrites
(the dense-block concats in place, `concat.py`; the x86 requantization on lane pairs, `int8/lane_pairs.py`) save
the function as TVM's JSON node graph, edit the nodes and load it back. In that graph every int of a node's fields
or arrays is a node index; floats and strings are values."""
from __future__ import annotations

import json

import tvm
from tvm import tirx
from tvm_ffi.serialization import from_json_graph_str


class SerializedFunc:
    """A PrimFunc as TVM's JSON node graph, edited by appending nodes (nodes may be shared: a node is changed in
    place only where every reference to it should see the change)."""

    def __init__(self, func: tirx.PrimFunc):
        self.doc = json.loads(tvm.ir.save_json(func))
        self.nodes = self.doc["nodes"]

    def add(self, type_key: str, data) -> int:
        self.nodes.append({"type": type_key, "data": data})
        return len(self.nodes) - 1

    def splice(self, at: int, template: "Template", bound: dict[str, int]) -> None:
        """Node `at` becomes the template's expression, its placeholder Vars replaced by the nodes `bound` (name
        -> node index) of this graph."""
        none = next(i for i, n in enumerate(self.nodes) if n["type"] == "None")
        index: dict[int, int] = {}
        for j, node in enumerate(template.nodes):
            if node["type"] == "None":
                index[j] = none
            elif j in template.placeholders:
                index[j] = bound[template.placeholders[j]]
            else:
                data = node.get("data")
                if isinstance(data, dict):
                    data = {k: index[v] if type(v) is int else v for k, v in data.items()}
                elif isinstance(data, list):
                    data = [index[v] for v in data]
                self.nodes.append({**node, "data": data} if "data" in node else dict(node))
                index[j] = len(self.nodes) - 1
        self.nodes[at] = dict(self.nodes[index[template.root]])

    def func(self) -> tirx.PrimFunc:
        # the graph is of this TVM's version: no upgrade step (tvm.ir.load_json's, ~30 ms a kernel); the PrimFunc
        # is rebuilt so that its type follows edited parameters
        f = from_json_graph_str(json.dumps(self.doc))
        return tirx.PrimFunc(f.params, f.body, f.ret_type, f.attrs)


class Template:
    """An expression of placeholder Vars as a JSON node graph, to splice into a `SerializedFunc`."""

    def __init__(self, expr: tirx.PrimExpr):
        graph = json.loads(tvm.ir.save_json(expr))
        self.nodes: list = graph["nodes"]
        self.root: int = graph["root_index"]
        self.placeholders: dict[int, str] = {j: self.nodes[n["data"]["name"]]["data"]
                                             for j, n in enumerate(self.nodes) if n["type"] == "ir.Var"}
