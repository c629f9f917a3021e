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


def _passes(config, rewrites: tuple[str, ...]) -> list:
    """TVM 0.27's default TIR passes (tvm/s_tir/pipeline.py's, in its order) with `rewrites` (names of REWRITES)
    right after VectorizeLoop. A row: the PassContext option that turns the pass on ("tirx.x") or off ("!tirx.x"),
    "" for none, and its maker."""
    from tvm import s_tir  # deferred: `import tvm.s_tir` registers its passes; only a build needs them

    t, st = tirx.transform, s_tir.transform
    vectorize = not config.get("tirx.disable_vectorize", False)
    rows = [
        ("", st.CanonicalizeLoop),
        ("", st.LowerCrossThreadReduction),
        ("", st.LowerInitBlock),
        ("", st.PlanAndUpdateBufferAllocationLocation),
        ("", st.ConvertBlocksToOpaque),
        ("", st.LiftThreadBinding),
        ("", st.ManifestSharedMemoryLocalStage),
        ("", st.CompactBufferAllocation),
        ("", st.LowerAutoCopy),
        ("", st.UnifyThreadBinding),
        ("", st.LowerMatchBuffer),
        ("", st.StmtSimplify),
        ("", st.InjectPermutedLayout),
        ("", st.AnnotateIrregularLoop),
        ("", st.InjectSoftwarePipeline),
        ("", st.TransformMmaBufferLayout),
        ("", st.LowerOpaqueBlock),
        ("", t.FlattenBuffer),
        ("", t.BF16ComputeLegalize),
        ("", lambda: t.NarrowDataType(32)),
        ("", st.LoopPartition),
        ("", lambda: t.VectorizeLoop(bool(vectorize))),
        *(("", REWRITES[r].make) for r in rewrites),
        ("", st.InjectVirtualThread),
        ("", st.InjectDoubleBuffer),
        ("!tirx.disable_storage_rewrite", t.StorageRewrite),
        ("tirx.use_async_copy", st.LowerAsyncDMA),
        ("", st.HoistIfThenElse),
        ("", t.UnrollLoop),
        ("", st.RenormalizeSplitPattern),
        ("", t.StmtSimplify),
        ("", t.RemoveNoOp),
        ("", st.RewriteUnsafeSelect),
        ("tirx.instrument_bound_checkers", st.InstrumentBoundCheckers),
        ("tirx.s_tir.ldg32", lambda: st.InjectPTXLDG32(True)),
        ("!tirx.disable_cse_tir", t.CommonSubexprElim),
        ("tirx.instrument_lwp", st.InstrumentProfileIntrinsics),
        ("", t.FP8ComputeLegalize),
        ("", st.VerifyVTCMLimit),
        ("", st.LowerVtcmAlloc),
        ("", t.VerifyMemory),
        ("", t.AnnotateEntryFunc),
        ("", lambda: st.ThreadSync("shared")),
        ("", lambda: st.ThreadSync("shared.dyn")),
        ("", lambda: st.ThreadSync("warp")),
        ("", st.InferFragment),
        ("", st.LowerThreadAllreduce),
        ("tirx.use_async_copy", st.InjectPTXAsyncCopy),
        ("tirx.s_tir.ldg32", st.InjectPTXLDG32),
        ("", st.MergeSharedMemoryAllocations),
        ("", t.SplitHostDevice),
        ("", t.MakePackedAPI),
        ("", t.FP8StorageLegalize),
        ("", t.BF16StorageLegalize),
    ]

    def runs(option: str) -> bool:
        return not option or bool(config.get(option.lstrip("!"), False)) != option.startswith("!")

    return [make() for option, make in rows if runs(option)]


def _pipeline(name: str, rewrites: tuple[str, ...]):
    """The pipeline `name`: TVM's default with `rewrites` (names of REWRITES) right after VectorizeLoop."""
    from tvm.s_tir.pipeline import finalize_device_passes, finalize_host_passes  # deferred: see `_passes`

    @tvm.transform.module_pass(opt_level=0, name=name)
    def run(mod, _ctx):
        config = tvm.transform.PassContext.current().config
        return tvm.transform.Sequential(_passes(config, rewrites))(mod)

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
