"""The golden suite tests itself: a perturbed weight, calibration scale or rounding rule fails the right entry,
named with its model, backend, precision, input and worst element; `update` rewrites only what changed."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from tcc.golden import check, format_rows, update
from tcc.golden.store import npz_bytes, read_npz
from tests.helpers.golden_util import copy_model
from tests.helpers.marks import needs_fixtures

pytestmark = needs_fixtures
ENTRIES = ["pytorch-fp32", "ort-fp32", "reference-tvm", "calibration-tvm"]


@pytest.fixture()
def golden(tmp_path):
    return copy_model("resnet18", tmp_path / "golden", ENTRIES)


def _by_entry(rows):
    return {r.entry: r for r in rows}


def test_unperturbed_copy_passes(golden):
    rows = check(golden)
    assert not [r for r in rows if r.failed], format_rows(rows)
    assert set(ENTRIES) <= {r.entry for r in rows}


def test_a_perturbed_weight_fails_the_backend_entry_naming_input_and_element(golden, monkeypatch):
    from onnx import numpy_helper

    from tcc.golden import produce

    original = produce.ModelRun.__init__

    def perturbed(self, *a, **k):  # the ONNX every backend builds from, one conv weight off by 0.1 %
        original(self, *a, **k)
        init = next(t for t in self.fe.onnx.graph.initializer if t.name == "layer3.0.conv1.weight")
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.001), init.name))

    monkeypatch.setattr(produce.ModelRun, "__init__", perturbed)
    rows = _by_entry(check(golden))
    assert rows["pytorch-fp32"].status == "ok"  # PyTorch does not read the ONNX
    bad = rows["ort-fp32"]
    assert bad.failed, format_rows(list(rows.values()))
    text = "\n".join(bad.details)
    assert "resnet18 / ort fp32: input seed0" in text and "output[" in text and "GC.png" in text
    assert rows["graph"].failed  # and the FP32 graph's hash says where it came from


def test_a_perturbed_scale_fails_the_reference_and_names_the_tensor(golden):
    path = golden / "resnet18" / "calibration" / "tvm.json.gz"
    doc = json.loads(gzip.decompress(path.read_bytes()))
    acts = sorted(n for n, t in doc["tensors"].items() if t["kind"] == "activation")
    name = acts[len(acts) // 2]
    doc["tensors"][name]["scale"] *= 1.05
    path.write_bytes(gzip.compress(json.dumps(doc, indent=1).encode()))
    rows = _by_entry(check(golden))
    assert rows["ort-fp32"].status == "ok" and rows["pytorch-fp32"].status == "ok"
    assert rows["reference-tvm"].failed and "elements differ" in "\n".join(rows["reference-tvm"].details)
    cal = rows["calibration-tvm"]
    assert cal.failed and any(
        d.startswith(f"resnet18 / calibration table, tvm rules: tensor {name}:") for d in cal.details
    ), format_rows([cal])


def test_a_changed_rounding_rule_fails_the_integer_reference(golden, monkeypatch):
    from tcc.quant.intgraph import reference

    # the tvm rules' requantization (one rounding, half to even) replaced by gemmlowp's (two, half away from zero)
    monkeypatch.setitem(reference.ROUNDING_FUNCTIONS, "half_even", reference.gemmlowp_multiply)
    rows = _by_entry(check(golden, entries=["reference-tvm"]))
    r = rows["reference-tvm"]
    assert r.failed and "LSB" in "\n".join(r.details), format_rows([r])


def test_update_rewrites_only_what_changed(golden):
    before = {p: p.read_bytes() for p in golden.rglob("*") if p.is_file() and p.name != "golden.yaml"}
    rows = update(golden, entries=["pytorch-fp32", "ort-fp32", "reference-tvm"])
    assert {r.status for r in rows} == {"unchanged"}, [(r.entry, r.status) for r in rows]
    assert {p: p.read_bytes() for p in before} == before  # byte for byte: nothing rewritten

    outputs = golden / "resnet18" / "outputs.npz"
    stored = read_npz(outputs)
    lsb = 1e-3
    stored["reference-tvm"] = stored["reference-tvm"] + np.float32(lsb)
    outputs.write_bytes(npz_bytes(stored))
    rows = _by_entry(update(golden, entries=["ort-fp32", "reference-tvm"]))
    assert rows["ort-fp32"].status == "unchanged"
    assert rows["reference-tvm"].status == "changed" and "LSB" in rows["reference-tvm"].summary
    assert outputs.read_bytes() == before[outputs]  # back to the true output, byte for byte
    assert (golden / "golden.json").read_bytes() == before[golden / "golden.json"]


def test_update_refuses_an_inconsistent_golden_set(golden, monkeypatch):
    from tcc.golden import produce

    original = produce.ModelRun.produce

    def broken(self, entry, x, table=None):
        p = original(self, entry, x, table)
        if entry.id == "ort-fp32":
            p.output = p.output * np.float32(1.01)
        return p

    before = {p: p.read_bytes() for p in golden.rglob("*") if p.is_file()}
    monkeypatch.setattr(produce.ModelRun, "produce", broken)
    rows = _by_entry(update(golden, entries=["ort-fp32"]))
    assert rows["ort-fp32"].failed and "nothing was written" in rows["ort-fp32"].summary
    assert {p: p.read_bytes() for p in golden.rglob("*") if p.is_file()} == before


def test_bad_plan_names_file_line_and_column(tmp_path, capsys):
    from tcc.cli.main import main

    plan = tmp_path / "golden.yaml"
    plan.write_text("format: tcc-golden/1\nmodels:\n  m:\n    spec: x.yaml\n    entries: [bogus]\n")
    assert main(["golden", "check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "golden.yaml:5:14: unknown golden entry 'bogus'" in err
    plan.write_text("format: tcc-golden/1\nmodels:\n  m:\n    spec: x.yaml\n")
    assert main(["golden", "check", str(tmp_path)]) == 2
    assert "golden.yaml:4:11: no such file: x.yaml" in capsys.readouterr().err
    plan.write_text("format: tcc-golden/1\nmodels:\n  m:\n    spec: x.yaml\n    weigths: w.pt\n")
    assert main(["golden", "check", str(tmp_path)]) == 2
    assert "golden.yaml:5:5: Additional properties are not allowed ('weigths'" in capsys.readouterr().err


def _table(scale, cos):
    tensors = {"conv.weight": {"kind": "weight", "scale": scale}}
    layers = {"conv": {"weight": "conv.weight", "cos_after": cos}}
    return tensors, layers


def test_moved_weight_scale_is_judged_by_its_layers_cosine():
    """A weight scale moved beyond the step tolerance passes only when its layer's searched cosine did not drop
    (a flat optimum moved by float rounding on another CPU), and fails when the cosine fell."""
    from tcc.golden.judge import LAYER_COS_TIE, scales

    stored_t, stored_l = _table([0.01, 0.02], 0.99967)
    moved_t, same_l = _table([0.01, 0.0089], 0.99967 - LAYER_COS_TIE / 10)
    _, worse_l = _table(None, 0.99967 - 10 * LAYER_COS_TIE)
    tie = scales(moved_t, stored_t, same_l, stored_l)
    assert tie.passed and "equal optimum" in tie.numbers["notes"][0]
    worse = scales(moved_t, stored_t, worse_l, stored_l)
    assert not worse.passed and "weight scales moved by up to 0.555" in worse.failures[0]
    assert not scales(moved_t, stored_t).passed  # without the layer records: the step tolerance alone
