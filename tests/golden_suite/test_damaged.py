"""A golden set whose stored files were damaged (tools/fuzz.py, kind `golden`): golden.json is checked field by
field, unreadable .npz members and tables are named, a stored output that is missing or of another shape fails its
entry, a stored table that does not fit the model is named before anything is built from it, and `update` brings an
INT8 entry's reference along. Each was a traceback: KeyError, zlib.error, NotImplementedError, tokenize.TokenError,
numpy's broadcast ValueError. Made here from the tiny test spec, no fixtures needed."""

from __future__ import annotations

import gzip
import json
import shutil
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image

from tcc.golden import check
from tcc.golden.store import npz_bytes, read_npz
from tests.helpers import LOCAL_SPECS
from tests.helpers.damaged import edit_json, tcc

ENTRIES = ["pytorch-fp32", "ort-fp32", "reference-ort", "ort-int8"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    shutil.copy(LOCAL_SPECS / "train_tiny.yaml", root / "tiny.yaml")
    for i, name in enumerate(["a.png", "b.png"]):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / name)
    plan = {
        "format": "tcc-golden/1",
        "defaults": {
            "inputs": {"seeded": 1, "images": ["a.png"]},
            "calibration": {"method": "minmax", "crops": 2, "seed": 0, "images": ["a.png", "b.png"]},
        },
        "models": {"tiny": {"spec": "tiny.yaml", "set": {"image_size": 16}, "entries": ENTRIES}},
    }
    (root / "golden.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    assert tcc("golden", "update", root, "-q")[0] == 0
    return root


@pytest.fixture
def golden(stored, tmp_path):
    return shutil.copytree(stored, tmp_path / "golden")


def test_a_record_without_its_identity(golden):
    edit_json(golden / "golden.json", lambda doc: doc["models"]["tiny"].pop("identity"))
    code, err = tcc("golden", "check", golden, "-q")
    assert code == 2 and "Traceback" not in err
    assert "golden.json: not a golden record: at models.tiny, 'identity' is a required property" in err


def test_a_record_stored_under_another_rule(golden):
    edit_json(golden / "golden.json", lambda doc: doc["models"]["tiny"]["entries"]["ort-fp32"].update(rule="measured"))
    code, err = tcc("golden", "check", golden, "-q")
    assert code == 2 and "at models.tiny.entries.ort-fp32, 'tolerance' is a required property" in err
    edit_json(
        golden / "golden.json",
        lambda doc: doc["models"]["tiny"]["entries"]["ort-fp32"].update(
            rule="measured", tolerance={"max_abs_over_scale": 0.1}
        ),
    )
    assert "stored under the rule 'measured', judged now by 'fp32'" in _failed(golden, "ort-fp32")["ort-fp32"]


def _failed(golden, *entries) -> dict:
    """entry -> summary of each entry `tcc golden check` fails (its exit code 1 checked)."""
    code, err = tcc("golden", "check", golden, "-q", *[a for e in entries for a in ("--entry", e)])
    assert code == 1 and "Traceback" not in err
    return {r.entry: r.summary for r in check(golden, entries=list(entries)) if r.failed}


def test_stored_outputs_missing_or_of_another_shape_fail_their_entries(golden):
    outputs = golden / "tiny" / "outputs.npz"
    arrays = read_npz(outputs)
    outputs.write_bytes(npz_bytes({k: v for k, v in arrays.items() if k != "reference-ort"}))
    assert _failed(golden, "ort-int8")["ort-int8"].startswith("no stored output 'reference-ort' in outputs.npz")
    outputs.write_bytes(npz_bytes({**arrays, "pytorch-fp32": arrays["pytorch-fp32"][..., None]}))
    assert _failed(golden, "ort-fp32")["ort-fp32"].startswith("the stored output 'pytorch-fp32' is float32 [2, 2, 1]")
    outputs.unlink()  # was KeyError: 'pytorch-fp32'
    assert _failed(golden, "pytorch-fp32")["pytorch-fp32"].startswith("no stored output 'pytorch-fp32'")


def test_an_npz_member_that_does_not_decompress(golden):
    outputs = golden / "tiny" / "outputs.npz"
    data = bytearray(outputs.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the first member's central directory entry: its compression method
    data[entry + 10 : entry + 12] = (99).to_bytes(2, "little")
    outputs.write_bytes(bytes(data))
    code, err = tcc("golden", "check", golden, "-q")
    assert code == 2 and "Traceback" not in err
    assert "outputs.npz: not a readable golden .npz (That compression method is not supported)" in err


def test_update_brings_the_reference_of_an_int8_entry_along(golden):
    (golden / "tiny" / "outputs.npz").unlink()
    code, err = tcc("golden", "update", golden, "-q", "--entry", "ort-int8")
    assert code == 0 and "Traceback" not in err  # was KeyError: 'reference-ort'
    assert {"reference-ort", "ort-int8"} <= set(read_npz(golden / "tiny" / "outputs.npz"))


def test_update_over_a_table_whose_bytes_are_damaged(golden):
    table = golden / "tiny" / "calibration" / "ort.json.gz"
    data = bytearray(table.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = bytes(8)  # the deflate stream broken (zlib.error or a bad CRC)
    table.write_bytes(bytes(data))
    code, err = tcc("golden", "update", golden, "-q", "--entry", "ort-int8")
    assert code == 0 and "Traceback" not in err  # was zlib.error, reading the damaged table to compare with it
    assert not [r for r in check(golden, entries=["ort-int8"]) if r.failed]


def test_an_npy_header_numpy_cannot_parse(golden):
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3"  # cut short: tokenize's TokenError
    header += b" " * (118 - len(header)) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(24)
    with zipfile.ZipFile(golden / "tiny" / "inputs.npz", "w") as z:
        z.writestr("x.npy", member)
    code, err = tcc("golden", "check", golden, "-q")
    assert code == 2 and "Traceback" not in err and "inputs.npz: not a readable golden .npz" in err


def test_a_stored_table_that_does_not_fit_the_model(golden):
    table = golden / "tiny" / "calibration" / "ort.json.gz"
    doc = json.loads(gzip.decompress(table.read_bytes()))
    weight = next(name for name, t in doc["tensors"].items() if t["kind"] == "weight")
    doc["tensors"][weight]["scale"].append(0.5)  # one scale more than the weight has channels
    table.write_bytes(gzip.compress(json.dumps(doc).encode(), mtime=0))
    failed = _failed(golden, "ort-int8")  # was numpy's broadcast error, quantizing the weight for ORT's QDQ model
    assert failed["ort-int8"].startswith(f"CalibrationError: calibration table: weight {weight!r} has ")


def test_a_record_naming_more_inputs_than_are_stored(golden):
    edit_json(golden / "golden.json", lambda doc: doc["models"]["tiny"]["inputs"].append({"name": "extra"}))
    rows = {r.entry: r for r in check(golden)}  # was an IndexError, judging input 3 of 2
    assert rows["inputs"].failed and "3 named in golden.json" in rows["inputs"].summary
    assert set(rows) == {"graph", "inputs"}


def test_a_plan_file_name_too_long_for_the_file_system(golden):
    plan = golden / "golden.yaml"
    plan.write_text(plan.read_text().replace("spec: tiny.yaml", "spec: " + "tiny.yaml" * 40), encoding="utf-8")
    code, err = tcc("golden", "check", golden, "-q")  # was OSError: [Errno 36] File name too long
    assert code == 2 and "Traceback" not in err and ": not a usable file name: tiny.yaml" in err
    assert "(File name too long)" in err and err.startswith(f"{plan}:")


def test_a_record_holding_infinity(golden):
    """Python's json reads -Infinity, and `update` could not write the record back (a ValueError of json.dumps)."""
    edit_json(
        golden / "golden.json",
        lambda doc: doc["models"]["tiny"]["entries"]["ort-fp32"]["recorded"].update(cosine_min=float("-inf")),
    )
    code, err = tcc("golden", "update", golden, "-q", "--entry", "pytorch-fp32")
    assert code == 2 and "Traceback" not in err
    assert "at models.tiny.entries.ort-fp32.recorded.cosine_min, -inf is not a finite number" in err
