"""The method choice over draws of calibration crops (issue 74): does `--method auto` pick, per model, what the
held-out crops favour, and does it pick the same on another draw?

Per census model (tools/import_census.py: seeded weights, BatchNorm statistics from natural crops, exported as a
user would, imported by tcc) and per draw of 32 calibration crops (`--draws`: the crops' seeds; the census's is 2):
- the method stage of the choice exactly as a build runs it (tcc.quant.choose: every method candidate calibrated on
  each fold's statistics samples and judged on its held-back ones; asymmetric grids on, no other step, `ort` rules);
- every candidate method calibrated on all 32 crops and judged, as the census judges, on its 256 held-out crops;
- ONNX Runtime's quantize_static on the same draw (per-channel QDQ, the best of its methods by mean cosine).

Then each selection rule (RULES) applied to the folds' records, scored by the held-out result of the method it picks:
the mean over model-draws of the held-out mean, 10th-percentile and worst cosine and the agreement, how often the
pick is within issue 74's bar against the draw's ORT rival, and per model whether every draw picks the same method.

    .venv/bin/python tools/choice_draws.py --draws 2,4,5 --json draws.json          # every model (~2 h on 2 cores)
    .venv/bin/python tools/choice_draws.py --draws 2,4 lcnet_050 edgenext_xx_small
    .venv/bin/python tools/choice_draws.py --from draws.json                        # the rules' table again

Results: docs/notes/census-rivals.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import import_census as census  # a tool beside this one

from tcc.api.model import Model
from tcc.frontend import lower_spec
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.choose import best_trial, method_candidates, switch_clears
from tcc.quant.lower.qdq import to_qdq
from tcc.quant.report.quality import per_sample_cosine, run_ort
from tcc.quant.settings import CalibrationSettings
from tcc.quant.table.steps import Steps

CALIB, JUDGED, JUDGED_SEED = 32, 256, 3  # the census's (`--judged 256`)
PERCENTILE = CalibrationSettings().percentile  # the run's, as a build's: auto tries it and WIDE_PERCENTILE
STEPS = Steps(equalization=False, bias_correction=False, asymmetric=True, rounding=False)  # the methods' base
Rule = Callable[[list[dict]], int]  # the method trials' records -> the index picked


def candidate(trial: dict) -> str:
    """A method trial's name: the method, and the percentile method's percentile."""
    return trial["method"] + (f"@{trial['percentile']}" if trial.get("percentile") is not None else "")


def measure(entry, draws: list[int], work: Path) -> dict:
    """{"name/seed": the draw's method trials (as the choice recorded them), every candidate's held-out metrics and
    ONNX Runtime's best} for one census model."""
    path = census.export(census.seeded_with_natural_statistics(entry), entry.size, work / f"{entry.name}.onnx")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        model = Model.load(path)
        fp32_graph = lower_spec(model.spec, None, model.weights_source).onnx  # what a build calibrates
    original = onnx.load(path)
    judged = census.natural_crops(JUDGED, entry.size, seed=JUDGED_SEED)
    fp32 = run_ort(original, judged)
    out = {}
    for seed in draws:
        start = time.perf_counter()
        calib = census.natural_crops(CALIB, entry.size, seed=seed)
        chosen = calibrate_onnx(fp32_graph, calib, method="auto", target="ort", steps=STEPS, progress=False, seed=0)
        trials = [t for t in (chosen.steps_choice or {})["trials"] if "split_patterns" not in t]
        # every step fixed, so the choice's table is its winner's on all 32 crops: not calibrated again
        won = candidate({"method": chosen.method, "percentile": chosen.settings["percentile"]}
                        if chosen.method == "percentile" else {"method": chosen.method})  # fmt: skip
        held = {}
        for method, percentile in method_candidates(8, PERCENTILE):
            name = candidate({"method": method, "percentile": percentile})
            table = (
                chosen
                if name == won
                else calibrate_onnx(
                    fp32_graph, calib, method=method, percentile=percentile or PERCENTILE, target="ort",
                    steps=STEPS, progress=False, seed=0,
                )
            )  # fmt: skip
            int8 = run_ort(to_qdq(fp32_graph, table), judged)
            held[name] = census.judged_metrics(fp32, int8) | {
                "cosines": [float(c) for c in per_sample_cosine(fp32, int8)]
            }
        rival, _ = census.best_rival(original, calib, judged, fp32, reduce_range=False)
        out[f"{entry.name}/{seed}"] = {
            "trials": trials,
            "held": held,
            "rival": rival,
            "seconds": round(time.perf_counter() - start, 1),
        }
    return out


def _gain_gate(errors: float) -> Rule:
    """The choice's own rule with one more condition on another method: its paired per-sample cosine gain over the
    first trial (kl+cos) at least `errors` standard errors."""

    def rule(trials: list[dict]) -> int:
        gated = [dict(t) for t in trials]
        for t in gated[1:]:
            t["eligible"] = t.get("eligible", True) and switch_clears(gated[0], t, errors)
        return best_trial(gated)

    return rule


RULES: dict[str, Rule] = {
    "the choice as measured (tcc.quant.choose, its records' switches)": best_trial,
    "kl+cos alone": lambda trials: 0,
    "the choice, a switch only with a gain of 1 standard error": _gain_gate(1.0),
    "the choice, a switch only with a gain of 2 standard errors": _gain_gate(2.0),
}


def score(draws: dict) -> list[str]:
    """The rules' Markdown table over the measured draws, with the held-out best per draw (an oracle) below them."""
    lines = [
        "| rule | mean cos | 10th pct | worst | agreement | within the bar | switched | same method every draw |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_model: dict[str, list[str]] = {}
    for key in draws:
        by_model.setdefault(key.split("/")[0], []).append(key)
    several = [keys for keys in by_model.values() if len(keys) > 1]
    for name, rule in [*RULES.items(), ("held-out best mean (an oracle)", None)]:
        picked = {key: _pick(d, rule) for key, d in draws.items()}
        held = [d["held"][picked[key]] for key, d in draws.items()]
        within = sum(census.meets_bar(h, d["rival"]) for h, d in zip(held, draws.values()))
        switched = sum(picked[key] != candidate(d["trials"][0]) for key, d in draws.items())
        same = sum(len({picked[k] for k in keys}) == 1 for keys in several)
        mean = {m: np.mean([h[m] for h in held]) for m in ("cosine_mean", "cosine_low", "cosine_min", "top1_agreement")}
        lines.append(
            f"| {name} | {mean['cosine_mean']:.5f} | {mean['cosine_low']:.4f} | {mean['cosine_min']:.4f} | "
            f"{mean['top1_agreement']:.4f} | {within} of {len(held)} | {switched} | {same} of {len(several)} |"
        )
    return lines


def _pick(draw: dict, rule: Rule | None) -> str:
    """The candidate a rule picks from the draw's fold records (None: the one best on the held-out crops)."""
    trials = draw["trials"]
    if rule is None:
        return max((candidate(t) for t in trials), key=lambda c: draw["held"][c]["cosine_mean"])
    return candidate(trials[rule(trials)])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="census models (default: all)")
    p.add_argument("--draws", default="2,4,5", help="the calibration crops' seeds, comma-separated (default 2,4,5)")
    p.add_argument("--json", type=Path, help="write the measured draws here (and resume from it)")
    p.add_argument("--from", dest="source", type=Path, help="score the draws measured in this JSON file")
    args = p.parse_args(argv)
    if args.source:
        if not args.source.is_file():
            print(f"error: --from {args.source}: no such file", file=sys.stderr)
            return 2
        print("\n".join(score(json.loads(args.source.read_text()))))
        return 0
    known = {e.name: e for e in census.MODELS}
    unknown = [n for n in args.names if n not in known]
    try:
        draws = [int(s) for s in args.draws.split(",")]
    except ValueError:
        draws = []
    if unknown or not draws:
        what = f"unknown model(s) {', '.join(unknown)}" if unknown else f"--draws {args.draws}: expected seeds 2,4,5"
        print(f"error: {what}", file=sys.stderr)
        return 2
    measured = json.loads(args.json.read_text()) if args.json and args.json.is_file() else {}
    for entry in [known[n] for n in args.names] if args.names else census.MODELS:
        todo = [s for s in draws if f"{entry.name}/{s}" not in measured]
        if todo:
            with tempfile.TemporaryDirectory(prefix=f"draws-{entry.name}-") as tmp:
                measured |= measure(entry, todo, Path(tmp))
            if args.json:
                args.json.write_text(json.dumps(measured) + "\n")
            print(f"{entry.name}: {len(todo)} draw(s) measured", flush=True)
    print("\n".join(score({k: v for k, v in measured.items() if int(k.split("/")[1]) in draws})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
