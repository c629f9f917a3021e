"""torchvision baselines, part C: the specs of issue 17 (spec/baselines/{mobilenet_v3_small, mobilenet_v3_large,
mnasnet1_0, regnet_x_400mf, regnet_y_400mf, resnext50_32x4d, wide_resnet50_2, efficientnet_v2_s, convnext_tiny,
alexnet}.yaml) and their blocks (mbconv, fused_mbconv, mnasnet_inverted_residual, regnet_bottleneck, convnext_block,
convnext_downsample), checked against torchvision 0.28's own model definitions
(tests/helpers/torchvision_reference.py): trainable parameters and MACs (conv and linear layers) exactly, the
state_dict's layout, and logits with a torchvision state_dict imported by the plain `tcc predict --weights` (each spec
declares
the layout of torchvision's checkpoints). Every zoo spec's torchvision layout is checked here too.

The numbers are also written out (num_classes 6, at the spec's default input), so the README's zoo table and these
tests agree even where torchvision is not importable.
"""

from __future__ import annotations

import json

import pytest
import torch

import tcc
from tcc.cli.main import main as cli
from tcc.lower.to_torch import init_weights
from tcc.lower.weights import load_weights, match_weights
from tcc.tolerance import compare
from tests.helpers import torchvision_reference as tv
from tests.helpers.reference_check import assert_logits_equal, hyperparameters, predict_with_state_dict
from tests.helpers.zoo import BASELINES
from tests.helpers.zoo import load_baseline as load

# name: (trainable params, MACs, input size): torchvision 0.28 with num_classes=6
NUMBERS = {
    "alexnet": (57_028_422, 710_117_056, 224),
    "convnext_tiny": (27_824_742, 4_454_767_872, 224),
    "efficientnet_v2_s": (20_185_174, 8_364_344_832, 384),
    "mnasnet1_0": (3_109_998, 313_143_552, 224),
    "mobilenet_v3_large": (4_209_718, 215_317_440, 224),
    "mobilenet_v3_small": (1_524_006, 55_492_544, 224),
    "regnet_x_400mf": (5_097_382, 413_415_008, 224),
    "regnet_y_400mf": (3_905_790, 401_405_488, 224),
    "resnext50_32x4d": (22_992_198, 4_228_444_160, 224),
    "wide_resnet50_2": (66_846_534, 11_395_985_408, 224),
}
NEW = sorted(NUMBERS)
# Every zoo spec is one torchvision constructor; these import torchvision's state_dict by name, the rest by order.
# (the timm models' specs, MobileViT, are checked against timm in zoo/test_mobilevit*.py)
ZOO = sorted(p.stem for p in BASELINES.glob("*.yaml") if "- name: torchvision" in p.read_text())
BY_NAME = {
    "vit_b_16",
    "swin_t",
    "maxvit_t",
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "googlenet",
    "inception_v3",
    "mnasnet1_0",
    "resnet18",
    "resnet34",
    "resnext50_32x4d",
    "squeezenet1_0",
    "squeezenet1_1",
    "wide_resnet50_2",
}
# torchvision's constructor arguments that the spec's defaults correspond to
TV_ARGS = {
    "inception_v3": {"aux_logits": False, "init_weights": False},
    "googlenet": {"aux_logits": False, "init_weights": False},
}


@pytest.mark.parametrize("name", NEW)
def test_params_and_macs_equal_torchvision(name):
    params, macs, size = NUMBERS[name]
    model = load(name)
    reference = tv.structure(name)
    assert model.input_shape == (3, size, size)
    assert (model.graph.param_count, model.graph.macs) == (params, macs)
    assert (tv.trainable_params(reference), tv.macs(reference, size)) == (params, macs)
    assert list(model.graph.shape(model.graph.output)) == [6]


@pytest.mark.parametrize("name", NEW)
def test_hyperparameters_equal_torchvision(name):
    """What the numbers above cannot see: BatchNorm eps and momentum, LayerNorm eps, dropout, and the stochastic
    depth of every residual branch (torchvision's StochasticDepth modules that act: p > 0 on a residual block)."""
    with torch.device("meta"):  # structure only: no storage, no initialisation
        module = tcc.to_torch(load(name).graph)
    reference = tv.structure(name)
    for kind in ("bn", "ln", "dropout"):
        assert hyperparameters(module, kind) == hyperparameters(reference, kind), kind
    ours = sorted((m.p, m.mode) for m in module.modules() if type(m).__name__ == "StochasticDepth")
    theirs = sorted(
        (b.stochastic_depth.p, b.stochastic_depth.mode)
        for b in reference.modules()
        if hasattr(b, "stochastic_depth") and getattr(b, "use_res_connect", True) and b.stochastic_depth.p > 0
    )
    assert ours == theirs  # the same arithmetic (p k / blocks), so equal to the last bit


@pytest.mark.parametrize("name", ZOO)
def test_torchvision_state_dict_imports_with_the_plain_command(name):
    """The spec's declared torchvision layout takes torchvision's state_dict: by name where the spec's ids are
    torchvision's module names, else by order (shapes checked tensor by tensor)."""
    model = load(name)
    layout = tv.state_layout(tv.structure(name, **TV_ARGS.get(name, {})))
    spec = [(k, tuple(p.shape)) for k, p in model.graph.parameters()]
    assert [s for _, s in spec] == [s for _, s in layout]
    key_map = model.checkpoints[0].key_map
    assert ([(key_map.rename(k), s) for k, s in layout] == spec) == (name in BY_NAME)
    assert [c.name for c in model.checkpoints] == ["torchvision"]
    state = {k: torch.zeros(s) for k, s in layout}
    match = match_weights(model.graph, state, layouts=model.checkpoints)
    assert match.how.startswith(
        "by the spec's checkpoint layout 'torchvision' (by order): torchvision.models."
        if name not in BY_NAME
        else "by name"
        if not key_map
        else "by the spec's checkpoint layout 'torchvision' (by name through its key map)"
    )
    assert sorted(match.assignment.values()) == sorted(state)


# (name, classes, input size): 32 x 32 (every layer still sees padding and strides) keeps the float64 reference
# forward pass fast: PyTorch's float64 grouped convs take the slow path
SMALL = [("mobilenet_v3_small", 6, 32), ("mnasnet1_0", 6, 32), ("regnet_y_400mf", 3, 32), ("convnext_tiny", 6, 32)]


@pytest.mark.parametrize("name,classes,size", SMALL)
def test_logits_equal_torchvision_with_its_state_dict(name, classes, size, tmp_path, capsys):
    """A torchvision model with seeded random weights (tcc's init_weights: BN statistics, norm and layer-scale
    factors non-trivial; torchvision sets them to constants), its state_dict saved and given to
    `tcc predict SPEC --weights FILE` with nothing else: the logits equal torchvision's within the FP32 contract
    (tcc.tolerance), and a checkpoint for another number of classes sets num_classes itself."""
    reference = init_weights(tv.build(name, num_classes=classes), seed=2)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    logits, err = predict_with_state_dict(
        BASELINES / f"{name}.yaml", reference, x, tmp_path, capsys, ["--set", f"image_size={size}"]
    )
    how = {
        "mnasnet1_0": "by name",
        "convnext_tiny": "by the spec's checkpoint layout 'torchvision' (by name through its key map)",
    }.get(name, "by the spec's checkpoint layout 'torchvision' (by order)")
    assert how in err
    assert ("num_classes=3 read from the checkpoint" in err) == (classes != 6)
    assert logits.shape == (1, classes)
    assert_logits_equal(reference, load(name, image_size=size), x, logits, tmp_path / "reference.pth")


def test_convnext_imports_by_order_too(tmp_path):
    """torchvision registers each block's layer_scale before the block's layers; `order: first` on the spec's
    layer_scale node puts it there in the spec's parameter order (and in the PyTorch module's state_dict), so plain
    --by-order import takes torchvision's state_dict as well, tensor for tensor."""
    reference = init_weights(tv.build("convnext_tiny"), seed=5)
    weights = tmp_path / "convnext_tiny.pth"
    torch.save(reference.state_dict(), weights)
    model = load("convnext_tiny", image_size=32)
    module = tcc.to_torch(model.graph)
    match = load_weights(module, model.graph, weights, by_order=True)
    assert match.how == "by order"
    assert match.assignment["features.5.8.layer_scale.weight"] == "features.5.8.layer_scale"
    assert [k.replace(".layer_scale.weight", ".layer_scale") for k in module.state_dict()] == list(
        reference.state_dict()
    )
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert compare(reference(x).numpy(), module(x).numpy(), "fp32", exact=module.double()(x.double()).numpy())[
            "passed"
        ]


def test_tcc_check_prints_the_numbers(capsys):
    assert cli(["check", str(BASELINES / "convnext_tiny.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["params"], data["macs"]) == NUMBERS["convnext_tiny"][:2]
    assert cli(["check", str(BASELINES / "regnet_y_400mf.yaml")]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[-1]
        .startswith("regnet_y_400mf: 270 nodes, params 3,905,790, MACs 401,405,488")
    )
