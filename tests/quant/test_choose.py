"""Choosing the method and the post-training steps per model (tcc.quant.choose): the methods, then every combination
of the undecided steps with the winner, judged on calibration samples held back from the statistics by an objective
that puts the class and the worst samples before the mean; the best recorded and used; deterministic; fixed steps
stay fixed; too few samples or a zero budget choose nothing; the commands leave the method and the undecided steps
to the choice."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.choose import (
    JUDGED_MIN,
    JUDGED_TARGET,
    SAMPLES_MIN,
    SWITCH_MARGIN,
    best_trial,
    candidates,
    folds,
    method_candidates,
    switch_clears,
)
from tcc.quant.collect.stats import per_sample_cosine, run_fp32
from tcc.quant.intgraph.reference import run_reference
from tcc.quant.report.quality import per_sample_agreement
from tcc.quant.table.steps import Steps, choice_lines
from tests.helpers.onnx_util import make_model
from tests.helpers.quant_models import table_json, tiny_cnn, tiny_data, tiny_spec_and_data

FAST = {"cos_steps": 10, "cos_rounds": 1}
CHOOSE_ALL = Steps(equalization=None, bias_correction=None, rounding=None)


def _without_times(doc: dict) -> str:
    doc = json.loads(json.dumps(doc))
    doc.pop("timing_s")
    return json.dumps(doc, sort_keys=True)


def test_candidates_cover_every_combination_fewest_steps_first():
    assert candidates(CHOOSE_ALL) == [
        (False, ()),
        (False, ("rounding",)),
        (False, ("bias_correction",)),
        (False, ("rounding", "bias_correction")),
        (True, ()),
        (True, ("rounding",)),
        (True, ("bias_correction",)),
        (True, ("rounding", "bias_correction")),
    ]
    # a step the user fixed stays as fixed in every candidate
    assert candidates(Steps(equalization=False, bias_correction=True, rounding=None)) == [
        (False, ("bias_correction",)),
        (False, ("bias_correction", "rounding")),
    ]
    assert candidates(Steps(equalization=None, bias_correction=False, rounding=False)) == [(False, ()), (True, ())]


def test_folds_are_seeded_disjoint_and_judge_enough_samples():
    """Each fold holds back a quarter and takes its statistics from the rest; the judged quarters are disjoint;
    folds are added until JUDGED_TARGET samples are judged (every sample once at most): 4 folds of 8 at 32 samples,
    2 of 16 at 64, one quarter from 128 on (the plain split, its first fold the same at every size)."""
    parts = folds(40, seed=3)
    assert len(parts) == 4
    for statistics, judged in parts:
        assert len(judged) == 10 and len(statistics) == 30
        assert sorted([*statistics, *judged]) == list(range(40))
        assert list(judged) == sorted(judged) and list(statistics) == sorted(statistics)
    assert sorted(i for _, judged in parts for i in judged) == list(range(40))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds(40, seed=3), parts, strict=True))
    assert not np.array_equal(folds(40, seed=4)[0][1], parts[0][1])
    assert [(len(p), len(p[0][1])) for p in (folds(SAMPLES_MIN, 0), folds(64, 0), folds(128, 0), folds(400, 0))] == [
        (4, JUDGED_MIN),
        (2, 16),
        (1, JUDGED_TARGET),
        (1, 100),
    ]
    assert len(folds(50, 0)) == 3 and sum(len(j) for _, j in folds(50, 0)) == 36  # 3 quarters of 12


def test_choice_is_the_best_trial_recorded_and_deterministic():
    """On the tiny net with 32 samples: 8 trials, the chosen one the best by the objective (the earliest on ties),
    its gain over the first trial recorded; its steps the ones the table ran; a trial's cosines
    are the integer reference's on the
    held-back samples, for the table of those steps calibrated on the other samples; the table itself is calibrated
    on all of them; the same inputs give the same table."""
    model, x = tiny_cnn(), tiny_data(32)
    table = calibrate_onnx(model, x, steps=CHOOSE_ALL, **FAST)
    choice = table.steps_choice
    trials = choice["trials"]
    assert len(trials) == 8 and choice["complete"] and choice["free"] == ["equalization", "rounding", "bias_correction"]
    assert choice["judged_samples"] == 32 and choice["statistics_samples"] == 24 and table.samples == 32
    assert choice["folds"] == 4

    best = trials[best_trial(trials)]
    assert all(t["method"] == "kl+cos" for t in trials) and choice["method"] == table.method == "kl+cos"
    assert choice["chosen"] == best["steps"]
    assert choice["best_gain"]["mean"] == pytest.approx(best["mean_cos"] - trials[0]["mean_cos"], abs=1e-12)
    assert {s["name"] for s in table.steps if s["enabled"]} == set(choice["chosen"])
    for trial in (trials[0], trials[-1]):  # each fold's table judged on its held-back samples, in fold order
        steps = Steps(**{name: name in trial["steps"] for name in ("equalization", "rounding", "bias_correction")})
        cos = np.concatenate(
            [
                per_sample_cosine(
                    run_fp32(model, x[judged], ["output"])["output"],
                    run_reference(model, calibrate_onnx(model, x[statistics], steps=steps, **FAST), x[judged]),
                )
                for statistics, judged in folds(32, 0)
            ]
        )
        assert trial["mean_cos"] == pytest.approx(cos.mean(), abs=1e-9)
        assert trial["min_cos"] == pytest.approx(cos.min(), abs=1e-9)
        assert trial["low_cos"] == pytest.approx(np.percentile(cos, 10), abs=1e-9)
        assert trial["guarded_cos"] == pytest.approx((cos.mean() + np.percentile(cos, 10)) / 2, abs=1e-9)
    decided = Steps(**{name: name in choice["chosen"] for name in ("equalization", "rounding", "bias_correction")})
    plain = table_json(calibrate_onnx(model, x, steps=decided, **FAST))
    assert {k: v for k, v in plain.items() if k != "timing_s"} == {
        k: v for k, v in table_json(table).items() if k not in ("timing_s", "steps_choice")
    }
    table.check_schema()
    assert _without_times(table_json(table)) == _without_times(
        table_json(calibrate_onnx(model, x, steps=CHOOSE_ALL, **FAST))
    )
    assert choice_lines(choice)[0].startswith(
        "chosen per model (equalization, rounding, bias correction) on 32 calibration samples held back in 4 folds: "
        "kl+cos with "
    )


def test_each_fold_measures_once_per_equalization_setting(monkeypatch):
    """The folds multiply the statistics passes and scales by their number, no more: at 32 samples with
    equalization free, 4 folds x 2 settings, each pass and method's scales reused by every step subset, then the
    final table's."""
    import tcc.quant.calibrate as calibrate

    calls = {"measured": 0, "scaled": 0}
    for name in calls:
        real = getattr(calibrate, f"_{name}")

        def counted(*args, real=real, name=name, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(calibrate, f"_{name}", counted)
    table = calibrate_onnx(tiny_cnn(), tiny_data(32), steps=CHOOSE_ALL, **FAST)
    assert table.steps_choice["folds"] == 4 and len(table.steps_choice["trials"]) == 8
    assert calls == {"measured": 4 * 2 + 1, "scaled": 4 * 2 + 1}


def test_an_ort_w8_table_is_judged_on_the_integer_reference_on_every_machine(monkeypatch):
    """`ort-w8`'s 8-bit dense weights saturate ORT's kernels on x86 without VNNI: its candidates are judged on the
    integer reference wherever the table is made, VNNI or not (the table is then the same on every machine); an `ort`
    table's on ONNX Runtime's integer kernels, exact on every CPU."""
    import tcc.quant.choose as choose
    from tcc.quant.intgraph.match import plan
    from tcc.quant.table.rules import RULES

    model, x = tiny_cnn(), tiny_data(16)
    fp32 = run_fp32(model, x, ["output"])["output"]
    for name in ("ort", "ort-w8"):
        table = calibrate_onnx(model, x, target=name, **FAST)
        reference = per_sample_cosine(fp32, run_reference(model, table, x))
        for exact in (True, False):
            monkeypatch.setattr("tcc.quant.table.rules.u8s8_exact", lambda exact=exact: exact)
            judge = choose.Judge(model, x, plan(model, rules=name), RULES[name])
            on_ort = []
            monkeypatch.setattr(
                choose, "run_ort", lambda m, v, calls=on_ort: calls.append(m) or run_fp32(m, v, ["output"])["output"]
            )
            got = judge.judgement(table).cosines
            monkeypatch.undo()
            assert len(on_ort) == (name == "ort"), (name, exact)
            if name == "ort-w8":
                np.testing.assert_allclose(got, reference, rtol=0, atol=1e-12)


def test_a_step_that_clearly_helps_is_chosen():
    """A 1x1 conv whose weights all sit 0.45 steps below their code (nearest rounding moves each one up) on
    positive inputs (ranges by minmax: no clipping error on top): the quantized output is biased by many output
    steps. Bias correction and rounding each remove most of that error, and the choice takes one of them."""
    rng = np.random.default_rng(3)
    c_in, c_out = 6, 4
    k = rng.integers(20, 100, (c_out, c_in)).astype(np.float64)
    k[:, 0] = 127
    s = np.array([0.004, 0.01, 0.002, 0.02])
    w = (np.where(k == 127, k, k - 0.45) * s[:, None]).reshape(c_out, c_in, 1, 1).astype(np.float32)
    model = make_model(
        [helper.make_node("Conv", ["input", "w", "b"], ["output"], name="pw", kernel_shape=[1, 1])],
        {"input": ["N", c_in, 4, 4]},
        {"output": ["N", c_out, 4, 4]},
        {"w": w, "b": (rng.standard_normal(c_out) * 0.1).astype(np.float32)},
        name="m",
        ir_version=8,
        check=True,
    )
    x = rng.uniform(0.5, 1.5, (32, c_in, 4, 4)).astype(np.float32)
    table = calibrate_onnx(
        model, x, method="minmax", steps=Steps(equalization=False, bias_correction=None, rounding=None)
    )
    choice = table.steps_choice
    error = {tuple(t["steps"]): 1 - t["mean_cos"] for t in choice["trials"]}
    assert error[("rounding",)] < 0.5 * error[()] and error[("bias_correction",)] < 0.5 * error[()]
    assert choice["chosen"] and error[tuple(choice["chosen"])] < 0.5 * error[()]
    assert choice["best_gain"]["mean"] > 2 * choice["best_gain"]["standard_error"]  # clear on every judged sample
    assert all(table.step(name) for name in choice["chosen"])


@pytest.mark.parametrize(
    "samples, budget, skipped", [(SAMPLES_MIN - 1, None, "31 calibration samples"), (40, 0.0, "choice budget 0")]
)
def test_too_few_samples_or_no_budget_choose_nothing(samples, budget, skipped):
    table = calibrate_onnx(
        tiny_cnn(),
        tiny_data(samples),
        steps=Steps(equalization=None, bias_correction=None, rounding=None, choice_budget=budget),
        **FAST,
    )
    choice = table.steps_choice
    assert choice["skipped"].startswith(skipped) and choice["chosen"] == [] and choice["trials"] == []
    assert not any(s["enabled"] for s in table.steps) and table.samples == samples
    assert "none tried" in choice_lines(choice)[0]


def test_a_budget_stops_the_trials_and_says_so():
    table = calibrate_onnx(
        tiny_cnn(),
        tiny_data(32),
        steps=Steps(equalization=None, bias_correction=None, rounding=None, choice_budget=1e-9),
        **FAST,
    )
    choice = table.steps_choice
    assert len(choice["trials"]) == 1 and not choice["complete"] and choice["chosen"] == []
    assert "depends on this machine's speed" in choice_lines(choice)[0]
    # its first fold already past the budget: the first fold alone, the folds planned recorded
    assert choice["folds_planned"] == 4 and "folds" not in choice and choice["judged_samples"] == JUDGED_MIN
    assert "(one fold of 4: the first candidate on all 4 would have taken the whole budget)" in choice_lines(choice)[0]
    table.check_schema()


@pytest.mark.parametrize("budget, trials, folds", [(39.0, 8, 1), (60.0, 5, 4), (100.0, 8, 4)])
def test_folds_the_first_candidate_would_spend_the_budget_on_give_way(monkeypatch, budget, trials, folds):
    """On a clock where a fold's statistics pass takes 9 s and a judgement 1 s, the first candidate's fold takes 10 s
    and its 4 folds 40 s; the other candidates reuse the statistics (1 s a fold) but for equalization's (new passes).
    Under a 39 s budget every candidate is judged on the first fold alone and all 8 fit; under 60 s the folds stay
    and the budget stops the trials after 5; under 100 s all 8 are judged on the 4 folds."""
    import tcc.quant.calibrate as calibrate
    import tcc.quant.choose as choose

    clock = [0.0]
    monkeypatch.setattr(choose.time, "perf_counter", lambda: clock[0])
    judged, measured = choose.Judge.judgement, calibrate._Phases.measured

    def ticking(seconds, real):
        def call(*args):
            clock[0] += seconds
            return real(*args)

        return call

    monkeypatch.setattr(choose.Judge, "judgement", ticking(1.0, judged))
    monkeypatch.setattr(calibrate._Phases, "measured", ticking(9.0, measured))
    steps = Steps(equalization=None, bias_correction=None, rounding=None, choice_budget=budget)
    choice = calibrate_onnx(tiny_cnn(), tiny_data(32), steps=steps, **FAST).steps_choice
    assert len(choice["trials"]) == trials and choice["complete"] == (trials == 8)
    assert choice.get("folds", 1) == folds and choice["judged_samples"] == folds * JUDGED_MIN
    assert ("folds_planned" in choice) == (folds == 1)
    assert all(len(t["cosines"]) == folds * JUDGED_MIN for t in choice["trials"])


def test_commands_leave_undecided_steps_to_the_choice(tmp_path, capsys):
    """`tcc calibrate` without switches chooses bias correction and, under ORT's rules, asymmetric grids
    (equalization and rounding stay off unless asked), prints the choice and records it; a switch fixes its step (no
    longer free); `--choice-budget 0` chooses nothing; a negative budget is a clean exit 2."""
    from tcc.cli.main import main as cli

    assert Steps.chosen(None) == Steps(equalization=False, bias_correction=None, rounding=False, asymmetric=None)
    assert Steps.chosen({"rounding": True}, rounding=None, choice_budget=None).free == ("asymmetric", "bias_correction")
    assert Steps.chosen({"bias_correction": True, "asymmetric": True}).free == ()  # DDSNet's spec: nothing left
    spec, data = tiny_spec_and_data(tmp_path, SAMPLES_MIN)
    out = tmp_path / "calib.json"
    args = ["calibrate", str(spec), "--data", str(data), "--cos-steps", "5", "--no-compare", "-o", str(out), "--force"]
    assert cli(args) == 0
    assert (
        "chosen per model (method, asymmetric, bias correction) on 32 calibration samples held back in 4 folds"
        in capsys.readouterr().out
    )
    choice = json.loads(out.read_text())["steps_choice"]
    # the three methods on asymmetric grids (free: on for them), then the steps' other combinations with the winner
    assert [(t["method"], t.get("percentile"), t["steps"]) for t in choice["trials"][:4]] == [
        ("kl+cos", None, ["asymmetric"]),
        ("minmax", None, ["asymmetric"]),
        ("percentile", 99.99, ["asymmetric"]),
        ("percentile", 99.999, ["asymmetric"]),
    ]
    won = choice["trials"][best_trial(choice["trials"][:4])]
    assert [t["steps"] for t in choice["trials"][4:]] == [[], ["bias_correction"], ["asymmetric", "bias_correction"]]
    methods = {(t["method"], t.get("percentile")) for t in choice["trials"][4:]}
    assert methods == {(won["method"], won.get("percentile"))} == {(choice["method"], choice.get("percentile"))}
    args.append("--no-asymmetric")
    assert cli(args + ["--method", "kl+cos"]) == 0
    assert (
        "chosen per model (bias correction) on 32 calibration samples held back in 4 folds" in capsys.readouterr().out
    )
    assert len(json.loads(out.read_text())["steps_choice"]["trials"]) == 2
    assert cli(args + ["--method", "kl+cos", "--equalization", "--rounding"]) == 0
    choice = json.loads(out.read_text())["steps_choice"]
    assert choice["free"] == ["bias_correction"] and choice["fixed"] == {
        "equalization": True,
        "asymmetric": False,
        "rounding": True,
    }
    assert len(choice["trials"]) == 2
    spec.write_text(spec.read_text() + "calibrate:\n  method: minmax\n")  # the spec names the method: no choice
    assert cli(args + ["--no-bias-correction"]) == 0
    table = json.loads(out.read_text())
    assert table["method"] == "minmax" and "steps_choice" not in table
    assert cli(args + ["--no-bias-correction", "--method", "auto"]) == 0  # the flag wins
    assert json.loads(out.read_text())["steps_choice"]["free"] == ["method"]
    assert cli(args + ["--choice-budget", "0"]) == 0
    assert json.loads(out.read_text())["steps_choice"]["skipped"] == "choice budget 0"
    capsys.readouterr()
    assert cli(args + ["--choice-budget", "-1"]) == 2
    assert "--choice-budget -1: expected seconds >= 0" in capsys.readouterr().err


def test_the_objective_puts_the_class_then_the_worst_samples_before_the_mean():
    trial = {"agreement": 0.75, "guarded_cos": 0.99, "mean_cos": 0.995}
    assert best_trial([trial, {**trial, "agreement": 0.875, "guarded_cos": 0.9}]) == 1  # a class kept first
    assert best_trial([trial, {**trial, "agreement": 0.745, "guarded_cos": 0.991}]) == 1  # within the tolerance
    assert best_trial([trial, {**trial, "guarded_cos": 0.991, "mean_cos": 0.99}]) == 1  # then the worst samples
    assert best_trial([trial, {**trial, "mean_cos": 0.9951}]) == 1
    assert best_trial([trial, {**trial, "mean_cos": 0.9950004}]) == 0  # noise on a few dozen samples: the earlier
    assert best_trial([trial, {**trial, "guarded_cos": 0.9995, "eligible": False}]) == 0  # a method below the margin
    ref = np.zeros((2, 3, 2, 2))
    ref[:, 1] = 1
    got = ref.copy()
    got[0, 2, 0, 0] = 2  # one of sample 0's four pixels changes class
    np.testing.assert_array_equal(per_sample_agreement(ref, got), [0.75, 1.0])
    np.testing.assert_array_equal(per_sample_agreement(np.eye(3), np.eye(3)[[0, 2, 1]]), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(per_sample_agreement(np.ones((2, 1)), -np.ones((2, 1))), [1.0, 1.0])  # no class


def test_agreement_within_its_noise_counts_as_level():
    """On a classifier whose top-1 changes on many judged samples, an agreement lower by fewer samples than 2
    standard errors of the paired per-sample difference is level, and the better cosine wins; beyond them the class
    comes first; without per-sample agreements (or on masks, where the difference is small) the tolerance is 0.01."""
    rng = np.random.default_rng(0)
    top = rng.random(32) < 0.6
    close, far = top.copy(), top.copy()
    close[np.flatnonzero(top)[:3]] = False  # 3 of 32 samples lost
    far[np.flatnonzero(top)[:12]] = False  # 12 lost
    trial = {"guarded_cos": 0.5, "mean_cos": 0.7}

    def record(agreements, cos):
        agreements = agreements.astype(float)
        return {**trial, "guarded_cos": cos, "agreement": agreements.mean(), "agreements": agreements.tolist()}

    assert best_trial([record(top, 0.5), record(close, 0.6)]) == 1
    assert best_trial([record(top, 0.5), record(far, 0.6)]) == 0
    plain = [{k: v for k, v in r.items() if k != "agreements"} for r in (record(top, 0.5), record(close, 0.6))]
    assert best_trial(plain) == 0
    pixels = np.full(32, 0.98)
    assert best_trial([record(pixels, 0.5), record(pixels - 0.02, 0.6)]) == 0  # every sample 2% of its pixels lower


def test_an_earlier_trial_within_one_standard_error_of_the_best_is_chosen():
    """Cross-validation's one-standard-error rule: the best guarded cosine wins only by more than one standard error
    of the paired per-sample difference; within it the earlier trial (the default, or fewer steps) is taken."""
    rng = np.random.default_rng(1)
    first = 0.9 + 0.05 * rng.standard_normal(32)

    def record(cosines):
        mean, low = cosines.mean(), np.percentile(cosines, 10)
        agreements = [1.0] * 32
        return {"mean_cos": mean, "guarded_cos": (mean + low) / 2, "agreement": 1.0, "agreements": agreements} | {
            "cosines": cosines.tolist()
        }

    noise = 0.02 * rng.standard_normal(32)
    standard_error = noise.std(ddof=1) / np.sqrt(32)
    assert best_trial([record(first), record(first + noise + 0.3 * standard_error)]) == 0
    assert best_trial([record(first), record(first + noise + 4 * standard_error)]) == 1
    without = [{k: v for k, v in record(c).items() if k != "cosines"} for c in (first, first + 0.001)]
    assert best_trial(without) == 1  # no per-sample cosines: the best, as before


def test_another_method_wins_only_with_a_gain_beyond_the_judged_samples_noise():
    """A switch from kl+cos needs a guarded cosine SWITCH_MARGIN above it and a paired per-sample gain of
    SWITCH_ERRORS standard errors: one poor sample much better and the rest a little worse lifts the guarded cosine
    (its 10th percentile) past the margin while the mean gains less than its noise; a gain on every sample clears."""
    first = np.array([0.50, *np.linspace(0.91, 0.97, 7)])  # a fold of 8, one sample poor

    def record(cosines):
        mean, low = float(cosines.mean()), float(np.percentile(cosines, 10))
        return {"guarded_cos": (mean + low) / 2, "cosines": cosines.tolist()}

    tail_only = np.array([0.80, *(first[1:] - 0.01)])
    assert record(tail_only)["guarded_cos"] > record(first)["guarded_cos"] + SWITCH_MARGIN
    assert not switch_clears(record(first), record(tail_only))
    assert switch_clears(record(first), record(first + 2 * SWITCH_MARGIN))
    assert not switch_clears(record(first), record(first + SWITCH_MARGIN / 4))  # every sample, under the margin


def test_methods_tried_at_each_width():
    wide = ("percentile", 99.999)
    assert method_candidates(8, 99.99) == (("kl+cos", None), ("minmax", None), ("percentile", 99.99), wide)
    # kl+cos takes the whole range at 16 bits: minmax's
    assert method_candidates(16, 99.99) == (("kl+cos", None), ("percentile", 99.99), wide)
    assert method_candidates(8, 99.999) == (("kl+cos", None), ("minmax", None), wide)  # one percentile, once


def _outlier_model_and_data():
    """A classifier: the pooled product of two 1 x 1 convs (a gate's form) on an input with rare larger values (1 in
    1000, +-8): the product's tail carries much of the output, KL clips it (its bins hold too little mass to pay for
    8-bit rounding of the rest) and the fine search cannot see it (it tunes conv inputs and weights), min-max keeps
    it."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((2, 4, 3, 1, 1)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("Conv", ["input", "w1", "b"], ["c"], name="pw1", kernel_shape=[1, 1]),
            helper.make_node("Conv", ["input", "w2", "b"], ["d"], name="pw2", kernel_shape=[1, 1]),
            helper.make_node("Mul", ["c", "d"], ["g"], name="gate"),
            helper.make_node("GlobalAveragePool", ["g"], ["output"], name="pool"),
        ],
        {"input": ["N", 3, 8, 8]},
        {"output": ["N", 4, 1, 1]},
        {"w1": w1, "w2": w2, "b": np.zeros(4, np.float32)},
        name="m",
        ir_version=8,
        check=True,
    )
    x = rng.standard_normal((SAMPLES_MIN, 3, 8, 8)).astype(np.float32)
    spikes = rng.random(x.shape) < 1 / 1000
    x[spikes] = 8 * np.sign(x[spikes])
    return model, x


def test_auto_takes_the_method_the_judged_samples_favour():
    """Where KL clips what matters, `auto` judges min-max (or percentile) better and takes it; the table is the one
    that method makes on every sample; its choice is recorded, printed and schema-valid; the same inputs give the
    same table."""
    model, x = _outlier_model_and_data()
    table = calibrate_onnx(model, x, method="auto", **FAST)
    choice = table.steps_choice
    trials = {(t["method"], t.get("percentile")): t for t in choice["trials"]}
    assert choice["free"] == ["method"] and choice["methods"] == ["kl+cos", "minmax", "percentile"]
    assert choice["percentiles"] == [99.99, 99.999]
    # no free step: the methods alone, the percentile method at tcc's percentile and ORT's
    assert list(trials) == [("kl+cos", None), ("minmax", None), ("percentile", 99.99), ("percentile", 99.999)]
    trials = {method: trials[method, None] for method in ("kl+cos", "minmax")}
    # measured: kl+cos 0.9947 mean / 0.977 worst, min-max 0.9997 / 0.9994
    assert trials["minmax"]["mean_cos"] > trials["kl+cos"]["mean_cos"] + 0.003
    assert trials["minmax"]["min_cos"] > trials["kl+cos"]["min_cos"] + 0.02
    assert choice["method"] == table.method != "kl+cos"
    assert choice["trials"][best_trial(choice["trials"])]["method"] == table.method
    percentile = choice.get("percentile", 99.99)
    assert table.settings["percentile"] == percentile
    plain = table_json(calibrate_onnx(model, x, method=table.method, percentile=percentile, **FAST))
    assert {k: v for k, v in plain.items() if k != "timing_s"} == {
        k: v for k, v in table_json(table).items() if k not in ("timing_s", "steps_choice")
    }
    table.check_schema()
    assert _without_times(table_json(table)) == _without_times(
        table_json(calibrate_onnx(model, x, method="auto", **FAST))
    )
    line = choice_lines(choice)[0]
    assert line.startswith(
        f"chosen per model (method) on 32 calibration samples held back in 4 folds: {table.method} with no"
    )
    assert "(vs kl+cos with no step: cosine mean" in line and "4 candidates judged" in line


def test_auto_with_too_few_samples_keeps_kl_cos_and_says_so():
    model, x = _outlier_model_and_data()
    table = calibrate_onnx(model, x[: SAMPLES_MIN - 1], method="auto", **FAST)
    assert table.method == "kl+cos" and table.steps_choice["method"] == "kl+cos"
    assert choice_lines(table.steps_choice) == [
        "chosen per model (method): none tried (31 calibration samples; choosing needs 32 (8 held back to judge)); "
        "kl+cos, the free steps off"
    ]


def test_a_spec_names_its_model_s_method_and_a_flag_wins():
    """A command's method: the one given, else the spec's `calibrate:` section's, else auto; DDSNet's spec names
    kl+cos (auto kept it on every published checkpoint at twice the time); a misspelt one is a clean error."""
    from tcc.errors import DataError
    from tcc.quant.prepare import method_for
    from tcc.spec.loader import load_spec

    assert method_for(None, None) == "auto"
    assert method_for(None, {"method": "minmax", "bias_correction": True}) == "minmax"
    assert method_for("percentile", {"method": "minmax"}) == "percentile"
    with pytest.raises(DataError, match="unknown calibration method 'kl-cos'"):
        method_for(None, {"method": "kl-cos"})
    assert load_spec("spec/ddsnet.yaml").calibrate == {"method": "kl+cos", "bias_correction": True, "asymmetric": True}
