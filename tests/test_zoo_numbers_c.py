"""torchvision baselines, part C: the specs of issue 17 (spec/baselines/{mnasnet1_0, regnet_x_400mf, regnet_y_400mf,
resnext50_32x4d, wide_resnet50_2, efficientnet_v2_s, alexnet, ...}.yaml) and their blocks (mnasnet_inverted_residual,
regnet_bottleneck, fused_mbconv, mbconv), checked against torchvision 0.28's own model definitions
(tests/torchvision_reference.py): trainable parameters and MACs (conv and linear layers) exactly, the state_dict's
layout, and logits with a torchvision state_dict imported by the plain `tcc predict --weights` (each spec declares
the layout of torchvision's checkpoints). Every zoo spec's torchvision layout is checked here too.

The numbers are also written out (num_classes 6, at the spec's default input), so the README's zoo table and these
tests agree even where torchvision is not importable.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tcc
import torchvision_reference as tv
from tcc.cli import main as cli
from tcc.tolerance import compare
from tcc.weights import fit_to_checkpoint, load_weights, match_weights

REPO = Path(__file__).resolve().parents[1]
BASELINES = REPO / "spec" / "baselines"

# name: (trainable params, MACs, input size): torchvision 0.28 with num_classes=6
NUMBERS = {
    "alexnet": (57_028_422, 710_117_056, 224),
    "efficientnet_v2_s": (20_185_174, 8_364_344_832, 384),
    "mnasnet1_0": (3_109_998, 313_143_552, 224),
    "regnet_x_400mf": (5_097_382, 413_415_008, 224),
    "regnet_y_400mf": (3_905_790, 401_405_488, 224),
    "resnext50_32x4d": (22_992_198, 4_228_444_160, 224),
    "wide_resnet50_2": (66_846_534, 11_395_985_408, 224),
}
NEW = sorted(NUMBERS)
# Every zoo spec is one torchvision constructor; these import torchvision's state_dict by name, the rest by order.
ZOO = sorted(p.stem for p in BASELINES.glob("*.yaml"))
BY_NAME = {"alexnet", "densenet121", "googlenet", "inception_v3", "mnasnet1_0", "resnet18", "resnet34",
           "resnext50_32x4d", "squeezenet1_0", "squeezenet1_1", "wide_resnet50_2"}
# torchvision's constructor arguments that the spec's defaults correspond to
TV_ARGS = {"inception_v3": {"aux_logits": False, "init_weights": False}, "googlenet": {"aux_logits": False,
                                                                                   "init_weights": False}}


def load(name: str, **overrides) -> tcc.Model:
    return tcc.load_model(BASELINES / f"{name}.yaml", overrides or None)


@pytest.mark.parametrize("name", NEW)
def test_params_and_macs_equal_torchvision(name):
    params, macs, size = NUMBERS[name]
    model = load(name)
    reference = tv.structure(name)
    assert model.input_shape == (3, size, size)
    assert (model.graph.param_count, model.graph.macs) == (params, macs)
    assert (tv.trainable_params(reference), tv.macs(reference, size)) == (params, macs)
    assert list(model.graph.shape(model.graph.output)) == [6]


@pytest.mark.parametrize("name", ZOO)
def test_torchvision_state_dict_imports_with_the_plain_command(name):
    """The spec's declared torchvision layout takes torchvision's state_dict: by name where the spec's ids are
    torchvision's module names, else by order (shapes checked tensor by tensor)."""
    model = load(name)
    layout = tv.state_layout(tv.structure(name, **TV_ARGS.get(name, {})))
    spec = [(k, tuple(p.shape)) for k, p in model.graph.parameters()]
    assert [s for _, s in spec] == [s for _, s in layout]
    assert (spec == layout) == (name in BY_NAME)
    assert [c.name for c in model.checkpoints] == ["torchvision"]
    state = {k: torch.zeros(s) for k, s in layout}
    match = match_weights(model.graph, state, layouts=model.checkpoints)
    assert match.how.startswith("by name" if name in BY_NAME else
                                "by the spec's checkpoint layout 'torchvision' (by order): torchvision.models.")
    assert sorted(match.assignment.values()) == sorted(state)


@pytest.mark.parametrize("name,classes", [("mnasnet1_0", 6), ("regnet_y_400mf", 3)])
def test_logits_equal_torchvision_with_its_state_dict(name, classes, tmp_path, capsys):
    """A randomly initialised torchvision model (BN statistics made non-trivial), its state_dict saved and given to
    `tcc predict SPEC --weights FILE` with nothing else: the logits equal torchvision's within the FP32 contract
    (tcc.tolerance), and a checkpoint for another number of classes sets num_classes itself."""
    reference = tv.randomize_statistics(tv.build(name, num_classes=classes, seed=1), seed=2)
    weights = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), weights)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    np.save(tmp_path / "x.npy", x.numpy())

    assert cli(["predict", str(BASELINES / f"{name}.yaml"), "--set", "image_size=64", "--weights", str(weights),
                "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    out, err = capsys.readouterr()
    logits = np.array([r["logits"] for r in json.loads(out)], np.float32)
    how = "by name" if name in BY_NAME else "by the spec's checkpoint layout 'torchvision' (by order)"
    assert how in err
    assert ("num_classes=3 read from the checkpoint" in err) == (classes != 6)

    model = fit_to_checkpoint(load(name, image_size=64), weights)
    module = tcc.to_torch(model.graph)
    load_weights(module, model.graph, weights, layouts=model.checkpoints)
    with torch.no_grad():
        exact = module.eval().double()(x.double()).numpy()
        want = reference(x).numpy()
    result = compare(want, logits, "fp32", exact=exact)
    assert logits.shape == (2, classes)
    assert result["passed"], result
