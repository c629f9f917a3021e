"""torchvision's Vision Transformer as a spec (spec/baselines/vit_b_16.yaml, zoo blocks vit_encoder_layer and
multihead_attention), checked against torchvision 0.28's own model: trainable parameters and MACs exactly (MACs as
torch's FlopCounterMode counts them: convolutions, linear layers and attention's two matrix products), for vit_b_16
and, through the spec's parameters, vit_b_32 and vit_l_16; hyperparameters; torchvision's state_dict imported by the
plain `tcc predict --weights` with logits equal within the FP32 rule; the ONNX form on ONNX Runtime."""

from __future__ import annotations

import pytest
import torch

import tcc
from tcc.lower.to_torch import init_weights
from tests.helpers import torchvision_reference as tv
from tests.helpers.reference_check import (
    assert_logits_equal,
    assert_ort_build_self_checks,
    flop_count_macs,
    hyperparameters,
    predict_with_state_dict,
    set_args,
)
from tests.helpers.zoo import BASELINES
from tests.helpers.zoo import load_baseline as load

SPEC = BASELINES / "vit_b_16.yaml"
# torchvision constructor: (spec overrides, trainable params, MACs) at 224 with num_classes 6
NUMBERS = {
    "vit_b_16": ({}, 85_803_270, 17_563_064_832),
    "vit_b_32": ({"patch_size": 32}, 87_459_846, 4_408_422_912),
    "vit_l_16": ({"layers": 24, "heads": 16, "hidden": 1024, "mlp_dim": 4096}, 303_307_782, 61_553_694_720),
}
# a small configuration of the same architecture for the runs: torchvision's VisionTransformer class with these
SMALL = {"image_size": 32, "patch_size": 8, "num_layers": 3, "num_heads": 4, "hidden_dim": 48, "mlp_dim": 96}
SMALL_SET = {"image_size": 32, "patch_size": 8, "layers": 3, "heads": 4, "hidden": 48, "mlp_dim": 96}


@pytest.mark.parametrize("name", sorted(NUMBERS))
def test_params_and_macs_equal_torchvision(name):
    overrides, params, macs = NUMBERS[name]
    model = load("vit_b_16", **overrides)
    reference = tv.structure(name)
    assert (model.graph.param_count, model.graph.macs) == (params, macs)
    assert (tv.trainable_params(reference), flop_count_macs(reference, 224)) == (params, macs)


def test_hyperparameters_and_state_layout_equal_torchvision():
    with torch.device("meta"):
        module = tcc.to_torch(load("vit_b_16").graph)
    reference = tv.structure("vit_b_16")
    for kind in ("ln", "dropout"):
        assert hyperparameters(module, kind) == hyperparameters(reference, kind), kind
    model = load("vit_b_16")
    key_map = model.checkpoints[0].key_map
    layout = tv.state_layout(reference)
    assert [(key_map.rename(k), s) for k, s in layout] == [(k, tuple(p.shape)) for k, p in model.graph.parameters()]


def test_logits_equal_torchvision_with_its_state_dict(tmp_path, capsys):
    """torchvision's VisionTransformer (a small configuration: 3 layers, 4 heads, 8x8 patches of a 32x32 image)
    with seeded weights, its state_dict given to `tcc predict --weights` with nothing else."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = tv.torchvision_models().VisionTransformer(num_classes=5, **SMALL).eval()
    init_weights(reference, seed=2)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    logits, err = predict_with_state_dict(SPEC, reference, x, tmp_path, capsys, set_args(SMALL_SET))
    assert "by the spec's checkpoint layout 'torchvision' (by name through its key map)" in err
    assert "num_classes=5 read from the checkpoint" in err
    assert_logits_equal(reference, load("vit_b_16", **SMALL_SET), x, logits, tmp_path / "reference.pth")


@pytest.mark.parametrize("opset", [13, 17])
def test_builds_for_onnx_runtime(tmp_path, capsys, opset):
    assert_ort_build_self_checks(SPEC, set_args(SMALL_SET), tmp_path / "b", capsys, "--opset", str(opset))
