"""ARM: the NEON requantization's intrinsics on vectors wider than one register, one call per register.

The NEON requantization (`requantize_neon_primfunc`, `requantize_neon_tie_free_primfunc`) calls ARM's own
intrinsics (`sqdmulh`, `srshl`, `sshl` and ARMv7's twins), which LLVM cannot split: a call on 16 int32 lanes fails
in its type legalization. So the kernels' epilogues ran on vectors of 4 int32 lanes, and the narrowing of their
results to 8-bit codes ran on 4 lanes too: per 4 codes a clamp (`smax`, `smin`), two narrowings (`xtn`, `uzp1`)
and lane moves to gather them (DDSNet on `aarch64-dotprod`: a quarter of its instructions).

With every such call split here into one call per register, joined by shuffles (concatenations: no instruction
once LLVM assigns the registers), an epilogue is vectorized over 16 channels, and LLVM narrows 16 int32 lanes to
16 codes with its saturating narrowings (`sqxtn` / `sqxtn2`, `sqxtun` / `sqxtun2`: `requantize._saturating_codes`).

The rewrite runs in tcc's TIR pipeline right after vectorization (`tir_pipeline.py`), on the function's serialized
form (`backends/tvm/tir_json.py`); a call within one register is left as it is.
"""

from __future__ import annotations

import functools

import tvm
from tvm import tirx
from tvm.target import codegen

from ..tir_json import SerializedFunc, Template, node_dtype, per_function_pass
from .requantize import NEON_REQUANTIZE_INTRINSICS

REGISTER_BITS = 128  # a NEON q register
NAMES = sorted({name for names in NEON_REQUANTIZE_INTRINSICS.values() for name in names})
REWRITTEN = tuple(NAMES)  # in a kernel's TVMScript before lowering: it may hold a wide call


@functools.cache
def _ids() -> dict[int, str]:
    return {int(codegen.llvm_lookup_intrinsic_id(name)): name for name in NAMES}


@functools.cache
def _template(name: str, dtypes: tuple[str, ...], split: tuple[bool, ...], dtype: str) -> Template:
    """call_llvm_pure_intrin(dtype, name, *args) on placeholders of `dtypes`, as one call per register joined by
    a shuffle. Argument k: its lanes of each register taken by a shuffle (placeholder a{k}); or, where `split[k]`
    (a call this rewrite split already), its registers' calls themselves (placeholders a{k}_{r}), not a shuffle of
    their concatenation; a scalar as it is."""
    wide = tvm.DataType(dtype)
    per_register = REGISTER_BITS // wide.bits
    narrow = f"{dtype.split('x')[0]}x{per_register}"
    registers = wide.lanes // per_register
    args = []
    for k, (t, pieces) in enumerate(zip(dtypes, split)):
        if pieces:
            args.append([tirx.Var(f"a{k}_{r}", narrow) for r in range(registers)])
        elif tvm.DataType(t).lanes == 1:
            args.append([tirx.Var(f"a{k}", t)] * registers)
        else:
            x = tirx.Var(f"a{k}", t)
            args.append(
                [
                    tirx.Shuffle([x], [tirx.IntImm("int32", r * per_register + j) for j in range(per_register)])
                    for r in range(registers)
                ]
            )
    calls = [tirx.call_llvm_pure_intrin(narrow, name, *(a[r] for a in args)) for r in range(registers)]
    return Template(tirx.Shuffle(calls, [tirx.IntImm("int32", j) for j in range(wide.lanes)]))


def _wide_call(doc: SerializedFunc, at: int) -> tuple[str, list[int], tuple[str, ...], str] | None:
    """(name, argument nodes, their dtypes, dtype) where node `at` calls a NEON requantization intrinsic on a
    vector wider than one register, else None."""
    nodes = doc.nodes
    node = nodes[at]
    if node["type"] != "ir.Call" or nodes[node["data"]["op"]].get("data") != "tirx.call_llvm_pure_intrin":
        return None
    dtype = node_dtype(nodes, at) or ""
    if "x" not in dtype:
        return None
    wide = tvm.DataType(dtype)
    if wide.lanes * wide.bits <= REGISTER_BITS or (wide.lanes * wide.bits) % REGISTER_BITS:
        return None
    args = nodes[node["data"]["args"]]["data"]
    if not args or nodes[args[0]]["type"] != "ir.IntImm":
        return None
    name = _ids().get(int(nodes[nodes[args[0]]["data"]["value"]]["data"]))
    if name is None:
        return None
    found = tuple(node_dtype(nodes, a) for a in args[1:])
    dtypes = tuple(t for t in found if t is not None)
    if len(dtypes) != len(found):
        return None
    return name, list(args[1:]), dtypes, dtype


def split_wide_calls(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """`func` with every NEON requantization intrinsic wider than one register called once per register."""
    doc = SerializedFunc(func)
    found = [(at, m) for at in range(len(doc.nodes)) if (m := _wide_call(doc, at))]
    if not found:
        return func
    pieces: dict[int, list[int]] = {}  # a split call's node -> its registers' calls (children come first)
    for at, (name, args, dtypes, dtype) in found:
        split = tuple(a in pieces for a in args)
        bound = {}
        for k, a in enumerate(args):
            bound.update({f"a{k}_{r}": p for r, p in enumerate(pieces[a])} if a in pieces else {f"a{k}": a})
        doc.splice(at, _template(name, dtypes, split, dtype), bound)
        pieces[at] = list(doc.nodes[doc.nodes[at]["data"]["vectors"]]["data"])
    return doc.func()


def register_split_pass() -> tvm.transform.Pass:
    """A module pass applying `split_wide_calls` to every PrimFunc."""
    return per_function_pass("tcc.SplitNeonIntrinsics", split_wide_calls)
