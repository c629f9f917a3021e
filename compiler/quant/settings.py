"""The settings records of a calibration, each field documented once:

CalibrationSettings   how calibrate_onnx chooses the scales (method, rules, search, steps, width, ...)
Provenance            what the table records of where its data, spec and weights came from (hashes)
StepSwitches          the command line's post-training step switches, over the spec's `calibrate:` section
CalibrationRequest    what `tcc calibrate` and `tcc build --data` ask for: the settings, the switches, the
                      placement step and which samples are read
CalibrationRun        one calibration's inputs once checked (tcc.quant.prepare): what its phases share

table = calibrate_onnx(fp32, x, CalibrationSettings(method="kl", target="tvm"))
table = calibrate("spec/ddsnet.yaml", "crops/", CalibrationRequest(CalibrationSettings(method="kl")))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .collect.stats import BINS
from .table.steps import Steps

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from .intgraph.match import IntGraph
    from .place.placer import PlaceOptions
    from .table.rules import TargetRules


@dataclass(frozen=True)
class CalibrationSettings:
    """How a calibration chooses its scales (tcc.quant.calibrate's docstring lists its phases)."""

    # minmax | percentile | kl | kl+cos (tcc.quant.scales.methods.METHODS), or auto: one of them chosen per model on
    # held-back samples (tcc.quant.choose); None: a command's is the spec's `calibrate:` section's method, else auto
    # (tcc.quant.prepare.method_for), and calibrate_onnx's kl+cos
    method: str | None = None
    # the quantization rules the table is made for: a rules name (tcc.quant.table.rules.RULES) or TargetRules; `tcc
    # calibrate` also takes a build target's name (rules_for); a build sets its target's rules
    target: str | TargetRules = "ort"
    percentile: float = 99.99  # the percentile method's
    cos_steps: int = 100  # kl+cos: scale candidates in [0.5 s, 2 s] per search
    cos_rounds: int = 2  # kl+cos: alternating weight / activation rounds
    cos_rows: int = 4096  # rows sampled per layer for the search and the per-layer steps
    cos_samples: int | None = None  # samples the rows are drawn from (None: all)
    batch_size: int = 8  # samples per ONNX Runtime run of the statistics pass
    seed: int = 0  # the rows' draws (a command's is its one seed: tcc.frontend.Weights.seed)
    bins: int = BINS  # histogram bins per tensor
    threads: int | None = None  # threads for ONNX Runtime and the per-tensor work (None: 2)
    progress: bool | None = None  # a progress bar (None: on a terminal, for more than 64 samples)
    # the post-training steps (tcc.quant.table.steps); None: a command's choice (Steps.chosen from the spec's
    # `calibrate:` section and the switches), and no step at all (Steps()) for calibrate_onnx, which sees no spec
    steps: Steps | None = None
    # 8, or 16 (int16 activations where the rules' kernels take them); None: the spec's `calibrate:` section's, else
    # the rules' default (tcc.quant.prepare.activation_bits), and 8 for calibrate_onnx
    activation_bits: int | None = None


@dataclass(frozen=True)
class Provenance:
    """Where a table's inputs came from, recorded in it (and checked by `tcc build --calib`)."""

    data_fingerprint: str | None = None  # the calibration data's (None: the sha256 of the samples given)
    spec_hash: str | None = None  # the spec's (tcc.spec.loader's spec_hash)
    weights_hash: str | None = None  # the checkpoint file's sha256 (None: seeded random weights)


@dataclass(frozen=True)
class StepSwitches:
    """The post-training steps' switches as the command line gives them (None: not given): each given one wins over
    the spec's `calibrate:` section (tcc.quant.table.steps.Steps.chosen)."""

    equalization: bool | None = None
    bias_correction: bool | None = None
    rounding: bool | None = None
    asymmetric: bool | None = None
    rounding_budget: float | None = None  # seconds for the rounding step
    choice_budget: float | None = None  # seconds for choosing the steps nobody fixed

    def steps(self, spec_section: dict | None) -> Steps:
        """The steps a calibration runs, checked (a bad --rounding-budget fails here, before any data is read)."""
        return Steps.chosen(spec_section, **vars(self)).checked()


@dataclass(frozen=True)
class CalibrationRequest:
    """What `tcc calibrate` and `tcc build --data` ask a calibration for, before the spec and the data are read."""

    settings: CalibrationSettings = CalibrationSettings()
    step_switches: StepSwitches = StepSwitches()  # used where settings.steps is None
    placement: PlaceOptions | None = None  # the placement step (tcc.quant.place.placer), run on the table made
    calib_size: int | None = 128  # samples picked (seeded) from the data (None: all)
    skip_bad: bool = False  # warn about unreadable images instead of failing


@dataclass(frozen=True)
class CalibrationRun:
    """One calibration's inputs, checked and resolved: what its phases (tcc.quant.calibrate) and the steps' choice
    (tcc.quant.choose) share."""

    model: onnx.ModelProto  # the FP32 graph in the rules' quantized form (tcc.quant.intgraph.match.quantized_form)
    data: np.ndarray = field(repr=False)  # the calibration samples [N, ...], float32
    graph: IntGraph  # the model's integer graph
    rules: TargetRules
    settings: CalibrationSettings  # with steps and activation_bits resolved
    provenance: Provenance  # with the data's fingerprint
    model_hash: str  # the FP32 graph's (the one a build reads the table with)

    @property
    def method(self) -> str:
        assert self.settings.method is not None  # resolved by calibrate_onnx
        return self.settings.method

    @property
    def steps(self) -> Steps:
        assert self.settings.steps is not None  # resolved by calibrate_onnx
        return self.settings.steps

    @property
    def activation_bits(self) -> int:
        assert self.settings.activation_bits is not None  # resolved by calibrate_onnx
        return self.settings.activation_bits
