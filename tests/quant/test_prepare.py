"""The INT8 preflight (tcc.quant.prepare): one set of checks, so calibrate_onnx, `tcc calibrate` (calibrate) and
`tcc build --precision int8` (build) refuse the same mistake with the same message, before any work."""

from __future__ import annotations

import pytest

from tcc.build import build, build_settings
from tcc.errors import BuildError, CalibrationError, DataError
from tcc.quant.calibrate import calibrate, calibrate_onnx
from tcc.quant.place.placer import PlaceOptions
from tcc.quant.prepare import resolve
from tcc.quant.settings import CalibrationRequest, CalibrationSettings, StepSwitches
from tcc.quant.table.rules import RULES
from tcc.quant.table.steps import Steps
from tests.helpers.quant_models import tiny_cnn, tiny_data, tiny_spec_and_data


def _everywhere(tmp_path, message: str, **settings) -> None:
    """calibrate_onnx, calibrate and build with these calibration settings: each refuses with `message`; the last
    two before the spec is read (it does not exist)."""
    _, data = tiny_spec_and_data(tmp_path, 4)
    missing = tmp_path / "missing.yaml"
    with pytest.raises(DataError, match=message):
        calibrate_onnx(tiny_cnn(), tiny_data(4), **settings)
    with pytest.raises(DataError, match=message):
        calibrate(missing, data, CalibrationRequest(CalibrationSettings(**settings)))
    build_keywords = {k: v for k, v in settings.items() if k != "target"}  # a build's rules are its target's
    target = settings.get("target", "ort")
    with pytest.raises(DataError, match=message):
        build(missing, build_settings(target, precision="int8", data=data, calibration=build_keywords), tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_an_unknown_method_is_refused_everywhere_before_any_work(tmp_path):
    _everywhere(tmp_path, r"unknown calibration method 'mse'; expected one of minmax", method="mse")


def test_a_percentile_out_of_range_is_refused_everywhere_before_any_work(tmp_path):
    _everywhere(tmp_path, r"the percentile method's percentile must be in \(0, 100\], not 100.5", percentile=100.5)


def test_a_width_the_rules_do_not_take_is_refused_everywhere_before_any_work(tmp_path):
    _everywhere(tmp_path, r"activation_bits=16: target rules 'ort' take 8-bit activations only", activation_bits=16)


def test_a_build_says_what_its_int8_inputs_lack(tmp_path):
    spec, data = tiny_spec_and_data(tmp_path, 4)
    cases = [
        ({"data": data}, "calib= / data= apply to precision='int8' only"),  # Python's words for Python's callers
        ({"precision": "int8"}, "precision='int8' needs a calibration table"),
        ({"precision": "int8", "data": data, "calib": data}, "give either calib="),
        (
            {"precision": "int8", "calib": data, "calibration": {"placement": PlaceOptions(min_cos=0.999)}},
            "choose the placement while calibrating",
        ),
    ]
    for keywords, message in cases:
        with pytest.raises(BuildError, match=message):
            build(spec, build_settings("ort", **keywords), tmp_path / "b")


def test_an_inactive_placement_is_no_placement_in_a_build(tmp_path):
    """`tcc build` always passes the placement options; unless they place, a table given with --calib is fine and
    their values are not checked (`tcc calibrate` checks them whenever they are given)."""
    spec, data = tiny_spec_and_data(tmp_path, 4)
    with pytest.raises(DataError, match="samples=0: must be at least 1"):
        calibrate(spec, data, CalibrationRequest(placement=PlaceOptions(samples=0)))
    settings = build_settings(
        "ort", precision="int8", calib=tmp_path / "none.json", calibration={"placement": PlaceOptions(samples=0)}
    )
    with pytest.raises(CalibrationError, match="no such calibration table"):  # past the preflight
        build(spec, settings, tmp_path / "b")


def test_resolve_takes_the_switches_over_the_spec_and_the_width_from_it():
    from tcc.quant.intgraph.match import plan

    graph = plan(tiny_cnn(), rules="tvm")
    section = {"bias_correction": True, "activation_bits": 16}
    request = CalibrationRequest(step_switches=StepSwitches(bias_correction=False, rounding=True))
    settings = resolve(request, section, graph, RULES["tvm"], "host")
    assert settings.activation_bits == 16 and settings.steps == Steps(bias_correction=False, rounding=True)
    given = CalibrationRequest(CalibrationSettings(steps=Steps(), activation_bits=8))
    assert resolve(given, section, graph, RULES["tvm"], "host").steps == Steps()
    with pytest.raises(DataError, match="rounding_budget= needs rounding=True"):
        resolve(CalibrationRequest(step_switches=StepSwitches(rounding_budget=5.0)), {}, graph, RULES["tvm"], None)
    # a spec's asymmetric grids speak for the rules that take them (ORT's); elsewhere the step is off, not free
    ort_graph = plan(tiny_cnn(), rules="ort")
    assert resolve(CalibrationRequest(), {"asymmetric": True}, ort_graph, RULES["ort"], "ort").steps.asymmetric is True
    assert resolve(CalibrationRequest(), {}, ort_graph, RULES["ort"], "ort").steps.free == (
        "asymmetric",
        "bias_correction",
    )
    assert resolve(CalibrationRequest(), {"asymmetric": True}, graph, RULES["tvm"], "host").steps.asymmetric is False
    assert resolve(CalibrationRequest(), {}, graph, RULES["tvm"], "host").steps.free == ("bias_correction",)
