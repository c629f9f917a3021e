"""A calibration's stages (tcc.quant.stage): one statistics pass (Measured) serves every method, each method's
Stage scaled from it gives the table a calibration with that method alone gives; the stage's method decides the
search and, at 16 bits, the thresholds."""

from __future__ import annotations

import pytest

from tcc.quant import calibrate as calibration
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.settings import CalibrationSettings, Provenance
from tcc.quant.stage import Stage
from tcc.quant.table.steps import Steps
from tests.helpers.quant_models import table_json, tiny_cnn, tiny_data

FAST = {"cos_steps": 10, "cos_rounds": 1}


def _without_times(table) -> dict:
    return {k: v for k, v in table_json(table).items() if k != "timing_s"}


def test_one_statistics_pass_serves_every_method():
    model, x = tiny_cnn(), tiny_data(12)
    run = calibration._run(model, x, CalibrationSettings(**FAST), Provenance(), None)
    measured = calibration._measured(run, x, equalization=False, rows_needed=True)
    for method in ("kl+cos", "minmax", "percentile", "kl"):
        table = calibration._with_layer_steps(calibration._scaled(run, measured, method), Steps())
        alone = calibrate_onnx(model, x, method=method, **FAST)
        assert _without_times(table) == _without_times(alone), method
        assert table.method == method


@pytest.mark.parametrize(
    "method, bits, base, searching",
    [("kl+cos", 8, "kl", True), ("kl+cos", 16, "minmax", False), ("kl", 16, "minmax", False), ("percentile", 16,
     "percentile", False), ("minmax", 8, "minmax", False)],
)  # fmt: skip
def test_a_stage_s_method_sets_its_thresholds_and_search(method, bits, base, searching):
    model, x = tiny_cnn(), tiny_data(4)
    run = calibration._run(model, x, CalibrationSettings(target="tvm", activation_bits=bits), Provenance(), None)
    stage = Stage.of(run, calibration._measured(run, x, equalization=False, rows_needed=False), method)
    assert (stage.base, stage.searching) == (base, searching)
