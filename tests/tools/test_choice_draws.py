"""tools/choice_draws.py, the method choice over draws of calibration crops (issue 74): the rules read the folds'
records and are scored by the held-out result of what they pick; a model measured end to end (slow: one choice)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import load_tool

RIVAL = {"cosine_mean": 0.90, "cosine_min": 0.50, "top1_agreement": 0.80}


def _trial(method: str, cosines: list[float], eligible: bool | None = None) -> dict:
    c = np.array(cosines)
    low = float(np.percentile(c, 10))
    record = {"method": method, "steps": ["asymmetric"], "mean_cos": float(c.mean()), "low_cos": low}
    record |= {"guarded_cos": (float(c.mean()) + low) / 2, "agreement": 1.0, "agreements": [1.0] * len(c)}
    record["cosines"] = cosines
    return record | ({} if eligible is None else {"eligible": eligible})


def _held(mean: float, worst: float) -> dict:
    return {"cosine_mean": mean, "cosine_low": worst + 0.01, "cosine_min": worst, "top1_agreement": 0.85}


KL = [0.50, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97]  # kl+cos on 8 fold samples, one poor


def _draw(minmax: list[float], held_minmax: dict) -> dict:
    """kl+cos and min-max judged on the fold samples (min-max eligible past the choice's margin); held out, kl+cos
    0.92 in mean and min-max as given."""
    eligible = _trial("minmax", minmax)["guarded_cos"] >= _trial("kl+cos", KL)["guarded_cos"] + 0.001
    trials = [_trial("kl+cos", KL), _trial("minmax", minmax, eligible=eligible)]
    return {"trials": trials, "held": {"kl+cos": _held(0.92, 0.55), "minmax": held_minmax}, "rival": RIVAL}


def test_rules_pick_from_the_folds_and_are_scored_on_the_held_out_crops():
    tool = load_tool("choice_draws")
    ahead = [c + 0.02 for c in KL]  # min-max ahead on every fold sample
    draws = {
        # min-max clearly ahead on the folds, and on the held-out crops
        "a/2": _draw(ahead, _held(0.95, 0.60)),
        "a/4": _draw(ahead, _held(0.95, 0.60)),
        # ahead by a hair on every sample: under the choice's margin; min-max worse on the held-out crops
        "b/2": _draw([c + 0.0002 for c in KL], _held(0.80, 0.40)),
        # the poor sample much better, the rest a little worse: the guarded cosine (mean and 10th percentile) gains
        # beyond a standard error of the paired gain, the mean cosine does not
        "b/4": _draw([0.80, *(c - 0.01 for c in KL[1:])], _held(0.80, 0.40)),
    }
    lines = tool.score(draws)
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in lines[2:]}
    choice, alone = rows["the choice as measured (tcc.quant.choose, its records' switches)"], rows["kl+cos alone"]
    gated = rows["the choice, a switch only with a gain of 1 standard error"]
    oracle = rows["held-out best mean (an oracle)"]
    # the choice switches on a/2, a/4 and b/4; gated by one standard error of the mean gain, on a/2 and a/4 alone
    assert choice[6] == "3" and gated[6] == "2" and alone[6] == "0" and oracle[6] == "2"
    assert alone[7].startswith("2 of 2") and gated[7].startswith("2 of 2") and choice[7].startswith("1 of 2")
    # the held-out means: min-max's 0.95 twice and kl+cos's 0.92 twice under the gate; the choice took 0.80 once
    assert gated[1] == oracle[1] == f"{(0.95 * 2 + 0.92 * 2) / 4:.5f}"
    assert choice[1] == f"{(0.95 * 2 + 0.92 + 0.80) / 4:.5f}"
    # the bar against the rival (mean within 0.002, worst and agreement not lower): every pick but min-max on b
    assert gated[5] == "4 of 4" and choice[5] == "3 of 4"


def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys):
    tool = load_tool("choice_draws")
    assert tool.main(["no_such_model"]) == 2
    assert tool.main(["--draws", "two", "lcnet_050"]) == 2
    assert tool.main(["--from", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "unknown model(s) no_such_model" in err and "--draws two" in err and "missing.json: no such file" in err


@pytest.mark.slow
def test_a_model_measured_on_one_draw(tmp_path):
    tool = load_tool("choice_draws")
    entry = next(e for e in tool.census.MODELS if e.name == "monai_unet")
    measured = tool.measure(tool.census.Entry(entry.name, entry.source, entry.build, 32), [2], tmp_path)
    draw = measured["monai_unet/2"]
    assert [tool.candidate(t) for t in draw["trials"]] == list(draw["held"])  # every candidate, judged both ways
    assert next(iter(draw["held"])) == "kl+cos" and len(draw["held"]["kl+cos"]["cosines"]) == tool.JUDGED
    assert draw["rival"]["method"] in tool.census.METHODS
    assert "| the choice as measured (tcc.quant.choose, its records' switches) |" in "\n".join(tool.score(measured))
