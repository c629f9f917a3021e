"""A calibration table edited by hand is validated against the model before any of it is used: bad values end in
a CalibrationError naming the tensor (exit 2 from the CLI, nothing written), never in a traceback."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tcc.backends.base import EmitOptions
from tcc.backends.ort.backend import OrtBackend
from tcc.errors import TccError
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.reference import Reference
from tcc.quant.table.file import CalibrationTable, validate
from tests.helpers import REPO
from tests.helpers.cli import build_from_table, calibrate
from tests.helpers.quant_models import table_json, tiny_cnn, tiny_data

DDSNET = REPO / "spec" / "ddsnet.yaml"
SMALL_ARGS = [
    "--set",
    "image_size=32",
    "--set",
    "block_config=[1, 1, 1, 1]",
    "--set",
    "growth=8",
    "--set",
    "stem_ch=16",
    "--set",
    "num_classes=3",
]
SMALL_SPEC = [DDSNET, *SMALL_ARGS]  # the spec and its overrides, as a command line starts


@pytest.fixture(scope="module")
def tiny():
    model = tiny_cnn()
    return model, calibrate_onnx(model, tiny_data(16), method="kl", target="ort")


def _use(model, doc: dict, out: Path) -> None:
    """Everything a build does with a table: validate, quantize the graph, run the reference, emit and run the
    ORT artifact."""
    validate(doc)
    table = CalibrationTable(doc)
    table.check_model(model)
    qg = quantize_graph(plan(model), table)
    x = tiny_data(2, seed=5)
    Reference().run(qg, x)
    backend = OrtBackend()
    out.mkdir()
    backend.emit(model, EmitOptions("ort", "int8", table=table), out)
    backend.run(backend.load(out), x)


EDITS = {
    "nan scale": lambda t, r: t.__setitem__("scale", math.nan),
    "inf scale": lambda t, r: t.__setitem__("scale", math.inf),
    "negative scale": lambda t, r: t.__setitem__("scale", -abs(_first(t["scale"]))),
    "scale x 1e9": lambda t, r: t.__setitem__("scale", _times(t["scale"], 1e9)),
    "scale x 1e-9": lambda t, r: t.__setitem__("scale", _times(t["scale"], 1e-9)),
    "scale x 1e-30": lambda t, r: t.__setitem__("scale", _times(t["scale"], 1e-30)),
    "zero point 1e30": lambda t, r: t.__setitem__("zero_point", 10**30),
    "zero point 300": lambda t, r: t.__setitem__("zero_point", 300),
    "zero point 0.5": lambda t, r: t.__setitem__("zero_point", 0.5),
    "bits 8.0": lambda t, r: t.__setitem__("bits", 8.0),
    "bits 4": lambda t, r: t.__setitem__("bits", 4),
    "bits 32": lambda t, r: t.__setitem__("bits", 32),
    "signed string": lambda t, r: t.__setitem__("signed", "yes"),
    "kind swapped": lambda t, r: t.__setitem__("kind", "weight" if t["kind"] == "activation" else "activation"),
    "scale list shortened": lambda t, r: t.__setitem__(
        "scale", (t["scale"] if isinstance(t["scale"], list) else [t["scale"]] * 3)[:1]
    ),
    "axis 3": lambda t, r: t.__setitem__("axis", 3),
    "group 1.0": lambda t, r: t.__setitem__("group", 1.0),
    "deleted key scale": lambda t, r: t.pop("scale"),
}


def _first(v):
    return v[0] if isinstance(v, list) else v


def _times(v, f):
    return [x * f for x in v] if isinstance(v, list) else v * f


def test_150_random_edits_never_escape_as_tracebacks(tiny, tmp_path):
    """Seeded random single edits (and deleted entries) of every kind above on random tensors: each is either
    refused with a TccError (CalibrationError, exit 2) or used to the end without an exception."""
    model, table = tiny
    rng = np.random.default_rng(0)
    names = list(table.tensors)
    outcome = {"refused": 0, "used": 0}
    refused_by = set()
    for k in range(150):
        doc = table_json(table)
        name = names[rng.integers(len(names))]
        if k % 10 == 9:
            del doc["tensors"][name]
            what = "deleted entry"
        else:
            what = list(EDITS)[rng.integers(len(EDITS))]
            EDITS[what](doc["tensors"][name], rng)
        try:
            _use(model, doc, tmp_path / f"b{k}")
            outcome["used"] += 1
        except TccError as e:
            assert e.exit_code == 2, (what, name, e)
            assert "Traceback" not in str(e)
            outcome["refused"] += 1
            refused_by.add(what)
    assert outcome["refused"] > 60 and outcome["used"] > 5, outcome
    assert {"nan scale", "deleted entry", "bits 8.0", "zero point 1e30", "kind swapped"} <= refused_by


@pytest.mark.parametrize(
    "edit, message",
    [
        ("nan", "is not a finite number"),
        ("delete", "no entry for activation tensor 'stem.pool'"),
        ("huge", "requantization multiplier"),
        ("tiny", "does not fit int32"),
        ("float bits", "is not an integer"),
    ],
)
def test_bad_table_build_exits_2_naming_the_tensor(tmp_path, capsys, edit, message):
    """`tcc build --precision int8 --calib` with a hand-edited table: exit 2, the tensor named, nothing written."""
    data = tmp_path / "d.npy"
    np.save(data, np.random.default_rng(0).standard_normal((6, 3, 32, 32)).astype(np.float32))
    table = tmp_path / "calib.json"
    assert calibrate(SMALL_SPEC, data, table, "--method", "kl", "--target", "ort", "--report-samples", "2") == 0
    doc = json.loads(table.read_text())
    t = doc["tensors"]
    if edit == "nan":
        t["stem.pool"]["scale"] = math.nan
    elif edit == "delete":
        del t["stem.pool"]
    elif edit == "huge":
        # the depthwise conv after the pool: s_in * s_w / s_out ~ 1e10, beyond a Q31 multiplier
        t["stem.pool"]["scale"], t["dense1.layer0.dw.relu"]["scale"] = 1e3, 1e-9
    elif edit == "tiny":
        weight = next(n for n, e in t.items() if e["kind"] == "weight" and n.startswith("dense1"))
        t[weight]["scale"] = [s * 1e-9 for s in t[weight]["scale"]]
    else:
        t["stem.pool"]["bits"] = 8.0
    table.write_text(json.dumps(doc))  # json writes NaN as the (non-standard) NaN token
    capsys.readouterr()
    out = tmp_path / "bundle"
    assert build_from_table(SMALL_SPEC, "ort", table, out) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not out.exists() and not list(tmp_path.glob(".*tcc*"))
