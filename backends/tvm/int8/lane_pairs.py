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

The rewrite runs in the TIR pipeline right after vectorization (before the tiles are unrolled), where the pattern
is a vector call of `llvm.lrint` on `Cast(float64xN, int32xN) * M`: TVM exposes no TIR mutator to Python, so the
function is edited in its serialized form (`backends/tvm/tir_json.py`). Bit-exact by the argument above;
tested against the integer reference.
"""
from __future__ import annotations

import functools

import tvm
from tvm import tirx
from tvm.target import codegen

from ..isa import target_has
from ..tir_json import SerializedFunc, Template

FMA_ROUNDING = 1.5 * 2.0**52  # x + this, rounded to a double, is round-half-even(x) in the low bits (|x| < 2^51)
_PLACEHOLDERS = ("acc", "multiplier")
REWRITTEN = "llvm.lrint"  # in a kernel's TVMScript before lowering: it may hold the pattern


def _dtype(nodes: list, index: int) -> str | None:
    ty = nodes[index].get("data", {}).get("ty") if isinstance(nodes[index].get("data"), dict) else None
    if ty is None:
        return None
    data = nodes[ty].get("data")
    return data.get("dtype") if isinstance(data, dict) else None


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
        r = tirx.call_llvm_pure_intrin(f"float64x{pairs}", "llvm.fma", tirx.Cast(f"float64x{pairs}", codes_high), m,
                                       rounding)
        return tirx.reinterpret(f"int64x{pairs}", r)

    even = rounded(tirx.shift_left(word, shift), 0)
    odd = rounded(tirx.bitwise_and(word, splat(tirx.IntImm("int64", -(1 << 32)))), 1)
    low = tirx.bitwise_and(even, splat(tirx.IntImm("int64", 0xFFFFFFFF)))
    return tirx.reinterpret(f"int32x{lanes}", tirx.bitwise_or(low, tirx.shift_left(odd, shift)))


@functools.lru_cache(maxsize=None)
def _template(lanes: int) -> Template:
    return Template(_even_odd(tirx.Var(_PLACEHOLDERS[0], f"int32x{lanes}"),
                              tirx.Var(_PLACEHOLDERS[1], f"float64x{lanes}"), lanes))


def _matches(nodes: list, at: int, lrint: int) -> tuple[int, int, int] | None:
    """(acc, multiplier, lanes) where node `at` is call_llvm_pure_intrin(llvm.lrint, Cast(float64xN, int32xN) *
    M) of an even N >= 4, else None."""
    node = nodes[at]
    if node["type"] != "ir.Call" or nodes[node["data"]["op"]].get("data") != "tirx.call_llvm_pure_intrin":
        return None
    args = nodes[node["data"]["args"]]["data"]
    dtype = _dtype(nodes, at) or ""
    if len(args) != 2 or nodes[args[0]]["type"] != "ir.IntImm" or not dtype.startswith("int32x"):
        return None
    if nodes[nodes[args[0]]["data"]["value"]]["data"] != lrint:
        return None
    lanes = int(dtype[len("int32x"):])
    product = nodes[args[1]]
    if product["type"] != "prim.Mul" or lanes % 2 or lanes < 4:
        return None
    for cast, other in ((product["data"]["a"], product["data"]["b"]), (product["data"]["b"], product["data"]["a"])):
        if nodes[cast]["type"] == "prim.Cast" and _dtype(nodes, nodes[cast]["data"]["value"]) == dtype:
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


def lane_pairs_pass():
    """A module pass applying `requantize_on_lane_pairs` to every PrimFunc."""
    @tvm.transform.module_pass(opt_level=0, name="tcc.RequantizeOnLanePairs")
    def apply(mod, _ctx):
        return tvm.IRModule({gv: requantize_on_lane_pairs(f) if isinstance(f, tirx.PrimFunc) else f
                             for gv, f in mod.functions_items()}, attrs=mod.attrs)

    return apply


PIPELINE = "tcc_lane_pairs"


def _pipeline():
    """TVM 0.27's default TIR pipeline (tvm/s_tir/pipeline.py, pass for pass; a test compares the two) with the
    rewrite right after vectorization: before the tiles' loops are unrolled, a kernel is ~6x smaller to
    serialize."""
    from tvm import s_tir
    from tvm.s_tir.pipeline import finalize_device_passes, finalize_host_passes

    @tvm.transform.module_pass(opt_level=0, name=PIPELINE)
    def run(mod, _ctx):
        config = tvm.transform.PassContext.current().config
        passes = [
            s_tir.transform.CanonicalizeLoop(), s_tir.transform.LowerCrossThreadReduction(),
            s_tir.transform.LowerInitBlock(), s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
            s_tir.transform.ConvertBlocksToOpaque(), s_tir.transform.LiftThreadBinding(),
            s_tir.transform.ManifestSharedMemoryLocalStage(), s_tir.transform.CompactBufferAllocation(),
            s_tir.transform.LowerAutoCopy(), s_tir.transform.UnifyThreadBinding(), s_tir.transform.LowerMatchBuffer(),
            s_tir.transform.StmtSimplify(), s_tir.transform.InjectPermutedLayout(),
            s_tir.transform.AnnotateIrregularLoop(), s_tir.transform.InjectSoftwarePipeline(),
            s_tir.transform.TransformMmaBufferLayout(), s_tir.transform.LowerOpaqueBlock(),
            tirx.transform.FlattenBuffer(), tirx.transform.BF16ComputeLegalize(), tirx.transform.NarrowDataType(32),
            s_tir.transform.LoopPartition(),
            tirx.transform.VectorizeLoop(not bool(config.get("tirx.disable_vectorize", False))),
            lane_pairs_pass(),
            s_tir.transform.InjectVirtualThread(), s_tir.transform.InjectDoubleBuffer(),
        ]
        if not bool(config.get("tirx.disable_storage_rewrite", False)):
            passes.append(tirx.transform.StorageRewrite())
        if config.get("tirx.use_async_copy", False):
            passes.append(s_tir.transform.LowerAsyncDMA())
        passes += [s_tir.transform.HoistIfThenElse(), tirx.transform.UnrollLoop(),
                   s_tir.transform.RenormalizeSplitPattern(), tirx.transform.StmtSimplify(),
                   tirx.transform.RemoveNoOp(), s_tir.transform.RewriteUnsafeSelect()]
        if bool(config.get("tirx.instrument_bound_checkers", False)):
            passes.append(s_tir.transform.InstrumentBoundCheckers())
        if bool(config.get("tirx.s_tir.ldg32", False)):
            passes.append(s_tir.transform.InjectPTXLDG32(True))
        if not bool(config.get("tirx.disable_cse_tir", False)):
            passes.append(tirx.transform.CommonSubexprElim())
        if bool(config.get("tirx.instrument_lwp", False)):
            passes.append(s_tir.transform.InstrumentProfileIntrinsics())
        passes += [tirx.transform.FP8ComputeLegalize(), s_tir.transform.VerifyVTCMLimit(),
                   s_tir.transform.LowerVtcmAlloc(), tirx.transform.VerifyMemory(), tirx.transform.AnnotateEntryFunc(),
                   s_tir.transform.ThreadSync("shared"), s_tir.transform.ThreadSync("shared.dyn"),
                   s_tir.transform.ThreadSync("warp"), s_tir.transform.InferFragment(),
                   s_tir.transform.LowerThreadAllreduce()]
        if bool(config.get("tirx.use_async_copy", False)):
            passes.append(s_tir.transform.InjectPTXAsyncCopy())
        if bool(config.get("tirx.s_tir.ldg32", False)):
            passes.append(s_tir.transform.InjectPTXLDG32())
        passes += [s_tir.transform.MergeSharedMemoryAllocations(), tirx.transform.SplitHostDevice(),
                   tirx.transform.MakePackedAPI(), tirx.transform.FP8StorageLegalize(),
                   tirx.transform.BF16StorageLegalize()]
        return tvm.transform.Sequential(passes)(mod)

    return run, finalize_host_passes, finalize_device_passes


def tir_pipeline(target) -> str:
    """The name of the TIR pipeline for `target` (`tvm.tirx.build`'s argument): the rewrite where the CPU
    converts int64 lanes to doubles (AVX-512 DQ), TVM's default elsewhere."""
    if not target_has(target, "avx512dq"):
        return "default"
    tirx.register_tir_pipeline(PIPELINE, _pipeline)
    return PIPELINE
