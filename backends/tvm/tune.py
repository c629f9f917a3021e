"""MetaSchedule tuning for the TVM backend (``--tune`` / ``--tune-log``), host target only.

meta_schedule_problem() says whether tuning can run with the installed TVM; _meta_schedule_tune() is the module
pass :mod:`tcc.backends.tvm.compile`'s pipeline runs before MetaScheduleApplyDatabase: it spends the trial budget
on the heaviest fused functions (_tune_plan), with tcc's own schedule of each (:mod:`tcc.backends.tvm.schedule`)
measured first as the one to beat (_record_default_schedules).
TVM is imported where used, not when this module is imported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import linecache
import subprocess
import sys
import types
from typing import Any

from .runtime import TVM_FFI_PIN, tvm_versions

_SAVE_JSON_PROBE = """
import tvm
from tvm import te
a = te.placeholder((4,), name="a")
tvm.ir.save_json(tvm.IRModule({"main": te.create_prim_func([a, te.compute((4,), lambda i: a[i] + 1)])}))
"""


def meta_schedule_problem() -> str | None:
    """Why MetaSchedule tuning cannot run with the installed TVM, or None.

    MetaSchedule serializes every IRModule it tunes (its database, TuneContext, the builder's worker processes)
    with tvm.ir.save_json.  apache-tvm 0.27.0.post1 next to apache-tvm-ffi 0.1.15.post2 (pip's choice for
    `apache-tvm-ffi>=0.1.14.post0`) crashes there (SIGSEGV in ffi::ToJSONGraph: the two binaries disagree), even for
    a 4-element PrimFunc; with apache-tvm-ffi 0.1.14.post0, which `tcc setup` pins (TVM_FFI_PIN), the same
    call works and tuning runs.  The probe runs in a child process so the crash cannot take the build down."""

    proc = subprocess.run([sys.executable, "-c", _SAVE_JSON_PROBE], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        why = "crashes (segmentation fault)" if proc.returncode in (-11, 139) else f"fails (exit {proc.returncode})"
        tvm_v, ffi_v = tvm_versions()
        return (
            f"MetaSchedule tuning is not usable with apache-tvm {tvm_v} + apache-tvm-ffi {ffi_v}: serializing "
            f"an IRModule (tvm.ir.save_json, which MetaSchedule needs) {why}; apache-tvm-ffi {TVM_FFI_PIN} "
            f"does not have this problem (`tcc setup host` installs it; by hand: pip install "
            f"apache-tvm-ffi=={TVM_FFI_PIN}, then `tcc setup host --rebuild` to rebuild the cached runtimes)"
        )
    missing = [m for m in ("psutil", "cloudpickle") if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"MetaSchedule tuning needs the Python package(s) {', '.join(missing)} (pip install "
            f"{' '.join(missing)}; `tcc setup host` installs them)"
        )
    return None


def _meta_schedule_build(mod: Any, target: Any, _params: Any) -> Any:
    """MetaSchedule's builder function (run in its builder worker processes): its default_build without the
    ``import tvm.s_tir.tensor_intrin`` in front.  That import registers every tensor intrinsic (CUDA, ROCm, ARM,
    Hexagon, ...) by parsing TVMScript, ~30 s per process on this 2-core machine (inspect.getsource walks
    sys.modules for each of them); LocalBuilder starts fresh workers for every batch, so with the default each
    build hit the 30 s timeout and no candidate was ever measured.  Building lowers already scheduled (and, for
    tensorized candidates, already tensorized) TIR: the registry is not needed here."""
    from tvm.driver import build as tvm_build  # deferred for start-up: loads tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock  # deferred for start-up: loads tvm

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)


@contextlib.contextmanager
def _quick_inspect_stack():
    """inspect.stack() without resolving each frame's module, while MetaSchedule starts.

    TuneContext imports tvm.s_tir.tensor_intrin, whose ~250 TVMScript PrimFuncs each call inspect.stack() (the
    parser looks for enclosing frames' locals and the decorator's line).  For every frame whose file does not exist
    (``<frozen importlib._bootstrap>``: the import machinery) inspect.getmodule scans all of sys.modules, so the
    import took 30-60 s here, scaling with the number of loaded modules.  This stand-in returns the same
    FrameInfo records (frame, file, line number, function, the current line as code_context) straight from the
    frames, without the module scan: the import takes ~3 s."""

    original = inspect.stack

    def stack(context: int = 1):
        out: list[inspect.FrameInfo] = []
        frame: types.FrameType | None = sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            line = linecache.getline(code.co_filename, frame.f_lineno, frame.f_globals) if context > 0 else ""
            out.append(
                inspect.FrameInfo(
                    frame, code.co_filename, frame.f_lineno, code.co_name, [line] if line else None, 0 if line else None
                )
            )
            frame = frame.f_back
        return out

    inspect.stack = stack
    try:
        yield
    finally:
        inspect.stack = original


TUNE_POPULATION = 128  # EvolutionarySearch's population (default 512: ~25 s per search iteration here, 128: ~6 s)
TUNE_TRIALS_PER_TASK = 32  # a budget of N trials tunes the N // 32 heaviest functions (at least one)


def _tune_plan(tasks: list[Any], trials: int) -> tuple[list[Any], int, int]:
    """(tasks to tune, trials per task, trials per search iteration) for a budget of ``trials``.

    MetaSchedule would spread the budget over every fused function (DDSNet: 64, 18 of them concats and transposes
    that tcc's Injective rule already vectorizes) in rounds of 64 trials each, so a budget of a few hundred trials
    would tune the first few functions in whatever order the extraction gives.  Instead the budget goes to the
    functions with the most floating-point work (weight x estimated FLOPs; DDSNet's 7x7 stem conv alone is 41% of
    the model), at least TUNE_TRIALS_PER_TASK trials each; everything else keeps tcc's default schedules."""
    import tvm  # deferred for start-up: loads tvm

    def work(task) -> float:
        return float(task.weight) * float(tvm.s_tir.analysis.estimate_tir_flops(task.dispatched[0]))

    heavy = sorted((t for t in tasks if work(t) > 0), key=work, reverse=True)
    if not heavy:
        return [], 0, 0
    n = max(1, min(len(heavy), trials // TUNE_TRIALS_PER_TASK))
    per_task = max(1, trials // n)
    # a search iteration costs seconds whatever its size (the population is evolved, then the batch is built in
    # fresh worker processes): small budgets run in one iteration, larger ones in iterations of 16..64 trials so
    # that the cost model learns in between
    return heavy[:n], per_task, min(per_task, 64, max(16, per_task // 2))


def _record_default_schedules(tasks: list[Any], target: Any, database: Any, builder: Any, runner: Any) -> int:
    """Measure tcc's own schedule (backends/tvm/schedule/) of each task with MetaSchedule's builder and runner and
    commit it to the database as a tuning record (its trace replays to the same TIR).  So the search competes with
    it: MetaScheduleApplyDatabase applies whichever measured faster, a small budget never leaves a function slower
    than the untuned build (up to timing noise), and the evolutionary search's initial population includes it.
    Returns the number of records added."""
    from tvm.s_tir import meta_schedule as ms  # deferred for start-up: loads tvm

    from . import schedule as tvm_schedule  # deferred for start-up: loads tvm

    rules = tvm_schedule.default_schedule_pass().rules
    todo = []
    for task in tasks:
        workload_mod = task.dispatched[0]
        func = workload_mod["main"]
        sch = next((s for s in (r.apply(func, target, False) for r in rules) if s is not None), None)
        if isinstance(sch, list):
            sch = sch[0] if sch else None
        if sch is None:
            continue
        workload = database.commit_workload(workload_mod)
        trace = str(sch.trace)
        if any(str(rec.trace) == trace for rec in database.get_top_k(workload, 1 << 20)):
            continue  # measured by an earlier build
        todo.append((sch, workload, func))
    if not todo:
        return 0
    built = builder.build([ms.builder.BuilderInput(sch.mod, target) for sch, _, _ in todo])
    inputs, kept = [], []
    for (sch, workload, func), b in zip(todo, built):
        if b.error_msg is None:
            inputs.append(ms.runner.RunnerInput(b.artifact_path, "cpu", ms.arg_info.ArgInfo.from_prim_func(func)))
            kept.append((sch, workload, func))
    added = 0
    for (sch, workload, func), future in zip(kept, runner.run(inputs)):
        res = future.result()
        if res.error_msg is None and res.run_secs:
            database.commit_tuning_record(
                ms.database.TuningRecord(
                    sch.trace, workload, res.run_secs, target, ms.arg_info.ArgInfo.from_prim_func(func)
                )
            )
            added += 1
    return added


def _meta_schedule_tune(target: Any, work_dir: str, trials: int):
    """A module pass that tunes the heaviest fused TIR functions with MetaSchedule (_tune_plan) and appends the
    records to the JSON database in ``work_dir`` (applied by MetaScheduleApplyDatabase after it), tcc's own
    schedule of each of them recorded first as the one to beat (_record_default_schedules).  Like
    relax.transform.MetaScheduleTuneIRMod otherwise, but the cost model falls back to random search when xgboost
    is not installed (MetaScheduleTuneIRMod insists on xgboost), the search is seeded, and the builder skips the
    tensor-intrinsic registry (_meta_schedule_build).  Candidates are timed with the TVM runtime's default thread
    count (TVM_NUM_THREADS when set)."""
    import tvm  # deferred for start-up: loads tvm

    @tvm.transform.module_pass(opt_level=0, name="TccMetaScheduleTune")
    def tune(mod, _ctx):

        from tvm.s_tir import meta_schedule as ms  # deferred for start-up: loads tvm

        with _quick_inspect_stack():
            import tvm.s_tir.tensor_intrin  # noqa: F401  (what TuneContext imports first)
        rel = ms.relax_integration
        tasks, per_task, per_iter = _tune_plan(rel.extract_tasks(mod, target), trials)
        if not tasks:
            return mod
        database = ms.database.JSONDatabase(work_dir=work_dir)
        builder = ms.builder.LocalBuilder(f_build=_meta_schedule_build)
        runner = ms.runner.LocalRunner()
        _record_default_schedules(tasks, target, database, builder, runner)
        strategy = ms.search_strategy.EvolutionarySearch(population_size=TUNE_POPULATION)
        contexts, weights = rel.extracted_tasks_to_tune_contexts(tasks, work_dir, strategy=strategy, seed=0)
        ms.tune_tasks(
            tasks=contexts,
            task_weights=weights,
            work_dir=work_dir,
            max_trials_global=per_task * len(tasks),
            max_trials_per_task=per_task,
            num_trials_per_iter=per_iter,
            builder=builder,
            runner=runner,
            database=database,
            cost_model="xgb" if importlib.util.find_spec("xgboost") else "random",
        )
        return mod

    return tune
