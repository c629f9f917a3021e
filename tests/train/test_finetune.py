"""Fine-tuning (tcc.train.finetune): the classifier head found from the graph, a checkpoint for another class count
loaded with only its head re-initialised (tcc's own, torchvision's MobileNetV2 for 1000 classes, the DDSNet authors'
GC checkpoint for 6), `--freeze` keeping every frozen tensor byte for byte, and clear errors."""

from __future__ import annotations

import pytest
import torch

import tcc
from tcc.cli.parser import build_parser
from tcc.lower.to_torch import init_weights
from tcc.lower.weights import load_weights
from tcc.train.finetune import find_head
from tcc.train.preflight import prepare
from tests.helpers import FIXTURES, REPO
from tests.helpers import torchvision_reference as tv
from tests.helpers.marks import needs_fixtures
from tests.helpers.train_data import texture_patches
from tests.helpers.zoo import load_baseline
from tests.train.test_train import SPEC, train, weights


@pytest.mark.parametrize(
    "name, aux, head",
    [
        ("ddsnet", {}, ["head.fc"]),
        ("fastnet", {}, ["head.fc"]),
        ("resnet18", {}, ["fc"]),
        ("squeezenet1_0", {}, ["classifier.1"]),  # a 1x1 conv, then ReLU, pooling and flatten
        ("mobilenet_v3_small", {}, ["classifier.3"]),
        ("googlenet", {"aux_logits": True}, ["aux1.fc2", "aux2.fc2", "fc"]),  # the auxiliary heads' last layers too
    ],
)
def test_the_head_is_the_last_weighted_layers_before_the_outputs(name, aux, head):
    assert find_head(tcc.load_spec(name, aux).graph) == head


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    return texture_patches(
        tmp_path_factory.mktemp("three") / "data", textures=("brick", "grass", "gravel"), per_class=16, size=32
    )


@pytest.fixture(scope="module")
def two_class_checkpoint(tmp_path_factory):
    """train_tiny's weights for 2 classes (seeded, saved as tcc train writes them)."""
    path = tmp_path_factory.mktemp("ckpt") / "two.pt"
    module = init_weights(tcc.to_torch(tcc.load_spec(SPEC).graph), seed=4)
    torch.save(module.state_dict(), path)
    return path


def _plan(spec, data, run, *flags):
    args = build_parser().parse_args(["train", str(spec), "--data", str(data), "-o", str(run), *map(str, flags)])
    notes = []
    return prepare(args, log=notes.append), "\n".join(notes)


def _assert_only_head_differs(module, checkpoint: dict, head: list[str], classes: int):
    """Every tensor outside the head equals the checkpoint's (paired in order: torchvision's names are not the
    spec's), the head's have the new class count."""
    own = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    theirs = [v for k, v in checkpoint.items() if not k.endswith("num_batches_tracked")]
    in_head = [k for k in own if k.rsplit(".", 1)[0] in head]
    assert in_head and all(own[k].shape[0] == classes for k in in_head) and len(own) == len(theirs)
    for (k, v), w in zip(own.items(), theirs):
        if k not in in_head:
            assert torch.equal(v, w), k


def test_another_class_count_reinitialises_only_the_head(tmp_path, three_classes, two_class_checkpoint):
    plan, notes = _plan(SPEC, three_classes, tmp_path / "run", "--weights", two_class_checkpoint)
    assert plan.head == ["fc"] and plan.model.params["num_classes"] == 3
    assert "num_classes=3: the data's 3 classes (brick, grass, gravel); the checkpoint's classifier is for 2" in notes
    assert (
        "head: re-initialised (seed 0) where the checkpoint's width differs: fc.weight [3, 16] (checkpoint "
        "fc.weight [2, 16]), fc.bias [3] (checkpoint fc.bias [2])"
    ) in notes
    _assert_only_head_differs(plan.module, weights(two_class_checkpoint), ["fc"], 3)
    with torch.random.fork_rng(devices=[]):  # the head is the seeded initialization of a run without weights
        torch.manual_seed(0)
        fresh = tcc.to_torch(plan.model.graph)
    assert torch.equal(plan.module.state_dict()["fc.weight"], fresh.state_dict()["fc.weight"])


def test_freeze_backbone_trains_the_head_alone(tmp_path, three_classes, two_class_checkpoint):
    run = tmp_path / "run"
    rc, out, err = train(
        SPEC,
        "--data",
        three_classes,
        "-o",
        run,
        "--weights",
        two_class_checkpoint,
        "--freeze",
        "backbone",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "0.1",
        "--no-progress",
    )
    assert rc == 0, err
    assert "freeze: 4 of 5 nodes with parameters kept as they are (backbone); training 1: fc" in err
    last, start = weights(run / "last.pt")["model"], weights(two_class_checkpoint)
    assert last["fc.weight"].shape == (3, 16)
    for k, v in last.items():  # BN statistics too: frozen layers keep them
        if not k.startswith("fc."):
            assert torch.equal(v, start[k]), k
    assert "freeze: [backbone]" in (run / "config.yaml").read_text()


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--freeze", "stme"],
            "--freeze: 'stme' is not the start of any node with parameters (or backbone) (did you mean 'stem'?)",
        ),
        (["--freeze", "stem,block,fc"], "--freeze: stem, block, fc freezes every node with parameters: nothing left"),
        (["--head", "pool"], "--head: 'pool' is not a node with parameters"),
    ],
)
def test_bad_freeze_or_head_is_a_clear_error(tmp_path, three_classes, two_class_checkpoint, flags, message):
    rc, out, err = train(
        SPEC, "--data", three_classes, "-o", tmp_path / "run", "--weights", two_class_checkpoint, *flags
    )
    assert rc == 2 and message in err and not (tmp_path / "run").exists()


def test_torchvision_imagenet_mobilenet_v2_to_two_classes(tmp_path):
    """An ImageNet-shaped torchvision state_dict (1000 classes, seeded weights: nothing downloaded) fine-tuned to a
    two-class folder: every tensor but the classifier's is torchvision's."""
    reference = init_weights(tv.build("mobilenet_v2"), seed=3)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(reference.state_dict(), path)
    data = texture_patches(tmp_path / "data", per_class=8, size=32)
    spec = load_baseline("mobilenet_v2").path
    plan, notes = _plan(spec, data, tmp_path / "run", "--weights", path, "--set", "image_size=32", "--batch-size", "4")
    assert plan.head == ["classifier.1"] and "classifier.1.weight [2, 1280] (checkpoint" in notes
    _assert_only_head_differs(plan.module, reference.state_dict(), ["classifier.1"], 2)


@needs_fixtures
def test_ddsnet_gc_checkpoint_to_three_classes(tmp_path, three_classes):
    """The DDSNet authors' GC checkpoint (6 classes, matched by the spec's checkpoint layout, by order) to 3."""
    plan, notes = _plan(
        REPO / "spec" / "ddsnet.yaml",
        three_classes,
        tmp_path / "run",
        "--weights",
        FIXTURES / "GC_DDS_0.0064.pth",
        "--set",
        "image_size=32",
        "--batch-size",
        "8",
    )
    assert plan.model.params["num_classes"] == 3 and plan.head == ["head.fc"]
    assert "head.fc.weight [3, 248] (checkpoint net.12.weight [6, 248])" in notes
    six = tcc.load_spec(REPO / "spec" / "ddsnet.yaml", {"image_size": 32})
    reference = tcc.to_torch(six.graph)
    load_weights(reference, six.graph, FIXTURES / "GC_DDS_0.0064.pth", layouts=six.checkpoints)
    _assert_only_head_differs(plan.module, reference.state_dict(), ["head.fc"], 3)


def test_a_zoo_name_is_its_spec_file(three_classes, tmp_path):
    """`tcc train mobilenet_v2 ...` as `tcc build mobilenet_v2 ...`: the zoo model's spec file; an unknown name is a
    SpecError with the closest names."""
    plan, _ = _plan("mobilenet_v2", three_classes, tmp_path / "run", "--set", "image_size=32", "--set", "num_classes=3")
    assert plan.spec.name == "mobilenet_v2.yaml" and plan.spec.is_file()
    with pytest.raises(tcc.SpecError, match="no zoo model named 'mobilenet_v9'.*mobilenet_v2"):
        _plan("mobilenet_v9", three_classes, tmp_path / "run2")
