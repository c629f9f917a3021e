"""Dense-block concats without copies: a Relax pass on the fused module (after FuseTIR, before the schedules).

A DenseNet block computes x_{i+1} = concat(x_i, y_i, axis) layer after layer: every concat kernel copies the whole
growing tensor (DDSNet: 16 kernels, about 0.5 ms of its 8.8 ms on one core). Here all x_i of one chain become one
tensor W of the last x's shape: the kernel producing x_0 writes its part of W (its output buffer widened), each
y_i's kernel writes its channels [C_i, C_i + g) of W in place (`call_tir_inplace`: no allocation, Relax's memory
planning keeps W's one storage), every other reader of x_i reads W (its input buffer widened: its indices stay
in [0, C_i), the part of W that is final once x_i exists) and the concat kernels are gone. A pure memory change:
the values and the order of every sum are those of the module without the pass.

A link of a chain is taken only where it is safe: the concat is exactly TOPI's concat of two tensors (compared
structurally with a reference PrimFunc), y_i has no reader but the concat and is the single output of a plain
call_tir that takes no tensor of the chain, and each x_i but the last is read by call_tir kernels only (and
does not leave the dataflow block). The PrimFuncs are edited in their serialized form (`tvm.ir.save_json`): this
TVM exposes no TIR mutator to Python; the edits change a parameter's shape and add the offset to the indices
and regions that address it, and refuse a function that uses the buffer in any other way.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import relax, te, tirx, topi

CALL_TIR = tvm.ir.Op.get("relax.call_tir")
# The only nodes that may refer to a rewritten buffer parameter (anything else: the function is left alone)
_ADDRESSING = {"ir.TensorLoad": "source", "tirx.BufferStore": "buffer", "ir.TensorRegion": "source"}


# ---------------------------------------------------------------------------------------------- PrimFunc edits
class _Serialized:
    """A PrimFunc as TVM's JSON node graph, edited by appending nodes (nodes may be shared: never changed in
    place, except the parameter's own Var node and the nodes that address the parameter)."""

    def __init__(self, func: tirx.PrimFunc):
        self.doc = json.loads(tvm.ir.save_json(func))
        self.nodes = self.doc["nodes"]
        root = self.nodes[self.doc["root_index"]]["data"]
        self.params = self.nodes[root["params"]]["data"]

    def add(self, type_key: str, data) -> int:
        self.nodes.append({"type": type_key, "data": data})
        return len(self.nodes) - 1

    def int_imm(self, like: int, value: int) -> int:
        """A new integer constant of the type of node `like`."""
        return self.add("ir.IntImm", {"span": 0, "ty": self.nodes[like]["data"]["ty"], "value":
                                      self.add("int", value)})

    def plus(self, expr: int, offset: int) -> int:
        return self.add("prim.Add", {"span": 0, "ty": self.nodes[expr]["data"]["ty"], "a": expr,
                                     "b": self.int_imm(expr, offset)})

    def retype(self, param: int, shape: list[int]) -> int:
        """Give parameter `param` a buffer type of `shape`; returns its Var node."""
        var = self.params[param]
        old = self.nodes[self.nodes[var]["data"]["ty"]]
        dims = self.nodes[old["data"]["shape"]]["data"]
        if len(dims) != len(shape) or old["data"]["strides"] and self.nodes[old["data"]["strides"]]["data"]:
            raise _Unsupported("a buffer parameter of another rank, or strided")
        data = dict(old["data"], shape=self.add("ffi.Array", [self.int_imm(d, s) for d, s in zip(dims, shape)]))
        self.nodes[var]["data"]["ty"] = self.add(old["type"], data)
        return var

    def shift(self, var: int, axis: int, offset: int) -> None:
        """Add `offset` to the `axis` index of every access to buffer `var` and to the regions naming it."""
        for i, node in enumerate(list(self.nodes)):
            data = node.get("data")
            if not isinstance(data, dict):
                continue
            refers = [k for k, v in data.items() if v == var and k != "ty"]
            if not refers or i == var:
                continue
            if refers != [_ADDRESSING.get(node["type"])]:
                raise _Unsupported(f"buffer used by {node['type']}")
            if node["type"] == "ir.TensorRegion":
                ranges = list(self.nodes[data["region"]]["data"])
                r = self.nodes[ranges[axis]]["data"]
                ranges[axis] = self.add("ir.Range", dict(r, min=self.plus(r["min"], offset)))
                data["region"] = self.add("ffi.Array", ranges)
            else:
                indices = list(self.nodes[data["indices"]]["data"])
                indices[axis] = self.plus(indices[axis], offset)
                data["indices"] = self.add("ffi.Array", indices)

    def func(self) -> tirx.PrimFunc:
        f = tvm.ir.load_json(json.dumps(self.doc))
        return tirx.PrimFunc(f.params, f.body, f.ret_type, f.attrs)  # its type from the new parameters


class _Unsupported(Exception):
    pass


def widened(func: tirx.PrimFunc, param: int, shape: list[int]) -> tirx.PrimFunc:
    """`func` with buffer parameter `param` of `shape` (larger; the accesses unchanged)."""
    s = _Serialized(func)
    s.retype(param, shape)
    return s.func()


def written_at(func: tirx.PrimFunc, param: int, shape: list[int], axis: int, offset: int) -> tirx.PrimFunc:
    """`func` writing its buffer parameter `param`, now of `shape`, at `offset` along `axis`."""
    s = _Serialized(func)
    s.shift(s.retype(param, shape), axis, offset)
    return s.func()


def _shape(ty) -> list[int] | None:
    if not isinstance(ty, relax.TensorType) or not isinstance(ty.shape, relax.ShapeExpr):
        return None
    dims = [d.value if isinstance(d, tirx.IntImm) else None for d in ty.shape.values]
    return None if None in dims else [int(d) for d in dims]


def concat_axis(func, shapes: list[list[int]], dtype: str) -> int | None:
    """The axis along which `func` is exactly TOPI's concat of two tensors of `shapes`, or None."""
    if not isinstance(func, tirx.PrimFunc) or len(shapes) != 2 or len(func.params) != 3:
        return None
    a, b = shapes
    axes = [k for k in range(len(a)) if a[k] != b[k]] or [len(a) - 1]
    if len(a) != len(b) or len(axes) != 1:
        return None
    x, y = (te.placeholder(s, dtype) for s in shapes)
    reference = te.create_prim_func([x, y, topi.concatenate((x, y), axes[0])], index_dtype_override="int64")
    plain = [tirx.PrimFunc(f.params, f.body, f.ret_type) for f in (func, reference)]  # attributes aside
    return axes[0] if tvm_ffi.structural_equal(*plain, map_free_vars=True) else None


# ---------------------------------------------------------------------------------------------- the chains
@dataclass
class _Link:
    concat: int  # binding index of x_{i+1} = concat(x_i, y_i)
    producer: int  # binding index of y_i's kernel
    offset: int  # C_i


def _call_args(value) -> list | None:
    if isinstance(value, relax.Call) and value.op == CALL_TIR and isinstance(value.args[1], relax.Tuple):
        return list(value.args[1].fields)
    return None


def _rewrite_block(bb, block: relax.DataflowBlock, escaping: set) -> relax.DataflowBlock:
    bindings = list(block.bindings)
    index = {b.var: i for i, b in enumerate(bindings)}
    readers: dict = {}  # var -> binding indices of the call_tir kernels reading it
    for i, b in enumerate(bindings):
        if not isinstance(b.var, relax.DataflowVar):
            escaping.add(b.var)  # read after the block
        args = _call_args(b.value)
        for v in relax.analysis.free_vars(b.value) if args is None else []:
            escaping.add(v)
        for a in args or []:
            if isinstance(a, relax.Var):
                readers.setdefault(a, []).append(i)
            else:
                for v in relax.analysis.free_vars(a):
                    escaping.add(v)

    def kernel(i):
        value = bindings[i].value
        return bb.get()[value.args[0]] if _call_args(value) is not None else None

    links: dict = {}  # x_i var -> _Link
    for i, b in enumerate(bindings):
        args = _call_args(b.value)
        if args is None or len(args) != 2 or not all(isinstance(a, relax.Var) for a in args):
            continue
        x, y = args
        shapes = [_shape(a.ty) for a in args]
        if None in shapes or x.same_as(y) or concat_axis(kernel(i), shapes, b.var.ty.dtype) is None:
            continue
        p = index.get(y)
        if p is None or y in escaping or readers.get(y) != [i] or kernel(p) is None or p > i:
            continue
        if len(_call_args(bindings[p].value)) != len(kernel(p).params) - 1 or not isinstance(y.ty, relax.TensorType):
            continue
        axis = concat_axis(kernel(i), shapes, b.var.ty.dtype)
        links[x] = (_Link(i, p, shapes[0][axis]), axis)

    # chains x_0 -> x_1 -> ... -> x_n: each x_i (i < n) read by kernels only, x_0 the single output of a kernel
    # of this block, no y_i's kernel reading a tensor of the chain (W would be its input and its output)
    def made_here(v) -> bool:
        i = index.get(v)
        return i is not None and kernel(i) is not None and len(_call_args(bindings[i].value)) == len(kernel(i).params) - 1

    heads = [x for x in links if not any(bindings[links[v][0].concat].var.same_as(x) for v in links)]
    chains = []
    for x in heads:
        chain, v = [], x
        while v in links and v not in escaping and readers.get(v, []).count(links[v][0].concat) == 1:
            chain.append((v, *links[v]))
            v = bindings[links[v][0].concat].var
        members = {c[0] for c in chain}
        cut = next((k for k, (_, link, _) in enumerate(chain)
                    if members & set(_call_args(bindings[link.producer].value))), len(chain))
        chain = chain[:cut]
        while chain and not made_here(chain[0][0]):
            chain.pop(0)  # x_0 a parameter, say: the next concat is the head and copies it once
        if chain:
            chains.append((chain, bindings[chain[-1][1].concat].var))
    if not chains:
        return block
    return _apply(bb, bindings, chains, readers)


def _with_args(call, gv, args, ty=None) -> relax.Call:
    return relax.Call(CALL_TIR, [gv, relax.Tuple(args), *call.args[2:]], call.attrs,
                      [ty] if ty is not None else call.ty_args)


def _apply(bb, bindings, chains, readers) -> relax.DataflowBlock:
    """The bindings with each chain (x_0, ..., x_n) on one tensor W of x_n's type: x_0's kernel writes W, each
    y_i's kernel (moved to where the concat was: everything it reads exists there) writes its part of W in place,
    the other readers of the x_i read W, x_n stays the same variable."""
    values: dict[int, relax.Expr | None] = {}
    new_vars: dict[int, relax.Var] = {}
    remap: dict = {}  # x_0 ... x_(n-1) -> W's variable at that point
    widen: dict[int, dict[int, list[int]]] = {}  # reader binding -> {argument: W's shape}
    for chain, last in chains:
        shape, ty = _shape(last.ty), last.ty
        edits = {}
        try:
            head = bindings.index(next(b for b in bindings if b.var.same_as(chain[0][0])))
            call = bindings[head].value
            func = bb.get()[call.args[0]]
            edits[head] = (call, widened(func, len(func.params) - 1, shape))
            for x, link, axis in chain:
                call = bindings[link.producer].value
                func = bb.get()[call.args[0]]
                edits[link.concat] = (call, written_at(func, len(func.params) - 1, shape, axis, link.offset))
        except _Unsupported:
            continue
        x0 = chain[0][0]
        new_vars[head] = remap[x0] = type(x0)(x0.name, ty)
        values[head] = _with_args(edits[head][0], _add(bb, edits[head]), list(_call_args(edits[head][0])), ty)
        for x, link, _ in chain:
            out = bindings[link.concat].var
            if not out.same_as(last):
                new_vars[link.concat] = remap[out] = type(out)(out.name, ty)
            call = edits[link.concat][0]
            args = [*_call_args(call), x]
            values[link.producer] = None
            values[link.concat] = relax.op.call_tir_inplace(_add(bb, edits[link.concat]), relax.Tuple(args),
                                                            [len(args) - 1], ty)
            for r in readers.get(x, []):
                if r != link.concat:
                    widen.setdefault(r, {}).update({k: shape for k, a in enumerate(_call_args(bindings[r].value))
                                                    if a.same_as(x)})
    out = []
    for i, b in enumerate(bindings):
        value = values.get(i, b.value)
        if value is None:
            continue
        args = _call_args(value) if value.op == CALL_TIR else None
        if i in widen:
            func = bb.get()[value.args[0]]
            for k, shape in sorted(widen[i].items()):
                func = widened(func, k, shape)
            value = _with_args(value, _add(bb, (value, func)), args)
        if args is not None or isinstance(value, relax.Call) and isinstance(value.args[1], relax.Tuple):
            value = relax.Call(value.op, [value.args[0], relax.Tuple([remap.get(a, a) for a in value.args[1].fields]),
                                          *value.args[2:]], value.attrs, value.ty_args)
        out.append(relax.VarBinding(new_vars.get(i, b.var), value))
    return relax.DataflowBlock(out)


def _add(bb, edit) -> tvm.ir.GlobalVar:
    """Add an edited PrimFunc under a name derived from the call's (the block builder makes it unique)."""
    call, func = edit
    return bb.add_func(func, f"{call.args[0].name_hint}_w")


def concat_in_place():
    """The module pass: every dense-block concat chain of the Relax functions' dataflow blocks without copies."""

    @tvm.transform.module_pass(opt_level=0, name="TccConcatInPlace")
    def apply(mod, _ctx):
        bb = relax.BlockBuilder(mod)
        for gv, func in list(mod.functions_items()):
            if not isinstance(func, relax.Function) or not isinstance(func.body, relax.SeqExpr):
                continue
            escaping = set(relax.analysis.free_vars(func.body.body))
            blocks = [_rewrite_block(bb, b, escaping) if isinstance(b, relax.DataflowBlock) else b
                      for b in func.body.blocks]
            bb.update_func(gv, relax.Function(func.params, relax.SeqExpr(blocks, func.body.body), func.ret_ty,
                                              func.is_pure, func.attrs))
        return relax.transform.DeadCodeElimination()(bb.get())

    return apply
