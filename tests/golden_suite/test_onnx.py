"""A golden set whose model is an ONNX file (imported in memory, its `set:` the import's options): stored, checked
through the Python API the command stands on, and a changed file's weights fail the graph; a weights file beside it
is refused at its golden.yaml line."""

from __future__ import annotations

import json

import skimage.data
from PIL import Image

import tcc
from tcc.lower.to_torch import init_weights
from tests.helpers import REPO
from tests.onnx_import.common import tcc_cli

SPEC = REPO / "tests" / "specs" / "train_tiny.yaml"
ENTRIES = ["pytorch-fp32", "ort-fp32", "calibration-ort", "reference-ort", "ort-int8"]


def _onnx(path, seed: int):
    model = tcc.load_spec(SPEC)
    module = init_weights(tcc.to_torch(model.graph, inference_only=True), seed=seed)
    path.write_bytes(tcc.to_onnx(model.graph, module.state_dict()).SerializeToString())
    return path


def _golden_set(root, extra: str = ""):
    root.mkdir()
    Image.fromarray(skimage.data.immunohistochemistry()[:128, :128]).save(root / "ihc.png")
    _onnx(root / "tiny.onnx", seed=1)
    (root / "golden.yaml").write_text(
        "format: tcc-golden/1\nmodels:\n  tiny:\n    spec: tiny.onnx\n"
        "    set: {mean: [0.45, 0.45, 0.45], std: [0.25, 0.25, 0.25]}\n"
        + extra
        + "    inputs: {seeded: 1, images: [ihc.png]}\n    calibration: {method: kl, crops: 4, seed: 0}\n"
        f"    entries: [{', '.join(ENTRIES)}]\n"
    )
    return root


def test_an_onnx_model_is_stored_checked_and_its_weights_watched(tmp_path):
    root = _golden_set(tmp_path / "golden")
    rc, out, err = tcc_cli("golden", "update", root)
    assert rc == 0, err
    identity = json.loads((root / "golden.json").read_text())["models"]["tiny"]["identity"]
    assert identity["spec"] == "tiny.onnx" and identity["weights"]["file"] == "tiny.onnx"
    rows = tcc.golden_check(root)
    assert [r.entry for r in rows if r.failed] == [] and {r.entry for r in rows} >= set(ENTRIES)
    _onnx(root / "tiny.onnx", seed=2)  # the same graph, other weights
    rows = tcc.golden_check(root)
    failed = [r for r in rows if r.failed]
    assert failed and failed[0].entry == "graph" and "weights changed" in failed[0].summary


def test_weights_beside_an_onnx_model_are_refused_at_their_line(tmp_path):
    root = _golden_set(tmp_path / "golden", extra="    weights: tiny.onnx\n")
    rc, out, err = tcc_cli("golden", "check", root)
    assert rc == 2 and "golden.yaml:6:14: model tiny: an ONNX file carries its weights; drop weights" in err, err
