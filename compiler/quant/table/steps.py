"""The post-training steps around the activation method, and what a calibration table's steps change.

    Steps(equalization=True, bias_correction=True, rounding=True)   # tcc calibrate --equalization --rounding ...

Calibration runs them in this order (tcc.quant.calibrate): cross-layer equalization (tcc.quant.steps.equalize) before
the statistics, the activation method (KL + the cosine search by default), asymmetric activation grids where the
rules take them (tcc.quant.steps.asymmetric), then per-layer weight rounding
(tcc.quant.steps.rounding) and bias correction (tcc.quant.steps.bias_correction) on the final scales; the steps that
neither the command line nor the spec fixes are chosen per model (tcc.quant.choose, recorded as `steps_choice`). The
table's `steps` list records each step, whether it ran, its settings, its time and everything it chose:

    equalization      per pair: the producer, its consumers (weights, input-channel axis, groups), the factors
    asymmetric        the tensors moved to a grid over their clipped range (their entries hold it)
    rounding          per weight: one bit per element (the code above floor(w / s)), base64
    bias_correction   per layer: the shift added to its float bias

The table stays tied to the FP32 graph it was made for (its model_hash); every consumer of a table reads the
parameters through this module, so the integer reference, the QDQ lowering and every backend that translates the
quantized graph quantize the same weights and biases:

    calibrated_parameters(model, table)  # {initializer: float32 array}: equalized, bias-corrected (only changed ones)
    equalized_model(model, table)        # the FP32 function with equalized parameters (per-tensor FP32 references)
    weight_codes(table, name, w)         # codes, with the stored rounding (tcc.quant.table.weight_codes)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ...errors import CalibrationError, DataError
from .file import CalibrationTable
from .placement import float_nodes
from .records import StepsChoice

STEP_NAMES = ("equalization", "asymmetric", "rounding", "bias_correction")
# left out of the automatic choice (off unless asked): chosen, each lost where the choice could not see it
# (equalization: an NPU kit's per-op check off by 2 LSB; rounding: worse on crops the choice did not judge; measured:
# docs/int8.md, Defaults)
UNCHOSEN = ("equalization", "rounding")
DEFAULT_CHOICE_BUDGET = (
    300.0  # seconds: room for every combination of DDSNet's steps (docs/notes/quantizer-measurements.md)
)


@dataclass(frozen=True)
class Steps:
    """Which steps calibration runs: True / False, or None to choose per model (tcc.quant.choose: each
    combination of the undecided steps judged by the INT8 output cosine on calibration samples held back from the
    statistics). A fixed choice is no good default, because none helps every model and data set (measured, README,
    INT8): bias correction wins on all four DDSNet checkpoints calibrated and judged on crops of their own dataset,
    but lost on two of them with crops of all four datasets; equalization, with plain `kl` or few crops, clips the
    evened-out channels (on the golden sets' 8 crops FastNet's INT8 cosine fell below 0.95). `Steps()` runs none
    (the library's plain default); `Steps.chosen` (the commands') leaves the steps nobody fixed to the choice.
    rounding_budget: seconds for the rounding step (None: every layer); it stops between layers, so a budget that
    bites makes the table depend on the machine's speed (the table says so). choice_budget: seconds for choosing
    (after the first trial, no new one starts past it; None: every combination)."""

    equalization: bool | None = False
    bias_correction: bool | None = False
    asymmetric: bool | None = False  # signed tensors on u8 grids over their clipped ranges (rules that take it)
    rounding: bool | None = False
    rounding_sweeps: int = 8
    rounding_budget: float | None = None
    choice_budget: float | None = DEFAULT_CHOICE_BUDGET

    def enabled(self, name: str) -> bool:
        return bool(getattr(self, name))

    @property
    def free(self) -> tuple[str, ...]:
        """The steps left to choose, in STEP_NAMES order."""
        return tuple(name for name in STEP_NAMES if getattr(self, name) is None)

    def deciding(self, on: Iterable[str]) -> Steps:
        """Itself with every free step decided: on when named in `on`, else off."""
        return replace(self, **{name: name in set(on) for name in self.free})

    @classmethod
    def chosen(cls, spec_section: dict[str, Any] | None, **switches: Any) -> Steps:
        """The steps a calibration runs: each switch given (True / False; None: not given) wins over the model
        spec's `calibrate:` section (`spec_section`, as tcc.spec.loader reads it); bias correction that neither
        fixes is chosen per model (None), and so are asymmetric grids; equalization and rounding stay off
        (UNCHOSEN). Other keyword arguments
        (rounding_budget, choice_budget; None: the default) pass through."""
        section = spec_section or {}
        picked: dict[str, Any] = {
            name: bool(switches[name])
            if switches.get(name) is not None
            else bool(section[name])
            if section.get(name) is not None
            else (False if name in UNCHOSEN else None)
            for name in STEP_NAMES
        }
        rest = {k: v for k, v in switches.items() if k not in STEP_NAMES and v is not None}
        return cls(**picked, **rest)

    def checked(self) -> Steps:
        """Itself, if its settings fit together (a rounding budget needs the rounding step and seconds > 0)."""
        if self.rounding_budget is not None and not (self.rounding is not False and self.rounding_budget > 0):
            raise DataError(
                "--rounding-budget needs --rounding (or the rounding step left to the choice) and a "
                "positive number of seconds"
            )
        if self.choice_budget is not None and self.choice_budget < 0:
            raise DataError(
                f"--choice-budget {self.choice_budget:g}: expected seconds >= 0 (0: no choosing, the "
                "undecided steps stay off)"
            )
        return self


NONE = Steps(equalization=False, bias_correction=False, rounding=False)


# ---------------------------------------------------------------------------------------------------- parameters
def equalize_arrays(records: list[dict], inits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The initializers equalization changes (new float32 arrays; `inits` is left alone): each producer's output
    channel i (weight row, bias) times c_i, each consumer's input channel i divided by c_i."""
    new: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        return new[name] if name in new else np.asarray(inits[name], np.float32)

    for rec in records:
        c = np.asarray(rec["scales"], np.float32)
        w = get(rec["weight"])
        _fits(rec["weight"], w.shape[0], len(c), "equalization factors")
        new[rec["weight"]] = (w * c.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
        if rec.get("bias"):
            new[rec["bias"]] = (get(rec["bias"]) * c).astype(np.float32)
        for cons in rec["consumers"]:
            w = get(cons["weight"])
            _fits(cons["weight"], w.shape[cons["axis"]] * cons.get("groups", 1), len(c), "equalization factors")
            new[cons["weight"]] = (w / per_input_channel(w, c, cons["axis"], cons.get("groups", 1))).astype(np.float32)
    return new


def _fits(name: str, channels: int, stored: int, what: str) -> None:
    if channels != stored:
        raise CalibrationError(f"initializer {name!r} has {channels} channels, the table {stored} {what}")


def per_input_channel(w: np.ndarray, c: np.ndarray, axis: int, groups: int) -> np.ndarray:
    """c (one factor per input channel) shaped to divide a consumer weight whose input channels lie along `axis`;
    a grouped conv's weight [O, C/g, ...] holds group k's channels in rows k*O/g .. (k+1)*O/g."""
    if groups > 1:
        o, cg = w.shape[:2]
        per = np.repeat(c.reshape(groups, 1, cg), o // groups, axis=1)
        return per.reshape(o, cg, *([1] * (w.ndim - 2)))
    shape = [1] * w.ndim
    shape[axis] = -1
    return c.reshape(shape)


def _initializers(model: onnx.ModelProto, names: set[str]) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name in names}


def _equalization_names(records: list[dict]) -> set[str]:
    names = set()
    for rec in records:
        names.add(rec["weight"])
        if rec.get("bias"):
            names.add(rec["bias"])
        names.update(c["weight"] for c in rec["consumers"])
    return names


def calibrated_parameters(model: onnx.ModelProto, table: CalibrationTable) -> dict[str, np.ndarray]:
    """The weights and biases that the table's steps change, as the integer graph must quantize them: equalized,
    then each corrected bias plus its shift (float32). Initializers not listed are the model's own. A layer the
    table's placement keeps in float (a float island) keeps its bias uncorrected: the shift makes up for its own
    quantization, which an island does not have (measured: docs/notes/quantizer-measurements.md)."""
    eq = table.step("equalization")
    bc = table.step("bias_correction")
    records = eq["pairs"] if eq else []
    floats = float_nodes(table)
    shifts = {k: v for k, v in (bc["layers"] if bc else {}).items() if k not in floats}
    names = _equalization_names(records) | {v["bias"] for v in shifts.values()}
    if not names:
        return {}
    inits = _initializers(model, names)
    out = equalize_arrays(records, inits)
    for entry in shifts.values():
        b = out.get(entry["bias"], np.asarray(inits[entry["bias"]], np.float32))
        _fits(entry["bias"], b.size, len(entry["shift"]), "bias-correction shifts")
        out[entry["bias"]] = (b.astype(np.float64) + np.asarray(entry["shift"], np.float64)).astype(np.float32)
    return out


def with_initializers(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` whose initializers named in `arrays` hold those values (the model itself when empty)."""
    if not arrays:
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.name in arrays:
            t.CopyFrom(numpy_helper.from_array(np.asarray(arrays[t.name], np.float32), t.name))
    return m


def equalized_model(model: onnx.ModelProto, table: CalibrationTable) -> onnx.ModelProto:
    """The FP32 graph with the table's equalization applied: the same function (within float rounding), with the
    intermediate tensors' channels rescaled as the integer graph has them; per-tensor comparisons use it."""
    eq = table.step("equalization")
    if not eq:
        return model
    records = eq["pairs"]
    return with_initializers(model, equalize_arrays(records, _initializers(model, _equalization_names(records))))


def summary_lines(table: CalibrationTable) -> list[str]:
    """One line per step of a table, as `tcc calibrate` prints them (how they were chosen: choice_lines)."""
    lines = []
    for s in table.steps:
        name = s["name"].replace("_", " ")
        if not s.get("enabled"):
            lines.append(f"{name}: off")
        elif s["name"] == "equalization":
            pairs = s.get("pairs", [])
            strengths = sorted({p["strength"] for p in pairs})
            lines.append(
                f"{name}: {len(pairs)} producer -> consumer pairs rescaled"
                + (f" (strengths {', '.join(f'{v:g}' for v in strengths)})" if pairs else "")
            )
        elif s["name"] == "asymmetric":
            lines.append(f"{name}: {len(s.get('tensors', []))} signed tensors on grids over their clipped range")
        elif s["name"] == "rounding":
            layers = s.get("layers", {})
            worst = max(layers.items(), key=lambda kv: kv[1]["error_before"], default=None)
            lines.append(
                f"{name}: {len(s.get('weights', {}))} weights rounded per layer"
                + ("" if s.get("complete", True) else " (time budget reached before the last layers)")
                + (
                    f"; worst layer {worst[0]}: relative output error {worst[1]['error_before']:.4g} -> "
                    f"{worst[1]['error_after']:.4g}"
                    if worst
                    else ""
                )
            )
        else:
            skipped = s.get("skipped_without_bias", [])
            lines.append(
                f"{name}: {len(s.get('layers', {}))} layers' biases corrected"
                + (f" ({len(skipped)} without a bias left as they are)" if skipped else "")
            )
    return lines


def choice_lines(choice: StepsChoice | None, seconds: float | None = None) -> list[str]:
    """How the method and the undecided steps were chosen (tcc.quant.choose), in one line; `seconds`: the time it
    took (table_choice_lines: a table's)."""
    if not choice or not choice["free"]:
        return []
    free = ", ".join(n.replace("_", " ") for n in choice["free"])
    if choice.get("skipped"):
        method = f"{choice['method']}, " if "method" in choice["free"] else ""
        return [f"chosen per model ({free}): none tried ({choice['skipped']}); {method}the free steps off"]
    trials = choice["trials"]
    best = next(t for t in trials if _names(t) == _names(choice))
    first = trials[0]
    folds = choice.get("folds", 1)
    judged = (
        f"{choice['judged_samples']} held-back calibration samples"
        if folds == 1
        else f"{choice['judged_samples']} calibration samples held back in {folds} folds"
    )
    if "folds_planned" in choice:
        planned = choice["folds_planned"]
        judged += f" (one fold of {planned}: the first candidate on all {planned} would have taken the whole budget)"
    line = (
        f"chosen per model ({free}) on {judged}: {_named(best)}, "
        f"INT8 {_judged(best)}"
        + (f" (vs {_named(first)}: {_judged(first)})" if best is not first else "")
        + f"; {len(trials)} candidates judged"
        + (f" in {seconds:.1f} s" if seconds is not None else "")
    )
    gain = choice.get("best_gain")
    if gain and best is not first:
        line += f", cosine gain per sample {gain['mean']:.2g} +- {gain['standard_error']:.2g}"
    if not choice.get("complete", True):
        line += (
            f" (budget {choice['budget_s']:g} s reached before the rest: the choice depends on this machine's speed)"
        )
    return [line]


def _names(trial: Any) -> tuple[str | None, float | None, tuple[str, ...], tuple[str, ...]]:
    """A trial's (or the choice's) method, percentile, steps and split patterns; tables of earlier versions name no
    method, nor a percentile where auto tried one."""
    steps = tuple(trial["steps"] if "steps" in trial else trial["chosen"])
    return trial.get("method"), trial.get("percentile"), steps, tuple(trial.get("split_patterns", ()))


def _named(trial: dict[str, Any]) -> str:
    steps = " + ".join(n.replace("_", " ") for n in trial["steps"]) or "no step"
    split = f", {' and '.join(trial['split_patterns'])} as gate and multiply" if trial.get("split_patterns") else ""
    method = f"{trial['method']} {trial['percentile']:g}" if "percentile" in trial else trial.get("method")
    return (f"{method} with {steps}" if method else steps) + split


def _judged(trial: dict[str, Any]) -> str:
    """What the judge measured: cosine mean / 10th percentile / min, top-1 agreement (earlier tables: no the
    last two)."""
    low = f" / p10 {trial['low_cos']:.6f}" if "low_cos" in trial else ""
    agreement = f", top-1 agreement {100 * trial['agreement']:.1f}%" if "agreement" in trial else ""
    return f"cosine mean {trial['mean_cos']:.6f}{low} / min {trial['min_cos']:.6f}{agreement}"


def table_choice_lines(table: CalibrationTable) -> list[str]:
    """choice_lines of a table's own choice and its time."""
    return choice_lines(table.steps_choice, table.timing.get("choice"))
