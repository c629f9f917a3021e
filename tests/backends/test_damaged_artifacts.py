"""Backends reading a bundle's own files after they were damaged, with the manifest made to agree (tools/fuzz.py,
kind `bundle`): TFLite's tflite.json is checked field by field and against the model (a string tensor index was a
TypeError inside LiteRT's bindings, one past its tensors LiteRT's ValueError, a 2-D tensor said to be NHWC numpy's),
and `tcc diff` on an ORT bundle whose model.onnx no longer parses says so (was protobuf's DecodeError)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import LOCAL_SPECS
from tests.helpers.damaged import edit_bundle_json, rehash, tcc

SPEC = LOCAL_SPECS / "train_tiny.yaml"


@pytest.fixture
def x(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32))
    return path


def _build(tmp_path, *options):
    out = tmp_path / "bundle"
    assert tcc("build", SPEC, *options, "-o", out)[0] == 0
    return out


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("index", "1e9", "tflite.json: invalid at tensors.flat.index: '1e9' is not of type 'integer'"),
        ("nhwc", "yes", "tflite.json: invalid at tensors.flat.nhwc: 'yes' is not of type 'boolean'"),
        ("index", 10**6, "tflite.json: tensor 'flat' at index 1000000, the model has "),  # LiteRT's ValueError
        ("nhwc", True, "tflite.json: tensor 'flat' is [1, 16], not a batch of NHWC images"),  # numpy's, transposing it
    ],
)
def test_tflite_info_is_checked(tmp_path, x, field, value, message):
    pytest.importorskip("ai_edge_litert")
    bundle = _build(tmp_path, "--target", "tflite")
    edit_bundle_json(bundle, "tflite.json", lambda info: info["tensors"]["flat"].update({field: value}))
    code, err = tcc("diff", bundle, "pytorch", "--spec", SPEC, "--input", x)
    assert code == 2 and "Traceback" not in err and message in err


def test_tflite_int8_io_needs_its_quantization(tmp_path, x):
    pytest.importorskip("ai_edge_litert")
    bundle = _build(tmp_path, "--target", "tflite")
    edit_bundle_json(bundle, "tflite.json", lambda info: info.update({"input_dtype": "int8"}))
    code, err = tcc("predict", "--artifact", bundle, "--input", x)
    assert code == 2 and "Traceback" not in err
    assert "tflite.json: invalid at (top level): 'input_quantization' is a required property" in err


def test_diff_of_an_ort_bundle_whose_model_does_not_parse(tmp_path, x):
    bundle = _build(tmp_path, "--target", "ort")
    data = (bundle / "model.onnx").read_bytes()
    (bundle / "model.onnx").write_bytes(data[:193] + data[239:])  # the fuzzer's cut: protobuf's wire format broken
    rehash(bundle, "model.onnx")
    code, err = tcc("diff", bundle, "pytorch", "--spec", SPEC, "--input", x)
    assert code == 2 and "Traceback" not in err
    assert "model.onnx: ONNX Runtime cannot load the artifact" in err
