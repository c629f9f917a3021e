"""calibrate_onnx end to end on a small model: every method, target constraints, the JSON table and its checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tcc.errors import DataError
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.settings import Provenance
from tcc.quant.table.file import CalibrationError, CalibrationTable, load_table, model_sha256
from tests.helpers.quant_models import tiny_cnn, tiny_data, tiny_spec_and_data


@pytest.fixture(scope="module")
def tables(model, data):
    return {
        m: calibrate_onnx(
            model, data, method=m, cos_steps=40, cos_rows=1500, provenance=Provenance(None, "a" * 64, "b" * 64)
        )
        for m in ("minmax", "percentile", "kl", "kl+cos")
    }


def test_every_method_gives_a_valid_table(tables, model):
    for method, t in tables.items():
        t.check_schema()
        assert t.method == method and t.samples == 24 and t.model_hash == model_sha256(model)
        acts = {k: v for k, v in t.tensors.items() if v["kind"] == "activation"}
        assert "stem.conv" not in acts and "stem.relu" in acts  # fused conv output: no scale
        for v in acts.values():
            top = 127 if v["signed"] or v["zero_point"] == 128 else 255
            assert (
                v["scale"] * top == pytest.approx(max(v["threshold"], 1e-30), rel=1e-6)
                or "group" in v
                or v["method"] == "kl+cos"
            )
        assert t.tensors["dw.relu"]["signed"] is False  # never negative: unsigned (eq. 8), zero point 0
        # shares the concat's step size with the signed pw output (written for ORT as u8 with zero point 128, the
        # grid of s8 with zero point 0 in the type ORT's x86 kernels take) but keeps zero point 0: ReLU fusable
        relu, pw = t.tensors["stem.relu"], t.tensors["pw"]
        assert (relu["signed"], relu["zero_point"], pw["signed"], pw["zero_point"]) == (False, 0, False, 128)
        assert relu["scale"] == pw["scale"]
        assert len(t.tensors["pw.weight"]["scale"]) == 6 and t.tensors["fc.weight"]["axis"] == 0
    mm, pc, kl = (tables[m].tensors["dw.relu"]["threshold"] for m in ("minmax", "percentile", "kl"))
    assert kl <= mm and pc <= mm
    s = tables["kl+cos"].summary
    assert s["layers_searched"] == 4 and s["mean_cos_after"] >= s["mean_cos_before"]
    layer = tables["kl+cos"].layers["pw"]
    assert layer["cos_after"] >= layer["cos_before"] and layer["input"] == "dw.relu"
    assert tables["kl+cos"].tensors["pw.weight"]["method"] == "minmax+cos"


def test_concat_and_pool_share_one_scale(tables):
    t = tables["kl"]  # target ort
    group = next(g for g in t.groups if "cat" in g)
    assert set(group) == {"cat", "pool", "pw", "stem.relu"}
    assert len({t.tensors[n]["scale"] for n in group}) == 1
    tvm = calibrate_onnx(tiny_cnn(), tiny_data(24), method="kl", target="tvm")
    assert len({tvm.tensors[n]["signed"] for n in group}) == 1  # pw is signed, so the whole group is (s8, zp 0)


def test_tvm_keeps_int8_and_split_groups_keep_signedness(model, data):
    t = calibrate_onnx(model, data, method="minmax", target="tvm")
    assert (t.tensors["stem.relu"]["signed"], t.tensors["stem.relu"]["zero_point"]) == (True, 0)
    from tcc.quant.table.rules import TargetRules

    s = calibrate_onnx(
        model, data, method="minmax", target=TargetRules("_split", unsigned_ok=True, split_mixed_groups=True)
    )
    a, b = s.tensors["stem.relu"], s.tensors["pw"]
    assert not a["signed"] and b["signed"] and a["scale"] == b["scale"]  # one step size, zero points 0 and 0


def test_tflite_gets_asymmetric_activations(model, data):
    t = calibrate_onnx(model, data, method="minmax", target="tflite")
    v = t.tensors["dw.relu"]
    assert v["zero_point"] == -128 and v["signed"] and not v["symmetric"]
    assert t.tensors["input"]["zero_point"] == 0 and t.tensors["pw.weight"]["symmetric"]


def test_save_load_and_hash_checks(tables, tmp_path):
    t = tables["kl+cos"]
    p = t.save(tmp_path / "calib.json")
    back = load_table(p, spec_hash="a" * 64, weights_hash="b" * 64)
    assert back == CalibrationTable(json.loads(t.to_json()))
    with pytest.raises(CalibrationError, match="different weights"):
        load_table(p, weights_hash="c" * 64)
    with pytest.raises(CalibrationError, match="different spec"):
        load_table(p, spec_hash="c" * 64)
    with pytest.raises(CalibrationError, match="different FP32 model"):
        back.check(model_hash="d" * 64)
    doc = json.loads(p.read_text())
    doc["tensors"]["dw.relu"]["scale"] = -1.0
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match="bad.json: invalid at tensors/dw.relu/scale"):
        load_table(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(CalibrationError, match="not a JSON calibration table"):
        load_table(tmp_path / "junk.json")
    with pytest.raises(CalibrationError, match="no such"):
        load_table(tmp_path / "none.json")


def test_table_must_fit_the_model(tables):
    other = tiny_cnn(seed=1)
    tables["kl"].check_model(other)  # same structure: fine
    from tcc.quant.intgraph.match import plan
    from tcc.quant.intgraph.qgraph import quantize_graph
    from tests.helpers.quant_models import tiny_cnn as make

    small = make(classes=3)
    tables["kl"].check_model(small)  # the same names ...
    # the first mismatch found names it: the weight's scales, or (bias correction on) the bias's shifts
    with pytest.raises(CalibrationError, match=r"fc\.(weight' has 3 output|bias' has 3) channels, the table 5"):
        quantize_graph(plan(small), tables["kl"])  # ... but not the same channels


def test_bad_arguments(model, data):
    with pytest.raises(DataError, match="unknown calibration method 'mse'"):
        calibrate_onnx(model, data, method="mse")
    with pytest.raises(DataError, match="unknown calibration target"):
        calibrate_onnx(model, data, target="nope")
    bad = data.copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        calibrate_onnx(model, bad)


def test_calibrate_cli_writes_a_table_and_reports_bad_data(tmp_path, capsys):
    """`tcc calibrate` end to end on a tiny spec and a .npy of calibration data; bad data is a clean exit 2."""
    import json

    import numpy as np

    from tcc.cli.main import main as cli

    spec, data = tiny_spec_and_data(tmp_path, 8)
    out = tmp_path / "calib.json"
    assert cli(["calibrate", str(spec), "--data", str(data), "--method", "minmax", "-o", str(out)]) == 0
    table = json.loads(out.read_text())
    assert table and "wrote" in capsys.readouterr().out
    np.save(data, np.zeros((8, 1, 16, 16), np.float32))
    bad = tmp_path / "bad.json"
    assert cli(["calibrate", str(spec), "--data", str(data), "-o", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "calib.npy" in err and "Traceback" not in err and not bad.exists()
