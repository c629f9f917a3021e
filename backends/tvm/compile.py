"""Compiling for a TVM target: ONNX -> Relax IRModule -> tcc's CPU pipeline -> a shared library for the target.

Everything target-specific comes from :mod:`tcc.targets`; the cross compiler is checked by
:mod:`tcc.backends.tvm.runtime` (require_tools).  The pipeline (_relax_pipeline) puts the graph in NHWC and applies
tcc's default CPU schedules (:mod:`tcc.backends.tvm.schedule`), and MetaSchedule tuning when asked
(:mod:`tcc.backends.tvm.tune`).  The exported module runs with :mod:`tcc.backends.tvm.run`.
TVM is imported where used, not when this module is imported.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ...targets import get_platform as get_target
from . import codegen as tvm_codegen
from . import tune as tvm_tune
from .runtime import require_tools


def _relax_pipeline(  # noqa: PLR0913
    target: Any,
    fuse: bool,
    dlight: bool,
    tune_dir: str | None = None,
    tune_trials: int = 0,
    schedule: bool = True,
    concat_in_place: bool = False,
    nchw_input: bool = False,
    fast_math: bool = False,
    whole_vectors: bool = False,
    channel_scale: bool = False,
):
    """Relax lowering for CPU: cpu_generic (fusion + constant folding) with ``schedule``: the graph in NHWC and
    tcc's default CPU schedules (backends/tvm/schedule/) on the fused TIR; optionally dlight's own CPU rules,
    and MetaSchedule: with ``tune_dir`` the fused TIR functions are tuned (``tune_trials`` > 0, records appended
    to the JSON database in ``tune_dir``) and/or the best records of that database are applied.
    Nothing set: tvm.compile's default (unfused, unscheduled)."""
    import tvm
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

    from . import schedule as tvm_schedule  # deferred for start-up: loads tvm
    from .schedule.loops import is_x86

    if not fuse and not dlight and not tune_dir and not schedule:
        return "default"
    passes: list[Any] = [*tvm_schedule.layout_passes(), fold_numpy_constants()] if schedule else []
    if schedule and whole_vectors and is_x86(target):  # ARM's instruction counts stay
        from .passes.channel_pad import conv_channels_to_whole_vectors  # deferred for start-up: loads tvm, tvm_ffi

        passes.append(conv_channels_to_whole_vectors(target))
    if schedule and channel_scale and is_x86(target):  # ARM's instruction counts stay
        from .passes.channel_scale import affine_into_avg_pool, depthwise_1x1_to_multiply  # deferred: loads tvm

        passes += [depthwise_1x1_to_multiply(), affine_into_avg_pool()]
    if schedule and nchw_input and is_x86(target):  # ARM's instruction counts stay
        from .passes.nchw_input import conv_reads_nchw_input  # deferred for start-up: loads tvm, tvm_ffi

        passes.append(conv_reads_nchw_input(target))
    if schedule and fast_math and is_x86(target):  # ARM's instruction counts stay
        from .passes.fast_math import fast_math_passes  # deferred for start-up: loads tvm, tvm_ffi

        passes += fast_math_passes()
    passes += list(cpu_generic.library_dispatch_passes(target))
    if fuse:  # cpu_generic's legalization, with PrimFuncs that declare their fusion pattern keeping it
        legalize = list(cpu_generic.legalize_passes(target))
        at = next(i for i, p in enumerate(legalize) if p.info.name == "AnnotateTIROpPattern") + 1
        passes += legalize[:at] + [_declared_op_patterns()] + legalize[at:]
        if concat_in_place and schedule and is_x86(target):  # ARM's instruction counts stay
            from .passes.concat import concat_in_place as in_place  # deferred for start-up: loads tvm, tvm_ffi

            passes.append(in_place())
    else:
        passes.append(relax.transform.LegalizeOps())
    if tune_dir:
        if tune_trials > 0:
            passes.append(tvm_tune._meta_schedule_tune(target, tune_dir, tune_trials))
        with target:  # the pass reads the target when it is constructed
            passes.append(relax.transform.MetaScheduleApplyDatabase(tune_dir))
    if schedule:  # after MetaSchedule: what it tuned is marked scheduled and left alone
        passes.append(tvm_schedule.default_schedule_pass())
    if dlight:
        from tvm.s_tir import dlight as dl

        passes.append(dl.ApplyDefaultSchedule(dl.cpu.GEMV(), dl.cpu.Reduction()))
    passes += list(cpu_generic.dataflow_lower_passes(target)) + list(cpu_generic.finalize_passes(target))
    return tvm.transform.Sequential(passes, name="tcc_cpu_pipeline")


# Relax ops on constants that numpy computes exactly (they move, reshape or test values; no arithmetic): the
# frontend's bias reshapes and Clip NaN guards, ConvertLayout's weight transposes
NUMPY_FOLDS = {
    "relax.permute_dims": lambda call, x: np.transpose(
        x, None if call.attrs.axes is None else [int(a) for a in call.attrs.axes]
    ),
    "relax.reshape": lambda call, x: x.reshape([int(d) for d in call.args[1].values]),
    "relax.isnan": lambda call, x: np.isnan(x),
    "relax.where": lambda call, c, x, y: np.where(c, x, y),
}


def fold_numpy_constants():
    """A function pass: each call of a NUMPY_FOLDS op whose tensor arguments are constants becomes the constant
    numpy computes. Why: Relax's FoldConstant compiles and runs one kernel per folded call (about 75 ms each with
    LLVM): DDSNet's 80 weight transposes and 40 bias reshapes took 8.6 of its 17 s of compile, FastNet's 128 Clip
    guards 10 s. FoldConstant still runs after it, for anything else."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    @mutator
    class Fold(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            fold = NUMPY_FOLDS.get(getattr(call.op, "name", None))
            if fold is None:
                return call
            tensors = []
            for a in call.args:
                if isinstance(a, relax.ShapeExpr):
                    continue
                a = self.lookup_binding(a) if isinstance(a, relax.Var) else a
                if not isinstance(a, tvm.ir.GenericConst):
                    return call
                tensors.append(a.value.numpy())
            return relax.const(np.asarray(fold(call, *tensors), order="C"))  # (ascontiguousarray makes 0-d 1-d)

    @relax.transform.function_pass(opt_level=0, name="TccFoldNumpyConstants")
    def apply(func, mod, _ctx):
        return Fold(mod).visit_expr(func)

    return apply


def _declared_op_patterns():
    """A module pass: PrimFuncs carrying "tcc.op_pattern" get that as their "op_pattern" (which FuseOps reads),
    overriding AnnotateTIROpPattern's guess (see int8.requantize.requantize_primfunc)."""
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="TccDeclaredOpPatterns")
    def apply(mod, _ctx):
        for gv, func in list(mod.functions_items()):
            pattern = func.attrs.get("tcc.op_pattern") if isinstance(func, tvm.tirx.PrimFunc) and func.attrs else None
            if pattern is not None:
                mod[gv] = func.with_attr("op_pattern", int(pattern))
        return mod

    return apply


def resolve_tvm_target(target_name: str) -> dict[str, Any]:
    """The registry's TVM target dict, with ``"mcpu": "native"`` replaced by this machine's CPU
    name (LLVM refuses "native" next to an explicit mtriple)."""
    d = get_target(target_name).tvm_target_dict()
    if d.get("mcpu") == "native":
        import tvm  # only here: an ARM build's own process need not import TVM (tvm_worker)

        d["mcpu"] = str(tvm.target.codegen.llvm_get_system_cpu())
    return d


def import_onnx(onnx_model: Any, shape_dict: dict[str, list[int]] | None = None) -> Any:
    """ONNX (ModelProto or path) -> Relax IRModule with the weights as constants."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load(str(onnx_model)) if isinstance(onnx_model, (str, os.PathLike)) else onnx_model
    return relax_clips(from_onnx(model, shape_dict=shape_dict, keep_params_in_input=False))


def relax_clips(mod: Any) -> Any:
    """The frontend's Clip with constant bounds -- prebuilt TE kernels, call_tir(maximum / minimum, x, bound) --
    as the Relax ops R.maximum / R.minimum: the same values. Why: Relax's ConvertLayout cannot move a call_tir to
    NHWC, so every ReLU6 of FastNet / MobileNetV2 was wrapped in two transposes. (Rewriting the ONNX Clip as
    Max / Min instead does not work: the frontend turns those into broadcast + stack + reduce.)"""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    call_tir = tvm.ir.Op.get("relax.call_tir")
    ops = {"maximum": (relax.op.maximum, "T.max("), "minimum": (relax.op.minimum, "T.min(")}

    @mutator
    class Clips(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op != call_tir or not isinstance(call.args[1], relax.Tuple) or len(call.args[1].fields) != 2:
                return call
            kind = next((k for k in ops if call.args[0].name_hint.startswith(k)), None)
            x, bound = call.args[1].fields
            if isinstance(bound, relax.Var):
                bound = self.lookup_binding(bound)
            if (
                kind is None
                or not isinstance(bound, tvm.ir.GenericConst)
                or len(bound.ty.shape) != 0
                or ops[kind][1] not in mod[call.args[0]].script()
            ):
                return call
            return ops[kind][0](x, bound)

    # the frontend's NaN guards on the bounds become constants (numpy's fold first: FoldConstant compiles each)
    mod = relax.transform.FoldConstant()(fold_numpy_constants()(mod))
    mod["main"] = Clips(mod).visit_expr(mod["main"])
    return relax.transform.DeadCodeElimination()(mod)


def _physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def compile_module(  # noqa: PLR0913
    mod: Any,
    target_name: str,
    out_path: str | os.PathLike | None = None,
    *,
    fuse: bool = True,
    dlight: bool = False,
    tune_dir: str | os.PathLike | None = None,
    tune_trials: int = 0,
    schedule: bool = True,
    ieee: bool = False,
    concat_in_place: bool = False,
    nchw_input: bool = False,
    fast_math: bool = False,
    whole_vectors: bool = False,
    channel_scale: bool = False,
) -> Path:
    """Compile a Relax IRModule (``main``) for a target and export it as a shared library linked
    by the target's (cross) C++ compiler; returns the .so path. The kernels' LLVM code is generated on all
    cores (tcc.backends.tvm.codegen): phases "compile" (Relax), "codegen" (LLVM, objects), "link".
    See compile_onnx for the options;
    ``ieee``: drop the target's fast-math (INT8 modules: their float steps -- quantizing the input,
    dequantizing the output -- must round exactly like the reference; fast-math turns x / s into
    x * (1 / s), which moves codes at ties); ``concat_in_place``: see _relax_pipeline (FP32 modules: INT8 ones
    keep their concat kernels); ``nchw_input``: the first conv reads the NCHW input itself (x86 FP32 modules:
    backends/tvm/passes/nchw_input.py); ``fast_math``: exp, sigmoid, softmax, tanh and erf as vectorizing polynomials
    (x86 FP32 modules: backends/tvm/passes/fast_math.py); ``whole_vectors``: convs whose output channels no zmm divides
    compute them rounded up and slice (AVX-512 FP32 modules: backends/tvm/passes/channel_pad.py)."""
    import tvm
    from tvm.support import cc

    spec = get_target(target_name)
    require_tools(target_name, build=False, run=False)
    target_dict = resolve_tvm_target(target_name)
    if ieee:
        target_dict.pop("fast-math", None)
    if tune_dir:  # MetaSchedule sizes its parallel schedules by the threads the candidates are timed with
        Path(tune_dir).mkdir(parents=True, exist_ok=True)
        threads = os.environ.get("TVM_NUM_THREADS", "")
        target_dict["num-cores"] = int(threads) if threads.isdigit() and int(threads) > 0 else _physical_cores()
    target = tvm.target.Target(target_dict)
    pipeline = _relax_pipeline(
        target,
        fuse,
        dlight,
        str(tune_dir) if tune_dir else None,
        tune_trials,
        schedule,
        concat_in_place,
        nchw_input,
        fast_math,
        whole_vectors,
        channel_scale,
    )
    if out_path is None:
        out_dir = Path(tempfile.mkdtemp(prefix=f"tcc-{spec.name}-"))
        out_path = out_dir / f"model-{spec.name}.so"
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fcompile = cc.cross_compiler(spec.cxx) if spec.is_cross else None
    tvm_codegen.compile_and_export(mod, target, pipeline, out_path, fcompile)
    return out_path


def compile_onnx(  # noqa: PLR0913
    onnx_model: Any,
    target_name: str,
    out_path: str | os.PathLike | None = None,
    *,
    fuse: bool = True,
    dlight: bool = False,
    shape_dict: dict[str, list[int]] | None = None,
    tune_dir: str | os.PathLike | None = None,
    tune_trials: int = 0,
    schedule: bool = True,
) -> Path:
    """Compile an ONNX model (ModelProto or path) FP32 for a target; returns the exported .so.

    Relax ONNX frontend -> compiled as tvm.compile would (target dict from the registry; kernels on all
    cores) -> one shared library linked by the target's (cross) C++ compiler.  ``fuse``: cpu_generic
    pipeline (FuseOps/FuseTIR/FoldConstant) instead of tvm.compile's unfused default; ``schedule``: NHWC layout
    and tcc's CPU schedules (backends/tvm/schedule/; DDSNet 217 ms -> 7.9 ms on one core);
    ``dlight``: add dlight's CPU rules (GEMV, Reduction) -- off by default: on a conv+GAP+gemm
    net they made the host code 4x slower (0.09 ms vs 0.02 ms), they target LLM-style GEMV.
    ``tune_dir``/``tune_trials``: MetaSchedule (see _relax_pipeline); tuning measures candidates
    on this machine, so it is meant for the host target.
    """
    require_tools(target_name, build=False, run=False)
    mod = import_onnx(onnx_model, shape_dict)
    return compile_module(
        mod,
        target_name,
        out_path,
        fuse=fuse,
        dlight=dlight,
        tune_dir=tune_dir,
        tune_trials=tune_trials,
        schedule=schedule,
    )
