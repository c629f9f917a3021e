"""torchvision's Swin Transformer as a spec (spec/baselines/swin_t.yaml, zoo blocks swin_block,
shifted_window_attention and swin_patch_merging), checked against torchvision 0.28's own model: trainable parameters
and MACs exactly (MACs as torch's FlopCounterMode counts them), for swin_t and, through the spec's parameters,
swin_s and swin_b; hyperparameters (stochastic depth of every block); the state_dict's layout; logits with
torchvision's state_dict imported by the plain `tcc predict --weights`, within the FP32 rule; the ONNX form on ONNX
Runtime. The relative position index and the shifted-window mask equal torchvision's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tcc
from tcc.cli.main import main as cli
from tcc.lower.to_torch import init_weights
from tcc.ops.attention import relative_position_index, shifted_window_mask
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

SPEC = BASELINES / "swin_t.yaml"
# torchvision constructor: (spec overrides, trainable params, MACs) at 224 with num_classes 6
NUMBERS = {
    "swin_t": ({}, 27_523_968, 4_489_803_264),
    "swin_s": ({"depths": [2, 2, 18, 2]}, 48_841_872, 8_740_111_872),
    "swin_b": ({"depths": [2, 2, 18, 2], "embed_dim": 128, "heads": [4, 8, 16, 32]}, 86_749_374, 15_429_928_960),
}
# a small configuration of the same architecture at 224 (maps of 56, 28, 14 and 7: shifted windows in three
# stages, none in the last): torchvision's SwinTransformer class with these, the spec with SMALL_SET
SMALL = {
    "patch_size": [4, 4],
    "embed_dim": 24,
    "depths": [2, 2, 2, 2],
    "num_heads": [1, 2, 2, 4],
    "window_size": [7, 7],
    "stochastic_depth_prob": 0.2,
}
SMALL_SET = {"embed_dim": 24, "depths": [2, 2, 2, 2], "heads": [1, 2, 2, 4]}


@pytest.mark.parametrize("name", sorted(NUMBERS))
def test_params_and_macs_equal_torchvision(name):
    overrides, params, macs = NUMBERS[name]
    model = load("swin_t", **overrides)
    reference = tv.structure(name)
    assert (model.graph.param_count, model.graph.macs) == (params, macs)
    assert (tv.trainable_params(reference), flop_count_macs(reference, 224)) == (params, macs)


def test_hyperparameters_and_state_layout_equal_torchvision():
    with torch.device("meta"):
        module = tcc.to_torch(load("swin_t").graph)
    reference = tv.structure("swin_t")
    for kind in ("ln", "dropout"):
        assert hyperparameters(module, kind) == hyperparameters(reference, kind), kind
    ours = sorted((m.p, m.mode) for m in module.modules() if type(m).__name__ == "StochasticDepth")
    theirs = sorted((m.p, m.mode) for m in reference.modules() if type(m).__name__ == "StochasticDepth")
    # torchvision calls one StochasticDepth module on both residual branches of a block; the spec has one per branch
    assert ours == sorted(theirs * 2) and len(theirs) == 12 and max(p for p, _ in theirs) == 0.2
    model = load("swin_t")
    key_map = model.checkpoints[0].key_map
    layout = tv.state_layout(reference)
    assert [(key_map.rename(k), s) for k, s in layout] == [(k, tuple(p.shape)) for k, p in model.graph.parameters()]


def test_index_and_mask_equal_torchvision():
    """The relative position index as torchvision's Swin and MaxViT register it; the shifted-window mask (checked
    end to end by the logits below: three of the four stages shift) is 0 inside a region, -100 across, and a
    window that the shift leaves inside one region is all zeros."""
    tv.torchvision_models()
    from torchvision.models import maxvit, swin_transformer

    attention = swin_transformer.ShiftedWindowAttention(8, [7, 7], [3, 3], 2)
    assert np.array_equal(attention.relative_position_index.numpy(), relative_position_index(7, 7).reshape(-1))
    assert np.array_equal(maxvit._get_relative_position_index(7, 7).numpy(), relative_position_index(7, 7))
    mask = shifted_window_mask((14, 21), (7, 7), (3, 3))
    assert mask.shape == (6, 1, 49, 49) and set(np.unique(mask)) == {0.0, -100.0}
    assert not mask[0].any() and mask[-1].any()  # the first window lies in one region; the corner window in four
    assert np.array_equal(mask, mask.transpose(0, 1, 3, 2)) and not np.diagonal(mask, axis1=2, axis2=3).any()


def test_logits_equal_torchvision_with_its_state_dict(tmp_path, capsys):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = tv.torchvision_models().SwinTransformer(num_classes=5, **SMALL).eval()
    init_weights(reference, seed=2)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))  # maps 56, 28, 14, 7
    logits, err = predict_with_state_dict(SPEC, reference, x, tmp_path, capsys, set_args(SMALL_SET))
    assert "by the spec's checkpoint layout 'torchvision' (by name through its key map)" in err
    assert "num_classes=5 read from the checkpoint" in err
    assert_logits_equal(reference, load("swin_t", **SMALL_SET), x, logits, tmp_path / "reference.pth")


def test_builds_for_onnx_runtime(tmp_path, capsys):
    assert_ort_build_self_checks(SPEC, set_args(SMALL_SET), tmp_path / "b", capsys, "--opset", "17")


def test_a_map_that_is_not_whole_windows_is_refused(write, capsys):
    assert cli(["check", str(SPEC), "--set", "image_size=160"]) == 2  # 40 / 7 is not whole
    err = capsys.readouterr().err
    assert "partition_split (reshape): cannot reshape [40, 40, 96]" in err and "Traceback" not in err
