"""What exporters write in several ONNX nodes read back as one spec op: LayerNorm's arithmetic (below opset 17) and
LayerNormalization, GELU's erf form, the NHWC runs of ConvNeXt's block, layer scales, `x.mean((2, 3))`, and channel
slices; small torch modules exported by torch.onnx.export, imported, checked against ONNX Runtime by the import."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import tcc
from tcc.lower.to_torch import init_weights
from tcc.onnx_import import import_onnx
from tests.helpers import torchvision_reference as tv
from tests.onnx_import.common import assert_predicts_as_onnx_runtime, tcc_cli


def exported(module: nn.Module, path, shape=(1, 4, 8, 8), opset: int = 13):
    module = init_weights(module, seed=1).eval()
    torch.onnx.export(
        module, torch.randn(*shape), path, dynamo=False, opset_version=opset, input_names=["x"], output_names=["y"]
    )
    return path


def spec_of(module: nn.Module, tmp_path, opset: int = 13, shape=(1, 4, 8, 8)) -> str:
    imported = import_onnx(exported(module, tmp_path / f"m{opset}.onnx", shape, opset))
    assert imported.check["passed"] and not imported.notes
    return imported.spec_text


class LayerNorm2d(nn.Module):
    """ConvNeXt's: nn.LayerNorm over the channels of NCHW, between two permutes."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = nn.LayerNorm(c, eps=1e-6)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Block(nn.Module):
    """ConvNeXt's block on NHWC: depthwise conv, then LayerNorm / Linear / GELU / Linear on the last axis, a layer
    scale, the residual."""

    def __init__(self, c: int):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc1, self.act, self.fc2 = nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c)
        self.layer_scale = nn.Parameter(torch.full((c, 1, 1), 0.5))

    def forward(self, x):
        y = self.fc2(self.act(self.fc1(self.norm(self.dw(x).permute(0, 2, 3, 1))))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


@pytest.mark.parametrize("opset", [13, 17])
def test_convnext_parts_read_back_as_layernorm_linear_gelu_and_scale(opset, tmp_path):
    text = spec_of(nn.Sequential(LayerNorm2d(4), Block(4), Block(4)), tmp_path, opset)
    assert '- {id: "0", op: layernorm, eps: 1.0e-06}' in text  # LayerNorm2d: over the channels (axis 1)
    for op in (
        "{id: norm, op: layernorm}",
        "{id: fc1, op: linear, out: 8, axis: 1}",
        "{id: act, op: gelu}",
        "{id: layer_scale, op: scale}",
    ):  # the block, on NCHW
        assert op in text
    assert '- {repeat: 2, name: "${i + 1}", block: block_1, residual: true}' in text


@pytest.mark.parametrize("opset", [13, 17])
def test_layernorm_over_the_features_of_a_flat_value(opset, tmp_path):
    module = nn.Sequential(nn.Flatten(), nn.LayerNorm(16), nn.Linear(16, 3))
    assert "op: layernorm}" in spec_of(module, tmp_path, opset, shape=(1, 4, 2, 2))


class Pools(nn.Module):
    def forward(self, x):  # timm's squeeze-excite and heads: mean (or max) over H and W, kept or not
        return torch.cat([x.mean((2, 3)), x.amax((2, 3), keepdim=True).flatten(1)], 1)


class Slices(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 1)

    def forward(self, x):
        x = torch.cat([x, x], 1)[:, :8]  # GhostNet's slice that keeps everything
        a, b = x.chunk(2, dim=1)  # torchvision's ShuffleNet
        y = self.conv(a)
        return torch.cat([y[:, :4] + b, y[:, 4:]], 1)  # ReXNet's partial residual


def test_global_means_and_channel_slices(tmp_path):
    text = spec_of(Pools(), tmp_path)
    assert "op: global_avgpool}" in text and "op: global_maxpool}" in text
    text = spec_of(Slices(), tmp_path)
    assert "op: split, parts: 2}" in text and "op: split, sizes: [4, 2]}" in text


def test_torchvision_convnext_and_shufflenet_import(tmp_path):
    """convnext_tiny (LayerNorm2d, the NHWC block, layer scales: its parameters, as it has no BatchNorm for
    torch.onnx.export to fold into the convs) and shufflenet_v2 (chunk as two slices)."""
    for name, opset in (("convnext_tiny", 17), ("shufflenet_v2_x1_0", 13)):
        model = init_weights(tv.build(name, num_classes=5), seed=1).eval()
        path = tmp_path / f"{name}.onnx"
        torch.onnx.export(
            model,
            torch.randn(1, 3, 32, 32),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=["x"],
            output_names=["y"],
        )
        imported = import_onnx(path)
        assert imported.check["passed"] and not imported.notes and "\nblocks:\n" in imported.spec_text
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(imported.spec_text)
        if name == "convnext_tiny":
            assert tcc.load_spec(spec).graph.param_count == tv.trainable_params(model)


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm([8, 8])
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):  # a layer norm over two axes, a slice of the height repeated: no spec op for the norm and
        # the repeat (the slice has one); what follows is unnamed
        return self.conv(self.norm(x)) + self.conv(x[:, :, :4].repeat(1, 1, 2, 1))


def test_what_the_patterns_cannot_take_is_refused_by_node(tmp_path):
    path = exported(Unsupported(), tmp_path / "u.onnx", opset=17)
    rc, _, err = tcc_cli("import", path, "-o", tmp_path / "u.yaml")
    assert rc == 2 and "LayerNormalization over axes 2..3 (the spec's layernorm takes one)" in err
    assert "(Tile): no spec op" in err and "Slice" not in err and "Conv" not in err
    assert not (tmp_path / "u.yaml").exists()


class TinyVit(nn.Module):
    """timm's ViT in miniature: patches, a class token, attention whose q, k, v come from
    `qkv.permute(2, 0, 3, 1, 4).unbind(0)` (the batch axis moved off the front), the class token's features
    (`x[:, 0]`) to the head."""

    def __init__(self, dim: int = 8, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(4, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.qkv, self.proj, self.head = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), nn.Linear(dim, 3)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1)
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        return self.head(x[:, 0])


def imported_with_a_batch(module: nn.Module, tmp_path) -> str:
    """The module exported with a dynamic batch and imported; its spec's text, after `tcc predict` on a batch of 3
    equals ONNX Runtime on the original (the per-sample forms must not mix the samples)."""
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        module.eval(), torch.randn(1, 4, 8, 8), path, dynamo=False, opset_version=17, input_names=["x"],
        output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
    )  # fmt: skip
    rc, _, err = tcc_cli("import", path, "-o", tmp_path / "m.yaml")
    assert rc == 0, err
    np.save(tmp_path / "x.npy", torch.randn(3, 4, 8, 8).numpy())
    assert_predicts_as_onnx_runtime(tmp_path / "m.yaml", tmp_path / "m.pt", path, tmp_path / "x.npy")
    return (tmp_path / "m.yaml").read_text()


def test_attention_with_the_batch_axis_moved_and_a_class_token(tmp_path):
    text = imported_with_a_batch(init_weights(TinyVit(), seed=1), tmp_path)
    # per sample: the qkv axis split, each part reshaped without it and permuted with the batch first
    assert "op: split, parts: 3, axis: 2}" in text and text.count("op: permute, perm: [0, 2, 1, 3]") >= 3
    assert "op: select, axis: 1, index: 0}" in text  # x[:, 0]: the class token


class MovedBatch(nn.Module):
    def forward(self, x):  # the batch axis moved to the third place: no per-sample form
        a, b = x.reshape(x.shape[0], 2, 2, 64).permute(1, 2, 0, 3).unbind(0)
        return (a + b).permute(1, 0, 2).flatten(1)


def test_a_batch_axis_moved_elsewhere_is_still_refused_by_node(tmp_path):
    rc, _, err = tcc_cli("import", exported(MovedBatch(), tmp_path / "b.onnx", opset=17), "-o", tmp_path / "b.yaml")
    assert rc == 2 and "Transpose with perm [1, 2, 0, 3] (the spec's permute keeps the batch axis first)" in err


class TokenNorms(nn.Module):
    """LeViT's pieces: a linear over tokens with BatchNorm1d on the flattened tokens (`bn(x.flatten(0, 1))
    .reshape_as(x)`), then the mean over the tokens to the head."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.patch = nn.Conv2d(4, dim, 4, stride=4)
        self.linear, self.bn, self.head = nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.Linear(dim, 3)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        y = self.linear(x)
        x = x + self.bn(y.flatten(0, 1)).reshape_as(y)
        return self.head(x.mean(1))


def test_batch_norm_over_flattened_tokens_and_the_mean_over_tokens(tmp_path):
    module = init_weights(TokenNorms(), seed=1)
    module.bn.running_mean.uniform_(-1, 1)  # not the identity: the affine must be folded right
    module.bn.running_var.uniform_(0.5, 2)
    text = imported_with_a_batch(module, tmp_path)
    assert "op: mean, axes: [1]}" in text and "op: mul" in text and "op: batchnorm" not in text


def float_island_kinds(module: nn.Module, target: str, tmp_path) -> set[str]:
    """The module imported (imported_with_a_batch) and built INT8 for `target` on 16 seeded samples, its self-check
    passed: the kinds of its float islands."""
    imported_with_a_batch(init_weights(module, seed=1), tmp_path)
    np.save(tmp_path / "calib.npy", torch.randn(16, 4, 8, 8).numpy())
    rc, printed, err = tcc_cli(
        "build", tmp_path / "m.yaml", "--weights", tmp_path / "m.pt", "--target", target, "--precision", "int8",
        "--data", tmp_path / "calib.npy", "--method", "kl", "-o", tmp_path / "b",
    )  # fmt: skip
    assert rc == 0, err
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["self_check"]["result"]["passed"]
    return {i["kind"] for i in manifest["quantization"]["float_islands"]}


@pytest.mark.parametrize("target", ["ort", "tflite"])
def test_a_mean_over_tokens_is_a_float_island_of_an_int8_build(target, tmp_path):
    assert float_island_kinds(TokenNorms(), target, tmp_path) == {"reduce_mean"}


class CrossCovariance(nn.Module):
    """EdgeNeXt's cross-covariance attention in miniature: q and k scaled to unit length by F.normalize (ReduceL2,
    Clip, Expand, Div in the export), then their product over the tokens."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.patch, self.head = nn.Conv2d(4, dim, 4, stride=4), nn.Linear(dim, 3)

    def forward(self, x):
        x = self.patch(x).flatten(2)  # [N, C, tokens]
        q, k = F.normalize(x, dim=-1), F.normalize(x, dim=1)
        return self.head((q @ k.transpose(-2, -1)).softmax(-1).mean(-1))


def test_f_normalize_reads_back_as_l2_normalize(tmp_path):
    text = imported_with_a_batch(init_weights(CrossCovariance(), seed=1), tmp_path)
    assert "op: l2_normalize, axis: -1" in text and "op: l2_normalize" in text.replace("axis: -1", "", 1)
    assert "ReduceL2" not in text


@pytest.mark.parametrize("target", ["ort", "tflite", "host"])
def test_l2_normalize_is_a_float_island_of_an_int8_build(target, tmp_path):
    softmax = set() if target == "host" else {"softmax"}  # an integer kernel on TVM's targets only
    assert float_island_kinds(CrossCovariance(), target, tmp_path) == {"l2_normalize", "reduce_mean", *softmax}


class PositionedBlock(nn.Module):
    """EdgeNeXt's block shape: x + f(x) where f adds a learned position table in the block's own module (the inner
    add's id is the block's `residual`, as its outer add's name is `ID.residual`)."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.conv, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 1)
        self.pos = nn.Parameter(torch.randn(1, c, 8, 8))

    def forward(self, x):
        return x + self.conv2(self.conv(x) + self.pos)


def test_a_residual_inside_a_residual_body_gets_a_name_of_its_own(tmp_path):
    text = spec_of(nn.Sequential(PositionedBlock(), nn.ReLU(), PositionedBlock()), tmp_path, 17)  # nested: no note
    assert "{id: residual_2, op: param, shape: [4, 8, 8], residual: true}" in text
    assert '{id: "0", block: block_0, residual: true}' in text


class GroupNorms(nn.Module):
    """MobileViTv2's pieces: nn.GroupNorm (Reshape, InstanceNormalization, Reshape back, the affine in the export),
    with and without its affine, and a sum over the tokens."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.norm, self.plain = nn.GroupNorm(2, 8), nn.GroupNorm(1, 8, affine=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y = self.plain(self.norm(self.conv(x)))
        return self.head(y.flatten(2).sum(-1))


def test_group_norm_and_a_sum_read_back(tmp_path):
    module = init_weights(GroupNorms(), seed=1)
    with torch.no_grad():
        module.norm.weight.uniform_(0.5, 1.5), module.norm.bias.uniform_(-1, 1)  # not the identity affine
    text = imported_with_a_batch(module, tmp_path)
    assert "op: groupnorm, groups: 2}" in text and "op: groupnorm, affine: false}" in text
    assert "op: sum, axes: [2]}" in text and "InstanceNormalization" not in text
