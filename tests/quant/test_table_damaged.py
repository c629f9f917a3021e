"""Calibration tables damaged as tools/fuzz.py (kind `golden`, on a golden set's stored tables) damaged them: a gzip'd
table whose deflate stream is broken is a CalibrationError naming the file (it was zlib's own error, which is not an
OSError), a table without the graph output's entry is refused (it was a KeyError), and so is one whose weight lacks
a channel's scale where an INT8 bundle's table is lowered to QDQ (it was numpy's broadcast error)."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest

from tcc.errors import CalibrationError
from tcc.quant.table.file import load_table
from tests.helpers import LOCAL_SPECS
from tests.helpers.damaged import edit_bundle_json, edit_json, tcc

SPEC = LOCAL_SPECS / "train_tiny.yaml"


def test_a_damaged_deflate_stream(tmp_path):
    data = bytearray(gzip.compress(b'{"format": "tcc-calibration", "tensors": {}}' * 50, mtime=0))
    data[10:14] = b"\xff" * 4  # the first deflate block's header: an invalid block type
    with pytest.raises(zlib.error):
        gzip.decompress(bytes(data))
    path = tmp_path / "ort.json.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(CalibrationError, match=f"^{path}: not a JSON calibration table .*invalid block type"):
        load_table(path)


@pytest.fixture
def table(tmp_path):
    """A minmax table of the tiny test spec, and the input it was calibrated on."""
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
    code, _ = tcc("calibrate", SPEC, "--data", data, "--method", "minmax", "--no-compare", "-o", tmp_path / "c.json")
    assert code == 0
    return tmp_path / "c.json"


def test_a_table_without_the_output_entry(table, tmp_path):
    """The graph output's step is what integer outputs are compared in: a table without it (fuzzed, kind `golden`,
    and as reached by `tcc build --calib`) is refused by quantize_graph, not met as a KeyError in the self-check."""
    edit_json(table, lambda doc: doc["tensors"].pop("output"))
    code, err = tcc(
        "build", SPEC, "--target", "ort", "--precision", "int8", "--calib", tmp_path / "c.json", "-o", tmp_path / "b"
    )
    assert code == 2 and "Traceback" not in err
    assert "c.json: no entry for activation tensor 'output', which the INT8 graph quantizes" in err


def test_a_weight_with_a_scale_missing_under_tcc_diff(table, tmp_path):
    """`tcc diff BUNDLE pytorch` lowers an INT8 bundle's own table to QDQ without quantize_graph's checks first: one
    scale short of the weight's channels was numpy's broadcast error in tcc.quant.table.weight_codes (fuzzed, kind
    `bundle`, the manifest made to agree)."""
    bundle = tmp_path / "int8"
    assert tcc("build", SPEC, "--target", "ort", "--precision", "int8", "--calib", table, "-o", bundle)[0] == 0
    weight = next(n for n, t in json.loads(table.read_text())["tensors"].items() if t["kind"] == "weight")
    edit_bundle_json(bundle, "calibration.json", lambda doc: doc["tensors"][weight]["scale"].pop())
    code, err = tcc("diff", bundle, "pytorch", "--spec", SPEC, "--input", tmp_path / "x.npy")
    assert code == 2 and "Traceback" not in err
    assert f"weight {weight!r} has " in err and " output channels, the table " in err
