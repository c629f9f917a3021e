"""MobileViTv2 (spec/baselines/mobilevitv2_050.yaml; zoo blocks separable_self_attention,
mobilevitv2_transformer_layer, mobilevitv2_block, and MobileViT's byob_bottleneck), checked against timm 1.0.x's
own model definitions (tests/helpers/timm_reference.py): trainable parameters and MACs exactly, the state_dict's
layout (every tensor by name), the norms' hyperparameters, logits with a timm state_dict imported by the plain
`tcc predict --weights`, an ORT FP32 build that self-checks, and the separable self-attention block alone against
timm's LinearSelfAttention and used by a user's own small spec (a new attention variant is YAML only).

The numbers are written out (num_classes 6, input 256, timm's default), so tcc's side is checked even where timm
is not importable.
"""

from __future__ import annotations

import json

import pytest
import torch

import tcc
from tcc.cli.main import main as cli
from tcc.lower.to_torch import init_weights
from tcc.lower.weights import match_weights
from tcc.tolerance import compare
from tests.helpers import timm_reference as timm_ref
from tests.helpers.reference_check import assert_logits_equal, assert_ort_build_self_checks, predict_with_state_dict
from tests.helpers.zoo import BASELINES, load_baseline

SPEC = BASELINES / "mobilevitv2_050.yaml"
# timm model: (--set width, trainable params, MACs at 256 x 256): timm 1.0.x with num_classes=6
NUMBERS = {
    "mobilevitv2_050": (0.5, 1_115_135, 464_340_480),
    "mobilevitv2_075": (0.75, 2_483_319, 1_027_598_592),
    "mobilevitv2_100": (1.0, 4_391_919, 1_811_581_952),
    "mobilevitv2_125": (1.25, 6_840_935, 2_816_290_560),
    "mobilevitv2_150": (1.5, 9_830_367, 4_041_724_416),
    "mobilevitv2_175": (1.75, 13_360_215, 5_487_883_520),
    "mobilevitv2_200": (2.0, 17_430_479, 7_154_767_872),
}
SIZE = 64  # the smallest input: the last MobileViTv2 block (1/32) sees 2 x 2, one patch of 2 x 2


@pytest.mark.parametrize("name", sorted(NUMBERS))
def test_params_and_macs_equal_timm(name):
    """tcc's graph and timm's model against the numbers written above (timm counted by FlopCounterMode); timm's
    other widths are this spec with --set width=W, their state_dicts' layout too."""
    width, params, macs = NUMBERS[name]
    model = load_baseline("mobilevitv2_050", width=width)
    assert model.input_shape == (3, 256, 256)
    assert list(model.graph.shape(model.graph.output)) == [6]
    assert (model.graph.param_count, model.graph.macs) == (params, macs)
    reference = timm_ref.build(name)
    assert (sum(p.numel() for p in reference.parameters() if p.requires_grad), timm_ref.macs(reference, 256)) == (
        params,
        macs,
    )
    layout = [(k, tuple(t.shape)) for k, t in reference.state_dict().items()]
    assert [(k, tuple(p.shape)) for k, p in model.graph.parameters()] == layout


def test_state_dict_layout_is_timms_by_name():
    """Every tensor of timm's state_dict (BN statistics and num_batches_tracked included) has the spec's name and
    shape, in timm's order, so it imports by name (and by order); the spec declares that layout."""
    model = load_baseline("mobilevitv2_050")
    reference = timm_ref.build("mobilevitv2_050")
    layout = [(k, tuple(t.shape)) for k, t in reference.state_dict().items()]
    assert [(k, tuple(p.shape)) for k, p in model.graph.parameters()] == layout
    assert [c.name for c in model.checkpoints] == ["timm"]
    state = {k: torch.zeros(s) for k, s in layout}
    match = match_weights(model.graph, state, layouts=model.checkpoints)
    assert match.how.startswith("by name")
    assert sorted(match.assignment.values()) == sorted(state)


def test_norm_hyperparameters_equal_timm():
    """What the numbers cannot see: BatchNorm eps and momentum, GroupNorm groups / eps / affine (timm's
    GroupNorm1: one group), and no dropout or drop path that acts (timm's are all p = 0)."""
    with torch.device("meta"):
        module = tcc.to_torch(load_baseline("mobilevitv2_050").graph)
    reference = timm_ref.build("mobilevitv2_050")

    def hyper(m):
        bn = sorted((b.eps, b.momentum) for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d))
        gn = sorted(
            (g.num_groups, g.num_channels, g.eps, g.affine) for g in m.modules() if isinstance(g, torch.nn.GroupNorm)
        )
        drop = sorted(d.p for d in m.modules() if isinstance(d, torch.nn.Dropout) and d.p > 0)
        return bn, gn, drop

    ours, theirs = hyper(module), hyper(reference)
    assert ours == theirs
    assert len(ours[0]) == 25 and len(ours[1]) == 2 * (2 + 4 + 3) + 3 and {g[0] for g in ours[1]} == {1}
    assert not [m for m in reference.modules() if type(m).__name__ == "DropPath" and m.drop_prob > 0]
    assert not [m for m in module.modules() if type(m).__name__ == "StochasticDepth"]


@pytest.mark.parametrize("classes", [6, 3])
def test_logits_equal_timm_with_its_state_dict(classes, tmp_path, capsys):
    """timm's model with seeded random weights (tcc's init_weights: BN statistics and GroupNorm factors
    non-trivial), its state_dict saved and given to `tcc predict SPEC --weights FILE` with nothing else: the logits
    equal timm's within the FP32 contract (tcc.tolerance), the whole architecture at 64 x 64; a checkpoint for
    another number of classes sets num_classes itself."""
    reference = init_weights(timm_ref.build("mobilevitv2_050", num_classes=classes), seed=2)
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    logits, err = predict_with_state_dict(SPEC, reference, x, tmp_path, capsys, ["--set", f"image_size={SIZE}"])
    assert "by name" in err
    assert ("num_classes=3 read from the checkpoint" in err) == (classes != 6)
    assert logits.shape == (1, classes)
    assert_logits_equal(
        reference, load_baseline("mobilevitv2_050", image_size=SIZE), x, logits, tmp_path / "reference.pth"
    )


def test_logits_equal_timm_with_several_patches():
    """At 128 x 128 every MobileViTv2 block has several patches (N = 64, 16, 4: the softmax over them is not
    trivial), timm's weights loaded into tcc's PyTorch module by name."""
    reference = init_weights(timm_ref.build("mobilevitv2_050"), seed=4)
    model = load_baseline("mobilevitv2_050", image_size=128)
    module = tcc.to_torch(model.graph).eval()
    module.load_state_dict(reference.state_dict())
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        got = module(x).numpy()
        want = reference(x).numpy()
        exact = module.double()(x.double()).numpy()
    result = compare(want, got, "fp32", exact=exact)
    assert result["passed"], result


def test_ort_fp32_build_self_checks(tmp_path, capsys):
    assert_ort_build_self_checks(SPEC, ["--set", f"image_size={SIZE}"], tmp_path / "mobilevitv2-ort", capsys)


# ----------------------------------------------------------------------------- the attention block alone
BLOCK_ALONE = """\
kind: model
name: separable_attention_alone
input: {shape: [8, 4, 6]}             # [d, P, N]: 8 channels, 4 pixels per patch, 6 patches
layers:
  - {id: attn, block: separable_self_attention}
"""


def test_separable_self_attention_block_equals_timms_linear_self_attention(tmp_path):
    """The zoo block alone against timm's LinearSelfAttention(8) with the same weights, and against the paper's
    formula written out here."""
    LinearSelfAttention = timm_ref.timm_module().models.mobilevit.LinearSelfAttention
    spec = tmp_path / "alone.yaml"
    spec.write_text(BLOCK_ALONE)
    module = tcc.to_torch(tcc.load_spec(spec).graph).eval()
    reference = init_weights(LinearSelfAttention(8), seed=7).eval()
    module.load_state_dict({f"attn.{k}": v for k, v in reference.state_dict().items()})
    x = torch.randn(3, 8, 4, 6, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        got, want = module(x), reference(x)
        qkv = torch.nn.functional.conv2d(x, reference.qkv_proj.weight, reference.qkv_proj.bias)
        q, k, v = qkv[:, :1], qkv[:, 1:9], qkv[:, 9:]
        context = (k * q.softmax(dim=-1)).sum(dim=-1, keepdim=True)  # [B, d, P, 1]
        formula = torch.nn.functional.conv2d(v.relu() * context, reference.out_proj.weight, reference.out_proj.bias)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got, formula, rtol=1e-5, atol=1e-6)


# A user's own small model: a toy CNN whose feature map is treated as one patch row of H*W tokens ([C, 1, H*W])
# and mixed by separable self-attention in a residual, then put back. Only YAML: the zoo block and ops.
USER_SPEC = """\
kind: model
name: toy_separable_attention
params:
  num_classes: {type: int, default: 3, min: 1}
  width: {type: int, default: 16, min: 1}
input:
  shape: [3, 32, 32]
  preprocess: {mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}
layers:
  - {id: stem, block: conv_bn_act, out: "${width}", kernel: 3, stride: 2, act: silu}      # [16, 16, 16]
  - {id: down, block: conv_bn_act, out: "${2 * width}", kernel: 3, stride: 2, act: silu}  # [32, 8, 8]
  - id: mixer
    residual: true                                      # x + attention(norm(x))
    body:
      - {id: tokens, op: reshape, shape: "${[in_ch, 1, in_h * in_w]}"}   # [32, 1, 64]: P = 1, N = 64
      - {id: norm, op: groupnorm, groups: 1}
      - {id: attn, block: separable_self_attention}                      # [32, 1, 64]
      - {id: image, op: reshape, shape: [-1, 8, 8]}                      # [32, 8, 8]
  - {id: pool, op: global_avgpool}
  - {id: flatten, op: flatten}
  - {id: fc, op: linear, out: "${num_classes}"}
"""


def test_a_new_attention_variant_is_yaml_only(tmp_path, capsys):
    """A user's spec that puts separable self-attention into a toy CNN: `tcc check` counts it, and it builds for
    ORT FP32 and self-checks, with no Python written."""
    spec = tmp_path / "toy_separable_attention.yaml"
    spec.write_text(USER_SPEC)
    assert cli(["check", str(spec), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # stem 432 + 32, down 4,608 + 64, groupnorm 64, qkv_proj 32 * 65 + 65, out_proj 32 * 32 + 32, fc 32 * 3 + 3
    assert data["params"] == 432 + 32 + 4608 + 64 + 64 + 32 * 65 + 65 + 32 * 32 + 32 + 99
    assert_ort_build_self_checks(spec, [], tmp_path / "toy-ort", capsys)
