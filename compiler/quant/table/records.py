"""The records of a calibration table, typed: the shapes spec/schema/calibration.schema.json gives its JSON objects.

They are TypedDicts, so a table stays the JSON document it is written as (byte for byte) while its readers get
typed fields: CalibrationTable (tcc.quant.table.file) hands them out through its accessors."""

from __future__ import annotations

from typing import Any, TypedDict


class TensorEntry(TypedDict, total=False):
    """One quantized tensor: an activation (per tensor) or a weight (per output channel)."""

    kind: str  # activation | weight | bias
    scale: Any  # float (activation) or one per channel (weight)
    zero_point: Any  # int, or one per channel
    bits: int
    symmetric: bool
    signed: bool
    axis: int
    narrow_range: bool
    method: str
    threshold: float
    min: float
    max: float
    layer: str
    headroom_for: str
    widened: bool
    group: int
    diagnostics: dict[str, Any]


class LayerRecord(TypedDict, total=False):
    """A conv / linear layer: its tensors, and its output's cosine before / after the fine search."""

    op: str
    input: str
    weight: str
    bias: str | None
    output: str
    cos_before: float
    cos_after: float


class SearchSummary(TypedDict, total=False):
    """The fine search over every layer it searched (empty without a search)."""

    layers_searched: int
    mean_cos_before: float
    mean_cos_after: float
    min_cos_before: float
    min_cos_after: float


class Settings(TypedDict, total=False):
    """The method's parameters."""

    percentile: float
    bins: int
    levels_signed: int
    levels_unsigned: int
    activation_bits: int
    activation_method: str
    cos_steps: int
    cos_rounds: int
    cos_rows: int
    cos_samples: int
    cos_range: list[float]
    seed: int


# an activation entry's `method` where the rules fix its scale and zero point (TargetRules.fixed_outputs)
FIXED_BY_TARGET = "fixed by the target"


class StepRecord(TypedDict, total=False):
    """One post-training step: whether it ran, its settings and what it chose (tcc.quant.table.steps)."""

    name: str  # equalization | asymmetric | rounding | bias_correction
    enabled: bool
    settings: dict[str, Any]
    pairs: list[dict[str, Any]]  # equalization
    weights: dict[str, str]  # rounding: the stored bits per weight
    complete: bool  # rounding
    layers: dict[str, dict[str, Any]]  # rounding: errors; bias_correction: bias and shift
    skipped_without_bias: list[str]
    tensors: list[str]  # asymmetric: the signed tensors moved to a grid over their clipped range


class StepsChoice(TypedDict, total=False):
    """How the method (`auto`) and the steps neither the command line nor the spec fixed were chosen
    (tcc.quant.choose)."""

    free: list[str]  # "method" first when it was free, then the free steps
    methods: list[str]  # the methods tried (auto)
    percentiles: list[float]  # the percentiles the percentile method was tried at (auto)
    method: str  # the table's
    percentile: float  # the table's percentile, where the percentile method won (auto)
    fixed: dict[str, bool]
    budget_s: float | None
    chosen: list[str]
    split_patterns: list[str]  # the x * g(x) patterns the chosen trial split (absent: none)
    skipped: str
    judged_samples: int  # over every fold
    statistics_samples: int  # each fold's
    folds: int  # absent: one
    folds_planned: int  # absent: as `folds`; more where the budget cut them to the first (tcc.quant.choose)
    seed: int
    complete: bool
    best_gain: dict[str, float]
    trials: list[dict[str, Any]]


class Placement(TypedDict, total=False):
    """The nodes of the INT8 graph kept in float or widened, and what the placement step measured
    (tcc.quant.table.placement)."""

    objectives: dict[str, Any]
    nodes: dict[str, dict[str, Any]]
    widened: dict[str, dict[str, Any]]
    widened_tensors: int
    widened_cost_share: float
    cos_before: float
    cos_after: float
    reference_cos_after: float
    worst_cos_before: float
    worst_cos_after: float
    reference_worst_cos_after: float
    samples: int
    float_cost_share: float
    profile: dict[str, Any]
