"""Weight import: the four published DDSNet checkpoints, aliases, key maps, and errors that name both sides."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tcc
from tcc.cli.main import main as cli
from tcc.errors import WeightsError
from tcc.lower.weights import find_aliases, load_weights, match_weights, read_state_dict
from tests.helpers import FIXTURES, REPO
from tests.helpers.marks import needs_fixtures

CHECKPOINTS = [("GC", 6), ("PCam", 2), ("Sipak", 5), ("Skin", 7)]


@needs_fixtures
@pytest.mark.parametrize("name,classes", CHECKPOINTS)
def test_ddsnet_checkpoints_load_with_every_tensor_used(name, classes):
    path = FIXTURES / f"{name}_DDS_0.0064.pth"
    model = tcc.load_spec(REPO / "spec" / "ddsnet.yaml", {"num_classes": classes})
    module = tcc.to_torch(model.graph)
    match = load_weights(module, model.graph, path, by_order=True)
    state = read_state_dict(path)
    used = set(match.assignment.values()) | set(match.aliases)
    assert used == set(state), "every checkpoint tensor is used (directly or as a detected alias)"
    assert sorted(match.aliases) == sorted(k for k in state if k.startswith("net.0."))
    assert all(v.startswith("b1.") for v in match.aliases.values())
    own = module.state_dict()
    for spec_name, key in match.assignment.items():
        assert torch.equal(own[spec_name], state[key].to(own[spec_name].dtype)), spec_name


@needs_fixtures
def test_ddsnet_gc_prediction_matches_the_reference_module_and_json_shape(capsys):
    rc = cli(
        [
            "predict",
            str(REPO / "spec/ddsnet.yaml"),
            "--weights",
            str(FIXTURES / "GC_DDS_0.0064.pth"),
            "--by-order",
            "--image",
            str(FIXTURES / "GC.png"),
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"logits", "class", "label"} and len(out["logits"]) == 6
    assert out["class"] == int(np.argmax(out["logits"]))
    assert out["label"] == ["ADI", "MUC", "MUS", "STR", "STU", "TUM"][out["class"]]


def _tiny(tmp_path, classes=3) -> tcc.Model:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "kind: model\nname: tiny\nparams: {num_classes: 3}\ninput: {shape: [3, 8, 8]}\nlayers:\n"
        "  - {id: conv, op: conv2d, out: 4, kernel: 3, padding: 1}\n"
        "  - {id: bn, op: batchnorm}\n"
        "  - {op: relu}\n"
        "  - {op: global_avgpool}\n"
        "  - {op: flatten}\n"
        "  - {id: fc, op: linear, out: '${num_classes}'}\n"
    )
    return tcc.load_spec(spec, {"num_classes": classes})


class Reference(torch.nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4))
        self.classifier = torch.nn.Linear(4, classes)


def test_by_name_with_a_prefix_key_map(tmp_path):
    model = _tiny(tmp_path)
    ref = Reference()
    ckpt = tmp_path / "ref.pt"
    torch.save(ref.state_dict(), ckpt)
    key_map = tmp_path / "map.yaml"
    key_map.write_text(
        "'features.0.': conv.\n'features.1.': bn.\nclassifier.weight: fc.weight\nclassifier.bias: fc.bias\n"
    )
    module = tcc.to_torch(model.graph)
    match = load_weights(module, model.graph, ckpt, key_map_path=key_map)
    assert len(match.assignment) == 9  # conv 2, batchnorm 5 (with its buffers), linear 2
    assert torch.equal(module.state_dict()["fc.weight"], ref.classifier.weight)


def test_by_name_mismatch_suggests_by_order(tmp_path):
    model = _tiny(tmp_path)
    with pytest.raises(WeightsError, match="by_order=True"):
        match_weights(model.graph, Reference().state_dict(), source="ref.pt")


def test_shape_mismatch_names_node_key_and_both_shapes(tmp_path):
    model = _tiny(tmp_path, classes=2)  # the checkpoint has 3 classes
    with pytest.raises(WeightsError) as err:
        match_weights(model.graph, Reference(3).state_dict(), by_order=True, source="ref.pt")
    msg = str(err.value)
    assert "'fc'" in msg and "classifier.weight" in msg and "[2, 4]" in msg and "[3, 4]" in msg


def test_count_mismatch_is_reported(tmp_path):
    model = _tiny(tmp_path)
    state = Reference().state_dict()
    del state["classifier.bias"]
    with pytest.raises(WeightsError, match="8 tensors .* the spec has 9"):
        match_weights(model.graph, state, by_order=True)


def test_aliases_shared_storage_and_equal_copies():
    w = torch.randn(8, 3, 3, 3)
    state = {"a.weight": w, "b.weight": w, "c.weight": w.clone(), "zeros1": torch.zeros(32), "zeros2": torch.zeros(32)}
    assert find_aliases(state) == {"b.weight": "a.weight", "c.weight": "a.weight"}  # constants are never aliases


def test_equal_tensors_of_two_spec_names_load_by_name(tmp_path):
    """Two BatchNorms on one input hold equal running statistics (FastViT's RepMixer): each spec name takes its own
    key, though the second is an equal copy of the first (an alias for by-order matching only)."""
    spec = tmp_path / "twins.yaml"
    spec.write_text(
        "kind: model\nname: twins\ninput: {shape: [16, 4, 4]}\nlayers:\n"
        "  - {id: a, op: batchnorm, in: input}\n  - {id: b, op: batchnorm, in: input}\n  - {op: add, in: [a, b]}\n"
    )
    model = tcc.load_spec(spec)
    stats = torch.randn(16)
    state = {f"{n}.{k}": (stats.clone() if k.startswith("running") else torch.randn(16)) for n in "ab"
             for k in ("weight", "bias", "running_mean", "running_var")}  # fmt: skip
    match = match_weights(model.graph, state)
    assert match.assignment["b.running_mean"] == "b.running_mean" and "b.running_mean" in find_aliases(state)


def test_unsafe_or_corrupt_checkpoint_is_a_clean_error(tmp_path, capsys):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(WeightsError, match="evil.pt"):
        read_state_dict(bad)
    assert "pwned" not in capsys.readouterr().out
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth"):
        read_state_dict(junk)


def test_predict_cli_reports_bad_weights_without_traceback(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    _tiny(tmp_path)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 8, 8), np.float32))
    torch.save(Reference(5).state_dict(), tmp_path / "w.pt")
    rc = cli(["predict", str(spec), "--weights", str(tmp_path / "w.pt"), "--by-order", "--input", str(x)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "classifier.weight" in err
    np.save(x, np.zeros((1, 1, 8, 8), np.float32))
    rc = cli(["predict", str(spec), "--input", str(x)])
    err = capsys.readouterr().err
    assert rc == 2 and "x.npy" in err and "[1, 1, 8, 8]" in err
