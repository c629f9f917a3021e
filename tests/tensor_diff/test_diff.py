"""`tcc diff`: two implementations of one model on one input, every tensor both expose, first divergence first.
An injected divergence (a perturbed weight, a perturbed scale) is found at the layer it was injected in; agreeing
implementations show none."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tcc.build import build, build_settings
from tcc.cli.main import main

SPEC = "spec/ddsnet.yaml"
SMALL = ["--set", "image_size=64"]
INJECTED = "dense2.layer1.pw.conv"  # the ONNX tensor of that conv (its BatchNorm folded in)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    from tcc.lower.to_torch import init_weights, to_torch
    from tcc.spec.loader import load_spec

    tmp = tmp_path_factory.mktemp("diff")
    model = load_spec(SPEC, {"image_size": 64})
    module = to_torch(model.graph)
    init_weights(module, 0)
    state = module.state_dict()
    torch.save(state, tmp / "w.pt")
    bad = dict(state)
    bad[f"{INJECTED}.weight"] = bad[f"{INJECTED}.weight"] * 1.2
    torch.save(bad, tmp / "bad.pt")
    x = np.random.default_rng(3).standard_normal((1, *model.input_shape)).astype(np.float32)
    np.save(tmp / "x.npy", x)
    np.save(tmp / "calib.npy", np.random.default_rng(4).standard_normal((8, *model.input_shape)).astype(np.float32))
    for target, precision in [("ort", "fp32"), ("tflite", "int8"), ("ort", "int8"), ("host", "int8")]:
        extra = (
            {"data": tmp / "calib.npy", "calibration": {"method": "kl", "calib_size": 8}} if precision == "int8" else {}
        )
        build(
            SPEC,
            build_settings(target, precision=precision, overrides={"image_size": 64}, weights=tmp / "w.pt", **extra),
            tmp / f"{target}-{precision}",
        )
    return tmp


def _on_x(setup, a, bundle: str, *options, weights: str = "w.pt") -> list[str]:
    """`tcc diff`'s arguments for A against the setup's BUNDLE on its input, the small spec with the setup's
    WEIGHTS; `options` (e.g. --spec SPEC) between the input and the spec's."""
    return [
        a,
        str(setup / bundle),
        "--input",
        str(setup / "x.npy"),
        *options,
        *SMALL,
        "--weights",
        str(setup / weights),
    ]


def _diff(capsys, *args):
    rc = main(["diff", *args, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_pytorch_and_ort_agree_on_every_tensor(setup, capsys):
    r = _diff(capsys, *_on_x(setup, SPEC, "ort-fp32"))
    assert r["first_divergence"] is None and r["compared"] >= 90
    assert min(row["cosine"] for row in r["rows"]) >= 0.99999


def test_a_perturbed_weight_diverges_first_at_its_layer(setup, capsys):
    r = _diff(capsys, *_on_x(setup, SPEC, "ort-fp32", weights="bad.pt"))
    assert r["first_divergence"]["tensor"] == INJECTED
    names = [row["tensor"] for row in r["rows"]]
    assert all(not row["diverges"] for row in r["rows"][: names.index(INJECTED)])


def test_integer_reference_and_tflite_int8_agree_bit_for_bit(setup, capsys):
    r = _diff(capsys, *_on_x(setup, "reference", "tflite-int8", "--spec", SPEC))
    assert r["first_divergence"] is None and r["compared"] >= 50
    assert max(row["lsb"] for row in r["rows"] if row["lsb"] is not None) == 0


def test_ort_int8_exposes_every_quantized_tensor_within_its_bound(setup, capsys):
    r = _diff(capsys, *_on_x(setup, "reference:ort", "ort-int8", "--spec", SPEC))
    assert r["compared"] >= 50
    first = r["first_divergence"]
    assert "input" not in [row["tensor"] for row in r["rows"]]
    assert first is None or first["lsb"] <= 3, first  # ORT's float requantization: 1-LSB tie breaks, amplified


def test_tvm_host_int8_debug_twin_exposes_every_tensor_bit_exact(setup, capsys):
    r = _diff(capsys, *_on_x(setup, "reference", "host-int8", "--spec", SPEC))
    assert r["first_divergence"] is None and r["compared"] >= 50
    assert all(row["lsb"] == 0 for row in r["rows"])


def test_a_perturbed_scale_diverges_first_at_its_tensor(setup, capsys, tmp_path):
    doc = json.loads((setup / "tflite-int8" / "calibration.json").read_text())
    scaled = "dense2.layer1.dw.relu"  # not in a concat's shared-scale group
    doc["tensors"][scaled]["scale"] *= 1.5
    (tmp_path / "t.json").write_text(json.dumps(doc))
    r = _diff(capsys, *_on_x(setup, "reference", "tflite-int8", "--spec", SPEC), "--calib", str(tmp_path / "t.json"))
    assert r["first_divergence"]["tensor"] == scaled, r["first_divergence"]


def test_table_output_and_bad_endpoints(setup, capsys):
    assert main(["diff", *_on_x(setup, SPEC, "ort-fp32", weights="bad.pt")]) == 0
    out = capsys.readouterr().out
    assert f"first divergence: {INJECTED}" in out and "\n! " in out
    assert main(["diff", "nowhere", str(setup / "ort-fp32"), "--input", str(setup / "x.npy")]) == 2
    assert "nowhere: not a bundle directory" in capsys.readouterr().err
    assert (
        main(["diff", "reference", str(setup / "ort-fp32"), "--input", str(setup / "x.npy"), "--spec", SPEC, *SMALL])
        == 2
    )
    assert "needs a calibration table" in capsys.readouterr().err
