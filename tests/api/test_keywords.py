"""Keyword arguments onto the settings records (tcc.keywords): every keyword the API has taken still sets the field
it meant, nested records take mappings, and a misspelt keyword is a TypeError naming the nearest field."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tcc.backends import KitOptions, TfliteOptions, TvmOptions
from tcc.build import BuildSettings, build_settings
from tcc.frontend import Weights
from tcc.keywords import keyword_names, with_keywords
from tcc.quant.settings import CalibrationRequest, CalibrationSettings, StepSwitches


def test_a_keyword_sets_a_field_of_the_record_or_of_a_record_it_holds():
    s = build_settings(
        "host",
        precision="int8",
        tune=8,
        io="int8",
        npu_mode="NPU2",
        seed=3,
        calib="t.json",
        calibration={"method": "kl", "calib_size": 16, "step_switches": {"rounding": True}},
    )
    assert s.precision == "int8" and s.weights == Weights(seed=3) and s.int8.calib == "t.json"
    assert (s.tvm, s.tflite, s.kit) == (TvmOptions(tune=8), TfliteOptions(io="int8"), KitOptions(npu_mode="NPU2"))
    request = s.int8.calibration
    assert request.settings == CalibrationSettings(method="kl") and request.calib_size == 16
    assert request.step_switches == StepSwitches(rounding=True)
    assert build_settings("host") == BuildSettings("host") and BuildSettings("host", tvm=TvmOptions()).tvm.tune == 0


def test_a_checkpoint_path_for_weights_is_that_checkpoint():
    assert BuildSettings("ort", weights="w.pt").weights == Weights("w.pt")
    assert build_settings("ort", weights=Weights("w.pt", by_order=True), seed=2).weights == Weights(
        "w.pt", True, None, 2
    )


def test_a_misspelt_keyword_names_the_nearest_field():
    with pytest.raises(TypeError, match=r"build\(\) got an unexpected keyword argument 'tunes' \(did you mean 'tune'"):
        build_settings("host", tunes=8)
    with pytest.raises(TypeError, match=r"calibrate\(\) .* 'methd' \(did you mean 'method'"):
        with_keywords(CalibrationRequest(), {"methd": "kl"}, "calibrate")
    with pytest.raises(TypeError, match="'sed'"):
        build_settings("host", calibration={"sed": 1})


def test_a_name_two_held_records_share_is_ambiguous():
    @dataclass(frozen=True)
    class A:
        seed: int = 0

    @dataclass(frozen=True)
    class B:
        a: A = field(default_factory=A)
        b: A = field(default_factory=A)

    with pytest.raises(TypeError, match="'seed' is ambiguous: a field of a and b"):
        with_keywords(B(), {"seed": 1}, "f")
    assert with_keywords(B(), {"b": {"seed": 1}}, "f") == B(b=A(1))


def test_every_keyword_of_the_build_names_one_field():
    names = keyword_names(BuildSettings("ort"))
    assert len(names) == len(set(names)) and {"tune", "io", "npu_mode", "calib", "data", "seed"} <= set(names)
