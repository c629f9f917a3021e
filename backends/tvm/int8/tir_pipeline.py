"""tcc's TIR pipeline: TVM 0.27's default (tvm/s_tir/pipeline.py, pass for pass; a test compares the two) with
tcc's rewrites of vector code right after vectorization, before the tiles' loops are unrolled (a kernel is then ~6x
smaller to serialize, as the rewrites edit it: `backends/tvm/tir_json.py`):

- `lane_pairs`: x86 with AVX-512 DQ, the float64 requantization on int64 lane pairs (`lane_pairs.py`);
- `register_split`: ARM, the NEON requantization's intrinsics one call per register (`register_split.py`).

`for_kernels` names the pipeline for a target and the kernels of one compiled part: TVM's default where no rewrite
applies (a rewrite serializes every kernel of the part: only parts whose TVMScript holds its pattern take it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import tvm
from tvm import tirx

from ..isa import target_has
from . import lane_pairs, register_split


@dataclass(frozen=True)
class Rewrite:
    """A rewrite of vectorized TIR: its module pass, the target feature it needs, the strings of a kernel's
    TVMScript without which it has nothing to do."""

    make: Callable[[], tvm.transform.Pass]
    feature: str
    patterns: tuple[str, ...]


REWRITES = {
    "lane_pairs": Rewrite(lane_pairs.lane_pairs_pass, "avx512dq", (lane_pairs.REWRITTEN,)),
    "register_split": Rewrite(register_split.register_split_pass, "neon", register_split.REWRITTEN),
}
PREFIX = "tcc_tir"


def _pipeline(name: str, rewrites: tuple[str, ...]):
    """The pipeline `name`: TVM's default with `rewrites` (names of REWRITES) right after VectorizeLoop."""
    from tvm import s_tir
    from tvm.s_tir.pipeline import finalize_device_passes, finalize_host_passes

    @tvm.transform.module_pass(opt_level=0, name=name)
    def run(mod, _ctx):
        config = tvm.transform.PassContext.current().config
        passes = [
            s_tir.transform.CanonicalizeLoop(),
            s_tir.transform.LowerCrossThreadReduction(),
            s_tir.transform.LowerInitBlock(),
            s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
            s_tir.transform.ConvertBlocksToOpaque(),
            s_tir.transform.LiftThreadBinding(),
            s_tir.transform.ManifestSharedMemoryLocalStage(),
            s_tir.transform.CompactBufferAllocation(),
            s_tir.transform.LowerAutoCopy(),
            s_tir.transform.UnifyThreadBinding(),
            s_tir.transform.LowerMatchBuffer(),
            s_tir.transform.StmtSimplify(),
            s_tir.transform.InjectPermutedLayout(),
            s_tir.transform.AnnotateIrregularLoop(),
            s_tir.transform.InjectSoftwarePipeline(),
            s_tir.transform.TransformMmaBufferLayout(),
            s_tir.transform.LowerOpaqueBlock(),
            tirx.transform.FlattenBuffer(),
            tirx.transform.BF16ComputeLegalize(),
            tirx.transform.NarrowDataType(32),
            s_tir.transform.LoopPartition(),
            tirx.transform.VectorizeLoop(not bool(config.get("tirx.disable_vectorize", False))),
            *(REWRITES[r].make() for r in rewrites),
            s_tir.transform.InjectVirtualThread(),
            s_tir.transform.InjectDoubleBuffer(),
        ]
        if not bool(config.get("tirx.disable_storage_rewrite", False)):
            passes.append(tirx.transform.StorageRewrite())
        if config.get("tirx.use_async_copy", False):
            passes.append(s_tir.transform.LowerAsyncDMA())
        passes += [
            s_tir.transform.HoistIfThenElse(),
            tirx.transform.UnrollLoop(),
            s_tir.transform.RenormalizeSplitPattern(),
            tirx.transform.StmtSimplify(),
            tirx.transform.RemoveNoOp(),
            s_tir.transform.RewriteUnsafeSelect(),
        ]
        if bool(config.get("tirx.instrument_bound_checkers", False)):
            passes.append(s_tir.transform.InstrumentBoundCheckers())
        if bool(config.get("tirx.s_tir.ldg32", False)):
            passes.append(s_tir.transform.InjectPTXLDG32(True))
        if not bool(config.get("tirx.disable_cse_tir", False)):
            passes.append(tirx.transform.CommonSubexprElim())
        if bool(config.get("tirx.instrument_lwp", False)):
            passes.append(s_tir.transform.InstrumentProfileIntrinsics())
        passes += [
            tirx.transform.FP8ComputeLegalize(),
            s_tir.transform.VerifyVTCMLimit(),
            s_tir.transform.LowerVtcmAlloc(),
            tirx.transform.VerifyMemory(),
            tirx.transform.AnnotateEntryFunc(),
            s_tir.transform.ThreadSync("shared"),
            s_tir.transform.ThreadSync("shared.dyn"),
            s_tir.transform.ThreadSync("warp"),
            s_tir.transform.InferFragment(),
            s_tir.transform.LowerThreadAllreduce(),
        ]
        if bool(config.get("tirx.use_async_copy", False)):
            passes.append(s_tir.transform.InjectPTXAsyncCopy())
        if bool(config.get("tirx.s_tir.ldg32", False)):
            passes.append(s_tir.transform.InjectPTXLDG32())
        passes += [
            s_tir.transform.MergeSharedMemoryAllocations(),
            tirx.transform.SplitHostDevice(),
            tirx.transform.MakePackedAPI(),
            tirx.transform.FP8StorageLegalize(),
            tirx.transform.BF16StorageLegalize(),
        ]
        return tvm.transform.Sequential(passes)(mod)

    return run, finalize_host_passes, finalize_device_passes


def for_kernels(target, scripts: Iterable[str] | None = None) -> str:
    """The name of the TIR pipeline (`tvm.tirx.build`'s argument) for kernels of these TVMScripts on `target`
    (None: any kernel): with each rewrite whose feature the target has and whose pattern a script holds, TVM's
    default where none applies."""
    scripts = None if scripts is None else list(scripts)
    rewrites = tuple(
        r
        for r, rw in REWRITES.items()
        if target_has(target, rw.feature) and (scripts is None or any(p in s for s in scripts for p in rw.patterns))
    )
    if not rewrites:
        return "default"
    name = "_".join((PREFIX, *rewrites))
    tirx.register_tir_pipeline(name, lambda: _pipeline(name, rewrites))
    return name
