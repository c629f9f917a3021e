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

from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import relax, te, tirx, topi

from ..tir_json import SerializedFunc

CALL_TIR = tvm.ir.Op.get("relax.call_tir")
# The only nodes that may refer to a rewritten buffer parameter (anything else: the function is left alone)
_ADDRESSING = {"ir.TensorLoad": "source", "tirx.BufferStore": "buffer", "ir.TensorRegion": "source"}
# Node fields that hold a number, not a node reference (one equal to the buffer's node index is no use of it)
_SCALARS = {"data_alignment", "offset_factor", "kind", "iter_type", "ndim", "line", "column", "end_line", "end_column"}


# ---------------------------------------------------------------------------------------------- PrimFunc edits
class _Serialized(SerializedFunc):
    """A PrimFunc's serialized node graph (`tir_json.SerializedFunc`), edited in place only at the parameter's
    own Var node and the nodes that address the parameter."""

    def __init__(self, func: tirx.PrimFunc):
        super().__init__(func)
        root = self.nodes[self.doc["root_index"]]["data"]
        self.params_node = root["params"]
        self.params = self.nodes[self.params_node]["data"]

    def int_imm(self, like: int, value: int) -> int:
        """A new integer constant of the type of node `like`."""
        return self.add("ir.IntImm", {"span": 0, "ty": self.nodes[like]["data"]["ty"], "value": self.add("int", value)})

    def plus(self, expr: int, offset: int) -> int:
        return self.add(
            "prim.Add", {"span": 0, "ty": self.nodes[expr]["data"]["ty"], "a": expr, "b": self.int_imm(expr, offset)}
        )

    def uses(self, var: int) -> list[dict]:
        """The nodes that address buffer `var` (loads, stores, block regions); any other use is refused."""
        found = []
        for i, node in enumerate(self.nodes):
            data = node.get("data")
            if i == var or data is None or i == self.params_node:
                continue
            if isinstance(data, dict):
                refs = [k for k, v in data.items() if v == var and k not in _SCALARS]
            else:  # an array or map holding the buffer (call arguments, allocations): no access we can shift
                refs = ["element"] * (isinstance(data, list) and data.count(var))
            if refs and refs != [_ADDRESSING.get(node["type"])]:
                raise _Unsupported(f"buffer used by {node['type']}")
            if refs:
                found.append(node)
        return found

    def retype(self, param: int, shape: list[int]) -> int:
        """Give parameter `param` a buffer type of `shape`; returns its Var node."""
        var = self.params[param]
        self.uses(var)
        old = self.nodes[self.nodes[var]["data"]["ty"]]
        dims = self.nodes[old["data"]["shape"]]["data"]
        if len(dims) != len(shape) or (old["data"]["strides"] and self.nodes[old["data"]["strides"]]["data"]):
            raise _Unsupported("a buffer parameter of another rank, or strided")
        data = dict(old["data"], shape=self.add("ffi.Array", [self.int_imm(d, s) for d, s in zip(dims, shape)]))
        self.nodes[var]["data"]["ty"] = self.add(old["type"], data)
        return var

    def shift(self, var: int, axis: int, offset: int) -> None:
        """Add `offset` to the `axis` index of every access to buffer `var` and to the regions naming it."""
        for node in self.uses(var):
            data = node["data"]
            if node["type"] == "ir.TensorRegion":
                ranges = list(self.nodes[data["region"]]["data"])
                r = self.nodes[ranges[axis]]["data"]
                ranges[axis] = self.add("ir.Range", dict(r, min=self.plus(r["min"], offset)))
                data["region"] = self.add("ffi.Array", ranges)
            else:
                indices = list(self.nodes[data["indices"]]["data"])
                indices[axis] = self.plus(indices[axis], offset)
                data["indices"] = self.add("ffi.Array", indices)


class _Unsupported(Exception):
    pass


def widened(func: tirx.PrimFunc | None, param: int, shape: list[int]) -> tirx.PrimFunc:
    """`func` with buffer parameter `param` of `shape` (larger; the accesses unchanged)."""
    if func is None:
        raise _Unsupported("not a kernel with one output")
    s = _Serialized(func)
    s.retype(param, shape)
    return s.func()


def written_at(func: tirx.PrimFunc, param: int, shape: list[int], axis: int, offset: int) -> tirx.PrimFunc:
    """`func` writing its buffer parameter `param`, now of `shape`, at `offset` along `axis`."""
    s = _Serialized(func)
    s.shift(s.retype(param, shape), axis, offset)
    return s.func()


def static_shape(ty) -> list[int] | None:
    """A tensor type's static shape, or None (symbolic, or not a tensor)."""
    if not isinstance(ty, relax.TensorType) or not isinstance(ty.shape, relax.ShapeExpr):
        return None
    dims = [d.value if isinstance(d, tirx.IntImm) else None for d in ty.shape.values]
    return None if None in dims else [int(d) for d in dims]


def concat_axis(func, shapes: list[list[int]], out: list[int], dtype: str) -> int | None:
    """The axis along which `func` is exactly TOPI's concat of two tensors of `shapes` into `out`, or None."""
    a, b = shapes
    if not isinstance(func, tirx.PrimFunc) or len(func.params) != 3 or not len(a) == len(b) == len(out):
        return None
    axes = [k for k in range(len(out)) if out[k] != a[k]]
    if (
        len(axes) != 1
        or out[axes[0]] != a[axes[0]] + b[axes[0]]
        or any(a[k] != b[k] for k in range(len(a)) if k != axes[0])
    ):
        return None
    x, y = (te.placeholder(s, dtype) for s in shapes)
    reference = te.create_prim_func([x, y, topi.concatenate((x, y), axes[0])], index_dtype_override="int64")
    plain = [tirx.PrimFunc(f.params, f.body, f.ret_type) for f in (func, reference)]  # attributes aside
    return axes[0] if tvm_ffi.structural_equal(*plain, map_free_vars=True) else None


# ---------------------------------------------------------------------------------------------- the chains
@dataclass
class _Link:
    """x_{i+1} = concat(x_i, y_i): the bindings of the concat and of y_i's kernel, the axis, and C_i."""

    concat: int
    producer: int
    axis: int
    offset: int


def _call_args(value) -> list | None:
    if isinstance(value, relax.Call) and value.op == CALL_TIR and isinstance(value.args[1], relax.Tuple):
        return list(value.args[1].fields)
    return None


class _Block:
    """A dataflow block's bindings with what the chains need: which kernels read each variable, and which
    variables are read by anything else (another op, a later block, the function's result)."""

    def __init__(self, bb, bindings, escaping: set):
        self.bb, self.bindings = bb, bindings
        self.index = {b.var: i for i, b in enumerate(bindings)}
        self.readers: dict = {}
        self.escaping = set(escaping)
        for i, b in enumerate(bindings):
            if not isinstance(b.var, relax.DataflowVar):
                self.escaping.add(b.var)  # read after the block
            args = _call_args(b.value)
            for a in args if args is not None else [b.value]:
                if isinstance(a, relax.Var) and args is not None:
                    self.readers.setdefault(a, []).append(i)
                else:
                    self.escaping.update(relax.analysis.free_vars(a))

    def kernel(self, i: int):
        """The PrimFunc of binding i if it is a call_tir with one output, else None."""
        args = _call_args(self.bindings[i].value)
        func = self.bb.get()[self.bindings[i].value.args[0]] if args is not None else None
        return func if isinstance(func, tirx.PrimFunc) and len(func.params) == len(args) + 1 else None

    def link(self, i: int) -> _Link | None:
        """Binding i as a link: a concat whose y is the one output of a kernel read by nothing else."""
        args = _call_args(self.bindings[i].value)
        if args is None or len(args) != 2 or not all(isinstance(a, relax.Var) for a in args):
            return None
        x, y = args
        shapes, out = [static_shape(a.ty) for a in args], static_shape(self.bindings[i].var.ty)
        p = self.index.get(y)
        if None in (*shapes, out) or x.same_as(y) or p is None or y in self.escaping or self.readers.get(y) != [i]:
            return None
        axis = concat_axis(self.kernel(i), shapes, out, self.bindings[i].var.ty.dtype)
        return None if axis is None or self.kernel(p) is None else _Link(i, p, axis, shapes[0][axis])

    def first_chain(self) -> list[tuple] | None:
        """The first chain [(x_0, link_0), ..., (x_(n-1), link_(n-1))]: each x_i (i < n) read by kernels only
        and by its concat once, x_0 the output of a kernel of this block, no y_i's kernel reading a tensor of
        the chain (W would be its input and its output)."""
        links = {}
        for i, b in enumerate(self.bindings):
            link = self.link(i)
            if link is not None:
                links[_call_args(b.value)[0]] = link
        outputs = {self.bindings[link.concat].var for link in links.values()}
        for x in links:
            if x in outputs:
                continue  # inside a chain
            chain, v = [], x
            while v in links and v not in self.escaping and self.readers[v].count(links[v].concat) == 1:
                chain.append((v, links[v]))
                v = self.bindings[links[v].concat].var
            members = {v for v, _ in chain}
            cut = next(
                (
                    k
                    for k, (_, link) in enumerate(chain)
                    if members & set(_call_args(self.bindings[link.producer].value))
                ),
                len(chain),
            )
            chain = chain[:cut]
            while chain and (chain[0][0] not in self.index or self.kernel(self.index[chain[0][0]]) is None):
                chain.pop(0)  # x_0 a parameter, say: the next concat becomes the head and copies it once
            if chain:
                return chain
        return None

    def without(self, chain) -> list | None:
        """The bindings with `chain` on one tensor W of x_n's type (see the module docstring), or None where a
        PrimFunc cannot be edited. y_i's kernel moves to where the concat was (all it reads exists there)."""
        last = self.bindings[chain[-1][1].concat].var
        shape = static_shape(last.ty)
        head = self.index[chain[0][0]]
        try:
            funcs = {head: widened(self.kernel(head), -1, shape)}
            for x, link in chain:
                funcs[link.concat] = written_at(self.kernel(link.producer), -1, shape, link.axis, link.offset)
                for r in set(self.readers[x]) - {link.concat}:
                    for k, a in enumerate(_call_args(self.bindings[r].value)):
                        if a.same_as(x):
                            funcs[r] = widened(funcs.get(r, self.kernel(r)), k, shape)
        except _Unsupported:
            return None
        w = {x: type(x)(x.name, last.ty) for x, _ in chain}  # x_i -> the variable of W once x_i is complete
        concats = {link.concat: (x, link) for x, link in chain}
        producers = {link.producer for _, link in chain}
        out = []
        for i, b in enumerate(self.bindings):
            if i in producers:
                continue
            call = b.value
            name = f"{call.args[0].name_hint}_w" if i in funcs else None
            if i in concats:
                x, link = concats[i]
                made = self.bindings[link.producer].value
                args = [*_call_args(made), w[x]]
                gv = self.bb.add_func(funcs[i], f"{made.args[0].name_hint}_w")
                var = w.get(b.var, b.var)  # x_n keeps its variable
                out.append(
                    relax.VarBinding(var, relax.op.call_tir_inplace(gv, relax.Tuple(args), [len(args) - 1], last.ty))
                )
            elif i in funcs:
                args = [w.get(a, a) for a in _call_args(call)]
                ty_args = [last.ty] if i == head else call.ty_args
                value = relax.Call(
                    CALL_TIR, [self.bb.add_func(funcs[i], name), relax.Tuple(args), *call.args[2:]], call.attrs, ty_args
                )
                out.append(relax.VarBinding(w[b.var] if i == head else b.var, value))
            else:
                out.append(b)
        return out


def _rewrite_block(bb, block: relax.DataflowBlock, escaping: set) -> relax.DataflowBlock:
    """The block with its chains, one after another (each found again in the block the last one left)."""
    bindings = list(block.bindings)
    while True:  # (a chain whose kernels cannot be edited ends the search: the block keeps what is done)
        block_now = _Block(bb, bindings, escaping)
        chain = block_now.first_chain()
        rewritten = block_now.without(chain) if chain else None
        if rewritten is None:
            return relax.DataflowBlock(bindings) if bindings != list(block.bindings) else block
        bindings = rewritten


def concat_in_place():
    """The module pass: every dense-block concat chain of the Relax functions' dataflow blocks without copies."""

    @tvm.transform.module_pass(opt_level=0, name="TccConcatInPlace")
    def apply(mod, _ctx):
        bb = relax.BlockBuilder(mod)
        for gv, func in list(mod.functions_items()):
            if not isinstance(func, relax.Function) or not isinstance(func.body, relax.SeqExpr):
                continue
            escaping = set(relax.analysis.free_vars(func.body.body))
            blocks = [
                _rewrite_block(bb, b, escaping) if isinstance(b, relax.DataflowBlock) else b for b in func.body.blocks
            ]
            bb.update_func(
                gv,
                relax.Function(
                    func.params, relax.SeqExpr(blocks, func.body.body), func.ret_ty, func.is_pure, func.attrs
                ),
            )
        return relax.transform.DeadCodeElimination()(bb.get())

    return apply
