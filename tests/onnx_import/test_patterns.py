"""What exporters write in several ONNX nodes read back as one spec op: LayerNorm's arithmetic (below opset 17) and
LayerNormalization, GELU's erf form, the NHWC runs of ConvNeXt's block, layer scales, `x.mean((2, 3))`, and channel
slices; small torch modules exported by torch.onnx.export, imported, checked against ONNX Runtime by the import."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tcc
from tcc.lower.to_torch import init_weights
from tcc.onnx_import import import_onnx
from tests.helpers import torchvision_reference as tv
from tests.onnx_import.common import tcc_cli


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
