"""`tcc report --bundles` on damaged bundles (tools/fuzz.py, kind `bundle`): the bundle is opened as every reader
opens it (the manifest checked, every file against its sha256), its calibration table read by load_table, and a
model ONNX Runtime cannot load is reported without its latency. Each was a traceback: JSONDecodeError, a TypeError
in the cosine plot, protobuf's DecodeError or ORT's Fail."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tcc.errors import BuildError
from tcc.measure.timing import ort_runner
from tests.helpers import LOCAL_SPECS
from tests.helpers.damaged import edit_bundle_json, rehash, tcc

SPEC = LOCAL_SPECS / "train_tiny.yaml"


@pytest.fixture
def int8_bundle(tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
    out = tmp_path / "int8"
    assert tcc("build", SPEC, "--target", "ort", "--precision", "int8", "--data", data, "-o", out)[0] == 0
    return out


def _report(bundle, tmp_path):
    return tcc("report", "--bundles", bundle, "--rounds", "1", "--runs", "1", "-o", tmp_path / "report")


def test_a_changed_byte_is_refused_by_the_manifest(int8_bundle, tmp_path):
    table = int8_bundle / "calibration.json"
    table.write_text(table.read_text().replace("{", "{{", 1))
    code, err = _report(int8_bundle, tmp_path)
    assert code == 2 and "Traceback" not in err and "calibration.json: sha256 differs from the manifest" in err


def test_the_calibration_table_is_read_as_a_table(int8_bundle, tmp_path):
    name = next(iter(json.loads((int8_bundle / "calibration.json").read_text())["tensors"]))

    def damage(table):  # what the cosine plot read, no longer a number
        table["tensors"][name].setdefault("diagnostics", {})["cos_before"] = None

    edit_bundle_json(int8_bundle, "calibration.json", damage)
    code, err = _report(int8_bundle, tmp_path)
    assert code == 2 and "Traceback" not in err
    assert f"calibration.json: invalid at tensors/{name}/diagnostics/cos_before: None is not of type 'number'" in err


def test_a_model_onnx_runtime_cannot_load_is_reported_without_latency(int8_bundle, tmp_path):
    model = int8_bundle / "model.onnx"
    model.write_bytes(model.read_bytes()[:-40])
    rehash(int8_bundle, "model.onnx")
    with pytest.raises(BuildError, match="model.onnx: ONNX Runtime cannot load or run it"):
        ort_runner(model, None)
    code, err = _report(int8_bundle, tmp_path)
    assert code == 0 and "Traceback" not in err
    row = json.loads((tmp_path / "report" / "report.json").read_text())["bundles"][0]
    assert "ONNX Runtime cannot load or run it" in row["latency_error"] and "latency_ms" not in row
