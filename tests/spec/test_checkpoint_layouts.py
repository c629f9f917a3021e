"""Checkpoint layouts (a spec's `checkpoints:`), key maps with `*` patterns, parameters read from a checkpoint, and
`order: first` (a node's tensors before the rest of its body's, as PyTorch lists a module's own parameters)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import tcc
from tcc.cli.main import main as cli
from tcc.errors import WeightsError
from tcc.lower.weights import fit_to_checkpoint, load_weights, match_weights
from tcc.spec.checkpoint_layouts import KeyMap, read_key_map
from tests.helpers import FIXTURES, REPO
from tests.helpers.marks import needs_fixtures
from tests.helpers.spec_util import assert_error

TINY = """\
kind: model
name: tiny
params: {num_classes: 3}
input: {shape: [3, 8, 8]}
labels: [a, b, c]
layers:
  - {id: conv, op: conv2d, out: 4, kernel: 3, padding: 1}
  - {id: bn, op: batchnorm}
  - {op: relu}
  - {op: global_avgpool}
  - {op: flatten}
  - {id: fc, op: linear, out: "${num_classes}"}
"""


class Reference(nn.Module):
    """The same network under other names (a `features` / `classifier` layout)."""

    def __init__(self, classes=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.classifier = nn.Linear(4, classes)


def _checkpoint(tmp_path, classes=3, name="ref.pt") -> Path:
    torch.manual_seed(0)
    path = tmp_path / name
    torch.save(Reference(classes).state_dict(), path)
    return path


# ------------------------------------------------------------------------------------------------------- key maps
def test_key_map_exact_then_patterns_then_the_longest_prefix():
    km = KeyMap(
        (
            ("features.0.", "stem."),
            ("features.*.layer_scale", "features.*.layer_scale.weight"),
            ("features.", "body."),
            ("features.0.weight", "first.weight"),
            ("stage*.unit*.", "stages.*.*."),
        )
    )
    assert km.rename("features.0.weight") == "first.weight"  # exact wins
    assert km.rename("features.0.bias") == "stem.bias"  # the longest prefix
    assert km.rename("features.3.bias") == "body.3.bias"
    assert km.rename("features.5.8.layer_scale") == "features.5.8.layer_scale.weight"  # a pattern, before prefixes
    assert km.rename("stage2.unit13.conv.weight") == "stages.2.13.conv.weight"  # each '*' in order, as a prefix
    assert km.rename("unrelated") == "unrelated"


@pytest.mark.parametrize(
    "text, message",
    [
        ("'a.*': b\n", "has 1 '*' but 'b' has 0"),
        ("'a.': b\n", "a prefix (ending in '.') renames to a prefix"),
        ("a: [b]\n", "non-empty strings"),
        ("[a, b]\n", "a mapping of checkpoint keys"),
    ],
)
def test_bad_key_map_files_are_clean_errors(tmp_path, text, message):
    path = tmp_path / "map.yaml"
    path.write_text(text)
    with pytest.raises(WeightsError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        read_key_map(path)


def test_key_map_pattern_file_on_the_command_line(write, tmp_path):
    spec = write("tiny.yaml", TINY)
    ckpt = _checkpoint(tmp_path)
    key_map = write("map.yaml", "'features.0.*': conv.*\n'features.1.*': bn.*\n'classifier.*': fc.*\n")
    model = tcc.load_spec(spec)
    match = load_weights(tcc.to_torch(model.graph), model.graph, ckpt, key_map_path=key_map)
    assert match.how == "by the key map" and match.assignment["bn.running_var"] == "features.1.running_var"


# ----------------------------------------------------------------------------------------------- spec layouts
LAYOUTS = (
    TINY
    + """\
checkpoints:
  - name: wrong-first
    match: by_name
    key_map: {"features.*": "nothing.*"}
  - name: reference
    doc: Reference().state_dict()
    match: by_name
    key_map: {"features.0.": conv., "features.1.": bn., "classifier.": fc.}
    params: {num_classes: {tensor: fc.weight, dim: 0}}
  - name: in-order
    match: by_order
"""
)


def test_plain_weights_try_the_names_then_each_layout_in_order(write, tmp_path):
    model = tcc.load_spec(write("tiny.yaml", LAYOUTS))
    assert [c.name for c in model.checkpoints] == ["wrong-first", "reference", "in-order"]
    state = torch.load(_checkpoint(tmp_path), weights_only=True)
    match = match_weights(model.graph, state, layouts=model.checkpoints)
    assert (
        match.how
        == "by the spec's checkpoint layout 'reference' (by name through its key map): Reference().state_dict()"
    )
    assert (match.method, match.layout.name) == ("layout", "reference")
    assert match.assignment["fc.bias"] == "classifier.bias"
    assert match_weights(model.graph, state, by_order=True).how == "by order"  # explicit flags bypass layouts
    match = match_weights(model.graph, state, layouts=model.checkpoints[2:])
    assert match.how == "by the spec's checkpoint layout 'in-order' (by order)"


def test_when_no_layout_matches_each_says_why(write, tmp_path):
    model = tcc.load_spec(write("tiny.yaml", LAYOUTS))
    state = torch.load(_checkpoint(tmp_path), weights_only=True)
    del state["classifier.bias"]
    with pytest.raises(WeightsError) as err:
        match_weights(model.graph, state, source="ref.pt", layouts=model.checkpoints)
    msg = str(err.value)
    assert msg.startswith("ref.pt: names do not match the spec")
    assert "checkpoint layout 'wrong-first' (by name through its key map): names do not match" in msg
    assert "checkpoint layout 'in-order' (by order): 8 tensors (after 0 aliases) but the spec has 9" in msg
    assert msg.endswith("; use by_order=True or key_map=")  # Python's words (for_cli: the flags)


def test_a_checkpoint_for_other_classes_sets_the_parameter(write, tmp_path, capsys):
    spec = write("tiny.yaml", LAYOUTS)
    ckpt = _checkpoint(tmp_path, classes=5)
    model = fit_to_checkpoint(tcc.load_spec(spec), ckpt)
    assert model.params["num_classes"] == 5 and model.labels is None
    assert model.notes[0] == (
        "num_classes=5 read from the checkpoint (classifier.weight [5, 4]; the spec's checkpoint "
        "layout 'reference' (by name through its key map))"
    )
    assert "labels do not fit the output width 5 with num_classes=5" in model.notes[1]
    x = tmp_path / "x.npy"
    import numpy as np

    np.save(x, np.zeros((1, 3, 8, 8), np.float32))
    assert cli(["predict", str(spec), "--weights", str(ckpt), "--input", str(x), "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)["logits"]) == 5 and "num_classes=5 read from the checkpoint" in err
    # a value the user --set is theirs: the mismatch is reported, not overridden
    assert cli(["predict", str(spec), "--set", "num_classes=3", "--weights", str(ckpt), "--input", str(x)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "[5, 4]" in err and "layout 'reference'" in err


def test_by_order_layout_reads_its_parameter_by_position(write, tmp_path):
    spec = write(
        "tiny.yaml",
        TINY + "checkpoints:\n  - name: ref\n    match: by_order\n"
        "    params: {num_classes: {tensor: fc.weight, dim: 0}}\n",
    )
    model = fit_to_checkpoint(tcc.load_spec(spec), _checkpoint(tmp_path, classes=2))
    assert model.params["num_classes"] == 2
    assert "(classifier.weight [2, 4]; the spec's checkpoint layout 'ref' (by order))" in model.notes[0]


def test_key_map_file_beside_the_spec(write, tmp_path):
    write("maps/ref.yaml", "'features.0.': conv.\n'features.1.': bn.\n'classifier.': fc.\n")
    spec = write("tiny.yaml", TINY + "checkpoints:\n  - {name: ref, match: by_name, key_map: maps/ref.yaml}\n")
    model = tcc.load_spec(spec)
    assert any(k.endswith("ref.yaml") for k in model.sources)  # the map is part of the spec's hash
    match = load_weights(tcc.to_torch(model.graph), model.graph, _checkpoint(tmp_path), layouts=model.checkpoints)
    assert match.how == "by the spec's checkpoint layout 'ref' (by name through its key map)"


@pytest.mark.parametrize(
    "layout, at, fragments",
    [
        ("  - {name: a, match: by_nam}\n", "by_nam", ["'by_nam' is not one of ['by_name', 'by_order']"]),
        ("  - {name: a}\n", "{name: a}", ["'match' is a required property"]),
        ("  - {name: a, match: by_name, keymap: {}}\n", "keymap", ["unknown key 'keymap'", "did you mean 'key_map'"]),
        (
            "  - {name: a, match: by_name}\n  - {name: a, match: by_order}\n",
            "a, match: by_order",
            ["checkpoint layout 'a' is declared twice"],
        ),
        ("  - {name: a, match: by_order, key_map: {x: y}}\n", "{x: y}", ["a key map means match: by_name"]),
        ("  - {name: a, match: by_name, key_map: {'x.*': y}}\n", "'x.*'", ["has 1 '*' but 'y' has 0"]),
        ("  - {name: a, match: by_name, key_map: nowhere.yaml}\n", "nowhere.yaml", ["key map file not found"]),
        (
            "  - {name: a, match: by_name, params: {num_clases: {tensor: fc.weight, dim: 0}}}\n",
            "num_clases",
            ["'num_clases' is not a parameter of the model", "did you mean 'num_classes'"],
        ),
        (
            "  - {name: a, match: by_name, params: {num_classes: {tensor: fc.weights, dim: 0}}}\n",
            "fc.weights",
            ["no spec tensor 'fc.weights'", "did you mean 'fc.weight'"],
        ),
        (
            "  - {name: a, match: by_name, params: {num_classes: {tensor: fc.bias, dim: 1}}}\n",
            "1}}}",
            ["fc.bias has 1 dimensions; dim 1 does not exist"],
        ),
        (
            "  - {name: a, match: by_name, params: {num_classes: {present: aux.weight}}}\n",
            "num_classes: {present",
            ["'num_classes' is not a boolean parameter, so a key's presence cannot set it"],
        ),
    ],
)
def test_layout_mistakes_point_at_the_spec(write, capsys, layout, at, fragments):
    spec = write("bad.yaml", TINY + "checkpoints:\n" + layout)
    assert_error(spec, at, *fragments, capsys=capsys)


# ------------------------------------------------------------------------------------------------- order: first
ORDERED = """\
kind: model
name: ordered
input: {shape: [4, 8, 8]}
blocks:
  scaled:
    body:
      - id: block
        body:
          - {id: "0", op: conv2d, out: 4, kernel: 3, padding: 1}
          - {id: "1", op: batchnorm}
      - {id: gamma, op: scale, init: 0.5, order: first}
      - {id: skipped, op: scale, when: false, order: first}
      - {id: add, op: add, in: [gamma, x]}
layers:
  - {id: stem, op: conv2d, out: 4, kernel: 1}
  - {id: stage, block: scaled, repeat: 2}
  - {op: global_avgpool}
  - {op: flatten}
  - {id: fc, op: linear, out: 2}
"""


class Scaled(nn.Module):
    """torchvision's way: an own nn.Parameter (registered after the submodule) comes first in the state_dict."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.gamma = nn.Parameter(torch.full((4, 1, 1), 0.5))

    def forward(self, x):
        return x + self.gamma * self.block(x)


class Ordered(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(4, 4, 1)
        self.stage = nn.Sequential(Scaled(), Scaled())
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.stage(self.stem(x)).mean((2, 3)))


def test_order_first_puts_a_nodes_tensors_before_its_body(write, tmp_path):
    model = tcc.load_spec(write("ordered.yaml", ORDERED))
    names = [n for n, _ in model.graph.parameters()]
    assert names[2:5] == ["stage.0.gamma.weight", "stage.0.block.0.weight", "stage.0.block.0.bias"]
    assert [n.replace(".gamma.weight", ".gamma") for n in names] == list(Ordered().state_dict())
    module = tcc.to_torch(model.graph)
    assert list(module.state_dict()) == names  # the PyTorch module lists them the same way
    assert list(model.graph.nodes)[2:5] == ["stage.0.block.0", "stage.0.block.1", "stage.0.gamma"]  # data flow kept
    torch.manual_seed(1)
    reference = Ordered().eval()
    ckpt = tmp_path / "ordered.pt"
    torch.save(reference.state_dict(), ckpt)
    assert load_weights(module, model.graph, ckpt, by_order=True).how == "by order"
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference(x), atol=1e-6, rtol=1e-5)


def test_order_takes_only_first(write, capsys):
    spec = write(
        "bad.yaml", ORDERED.replace("order: first}\n      - {id: skipped", "order: last}\n      - {id: skipped")
    )
    assert_error(spec, "last", "'last' is not one of ['first']", capsys=capsys)


# ------------------------------------------------------------------------------------------------------- DDSNet
@needs_fixtures
@pytest.mark.parametrize(
    "name,classes,image,top1",
    [("GC", 6, "GC.png", 5), ("PCam", 2, "PCam.png", 0), ("Sipak", 5, "Sipak.bmp", 0), ("Skin", 7, "SC.jpg", 5)],
)
def test_ddsnet_checkpoints_with_the_plain_command(name, classes, image, top1, capsys):
    """The README's example works for every published checkpoint: the spec's `ddsnet-authors` layout (by order,
    the stem's copy an alias) matches, and the class count comes from the checkpoint."""
    rc = cli(
        [
            "predict",
            str(REPO / "spec" / "ddsnet.yaml"),
            "--weights",
            str(FIXTURES / f"{name}_DDS_0.0064.pth"),
            "--image",
            str(FIXTURES / image),
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads(out)
    assert len(result["logits"]) == classes and result["class"] == top1
    assert "259 tensors matched by the spec's checkpoint layout 'ddsnet-authors' (by order)" in err
    assert ("label" in result) == (classes == 6)
    assert (f"num_classes={classes} read from the checkpoint (net.12.weight [{classes}, 248]" in err) == (classes != 6)
