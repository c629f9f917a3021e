"""x86 with AVX-512 DQ: the float64 requantization on pairs of int32 lanes, without shuffles.

`requantize_float64_primfunc` computes lrint(double(acc) * M) per channel. Vectorized over 16 channels, LLVM
widens the 16 int32 accumulators to two vectors of 8 doubles (`vcvtdq2pd` twice and a `vextracti64x4`) and narrows
the products back (`vcvtpd2dq` twice and a `vinserti64x4`): on an Intel core (uops.info's tables for Ice Lake and
Sapphire Rapids) each of those is a uop of port 5, the one port that also runs every shuffle of the depthwise
convs' row interleave and the saturating narrowing, so the epilogue, not the products, bounds the light kernels
(docs/notes/x86-int8-intel.md: the `vpdpbusd` depthwise convs spend 3% of their samples on `vpdpbusd`).

Here the same 16 accumulators are read as 8 int64 lanes, each holding an even and an odd channel:

    even = double(pair << 32)                    # acc_even * 2^32, exactly (vpsllq, vcvtqq2pd)
    odd = double(pair & 0xFFFFFFFF00000000)      # acc_odd * 2^32, exactly (vpandq, vcvtqq2pd)
    r = fma(even, M_even * 2^-32, 1.5 * 2^52)    # one rounding: round-half-even(acc M), in the low 32 bits

fma rounds the exact product acc M plus 1.5 * 2^52 once, to the doubles of [2^52, 2^53), whose step is 1:
round-half-even of acc M (|acc M| < 2^31 since M < 1), as lrint rounds the product, which the accumulator bound
of `float64_requantize_params` keeps exact. The low 32 bits of r's pattern are that integer in two's complement;
LLVM merges the even and odd results with one two-source permute (`vpermt2ps`). M's even and odd channels are a
shuffle of a loop-invariant vector, hoisted out of the tile's loops. Per 16 values: one port-5 uop, not six.

The rewrite runs in tcc's TIR pipeline right after vectorization (`tir_pipeline.py`), where the pattern
is a vector call of `llvm.lrint` on `Cast(float64xN, int32xN) * M`: TVM exposes no TIR mutator to Python, so the
function is edited in its serialized form (`backends/tvm/tir_json.py`). Bit-exact by the argument above;
tested against the integer reference.
"""

from __future__ import annotations

import functools

import tvm
from tvm import tirx
from tvm.target import codegen

from ..tir_json import SerializedFunc, Template, node_dtype, per_function_pass

FMA_ROUNDING = 1.5 * 2.0**52  # x + this, rounded to a double, is round-half-even(x) in the low bits (|x| < 2^51)
_PLACEHOLDERS = ("acc", "multiplier")
REWRITTEN = "llvm.lrint"  # in a kernel's TVMScript before lowering: it may hold the pattern


def _even_odd(acc: tirx.PrimExpr, multiplier: tirx.PrimExpr, lanes: int) -> tirx.PrimExpr:
    """round-half-even(acc * multiplier) as int32 lanes, computed on int64 pairs of lanes (the module's docstring)."""
    pairs = lanes // 2

    def splat(value):
        return tirx.Broadcast(value, pairs)

    word = tirx.reinterpret(f"int64x{pairs}", acc)
    scale = splat(tirx.FloatImm("float64", 2.0**-32))
    rounding = splat(tirx.FloatImm("float64", FMA_ROUNDING))
    shift = splat(tirx.IntImm("int64", 32))

    def rounded(codes_high, first):
        m = tirx.Shuffle([multiplier], [tirx.IntImm("int32", first + 2 * i) for i in range(pairs)]) * scale
        r = tirx.call_llvm_pure_intrin(
            f"float64x{pairs}", "llvm.fma", tirx.Cast(f"float64x{pairs}", codes_high), m, rounding
        )
        return tirx.reinterpret(f"int64x{pairs}", r)

    even = rounded(tirx.shift_left(word, shift), 0)
    odd = rounded(tirx.bitwise_and(word, splat(tirx.IntImm("int64", -(1 << 32)))), 1)
    low = tirx.bitwise_and(even, splat(tirx.IntImm("int64", 0xFFFFFFFF)))
    return tirx.reinterpret(f"int32x{lanes}", tirx.bitwise_or(low, tirx.shift_left(odd, shift)))


@functools.cache
def _template(lanes: int) -> Template:
    return Template(
        _even_odd(tirx.Var(_PLACEHOLDERS[0], f"int32x{lanes}"), tirx.Var(_PLACEHOLDERS[1], f"float64x{lanes}"), lanes)
    )


def _matches(nodes: list, at: int, lrint: int) -> tuple[int, int, int] | None:
    """(acc, multiplier, lanes) where node `at` is call_llvm_pure_intrin(llvm.lrint, Cast(float64xN, int32xN) *
    M) of an even N >= 4, else None."""
    node = nodes[at]
    if node["type"] != "ir.Call" or nodes[node["data"]["op"]].get("data") != "tirx.call_llvm_pure_intrin":
        return None
    args = nodes[node["data"]["args"]]["data"]
    dtype = node_dtype(nodes, at) or ""
    if len(args) != 2 or nodes[args[0]]["type"] != "ir.IntImm" or not dtype.startswith("int32x"):
        return None
    if nodes[nodes[args[0]]["data"]["value"]]["data"] != lrint:
        return None
    lanes = int(dtype[len("int32x") :])
    product = nodes[args[1]]
    if product["type"] != "prim.Mul" or lanes % 2 or lanes < 4:
        return None
    for cast, other in ((product["data"]["a"], product["data"]["b"]), (product["data"]["b"], product["data"]["a"])):
        if nodes[cast]["type"] == "prim.Cast" and node_dtype(nodes, nodes[cast]["data"]["value"]) == dtype:
            return nodes[cast]["data"]["value"], other, lanes
    return None


def requantize_on_lane_pairs(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """`func` with every vector lrint(Cast(float64, int32 acc) * M) computed on int64 lane pairs."""
    lrint = int(codegen.llvm_lookup_intrinsic_id("llvm.lrint"))
    doc = SerializedFunc(func)
    found = [(at, m) for at in range(len(doc.nodes)) if (m := _matches(doc.nodes, at, lrint))]
    if not found:
        return func
    for at, (acc, multiplier, lanes) in found:
        doc.splice(at, _template(lanes), dict(zip(_PLACEHOLDERS, (acc, multiplier))))
    return doc.func()


def lane_pairs_pass() -> tvm.transform.Pass:
    """A module pass applying `requantize_on_lane_pairs` to every PrimFunc."""
    return per_function_pass("tcc.RequantizeOnLanePairs", requantize_on_lane_pairs)
