"""torchvision's MaxViT as a spec (spec/baselines/maxvit_t.yaml, zoo blocks maxvit_layer, maxvit_mbconv,
maxvit_partition_attention and maxvit_relative_attention), checked against torchvision 0.28's own model: trainable
parameters and MACs exactly (MACs as torch's FlopCounterMode counts them: convolutions, linear layers and
attention's two matrix products), hyperparameters (BatchNorm, LayerNorm, dropout, stochastic depth), the
state_dict's layout, torchvision's state_dict imported by the plain `tcc predict --weights` with logits equal within
the FP32 rule, and the ONNX form on ONNX Runtime.

The runs use a small configuration of the same architecture (torchvision's MaxVit class with small widths, a
96 x 96 input and 3 x 3 partitions: block attention in 3 x 3 windows, grid attention over grids of 8 x 8 and
4 x 4 cells, so window and grid partitions differ in both blocks).
"""

from __future__ import annotations

import pytest
import torch

import tcc
from tcc.errors import SpecError
from tcc.lower.to_torch import init_weights
from tcc.lower.weights import match_weights
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

SPEC = BASELINES / "maxvit_t.yaml"
# torchvision constructor: (trainable params, MACs) at 224 with num_classes 6
NUMBERS = {"maxvit_t": (30_410_696, 5_557_537_792)}
# a small configuration of the same architecture for the runs: torchvision's MaxVit class with these
SMALL = {
    "input_size": (96, 96),
    "stem_channels": 8,
    "block_channels": [8, 16],
    "block_layers": [1, 2],
    "head_dim": 4,
    "partition_size": 3,
    "stochastic_depth_prob": 0.2,
}
SMALL_SET = {
    "image_size": 96,
    "stem_channels": 8,
    "block_channels": [8, 16],
    "block_layers": [1, 2],
    "head_dim": 4,
    "partition_size": 3,
}


def test_params_and_macs_equal_torchvision():
    params, macs = NUMBERS["maxvit_t"]
    model = load("maxvit_t")
    reference = tv.structure("maxvit_t")
    assert model.input_shape == (3, 224, 224)
    assert list(model.graph.shape(model.graph.output)) == [6]
    assert (model.graph.param_count, model.graph.macs) == (params, macs)
    assert (tv.trainable_params(reference), flop_count_macs(reference, 224)) == (params, macs)


def test_hyperparameters_equal_torchvision():
    """BatchNorm eps and momentum, LayerNorm eps, dropout, and stochastic depth (torchvision's linspace to the last
    bit). torchvision applies each partition layer's one `stochastic_dropout` module to both residual branches; the
    spec has one node per branch. MBConv's is an nn.Identity where its p is 0, the spec's node is left out."""
    with torch.device("meta"):  # structure only: no storage, no initialisation
        module = tcc.to_torch(load("maxvit_t").graph)
    reference = tv.structure("maxvit_t")
    for kind in ("bn", "ln", "dropout"):
        assert hyperparameters(module, kind) == hyperparameters(reference, kind), kind
    ours = sorted((m.p, m.mode) for m in module.modules() if type(m).__name__ == "StochasticDepth")
    theirs = sorted(
        x
        for name, m in reference.named_modules()
        if type(m).__name__ == "StochasticDepth" and m.p > 0
        for x in [(m.p, m.mode)] * (2 if name.endswith(".stochastic_dropout") else 1)
    )
    assert len(theirs) == 10 * (1 + 2 * 2)  # 11 layers (MBConv, 2 x 2 branches); the first one's p is 0
    assert ours == theirs


def test_state_layout_maps_onto_the_spec_in_order():
    model = load("maxvit_t")
    key_map = model.checkpoints[0].key_map
    layout = tv.state_layout(tv.structure("maxvit_t"))
    spec = [(k, tuple(p.shape)) for k, p in model.graph.parameters()]
    assert [(key_map.rename(k), s) for k, s in layout] == spec  # by name, and in torchvision's order
    state = {k: torch.zeros(s) for k, s in layout}
    match = match_weights(model.graph, state, layouts=model.checkpoints)
    assert match.how.startswith("by the spec's checkpoint layout 'torchvision' (by name through its key map)")
    assert sorted(match.assignment.values()) == sorted(state)  # the relative_position_index buffers too


def test_logits_equal_torchvision_with_its_state_dict(tmp_path, capsys):
    """torchvision's MaxVit (the small configuration) with seeded weights, its state_dict given to
    `tcc predict --weights` with nothing else."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = tv.torchvision_models().MaxVit(num_classes=5, **SMALL).eval()
    init_weights(reference, seed=2)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    logits, err = predict_with_state_dict(SPEC, reference, x, tmp_path, capsys, set_args(SMALL_SET))
    assert "by the spec's checkpoint layout 'torchvision' (by name through its key map)" in err
    assert "num_classes=5 read from the checkpoint" in err
    assert logits.shape == (2, 5)
    assert_logits_equal(reference, load("maxvit_t", **SMALL_SET), x, logits, tmp_path / "reference.pth")


def test_builds_for_onnx_runtime(tmp_path, capsys):
    assert_ort_build_self_checks(SPEC, set_args(SMALL_SET), tmp_path / "b", capsys)


def test_partition_size_must_divide_every_block_input():
    """torchvision refuses an input whose block inputs are not whole partitions; `tcc check` does too (the
    partition's reshape), naming the node."""
    with pytest.raises(SpecError, match=r"window_attention\.partition_op\.split \(reshape\): cannot reshape"):
        load("maxvit_t", image_size=96, partition_size=5)
