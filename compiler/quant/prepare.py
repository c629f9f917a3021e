"""The INT8 preflight: every check that `tcc build --precision int8`, `tcc calibrate`, calibrate_onnx and the API
make before any data is read or any scale is chosen, written once, in the order a command meets them:

    check_sources(precision, calib, data, target, lowering, kit)    a build's INT8 inputs (--calib / --data)
    check_request(request, rules, target)    before the spec is read: the method, a width given, the placement's
                                             options
    resolve(request, spec_section, graph, rules, target)    once the model is planned: the placement's nodes, the
                                             activation width and the post-training steps, each checked against the
                                             rules and the integer graph -> the CalibrationSettings to run
    check_table(table, where, fp32, graph, rules, target, asked_bits)    a table from --calib against the build
    check_samples(data)                      the samples themselves (none, NaN)

Every message and error type is the one the commands have always given (DataError / BuildError / CalibrationError:
exit code 2).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BuildError, CalibrationError, DataError
from .intgraph.match import quantized_form
from .place.placer import check_nodes, check_options
from .scales.methods import AUTO, METHODS
from .settings import CalibrationRequest, CalibrationSettings
from .table.rules import RULES, TargetRules

if TYPE_CHECKING:
    from pathlib import Path

    import onnx

    from ..targets import Target
    from .intgraph.match import IntGraph
    from .place.placer import PlaceOptions
    from .table.file import CalibrationTable
    from .table.steps import Steps

ACTIVATION_BITS = (8, 16)


# ---------------------------------------------------------------------------------------------------- a build's inputs
def check_sources(
    precision: str,
    calib: str | Path | None,
    data: str | Path | np.ndarray | None,
    target: Target,
    lowering: str | None,
    kit: bool,
) -> None:
    """A build's --calib / --data against its precision and target (`lowering`: the backend's integer lowering;
    `kit`: it writes a kit whose calibration archive holds the samples)."""
    if precision != "int8":
        if calib is not None or data is not None:
            raise BuildError(f"--calib / --data apply to --precision int8 only (this build is {precision})")
        return
    if target.rules is None or lowering is None:
        raise BuildError(f"target {target.name} has no INT8 quantization rules or integer lowering")
    if kit:
        if data is None:
            kit_holds = f"target {target.name} writes a kit whose calibration archive holds the calibration samples"
            raise BuildError(
                f"{kit_holds}: give them with --data DIR|FILE.npy (and, optionally, the table made from them "
                "with --calib)"
            )
        return
    if calib is None and data is None:
        raise BuildError(
            "precision='int8' needs a calibration table (calib=, made by Model.calibrate or `tcc calibrate`) or "
            "calibration data to calibrate on the fly (data=: an image folder, a .npy file or an array)",
            cli="--precision int8 needs a calibration table (--calib calib.json, made by `tcc calibrate`) "
            "or calibration data to calibrate on the fly (--data DIR|FILE.npy)",
        )
    if calib is not None and data is not None:
        raise BuildError("give either --calib (a table) or --data (calibrate now), not both")


def check_placement_source(placement: PlaceOptions | None, calib: str | Path | None) -> None:
    """A placement is chosen while calibrating: a table given with --calib carries its own."""
    if placement is not None and calib is not None:
        raise BuildError(
            "--min-cos / --speed / --keep-float choose the placement while calibrating (--data); a "
            "table from --calib carries its own placement (calibrate with --min-cos C)"
        )


# ---------------------------------------------------------------------------------------------------- the settings
def check_method(method: str | None) -> None:
    if method is not None and method not in (*METHODS, AUTO):
        raise DataError(f"unknown calibration method {method!r}; expected one of {', '.join((*METHODS, AUTO))}")


def check_percentile(percentile: float) -> None:
    if not 0 < percentile <= 100:
        raise DataError(f"the percentile method's percentile must be in (0, 100], not {percentile}")


def check_request(request: CalibrationRequest, rules: TargetRules, target: str | None) -> None:
    """What can be checked before the spec is read: the method, an activation width given, the placement's options
    (`target`: the name the user gave, which messages repeat)."""
    check_method(request.settings.method)
    check_percentile(request.settings.percentile)
    if request.settings.activation_bits is not None:
        check_activation_bits(request.settings.activation_bits, rules, target)
    if request.step_switches.asymmetric and not rules.ranged:
        raise DataError(asymmetric_refused(rules, target))
    if request.placement is not None:
        check_options(request.placement, rules.name)


def resolve(
    request: CalibrationRequest, spec_section: dict | None, graph: IntGraph, rules: TargetRules, target: str | None
) -> CalibrationSettings:
    """The settings a command's calibration runs, once its model is planned: the placement's nodes checked, the
    activation width (the one given, the spec's `calibrate:` section's, else the rules' default) checked against the
    rules and every node of the integer graph, and the post-training steps chosen (those given, else the spec's with
    the switches on top), checked, and those the rules cannot take off."""
    if request.placement is not None:
        check_nodes(request.placement, graph)  # a misspelt --keep-float fails before the data is read
    bits = activation_bits(spec_section, request.settings.activation_bits, rules)
    check_activation_bits(bits, rules, target)
    check_wide_kinds(graph, bits, rules, target)
    steps = request.settings.steps if request.settings.steps is not None else request.step_switches.steps(spec_section)
    return replace(
        request.settings,
        method=method_for(request.settings.method, spec_section),
        activation_bits=bits,
        steps=applicable_steps(steps, rules, bits),
    )


def asymmetric_refused(rules: TargetRules, target: str | None) -> str:
    where = f"--target {target} (rules {rules.name!r})" if target and target != rules.name else f"rules {rules.name!r}"
    return (
        f"--asymmetric: {where} keep signed activations on symmetric grids (their kernels or toolchain fix the zero "
        f"points); the asymmetric grids are for rules that take any u8 zero point: "
        f"{', '.join(r.name for r in RULES.values() if r.ranged)}"
    )


def applicable_steps(steps: Steps, rules: TargetRules, bits: int) -> Steps:
    """`steps` for a calibration under `rules` at `bits`: no asymmetric grids where the rules or the width do not
    take them (a spec's `calibrate:` section speaks for every target; the switch given for other rules was refused
    by check_request)."""
    return steps if rules.ranged and bits == 8 else replace(steps, asymmetric=False)


def method_for(given: str | None, spec_section: dict | None) -> str:
    """A command's calibration method: the one given, else the spec's `calibrate:` section's, else auto (chosen per
    model, tcc.quant.choose)."""
    method = given if given is not None else (spec_section or {}).get("method", AUTO)
    check_method(method)
    return str(method)


def activation_bits(spec_section: dict | None, given: int | None, rules: TargetRules | None = None) -> int:
    """The activation width a calibration uses: the command line's, else the spec's `calibrate:` section's, else 8
    (or the one width `rules` take, where that is not 8: `tflite16-i32`, 16)."""
    default = 8 if rules is None or 8 in rules.activation_bits else rules.activation_bits[0]
    return int(given if given is not None else (spec_section or {}).get("activation_bits", default))


def check_activation_bits(bits: int, rules: TargetRules, target: str | None = None) -> None:
    """`tcc calibrate --activation-bits`: a width the rules' integer kernels take, else a DataError (exit 2)."""
    if bits not in ACTIVATION_BITS:
        raise DataError(f"--activation-bits {bits}: expected one of {', '.join(map(str, ACTIVATION_BITS))}")
    if bits not in rules.activation_bits:
        takes = [r.name for r in RULES.values() if bits in r.activation_bits]
        where = (
            f"--target {target} (rules {rules.name!r})"
            if target and target != rules.name
            else f"target rules {rules.name!r}"
        )
        raise DataError(
            f"--activation-bits {bits}: {where} take "
            f"{' or '.join(map(str, rules.activation_bits))}-bit activations only (their integer kernels "
            f"read {' or '.join(map(str, rules.activation_bits))}-bit codes: add --activation-bits "
            f"{rules.activation_bits[0]}); {bits}-bit activations: --target {'|'.join(takes)}"
        )


def check_wide_kinds(graph: IntGraph, bits: int, rules: TargetRules, target: str | None = None) -> None:
    """At 16 bits, every integer node of the integer graph (tcc.quant.intgraph.match.IntGraph; float islands aside) must
    be of a kind, and a lookup of a function, that the rules' 16-bit kernels take (TargetRules.wide.kinds, .lookups):
    else a DataError (exit 2) naming the node, its kind and the target, before any data is read."""
    kinds = rules.wide.kinds
    if bits <= 8 or kinds is None:
        return
    lookups = rules.wide.lookups
    # a float island (softmax, layer norm under TFLite's rules) dequantizes and quantizes at either width
    bad = next(
        (
            n
            for n in graph.nodes
            if n.integer
            and (
                n.kind not in kinds
                or (n.kind == "lookup" and lookups is not None and (n.lookup not in lookups or n.gate))
            )
        ),
        None,
    )
    if bad is not None:
        where = f"target {target or rules.name} (rules {rules.name!r})"
        raise DataError(
            f"--activation-bits {bits}: node {bad.name!r} ({bad.op_type}, integer kind {bad.kind!r}) has "
            f"no {bits}-bit form for {where}: its {bits}-bit kernels are done for "
            f"{', '.join(kinds)}{_lookups_note(lookups)}; calibrate with --activation-bits 8, or build "
            "W8A16 for TVM"
        )


def _lookups_note(lookups: Iterable[str] | None) -> str:
    return "" if lookups is None else f" (lookups: {', '.join(lookups)})"


def check_samples(data: np.ndarray) -> None:
    if len(data) == 0:
        raise DataError("no calibration samples")
    if not np.isfinite(data).all():
        raise DataError("calibration data holds NaN or infinite values")


# ---------------------------------------------------------------------------------------------------- a table given
def check_table(
    table: CalibrationTable,
    where: str,
    fp32: onnx.ModelProto,
    graph: IntGraph,
    rules: TargetRules,
    target: str,
    asked_bits: int | None,
) -> None:
    """A table given to a build (`where`: its file) against the build's FP32 graph, its integer graph and its
    rules: every tensor it names in the graph, activation widths the rules take (and the width asked, if one was),
    made for these rules. The hashes are load_table's check."""
    table.check_model(quantized_form(fp32, table.target), where)
    check_table_bits(table, rules, f"{where}: target {target}")
    widest = max((t.get("bits", 8) for t in table.tensors.values() if t.get("kind") == "activation"), default=8)
    if asked_bits is not None and (asked_bits > 8) != (widest > 8):  # the width is the calibration's choice
        raise CalibrationError(
            f"{where}: its activations are {widest}-bit, --activation-bits {asked_bits} asks "
            f"for {asked_bits}; the width is chosen when calibrating: calibrate with "
            f"--activation-bits {asked_bits} (or build from --data), or leave it out"
        )
    check_wide_kinds(graph, widest, rules, target)
    if table.target != rules.name:
        raise CalibrationError(
            f"{where}: calibrated for target rules '{table.target}', this build "
            f"needs '{rules.name}'; recalibrate with `tcc calibrate ... --target {rules.name}`"
        )


def check_table_data(
    table: CalibrationTable, where: str, data: str | Path | np.ndarray | None, fingerprint: str
) -> None:
    """A kit's table (--calib) made from the samples given with --data."""
    if table.data_fingerprint != fingerprint:
        raise CalibrationError(
            f"{where}: made from other calibration data than --data {str(data)!r} (data "
            "fingerprints differ; the same files, --calib-size and --seed give the same)"
        )


def check_table_bits(table: CalibrationTable, rules: TargetRules, where: str) -> None:
    """A table's activation widths against the rules a build needs: the first tensor of a width they do not take,
    named, with the rules whose targets take it."""
    odd = next(
        (
            (n, t["bits"])
            for n, t in table.tensors.items()
            if t.get("kind") == "activation" and not rules.takes_activation_bits(t.get("bits", 8))
        ),
        None,
    )
    if odd is not None:
        name, bits = odd
        widths = " or ".join(map(str, rules.activation_bits))
        takes = ", ".join(r.name for r in RULES.values() if r.takes_activation_bits(bits))
        raise CalibrationError(
            f"{where} runs {widths}-bit activations only (rules {rules.name!r}); the table's tensor {name!r} is "
            f"{bits}-bit, which builds for the targets of rules {takes}; or recalibrate with --activation-bits "
            f"{rules.activation_bits[0]}"
        )
