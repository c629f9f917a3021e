"""Choosing the post-training steps per model: which of equalization, weight rounding and bias correction a
calibration runs, when neither the command line nor the spec's `calibrate:` section fixes them.

No fixed choice helps every model (tcc.quant.table.steps.Steps), so each combination of the undecided steps is tried
and judged: a seeded quarter of the calibration samples (at least JUDGED_MIN) is held back from the statistics, the
rest calibrates, and every candidate table's INT8 model (exactly as the target computes it: Judge) runs on the
held-back samples against the FP32 graph on ONNX Runtime. The best mean output cosine wins, then the
best worst-sample cosine, both to 6 decimals (finer differences are noise on a few dozen samples); a tie goes to
the earlier candidate, and candidates go from fewer steps to more. The winner's paired per-sample gain over the first
candidate (the fixed steps alone) is recorded with its standard error: how far the judged samples support the
choice. Samples the user holds out are never seen: only the calibration data is split.

One statistics pass serves every candidate with the same equalization (rounding and bias correction work on the
final scales and the layers' sampled rows), so all 8 combinations cost two calibrations plus the per-layer steps and
the judging. The chosen steps then calibrate on every sample (the table's statistics are the whole data's; the recorded
cosines are those of the trial tables, made from three quarters of it). Its `steps_choice` says what was tried, what
each measured and what won (the
time taken is in `timing_s`, with the table's other times); a choice budget that stopped the trials early is
recorded too (the table then depends on the machine's speed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Any, TypeVar, cast

import numpy as np
import onnx

from .collect.stats import per_sample_cosine
from .intgraph.match import IntGraph
from .intgraph.qgraph import quantize_graph
from .intgraph.reference import Reference
from .lower.qdq import to_qdq
from .report.quality import run_ort
from .settings import CalibrationRun
from .table.file import CalibrationTable
from .table.records import StepsChoice
from .table.rules import TargetRules
from .table.steps import STEP_NAMES, Steps

SAMPLES_MIN = 32  # fewer: no choice (8 judged samples and 24 for the statistics at least)
JUDGED_MIN = 8
JUDGED_FRACTION = 0.25
DECIMALS = 6
POST_STEPS = ("rounding", "bias_correction")  # run on the final scales: one statistics pass serves each subset
Stage = TypeVar("Stage")  # a calibration up to its per-layer steps (tcc.quant.calibrate.Scaled)


def choose_steps(
    run: CalibrationRun,
    scaled: Callable[[np.ndarray, bool], Stage],
    with_layer_steps: Callable[[Stage, Steps], CalibrationTable],
) -> CalibrationTable:
    """The table of the best combination of the run's free steps. scaled(data, equalization): a calibration up to
    its per-layer steps; with_layer_steps(stage, steps): its table with them (tcc.quant.calibrate)."""
    started = time.perf_counter()
    data, steps = run.data, run.steps
    fixed = {name: bool(getattr(steps, name)) for name in STEP_NAMES if name not in steps.free}
    record: dict[str, Any] = {"free": list(steps.free), "fixed": fixed, "budget_s": steps.choice_budget}
    if steps.choice_budget == 0 or len(data) < SAMPLES_MIN:
        why = (
            "choice budget 0"
            if steps.choice_budget == 0
            else f"{len(data)} calibration samples; choosing needs {SAMPLES_MIN} ({JUDGED_MIN} held back to judge)"
        )
        plain = steps.deciding(())
        table = with_layer_steps(scaled(data, bool(plain.equalization)), plain)
        record.update(chosen=[], skipped=why, trials=[])
    else:
        trials = _trials(run, scaled, with_layer_steps, started)
        # recorded, not a gate: on the few judged samples no gain cleared 2 standard errors, where the best trial
        # was better on other samples (docs/notes/steps-choice.md)
        gain = trials.best_cosines - trials.first_cosines  # per judged sample, against the fixed steps alone
        standard_error = float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else 0.0
        # the table itself from every sample: one from three quarters of them lost more held-out cosine than the
        # choice gained (docs/notes/steps-choice.md)
        table = with_layer_steps(scaled(data, bool(trials.best.equalization)), trials.best)
        record.update(
            chosen=trials.best_record["steps"],
            judged_samples=trials.judged,
            statistics_samples=len(data) - trials.judged,
            seed=run.settings.seed,
            complete=trials.complete,
            trials=trials.records,
            best_gain={"mean": float(gain.mean()), "standard_error": standard_error},
        )
    table.record_choice(
        cast(StepsChoice, record), time.perf_counter() - started
    )  # the whole choice, the table's own run included
    return table


@dataclass
class _Trials:
    """Every candidate tried on the statistics samples and judged on the held-back ones, and the best."""

    records: list[dict]  # per candidate: its steps and the judged mean and min cosine
    best: Steps
    best_record: dict
    best_cosines: np.ndarray  # per judged sample
    first_cosines: np.ndarray  # the first candidate's (the fixed steps alone)
    judged: int  # samples held back
    complete: bool  # every candidate tried within the budget


def _trials(
    run: CalibrationRun,
    scaled: Callable[[np.ndarray, bool], Stage],
    with_layer_steps: Callable[[Stage, Steps], CalibrationTable],
    started: float,
) -> _Trials:
    data, steps = run.data, run.steps
    statistics, judged = split(len(data), run.settings.seed)
    judge = Judge(run.model, data[judged], run.graph, run.rules)
    records: list[dict] = []
    per_sample: list[np.ndarray] = []
    best: tuple[dict, Steps, np.ndarray] | None = None
    complete, stages = True, {}
    for equalization, post in candidates(steps):
        if records and steps.choice_budget is not None and time.perf_counter() - started > steps.choice_budget:
            complete = False
            break
        if equalization not in stages:  # one statistics pass per equalization setting, for all its candidates
            stages = {equalization: scaled(data[statistics], equalization)}
        decided = steps.deciding([*(["equalization"] if equalization else []), *post])
        cosines = judge.cosines(with_layer_steps(stages[equalization], decided))
        trial = {
            "steps": [n for n in STEP_NAMES if decided.enabled(n)],
            "mean_cos": float(cosines.mean()),
            "min_cos": float(cosines.min()),
        }
        records.append(trial)
        per_sample.append(cosines)
        if best is None or _key(trial) > _key(best[0]):
            best = (trial, decided, cosines)
    assert best is not None  # the first candidate always runs
    return _Trials(records, best[1], best[0], best[2], per_sample[0], len(judged), complete)


def candidates(steps: Steps) -> list[tuple[bool, tuple[str, ...]]]:
    """(equalization, post-steps on) for every combination of the free steps, fixed ones as fixed: equalization
    off before on (each keeps one statistics pass for its post-step subsets), fewer post steps first."""
    eq_options = [False, True] if "equalization" in steps.free else [bool(steps.equalization)]
    free_post = [n for n in POST_STEPS if n in steps.free]
    fixed_post = tuple(n for n in POST_STEPS if n not in steps.free and steps.enabled(n))
    subsets = [c for k in range(len(free_post) + 1) for c in combinations(free_post, k)]
    return [(eq, (*fixed_post, *subset)) for eq in eq_options for subset in subsets]


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (statistics, judged) sample indices, each in ascending order: a quarter judged, at least JUDGED_MIN."""
    judged_count = max(JUDGED_MIN, int(n * JUDGED_FRACTION))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[judged_count:]), np.sort(order[:judged_count])


def _key(trial: dict) -> tuple[float, float]:
    return round(trial["mean_cos"], DECIMALS), round(trial["min_cos"], DECIMALS)


class Judge:
    """The per-sample cosine of a table's INT8 output and the FP32 output, on held-back samples. The INT8 output is
    exactly what the target computes: under ONNX Runtime's rules the table's QDQ graph on ORT's integer kernels
    (bit-exact with tcc's integer reference there, and fast), under other rules the integer reference itself.
    Float fake-quant would be faster still, but on DDSNet its cosine error was as far from the integer one as the
    candidates from each other (docs/notes/steps-choice.md)."""

    def __init__(self, model: onnx.ModelProto, x: np.ndarray, graph: IntGraph, rules: TargetRules):
        self.model, self.x, self.graph, self.rules = model, np.ascontiguousarray(x), graph, rules
        self.fp32 = run_ort(model, self.x)

    def cosines(self, table: CalibrationTable) -> np.ndarray:
        if self.rules.name == "ort":
            got = run_ort(to_qdq(self.model, table), self.x)
        else:
            qgraph, reference = quantize_graph(self.graph, table), Reference()
            got = np.concatenate([_first(reference.run(qgraph, self.x[b : b + 4])) for b in range(0, len(self.x), 4)])
        return per_sample_cosine(self.fp32, got)


def _first(result):
    return result[0] if isinstance(result, list) else result
