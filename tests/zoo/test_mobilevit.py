"""timm's MobileViT v1: spec/baselines/{mobilevit_xxs, mobilevit_s}.yaml (mobilevit_xs: mobilevit_s with the widths
set) and their zoo blocks (byob_bottleneck, mobilevit_block, timm_transformer_block, with multihead_attention and
conv_bn_act), checked against timm 1.0.x's own models (tests/helpers/timm_reference.py): trainable parameters and
MACs exactly, BatchNorm and LayerNorm hyperparameters, the state_dict's layout, and logits with a timm state_dict
imported by the plain `tcc predict --weights` (each spec declares timm's layout, by name through a key map); the
ORT FP32 build self-checks.

The numbers are also written out (num_classes 6, at timm's default 256 x 256 input), so that they are pinned even
where timm is not importable.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

import tcc
from tcc.lower.to_torch import init_weights
from tcc.lower.weights import load_weights, match_weights
from tcc.tolerance import compare
from tests.helpers import timm_reference as timm_ref
from tests.helpers.reference_check import (
    assert_logits_equal,
    assert_ort_build_self_checks,
    hyperparameters,
    predict_with_state_dict,
)
from tests.helpers.reference_check import set_args as set_values
from tests.helpers.zoo import BASELINES, load_baseline

# timm name: (trainable params, MACs): timm 1.0.x with num_classes=6 at 3 x 256 x 256 (timm_reference.macs:
# convolutions, linear layers and attention's two matrix products)
NUMBERS = {
    "mobilevit_xxs": (952_950, 407_046_016),
    "mobilevit_xs": (1_935_158, 1_025_530_112),
    "mobilevit_s": (4_941_478, 2_000_195_328),
}
SIZE = 256
NAMES = sorted(NUMBERS)
# timm name: (spec, --set overrides); mobilevit_xs is mobilevit_s with its widths
XS = {"channels": [32, 48, 64, 80, 96], "transformer_dims": [96, 120, 144], "num_features": 384}
SPECS = {
    "mobilevit_xxs": ("mobilevit_xxs", {}),
    "mobilevit_xs": ("mobilevit_s", XS),
    "mobilevit_s": ("mobilevit_s", {}),
}


def load(name: str, **overrides) -> tcc.Model:
    spec, sets = SPECS[name]
    return load_baseline(spec, **sets, **overrides)


def set_args(name: str) -> list[str]:
    """The --set arguments of the CLI for the timm model `name`."""
    return set_values(SPECS[name][1])


@pytest.mark.parametrize("name", NAMES)
def test_params_and_macs_equal_timm(name):
    params, macs = NUMBERS[name]
    model = load(name)
    assert model.input_shape == (3, SIZE, SIZE)
    assert (model.graph.param_count, model.graph.macs) == (params, macs)
    assert list(model.graph.shape(model.graph.output)) == [6]
    reference = timm_ref.build(name, num_classes=6)
    assert reference.pretrained_cfg["input_size"] == (3, SIZE, SIZE)
    assert (sum(p.numel() for p in reference.parameters() if p.requires_grad), timm_ref.macs(reference, SIZE)) == (
        params,
        macs,
    )


def test_preprocess_is_timms():
    """timm's default_cfg: pixels in [0, 1] (mean 0, std 1), bicubic resize (its crop_pct 0.9 centre crop is not
    part of a tcc input)."""
    cfg = timm_ref.build("mobilevit_xxs").pretrained_cfg
    for spec in ("mobilevit_xxs", "mobilevit_s"):
        pre = load_baseline(spec).preprocess
        assert (list(pre.mean), list(pre.std)) == (list(cfg["mean"]), list(cfg["std"]))
        assert pre.interpolation == cfg["interpolation"] == "bicubic"


@pytest.mark.parametrize("name", NAMES)
def test_hyperparameters_equal_timm(name):
    """What the numbers cannot see: every BatchNorm's eps and momentum, every LayerNorm's eps, dropout."""
    with torch.device("meta"):  # structure only
        module = tcc.to_torch(load(name).graph)
    reference = timm_ref.build(name)
    for kind in ("bn", "ln", "dropout"):
        assert hyperparameters(module, kind, True) == hyperparameters(reference, kind, True), kind
    assert len(hyperparameters(module, "ln")) == 2 * 9 + 3  # two per transformer block, one per MobileViT block


@pytest.mark.parametrize("name", NAMES)
def test_timm_state_dict_layout(name):
    """The spec's tensors are timm's state_dict, in timm's order, with timm's names through the key map (timm's
    attn.qkv / attn.proj are the zoo attention's in_proj / out_proj): imports by name, and by order too."""
    model = load(name)
    layout = [(k, tuple(v.shape)) for k, v in timm_ref.build(name).state_dict().items()]
    spec = [(k, tuple(p.shape)) for k, p in model.graph.parameters()]
    assert [c.name for c in model.checkpoints] == ["timm"]
    key_map = model.checkpoints[0].key_map
    assert [(key_map.rename(k), s) for k, s in layout] == spec
    state = {k: torch.zeros(s) for k, s in layout}
    match = match_weights(model.graph, state, layouts=model.checkpoints)
    assert match.how.startswith("by the spec's checkpoint layout 'timm' (by name through its key map)")
    assert sorted(match.assignment.values()) == sorted(state)
    assert sorted(match_weights(model.graph, state, by_order=True).assignment.values()) == sorted(state)


# (name, classes, input size): 128 keeps the float64 reference fast and still leaves the last MobileViT block 2 x 2
# patches of 2 x 2 (at 64 its attention has one patch to attend to)
SMALL = [("mobilevit_xxs", 6, 128), ("mobilevit_xs", 3, 64), ("mobilevit_s", 6, 128)]


@pytest.mark.parametrize("name,classes,size", SMALL)
def test_logits_equal_timm_with_its_state_dict(name, classes, size, tmp_path, capsys):
    """A timm model with seeded random weights (tcc's init_weights: BN statistics and LayerNorm factors
    non-trivial), its state_dict saved and given to `tcc predict SPEC --weights FILE` with nothing else: the logits
    equal timm's within the FP32 contract (tcc.tolerance), and a checkpoint for another number of classes sets
    num_classes itself."""
    reference = init_weights(timm_ref.build(name, num_classes=classes), seed=2)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    spec = BASELINES / f"{SPECS[name][0]}.yaml"
    logits, err = predict_with_state_dict(
        spec, reference, x, tmp_path, capsys, ["--set", f"image_size={size}", *set_args(name)]
    )
    assert "by the spec's checkpoint layout 'timm' (by name through its key map)" in err
    assert ("num_classes=3 read from the checkpoint" in err) == (classes != 6)
    assert logits.shape == (1, classes)
    assert_logits_equal(reference, load(name, image_size=size), x, logits, tmp_path / "reference.pth")


def test_mobilevit_block_alone_equals_timm(tmp_path):
    """The zoo block against timm's MobileVitBlock where the square zoo inputs cannot tell: a map that is not
    square (8 x 12 with 4 x 4 patches: 2 rows of 3), output channels other than the input's, 3 transformer blocks
    of 2 heads."""
    timm_ref.timm_module()  # skips where the venv lacks timm
    from timm.models.byobnet import ByoModelCfg, get_layer_fns
    from timm.models.mobilevit import MobileVitBlock

    layers = get_layer_fns(ByoModelCfg(blocks=(), act_layer="silu"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        block = MobileVitBlock(
            24, 20, transformer_dim=32, transformer_depth=3, patch_size=4, num_heads=2, layers=layers
        )
    reference = init_weights(torch.nn.Sequential(OrderedDict(block=block)), seed=4).eval()
    spec = tmp_path / "mobilevit_block_check.yaml"
    spec.write_text(
        "kind: model\nname: mobilevit_block_check\ninput: {shape: [24, 8, 12]}\nlayers:\n"
        "  - {id: block, block: mobilevit_block, out: 20, transformer_dim: 32, transformer_depth: 3,\n"
        "     patch_size: 4, heads: 2}\n"
    )
    graph = tcc.load_spec(spec).graph
    assert graph.param_count == sum(p.numel() for p in reference.parameters())
    assert list(graph.shape(graph.output)) == [20, 8, 12]
    weights = tmp_path / "block.pth"
    torch.save(reference.state_dict(), weights)
    module = tcc.to_torch(graph)
    match = load_weights(module, graph, weights, by_order=True)
    assert match.assignment["block.transformer.2.attn.in_proj.weight"] == "block.transformer.2.attn.qkv.weight"
    x = torch.randn(2, 24, 8, 12, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        got = module.eval()(x).numpy()
        want = reference(x).numpy()
        exact = module.double()(x.double()).numpy()
    result = compare(want, got, "fp32", exact=exact)
    assert result["passed"], result


def test_patch_size_must_divide_the_map():
    """timm resizes a map that patches do not tile; the spec refuses it, naming the unfold."""
    with pytest.raises(tcc.SpecError, match="unfold_split"):
        load_baseline("mobilevit_xxs", image_size=96)


@pytest.mark.parametrize("spec", ["mobilevit_xxs", "mobilevit_s"])
def test_ort_fp32_build_self_checks(spec, tmp_path, capsys):
    assert_ort_build_self_checks(BASELINES / f"{spec}.yaml", ["--set", "image_size=128"], tmp_path / spec, capsys)
