"""Choosing per model what neither the command line nor the spec fixed: the activation method (`auto`: one of
tcc.quant.scales.methods.CANDIDATES) and the post-training steps (equalization, weight rounding, bias correction).

No fixed choice helps every model (tcc.quant.table.steps.Steps; the methods: docs/notes/method-choice.md), so the
candidates are tried and judged: a seeded quarter of the calibration samples (at least JUDGED_MIN) is held back from
the statistics, the rest calibrates, and every candidate table's INT8 model (exactly as the target computes it:
Judge) runs on the held-back samples against the FP32 graph on ONNX Runtime. Where a quarter holds fewer than
JUDGED_TARGET samples, each candidate is tried on folds (folds): another quarter held back each time, until
JUDGED_TARGET samples (or every one) are judged, and judged on all of them together: at 32 samples 4 folds of 8, at
4 times the trials' cost; from 128 samples on one quarter, the plain split. Where the first candidate's first fold
shows its every fold taking more than the whole choice budget, every trial takes the first fold alone
(the table records the folds planned; the choice then depends on the machine's speed, as a budget that bites). The
objective guards the worst case and the class, not the mean cosine alone (best):

    1. top-1 agreement with FP32 (per sample; per position too for a dense output): only the candidates within
       AGREEMENT_TOLERANCE of the best agreement stay (less is noise at a mask's borders; one judged sample of a
       classifier is more), or within AGREEMENT_ERRORS standard errors of the paired per-sample difference where
       that is wider (a classifier whose top-1 changes on many samples);
    2. of those, the best mean of the per-sample cosine averaged with its 10th percentile, to 6 decimals;
    3. then the best mean cosine, to 6 decimals (finer differences are noise on a few dozen samples)

and a tie goes to the earlier candidate, as does a guarded cosine within SELECTION_ERRORS standard errors of the
paired per-sample difference below the best's (cross-validation's one-standard-error rule). Another method than the
first wins only with a guarded cosine SWITCH_MARGIN above the first's (kl+cos is the default, and the methods' small
differences are noise on few samples), and with a paired per-sample cosine gain of at least SWITCH_ERRORS standard
errors (over draws of calibration crops a switch within that noise picked another method on another draw, and lost
held-out cosine on average).
The methods come first, each with the fixed steps alone (the free ones off, but asymmetric grids on where they are
free: _method_base); then every combination of the free steps with the method that won, fewer steps first (the
combination the methods were judged with is not judged again); last, where the rules make x * g(x) patterns (SiLU,
hard-swish) one lookup, the best so far with those patterns split into the gate's lookup and an integer multiply
(TargetRules.split_patterns: two roundings, yet closer to FP32 on DeepLabV3's hard-swish; one exact lookup closer on
LRASPP's: docs/notes/segmentation.md). The split form adds an op per pattern, so it wins only with a guarded cosine
SWITCH_MARGIN above its fused self; it plans another integer graph, so it costs a statistics pass of its own (the
weight search is its fused self's: tcc.quant.calibrate._Phases).
The winner's paired per-sample cosine gain over the first candidate (kl+cos or the method given, with the steps the
methods were judged with) is recorded with its standard error: how far the judged samples support the choice.
Samples the user holds out are never seen: only the calibration data is split.

One statistics pass (tcc.quant.stage.Measured) per fold serves every method and every post-step subset with the same
equalization, so the whole choice costs, per fold, one pass per equalization setting, each method's thresholds and
search, the per-layer steps and the judging. The chosen method and steps then calibrate on every sample (the
table's statistics are the whole data's; the recorded cosines are those of the trial tables, each made from three
quarters of it). Its `steps_choice` says what was tried, what each measured and what won (the time taken is in
`timing_s`, with the table's other times); a choice budget that stopped the trials early is recorded too (the table
then depends on the machine's speed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Any, Protocol, cast

import numpy as np
import onnx

from .collect.stats import per_sample_cosine
from .intgraph.match import IntGraph
from .intgraph.qgraph import quantize_graph
from .intgraph.reference import Reference
from .lower.qdq import to_qdq
from .report.quality import per_sample_agreement, run_ort
from .scales.methods import AUTO, CANDIDATES, WIDE_PERCENTILE
from .settings import CalibrationRun
from .stage import Measured, Scaled, wide_method
from .table.file import CalibrationTable
from .table.records import StepsChoice
from .table.rules import TargetRules
from .table.steps import STEP_NAMES, Steps

SAMPLES_MIN = 32  # fewer: no choice (8 judged samples and 24 for the statistics at least)
JUDGED_MIN = 8
JUDGED_FRACTION = 0.25
# judged samples the folds make up where a quarter holds fewer: on LeViT (census weights, 32 samples) the 8 of one
# quarter ranked its candidates the other way round from 64 held-out crops (docs/notes/dense-prediction.md)
JUDGED_TARGET = 32
LOW_PERCENTILE = 10  # the objective's worst-case guard: the per-sample cosine's 10th percentile
# run on the final scales: one statistics pass serves each subset
POST_STEPS = ("asymmetric", "rounding", "bias_correction")
AGREEMENT_TOLERANCE = 0.01
# or, where wider, this many standard errors of the paired per-sample agreement difference with the most agreeing
# trial: on a classifier whose top-1 changes on many samples (LeViT, census weights: about half) 3 samples of 32 are
# noise, and there the min-max ranges judged 3 samples less agreeing on the folds agreed most on 64 others
AGREEMENT_ERRORS = 2
# another method than the first (kl+cos, the default tuned on DDSNet) wins only with a guarded cosine at least this
# much above it: on DDSNet's checkpoints the methods differ by less, as noise of the judged crops (PCam: min-max
# judged 0.0004 better, worse on other crops), where KL's clipping costs the models it fails 0.01 to 0.3
# (docs/notes/method-choice.md); a 2-standard-error gate on the paired gain refused those too (the gain sits on the
# few samples that reach the clipped range)
SWITCH_MARGIN = 0.001
# and with a paired per-sample cosine gain over the first of at least this many standard errors: over 3 draws of
# calibration crops for 15 census models the choice without it switched on 19 of 45 model-draws and picked the same
# method on every draw for 4 of 15 models; with it, 13 and 7, its picks 0.0014 higher in held-out mean cosine and
# 0.032 in the worst crop (tools/choice_draws.py, docs/notes/census-rivals.md). Not 2: a gain that sits on the few
# samples reaching a clipped range (KL's failure, the reason for the choice) has a spread as large as its mean (the
# tests' toy: 1.9 standard errors), and 2 lost mean and 10th-percentile cosine to 1 on the draws
SWITCH_ERRORS = 1
COSINE_DECIMALS = 6
# a trial earlier in the order (the default first, then fewer steps) within this many standard errors of the best's
# paired per-sample cosine is taken instead: on the census's seeded classifiers (32 samples, 4 folds) the highest
# judged of 7 candidates lost up to 0.013 of mean cosine to an earlier one on 64 other crops (GhostNet, SemNASNet;
# docs/notes/dense-prediction.md)
SELECTION_ERRORS = 1


class Phases(Protocol):
    """A calibration's phases as the choice calls them (tcc.quant.calibrate)."""

    def measured(self, data: np.ndarray, equalization: bool) -> Measured: ...  # equalization + statistics

    # one method's scales (percentile: the percentile method's, None: the run's)
    def scaled(self, measured: Measured, method: str, percentile: float | None = None) -> Scaled: ...

    def table(self, scaled: Scaled, steps: Steps) -> CalibrationTable: ...  # with the per-layer steps

    def splitting(self, patterns: tuple[str, ...]) -> Phases: ...  # the phases with these patterns split


@dataclass(frozen=True)
class Candidate:
    method: str
    equalization: bool
    post: tuple[str, ...]  # post-steps on
    split: tuple[str, ...] = ()  # x * g(x) patterns computed in two ops (TargetRules.split_patterns)
    percentile: float | None = None  # the percentile method's percentile (None: the run's, or another method)


def choose(run: CalibrationRun, phases: Phases) -> CalibrationTable:
    """The table of the best candidate: the run's method (or, for `auto`, each of CANDIDATES) with the best
    combination of its free steps."""
    started = time.perf_counter()
    data, steps, method = run.data, run.steps, run.method
    fixed = {name: bool(getattr(steps, name)) for name in STEP_NAMES if name not in steps.free}
    free = [*(["method"] if method == AUTO else []), *steps.free, *(["split_patterns"] if _splittable(run) else [])]
    record: dict[str, Any] = {"free": free, "fixed": fixed, "budget_s": steps.choice_budget}
    if method == AUTO:
        tried = method_candidates(run.activation_bits, run.settings.percentile)
        record["methods"] = list(dict.fromkeys(m for m, _ in tried))
        record["percentiles"] = [p for m, p in tried if p is not None]
    if steps.choice_budget == 0 or len(data) < SAMPLES_MIN:
        why = (
            "choice budget 0"
            if steps.choice_budget == 0
            else f"{len(data)} calibration samples; choosing needs {SAMPLES_MIN} ({JUDGED_MIN} held back to judge)"
        )
        plain = _plain(run)
        table = _final(phases, data, plain, _decided(steps, plain))
        record.update(method=plain.method, chosen=[], skipped=why, trials=[])
    else:
        trials = _Trials.run(run, phases, started)
        # recorded, not a gate: on the few judged samples no gain cleared 2 standard errors, where the best trial
        # was better on other samples (docs/notes/steps-choice.md)
        gain = np.subtract(trials.best_record["cosines"], trials.records[0]["cosines"])  # per judged sample
        # the table itself from every sample: one from three quarters of them lost more held-out cosine than the
        # choice gained (docs/notes/steps-choice.md)
        best = trials.best
        table = _final(phases, data, best, _decided(steps, best))
        record.update(
            method=best.method,
            **({"percentile": best.percentile} if best.percentile is not None else {}),
            chosen=trials.best_record["steps"],
            **({"split_patterns": list(best.split)} if best.split else {}),
            judged_samples=trials.judged,
            statistics_samples=trials.statistics,
            **({"folds": trials.folds} if trials.folds > 1 else {}),
            **({"folds_planned": trials.planned} if trials.planned != trials.folds else {}),
            seed=run.settings.seed,
            complete=trials.complete,
            trials=trials.records,
            best_gain={"mean": float(gain.mean()), "standard_error": _standard_error(gain)},
        )
    table.record_choice(cast(StepsChoice, record), time.perf_counter() - started)  # the table's own run included
    return table


def _final(phases: Phases, data: np.ndarray, candidate: Candidate, steps: Steps) -> CalibrationTable:
    phases = phases.splitting(candidate.split) if candidate.split else phases
    measured = phases.measured(data, candidate.equalization)
    return phases.table(phases.scaled(measured, candidate.method, candidate.percentile), steps)


def _splittable(run: CalibrationRun) -> tuple[str, ...]:
    """The x * g(x) patterns the run's plan makes one lookup each: the split candidate's (none: no such candidate)."""
    return run.graph.fused_patterns


def _plain(run: CalibrationRun) -> Candidate:
    """The first candidate: kl+cos (or the method given) with the fixed steps alone."""
    equalization, post = candidates(run.steps)[0]
    return Candidate(CANDIDATES[0] if run.method == AUTO else run.method, equalization, post)


def _method_base(run: CalibrationRun) -> Candidate:
    """The first candidate the methods are judged with: the fixed steps, and asymmetric grids where they are free.
    A method's ranges are judged on the grids they will most likely get: on the census of imported models KL's
    ranges lost to min-max's on symmetric grids and won on asymmetric ones (MobileOne, FastViT;
    docs/notes/asymmetric-activations.md)."""
    plain = _plain(run)
    if "asymmetric" not in run.steps.free:
        return plain
    return Candidate(plain.method, plain.equalization, tuple(n for n in POST_STEPS if n in {*plain.post, "asymmetric"}))


def _decided(steps: Steps, candidate: Candidate) -> Steps:
    return steps.deciding([*(["equalization"] if candidate.equalization else []), *candidate.post])


def method_candidates(bits: int, percentile: float) -> tuple[tuple[str, float | None], ...]:
    """The (method, percentile) pairs `auto` tries at this activation width, in order: CANDIDATES, the percentile
    method at the run's percentile and then at WIDE_PERCENTILE (once where they are equal). At 16 bits kl and
    kl+cos take the whole range seen (tcc.quant.stage.wide_method), so a method equal there to an earlier one is not
    tried again."""
    seen: set[str] = set()
    out: list[tuple[str, float | None]] = []
    for method in CANDIDATES:
        effective = wide_method(method) if bits > 8 else method
        if effective not in seen:
            seen.add(effective)
            if method == "percentile":
                out.extend((method, p) for p in dict.fromkeys((percentile, WIDE_PERCENTILE)))
            else:
                out.append((method, None))
    return tuple(out)


@dataclass
class _Trials:
    """Every candidate tried on each fold's statistics samples and judged on its held-back ones, and the best."""

    records: list[dict]  # per candidate: its method, steps and what the judge measured
    best: Candidate
    best_record: dict
    judged: int  # samples held back, over every fold judged
    statistics: int  # samples each fold's statistics come from
    folds: int  # judged
    planned: int  # folds(): more than `folds` where the budget cut them (_folds_past_budget)
    complete: bool  # every candidate tried within the budget

    @classmethod
    def run(cls, run: CalibrationRun, phases: Phases, started: float) -> _Trials:
        parts = folds(len(run.data), run.settings.seed)
        trying = _Trying(
            run,
            phases,
            [_Fold(run.data[s], Judge(run.model, run.data[j], run.graph, run.rules)) for s, j in parts],
            started,
        )
        base = _method_base(run)
        methods = (
            method_candidates(run.activation_bits, run.settings.percentile)
            if run.method == AUTO
            else ((base.method, None),)
        )
        complete = trying.each([Candidate(m, base.equalization, base.post, percentile=p) for m, p in methods])
        if complete:  # the methods judged: every combination of the steps with the winner
            won = trying.best()[1]
            steps = [replace(won, equalization=eq, post=post) for eq, post in candidates(run.steps)]
            complete = trying.each(
                [c for c in steps if c != replace(won, equalization=base.equalization, post=base.post)]
            )
        if complete and _splittable(run):  # the best so far, its patterns in two ops
            complete = trying.each([replace(trying.best()[1], split=_splittable(run))])
        record, best = trying.best()
        return cls(
            records=trying.records,
            best=best,
            best_record=record,
            judged=sum(len(judged) for _, judged in parts[: len(trying.folds)]),
            statistics=len(parts[0][0]),
            folds=len(trying.folds),
            planned=len(parts),
            complete=complete,
        )


@dataclass(frozen=True)
class _Fold:
    """The samples one fold's trial tables are calibrated on, and the judge of its held-back ones."""

    data: np.ndarray
    judge: Judge


class _Trying:
    """Candidates judged one by one on every fold, each fold's statistics pass and method's scales made once and
    reused (those of one graph and equalization setting at a time: the candidates come in that order)."""

    def __init__(self, run: CalibrationRun, phases: Phases, folds: list[_Fold], started: float):
        self.run, self.phases, self.folds, self.started = run, phases, folds, started
        self.records: list[dict] = []
        self.candidates: list[Candidate] = []
        self._setting: tuple[tuple[str, ...], bool] | None = None  # (split, equalization) of the passes kept
        self._measured: dict[int, Measured] = {}  # per fold
        self._scaled: dict[tuple[int, str, float | None], Scaled] = {}  # per fold and method (and percentile)

    def each(self, queue: list[Candidate]) -> bool:
        """Judge the queue's candidates in order; False when the budget stopped it first."""
        for candidate in queue:
            if _over_budget(self.run.steps, self.started, self.records):
                return False
            self.trial(candidate)
        return True

    def trial(self, candidate: Candidate) -> None:
        method, split = candidate.method, candidate.split
        phases = self.phases.splitting(split) if split else self.phases
        if self._setting != (split, candidate.equalization):  # a new graph or equalization: new statistics passes
            self._setting, self._measured, self._scaled = (split, candidate.equalization), {}, {}
        decided = _decided(self.run.steps, candidate)
        parts = []
        for i, fold in enumerate(self.folds):
            parts.append(fold.judge.judgement(phases.table(self._scales(phases, i, candidate), decided)))
            if not self.records and i == 0 and self._folds_past_budget():
                self.folds = self.folds[:1]  # every trial on the first fold alone: comparable with this one
                break
        judgement = Judgement.joined(parts)
        record = {
            "method": method,
            **({"percentile": candidate.percentile} if candidate.percentile is not None else {}),
            "steps": [n for n in STEP_NAMES if decided.enabled(n)],
            **({"split_patterns": list(split)} if split else {}),
            **judgement.summary(),
        }
        if split:  # the other form: it adds an op per pattern, so it wins only clearly closer than its fused self
            fused = self.records[self.candidates.index(replace(candidate, split=()))]
            record["eligible"] = record["guarded_cos"] >= fused["guarded_cos"] + SWITCH_MARGIN
        elif self.records and self._method(candidate) != self._method(self.candidates[0]):  # another method: a switch
            record["eligible"] = switch_clears(self.records[0], record)
        self.records.append(record)
        self.candidates.append(candidate)

    def _folds_past_budget(self) -> bool:
        """After the first candidate's first fold: whether its every fold would take more than the whole choice
        budget at that pace. The first candidate costs nearly all (each fold's statistics and the method's scales,
        which the rest reuse: on FlexibleUNet 154 s of a 182 s choice), so a tighter cut leaves the choice 8 samples
        for nothing (docs/notes/dense-prediction.md)."""
        budget = self.run.steps.choice_budget
        elapsed = time.perf_counter() - self.started
        return budget is not None and len(self.folds) > 1 and elapsed * len(self.folds) > budget

    def _scales(self, phases: Phases, fold: int, candidate: Candidate) -> Scaled:
        """The candidate's method's scales on the fold's statistics, each pass and method made once."""
        if fold not in self._measured:
            self._measured[fold] = phases.measured(self.folds[fold].data, candidate.equalization)
        key = (fold, *self._method(candidate))
        if key not in self._scaled:
            self._scaled[key] = phases.scaled(self._measured[fold], candidate.method, candidate.percentile)
        return self._scaled[key]

    @staticmethod
    def _method(candidate: Candidate) -> tuple[str, float | None]:
        """What makes the activation ranges: the method and the percentile method's percentile."""
        return candidate.method, candidate.percentile

    def best(self) -> tuple[dict, Candidate]:
        """The best trial so far (best_trial) of those that may win and its candidate."""
        i = best_trial(self.records)
        return self.records[i], self.candidates[i]


def _over_budget(steps: Steps, started: float, records: list[dict]) -> bool:
    """No new trial after the first once the budget is spent."""
    return bool(records) and steps.choice_budget is not None and time.perf_counter() - started > steps.choice_budget


def candidates(steps: Steps) -> list[tuple[bool, tuple[str, ...]]]:
    """(equalization, post-steps on) for every combination of the free steps, fixed ones as fixed: equalization
    off before on (each keeps one statistics pass for its post-step subsets), fewer post steps first."""
    eq_options = [False, True] if "equalization" in steps.free else [bool(steps.equalization)]
    free_post = [n for n in POST_STEPS if n in steps.free]
    fixed_post = tuple(n for n in POST_STEPS if n not in steps.free and steps.enabled(n))
    subsets = [c for k in range(len(free_post) + 1) for c in combinations(free_post, k)]
    return [(eq, (*fixed_post, *subset)) for eq in eq_options for subset in subsets]


def folds(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded (statistics, judged) sample indices per fold, each in ascending order: every fold judges its own
    quarter (at least JUDGED_MIN) and takes its statistics from the rest; as many folds as make JUDGED_TARGET judged
    samples, at most one per quarter (every sample then judged once). The first fold's quarter is the first of a
    seeded permutation, so one fold (128 samples and more) is the plain split."""
    judged_count = max(JUDGED_MIN, int(n * JUDGED_FRACTION))
    count = min(-(-JUDGED_TARGET // judged_count), n // judged_count)
    order = np.random.default_rng(seed).permutation(n)
    parts = [order[i * judged_count : (i + 1) * judged_count] for i in range(count)]
    return [(np.setdiff1d(order, part), np.sort(part)) for part in parts]  # setdiff1d: sorted


def best_trial(trials: list[dict]) -> int:
    """The index of the chosen trial of those that may win (not another method below the switch margin): of those
    whose top-1 agreement is within the tolerance of the most agreeing trial's (agreement_tolerance), the best
    guarded cosine, then mean cosine (COSINE_DECIMALS), the earliest on ties; or the earliest trial level with it
    (cosine_level: the default, or fewer steps)."""
    eligible = [(i, t) for i, t in enumerate(trials) if t.get("eligible", True)]
    top = max(eligible, key=lambda it: (it[1]["agreement"], -it[0]))[1]
    kept = [i for i, t in eligible if t["agreement"] >= top["agreement"] - agreement_tolerance(top, t)]
    best = max(kept, key=lambda i: (*_cosines(trials[i]), -i))
    return min(i for i in kept if i == best or cosine_level(trials[best], trials[i]))


def cosine_level(best: dict, trial: dict) -> bool:
    """Whether the trial's guarded cosine is within SELECTION_ERRORS standard errors of the paired per-sample cosine
    difference (the trials' `cosines`) below the best's: cross-validation's one-standard-error rule (the highest of
    several candidates judged on the same few samples is higher partly by their noise). Without per-sample cosines,
    only an equal one (to COSINE_DECIMALS)."""
    standard_error = _paired_standard_error(best, trial, "cosines")
    if standard_error is None:
        return _cosines(trial) == _cosines(best)
    return round(trial["guarded_cos"], COSINE_DECIMALS) >= round(
        best["guarded_cos"] - SELECTION_ERRORS * standard_error, COSINE_DECIMALS
    )


def switch_clears(first: dict, trial: dict, errors: float = SWITCH_ERRORS) -> bool:
    """Whether another method's trial may win over the first's: a guarded cosine SWITCH_MARGIN above it, and a
    paired per-sample cosine gain (the trials' `cosines`) at least `errors` standard errors."""
    gain = np.subtract(trial["cosines"], first["cosines"])
    clear = float(gain.mean()) >= errors * _standard_error(gain)
    return clear and trial["guarded_cos"] >= first["guarded_cos"] + SWITCH_MARGIN


def agreement_tolerance(top: dict, trial: dict) -> float:
    """How far the trial's agreement may fall below the top's and still count as level: AGREEMENT_TOLERANCE, or
    AGREEMENT_ERRORS standard errors of their paired per-sample difference (the trials' `agreements`) where wider."""
    standard_error = _paired_standard_error(top, trial, "agreements")
    return (
        AGREEMENT_TOLERANCE if standard_error is None else max(AGREEMENT_TOLERANCE, AGREEMENT_ERRORS * standard_error)
    )


def _paired_standard_error(a: dict, b: dict, key: str) -> float | None:
    """The standard error of the mean of two trials' paired per-sample difference in `key` (None: not recorded)."""
    if key not in a or key not in b or len(a[key]) < 2:
        return None
    return _standard_error(np.subtract(a[key], b[key]))


def _standard_error(values: np.ndarray) -> float:
    """The standard error of the mean of `values` (0 for one)."""
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def _cosines(trial: dict) -> tuple[float, float]:
    return round(trial["guarded_cos"], COSINE_DECIMALS), round(trial["mean_cos"], COSINE_DECIMALS)


@dataclass(frozen=True)
class Judgement:
    """One candidate's INT8 output against FP32 on the judged samples."""

    cosines: np.ndarray  # per sample
    agreement: np.ndarray  # per sample: the fraction of its argmax positions (one for a classifier) that agree

    @classmethod
    def joined(cls, parts: list[Judgement]) -> Judgement:
        """The folds' judgements as one, their samples in fold order."""
        return cls(np.concatenate([p.cosines for p in parts]), np.concatenate([p.agreement for p in parts]))

    def summary(self) -> dict[str, Any]:
        mean, low = float(self.cosines.mean()), float(np.percentile(self.cosines, LOW_PERCENTILE))
        return {
            "mean_cos": mean,
            "min_cos": float(self.cosines.min()),
            "low_cos": low,
            "guarded_cos": (mean + low) / 2,
            "agreement": float(self.agreement.mean()),
            "agreements": [float(a) for a in self.agreement],
            "cosines": [float(c) for c in self.cosines],
        }


class Judge:
    """The per-sample cosine and argmax agreement of a table's INT8 output and the FP32 output, on held-back samples.
    The INT8 output is exactly what the target computes: under ONNX Runtime's rules that every CPU computes exactly
    (7-bit dense weights) the table's QDQ graph on ORT's integer kernels (within a code per op of tcc's integer
    reference, and fast), under other rules the integer reference itself, so that the choice, and the table, are
    the same on every machine (`ort-w8`'s 8-bit weights would be judged on saturating kernels on x86 without VNNI).
    Float fake-quant would be faster still, but on DDSNet its cosine error was as far from the integer one as the
    candidates from each other (docs/notes/steps-choice.md)."""

    def __init__(self, model: onnx.ModelProto, x: np.ndarray, graph: IntGraph, rules: TargetRules):
        self.model, self.x, self.graph, self.rules = model, np.ascontiguousarray(x), graph, rules
        self.fp32 = run_ort(model, self.x)

    def judgement(self, table: CalibrationTable) -> Judgement:
        if self.rules.exact_on_every_cpu():
            got = run_ort(to_qdq(self.model, table), self.x)
        else:
            qgraph, reference = quantize_graph(self.graph, table), Reference()
            got = np.concatenate([_first(reference.run(qgraph, self.x[b : b + 4])) for b in range(0, len(self.x), 4)])
        return Judgement(per_sample_cosine(self.fp32, got), per_sample_agreement(self.fp32, got))


def _first(result):
    return result[0] if isinstance(result, list) else result
