"""Compiling for a TVM target: ONNX -> Relax IRModule -> tcc's CPU pipeline -> a shared library for the target.

Everything target-specific comes from :mod:`tcc.targets`; the cross compiler is checked by
:mod:`tcc.backends.tvm.runtime` (require_tools).  The pipeline (_relax_pipeline) puts the graph in NHWC and applies
tcc's default CPU schedules (:mod:`tcc.backends.tvm.schedule`), and MetaSchedule tuning when asked
(:mod:`tcc.backends.tvm.tune`).  The exported module runs with :mod:`tcc.backends.tvm.runner`.
TVM is imported where used, not when this module is imported.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...targets import get_platform
from . import codegen as tvm_codegen
from . import tune as tvm_tune
from .isa import resolve_tvm_target as resolve_tvm_target  # re-exported: the target the compile step uses
from .runtime import require_tools


@dataclass(frozen=True)
class X86Passes:
    """tcc's graph rewrites of x86 modules, each on or off (ARM modules take none of them: their instruction counts
    stay the references); backend.py's PRECISION_OPTIONS chooses them per precision."""

    concat_in_place: bool = False  # a dense block's concats written in place (passes/concat.py; fused TIR)
    nchw_input: bool = False  # the first conv reads the NCHW input itself (passes/nchw_input.py)
    fast_math: bool = False  # exp, sigmoid, softmax, tanh, erf as vectorizing polynomials (passes/fast_math.py)
    whole_vectors: bool = False  # output channels no zmm divides computed rounded up (passes/channel_pad.py)
    channel_scale: bool = False  # 1 x 1 depthwise convs as multiplies, into average pools (passes/channel_scale.py)


@dataclass(frozen=True)
class CompileOptions:
    """How compile_module lowers and compiles a Relax module. fuse: cpu_generic's pipeline (FuseOps / FuseTIR /
    FoldConstant) instead of tvm.compile's unfused default; schedule: the graph in NHWC and tcc's CPU schedules
    (backends/tvm/schedule/; DDSNet 217 ms -> 7.9 ms on one core); dlight: dlight's own CPU rules (GEMV,
    Reduction) too -- off by default: on a conv + GAP + gemm net they made the host code 4x slower (0.09 ms vs
    0.02 ms), they target LLM-style GEMV; tune_dir / tune_trials: MetaSchedule, the fused TIR functions tuned
    (tune_trials > 0, records appended to the JSON database in tune_dir) and / or that database's best records
    applied (tuning measures candidates on this machine: the host target); ieee: the target's fast-math dropped
    (INT8 modules: their float steps -- quantizing the input, dequantizing the output -- must round exactly like
    the reference; fast-math turns x / s into x * (1 / s), which moves codes at ties); x86: the x86 rewrites.
    Nothing set (no fuse, dlight, tuning or schedule): tvm.compile's default, unfused and unscheduled."""

    fuse: bool = True
    dlight: bool = False
    schedule: bool = True
    tune_dir: str | None = None
    tune_trials: int = 0
    ieee: bool = False
    x86: X86Passes = X86Passes()


def _x86_graph_rewrites(target: Any, x86: X86Passes) -> list:
    """The x86 rewrites of the Relax graph that `x86` turns on, in their order (before legalization)."""
    from .passes.channel_pad import conv_channels_to_whole_vectors  # deferred for start-up: loads tvm, tvm_ffi
    from .passes.channel_scale import (  # deferred for start-up: loads tvm, tvm_ffi
        affine_into_avg_pool,
        depthwise_1x1_to_multiply,
    )
    from .passes.fast_math import fast_math_passes  # deferred for start-up: loads tvm, tvm_ffi
    from .passes.nchw_input import conv_reads_nchw_input  # deferred for start-up: loads tvm, tvm_ffi

    rewrites = (
        (x86.whole_vectors, lambda: [conv_channels_to_whole_vectors(target)]),
        (x86.channel_scale, lambda: [depthwise_1x1_to_multiply(), affine_into_avg_pool()]),
        (x86.nchw_input, lambda: [conv_reads_nchw_input(target)]),
        (x86.fast_math, fast_math_passes),
    )
    return [p for on, make in rewrites if on for p in make()]


def _relax_pipeline(target: Any, options: CompileOptions) -> Any:
    """Relax lowering for CPU (see CompileOptions): cpu_generic (fusion + constant folding) with the schedule: the
    graph in NHWC, the x86 rewrites asked for, and tcc's default CPU schedules (backends/tvm/schedule/) on the fused
    TIR; optionally dlight's own CPU rules and MetaSchedule."""
    import tvm  # deferred for start-up: loads tvm
    from tvm import relax  # deferred for start-up: loads tvm
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic  # deferred for start-up: loads tvm

    from . import schedule as tvm_schedule  # deferred for start-up: loads tvm
    from .schedule import float_tile  # deferred for start-up: loads tvm
    from .schedule.loops import is_x86  # deferred for start-up: loads tvm

    o = options
    if not o.fuse and not o.dlight and not o.tune_dir and not o.schedule:
        return "default"
    passes: list[Any] = [*tvm_schedule.layout_passes(), fold_numpy_constants()] if o.schedule else []
    x86 = o.schedule and is_x86(target)  # ARM's instruction counts stay
    if x86:
        passes += _x86_graph_rewrites(target, o.x86)
    elif o.schedule and float_tile.takes(target):
        from .passes.whole_tiles import conv_width_to_whole_tiles  # deferred for start-up: loads tvm, tvm_ffi

        passes.append(conv_width_to_whole_tiles(target))
    passes += list(cpu_generic.library_dispatch_passes(target))
    if o.fuse:  # cpu_generic's legalization, with PrimFuncs that declare their fusion pattern keeping it
        legalize = list(cpu_generic.legalize_passes(target))
        at = next(i for i, p in enumerate(legalize) if p.info.name == "AnnotateTIROpPattern") + 1
        passes += legalize[:at] + [_declared_op_patterns()] + legalize[at:]
        if x86 and o.x86.concat_in_place:
            from .passes.concat import concat_in_place  # deferred for start-up: loads tvm, tvm_ffi

            passes.append(concat_in_place())
    else:
        passes.append(relax.transform.LegalizeOps())
    if o.tune_dir:
        if o.tune_trials > 0:
            passes.append(tvm_tune._meta_schedule_tune(target, o.tune_dir, o.tune_trials))
        with target:  # the pass reads the target when it is constructed
            passes.append(relax.transform.MetaScheduleApplyDatabase(o.tune_dir))
    if o.schedule:  # after MetaSchedule: what it tuned is marked scheduled and left alone
        passes.append(tvm_schedule.default_schedule_pass())
    if o.dlight:
        from tvm.s_tir import dlight as dl  # deferred for start-up: loads tvm

        passes.append(dl.ApplyDefaultSchedule(dl.cpu.GEMV(), dl.cpu.Reduction()))
    passes += list(cpu_generic.dataflow_lower_passes(target)) + list(cpu_generic.finalize_passes(target))
    return tvm.transform.Sequential(passes, name="tcc_cpu_pipeline")


# Relax ops on constants that numpy computes exactly (they move, reshape or test values; no arithmetic): the
# frontend's bias reshapes and Clip NaN guards, ConvertLayout's weight transposes
NUMPY_FOLDS: dict[str | None, Callable[..., Any]] = {  # (the relax call, its constant tensors) -> the value
    "relax.permute_dims": lambda call, x: np.transpose(
        x, None if call.attrs.axes is None else [int(a) for a in call.attrs.axes]
    ),
    "relax.reshape": lambda call, x: x.reshape([int(d) for d in call.args[1].values]),
    "relax.isnan": lambda call, x: np.isnan(x),
    "relax.where": lambda call, c, x, y: np.where(c, x, y),
}


def fold_numpy_constants() -> Any:
    """A function pass: each call of a NUMPY_FOLDS op whose tensor arguments are constants becomes the constant
    numpy computes. Why: Relax's FoldConstant compiles and runs one kernel per folded call (about 75 ms each with
    LLVM): DDSNet's 80 weight transposes and 40 bias reshapes took 8.6 of its 17 s of compile, FastNet's 128 Clip
    guards 10 s. FoldConstant still runs after it, for anything else."""
    import tvm  # deferred for start-up: loads tvm
    from tvm import relax  # deferred for start-up: loads tvm
    from tvm.relax.expr_functor import PyExprMutator, mutator  # deferred for start-up: loads tvm

    @mutator
    class Fold(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
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
    def apply(func: Any, mod: Any, _ctx: Any) -> Any:
        return Fold(mod).visit_expr(func)

    return apply


def _declared_op_patterns() -> Any:
    """A module pass: PrimFuncs carrying "tcc.op_pattern" get that as their "op_pattern" (which FuseOps reads),
    overriding AnnotateTIROpPattern's guess (see int8.requantize.requantize_primfunc)."""
    import tvm  # deferred for start-up: loads tvm

    @tvm.transform.module_pass(opt_level=0, name="TccDeclaredOpPatterns")
    def apply(mod: Any, _ctx: Any) -> Any:
        for gv, func in list(mod.functions_items()):
            pattern = func.attrs.get("tcc.op_pattern") if isinstance(func, tvm.tirx.PrimFunc) and func.attrs else None
            if pattern is not None:
                mod[gv] = func.with_attr("op_pattern", int(pattern))
        return mod

    return apply


def import_onnx(onnx_model: Any, shape_dict: dict[str, list[int]] | None = None) -> Any:
    """ONNX (ModelProto or path) -> Relax IRModule with the weights as constants; each Resize as gathers first
    (passes.resize: TOPI's resize2d computed wrong values on ARMv7)."""
    import onnx  # deferred for start-up: loads onnx
    from tvm.relax.frontend.onnx import from_onnx  # deferred for start-up: loads tvm

    from .passes.resize import resize_as_gathers, takes_clipped  # deferred for start-up: loads onnx

    model = onnx.load(str(onnx_model)) if isinstance(onnx_model, (str, os.PathLike)) else onnx_model
    imported = from_onnx(resize_as_gathers(model), shape_dict=shape_dict, keep_params_in_input=False)
    return relax_clips(takes_clipped(imported))


def relax_clips(mod: Any) -> Any:
    """The frontend's Clip with constant bounds -- prebuilt TE kernels, call_tir(maximum / minimum, x, bound) --
    as the Relax ops R.maximum / R.minimum: the same values. Why: Relax's ConvertLayout cannot move a call_tir to
    NHWC, so every ReLU6 of FastNet / MobileNetV2 was wrapped in two transposes. (Rewriting the ONNX Clip as
    Max / Min instead does not work: the frontend turns those into broadcast + stack + reduce.)"""
    import tvm  # deferred for start-up: loads tvm
    from tvm import relax  # deferred for start-up: loads tvm
    from tvm.relax.expr_functor import PyExprMutator, mutator  # deferred for start-up: loads tvm

    call_tir = tvm.ir.Op.get("relax.call_tir")
    ops = {"maximum": (relax.op.maximum, "T.max("), "minimum": (relax.op.minimum, "T.min(")}

    @mutator
    class Clips(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
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
        import psutil  # optional: psutil may be missing

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def compile_module(
    mod: Any, target_name: str, out_path: str | os.PathLike | None = None, options: CompileOptions = CompileOptions()
) -> Path:
    """Compile a Relax IRModule (``main``) for a target and export it as a shared library linked
    by the target's (cross) C++ compiler; returns the .so path. The kernels' LLVM code is generated on all
    cores (tcc.backends.tvm.codegen): phases "compile" (Relax), "codegen" (LLVM, objects), "link".
    `options`: CompileOptions."""
    import tvm  # deferred for start-up: loads tvm
    from tvm.support import cc  # deferred for start-up: loads tvm

    platform = get_platform(target_name)
    require_tools(target_name, build=False, run=False)
    target_dict = resolve_tvm_target(target_name)
    if options.ieee:
        target_dict.pop("fast-math", None)
    if options.tune_dir:  # MetaSchedule sizes its parallel schedules by the threads the candidates are timed with
        Path(options.tune_dir).mkdir(parents=True, exist_ok=True)
        threads = os.environ.get("TVM_NUM_THREADS", "")
        target_dict["num-cores"] = int(threads) if threads.isdigit() and int(threads) > 0 else _physical_cores()
    target = tvm.target.Target(target_dict)
    pipeline = _relax_pipeline(target, options)
    if out_path is None:
        out_dir = Path(tempfile.mkdtemp(prefix=f"tcc-{platform.name}-"))
        out_path = out_dir / f"model-{platform.name}.so"
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fcompile = cc.cross_compiler(platform.cxx) if platform.is_cross else None
    tvm_codegen.compile_and_export(mod, target, pipeline, out_path, fcompile)
    return out_path


def compile_onnx(
    onnx_model: Any,
    target_name: str,
    out_path: str | os.PathLike | None = None,
    shape_dict: dict[str, list[int]] | None = None,
    options: CompileOptions = CompileOptions(),
) -> Path:
    """Compile an ONNX model (ModelProto or path) FP32 for a target; returns the exported .so: the Relax ONNX
    frontend (`shape_dict`: its input shapes), then compile_module with `options` (CompileOptions)."""
    require_tools(target_name, build=False, run=False)
    return compile_module(import_onnx(onnx_model, shape_dict), target_name, out_path, options)
