"""Editing a PrimFunc in its serialized form: this TVM exposes no TIR mutator to Python, so tcc's TIR rewrites
(the dense-block concats in place, `concat.py`; the x86 requantization on lane pairs, `int8/lane_pairs.py`; ARM's
requantization intrinsics split by register, `int8/register_split.py`; a conv's accumulators started from its bias,
`init_from`) save the function as TVM's JSON node graph, edit the nodes and load it back. In that graph every int
of a node's fields or arrays is a node index; floats and strings are values (a buffer type's alignment and offset
factor excepted: `Template` never copies one)."""

from __future__ import annotations

import functools
import json

import tvm
from tvm import tirx
from tvm_ffi.serialization import from_json_graph_str


def node_dtype(nodes: list, index: int) -> str | None:
    """The dtype of expression node `index` (None for a node without one)."""
    ty = nodes[index].get("data", {}).get("ty") if isinstance(nodes[index].get("data"), dict) else None
    if ty is None:
        return None
    data = nodes[ty].get("data")
    return data.get("dtype") if isinstance(data, dict) else None


def per_function_pass(name: str, rewrite) -> tvm.transform.Pass:
    """A module pass applying `rewrite` (PrimFunc -> PrimFunc) to every PrimFunc of the module."""

    @tvm.transform.module_pass(opt_level=0, name=name)
    def apply(mod, _ctx):
        return tvm.IRModule(
            {gv: rewrite(f) if isinstance(f, tirx.PrimFunc) else f for gv, f in mod.functions_items()}, attrs=mod.attrs
        )

    return apply


class SerializedFunc:
    """A PrimFunc as TVM's JSON node graph, edited by appending nodes (nodes may be shared: a node is changed in
    place only where every reference to it should see the change)."""

    def __init__(self, func: tirx.PrimFunc):
        self.doc = json.loads(tvm.ir.save_json(func))
        self.nodes = self.doc["nodes"]
        self.none = next(i for i, n in enumerate(self.nodes) if n["type"] == "None")

    def add(self, type_key: str, data) -> int:
        self.nodes.append({"type": type_key, "data": data})
        return len(self.nodes) - 1

    def splice(self, at: int, template: Template, bound: dict[str, int]) -> None:
        """Node `at` becomes the template's expression, its placeholder Vars replaced by the nodes `bound` (name
        -> node index) of this graph."""
        self.nodes[at] = dict(self.nodes[self.insert(template, bound)])

    def insert(self, template: Template, bound: dict[str, int]) -> int:
        """The template's expression added as new nodes, its placeholder Vars replaced by the nodes `bound` (name
        -> node index) of this graph; returns its root's index."""
        index: dict[int, int] = {}
        for j, node in enumerate(template.nodes):
            if j not in template.used:
                continue
            if node["type"] == "None":
                index[j] = self.none
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
        return index[template.root]

    def string(self, index: int) -> str | None:
        node = self.nodes[index]
        return node["data"] if node["type"] == "ffi.String" else None

    def param(self, name: str) -> int:
        """The node of the function's parameter `name`."""
        root = self.nodes[self.doc["root_index"]]["data"]
        for p in self.nodes[root["params"]]["data"]:
            if self.string(self.nodes[p]["data"]["name"]) == name:
                return p
        raise KeyError(name)

    def block(self, name: str) -> dict:
        """The data of the (schedulable) block `name`."""
        for node in self.nodes:
            if node["type"] == "s_tir.SBlock" and self.string(node["data"]["name_hint"]) == name:
                return node["data"]
        raise KeyError(name)

    def func(self) -> tirx.PrimFunc:
        # the graph is of this TVM's version: no upgrade step (tvm.ir.load_json's, ~30 ms a kernel); the PrimFunc
        # is rebuilt so that its type follows edited parameters
        f = from_json_graph_str(json.dumps(self.doc))
        return tirx.PrimFunc(f.params, f.body, f.ret_type, f.attrs)


def init_from(func: tirx.PrimFunc, block: str, param: str) -> tirx.PrimFunc:
    """`func` with the reduction block `block` starting from its parameter `param` (a vector over the output's last
    axis: out[..., c] = param[c] + the sum) instead of 0: what a conv's bias added after the reduction, one vector
    instruction per output vector, costs nothing in the accumulators' initialization. (TE's reductions take an
    `init`, which te.create_prim_func drops.) The block's reads stay those of its update, which a TensorIntrin
    matches; decompose_reduction gives the initialization its own block and reads."""
    doc = SerializedFunc(func)
    data = doc.block(block)
    store = doc.nodes[data["init"]]["data"]
    channel = doc.nodes[store["indices"]]["data"][-1]
    bound = {"bias": doc.param(param), "channel": channel}
    store["value"] = doc.insert(_load_template(node_dtype(doc.nodes, channel) or "int64"), bound)
    return doc.func()


@functools.cache
def _load_template(index_dtype: str) -> Template:
    """bias[channel] of placeholders: an int32 vector and an index of `index_dtype`."""
    return Template(tirx.BufferLoad(tirx.decl_buffer((1,), "int32", name="bias"), [tirx.Var("channel", index_dtype)]))


class Template:
    """An expression of placeholder Vars as a JSON node graph, to splice into a `SerializedFunc`."""

    def __init__(self, expr: tirx.PrimExpr):
        graph = json.loads(tvm.ir.save_json(expr))
        self.nodes: list = graph["nodes"]
        self.root: int = graph["root_index"]
        self.placeholders: dict[int, str] = {
            j: self.nodes[n["data"]["name"]]["data"] for j, n in enumerate(self.nodes) if n["type"] == "ir.Var"
        }
        # the nodes the expression uses, a placeholder's own (its type: a buffer's holds raw ints) left out
        self.used: set[int] = set()
        stack = [self.root]
        while stack:
            j = stack.pop()
            if j in self.used:
                continue
            self.used.add(j)
            data = self.nodes[j].get("data")
            if j not in self.placeholders and isinstance(data, (dict, list)):
                stack += [v for v in (data.values() if isinstance(data, dict) else data) if type(v) is int]
