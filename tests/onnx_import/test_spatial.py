"""Dense prediction's ONNX forms read back as spec ops (tcc/onnx_import/spatial.py): a small U-Net written in
PyTorch (instance norms, PReLU, reflect padding, a transposed conv, bilinear, bicubic and nearest upsampling to a
scale and to a skip's size) and torchvision's LRASPP, exported by torch.onnx.export, imported by the command line,
predicting as ONNX Runtime does on the original file; refusals name the node and the reason."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from torch import nn

from tcc.lower.to_torch import init_weights
from tests.helpers.onnx_util import run
from tests.helpers.torchvision_reference import torchvision_models
from tests.onnx_import.common import tcc_cli


class TinyUNet(nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.InstanceNorm2d(8), nn.PReLU(8))
        self.enc2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.InstanceNorm2d(16, affine=True), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(16, 8, 3), nn.PReLU())
        self.deep = nn.Conv2d(16, 8, 1)
        self.head = nn.Conv2d(32, classes, 1)

    def forward(self, x):
        a = self.enc1(x)
        b = self.enc2(F.max_pool2d(a, 2))
        u = torch.cat([self.up(b), a], 1)
        d = self.dec(F.pad(u, (1, 1, 1, 1), mode="reflect"))
        deep = F.interpolate(self.deep(b), size=d.shape[-2:], mode="bilinear", align_corners=False)
        near = F.interpolate(d, scale_factor=0.5, mode="nearest")
        near = F.interpolate(near, scale_factor=2.0, mode="nearest")
        # PyTorch's bicubic: ONNX's cubic, cubic_coeff_a -0.75, exclude_outside 0
        smooth = F.interpolate(F.interpolate(d, scale_factor=0.5, mode="bicubic"), size=d.shape[-2:], mode="bicubic")
        return self.head(torch.cat([d, deep, near, smooth], 1))


def _export(module: nn.Module, path, size: int, opset: int):
    torch.onnx.export(
        module.eval(), torch.randn(1, 3, size, size), path, dynamo=False, opset_version=opset,
        input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}},
    )  # fmt: skip
    return path


def _assert_predicts_as_onnx_runtime(work, onnx_path, x) -> None:
    np.save(work / "x.npy", x)
    rc, printed, err = tcc_cli(
        "predict", work / "m.yaml", "--weights", work / "m.pt", "--input", work / "x.npy", "--json", "--logits"
    )
    assert rc == 0, err
    rows = json.loads(printed)
    got = np.array([row["logits"] for row in (rows if isinstance(rows, list) else [rows])], np.float32)
    want = run(onnx.load(onnx_path), x).reshape(len(x), -1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("opset", [13, 17])
def test_a_unet_imports_and_predicts_as_onnx_runtime(opset, tmp_path):
    torch.manual_seed(0)
    path = _export(init_weights(TinyUNet(), seed=2), tmp_path / "unet.onnx", 32, opset)
    rc, out, err = tcc_cli("import", path, "-o", tmp_path / "m.yaml")
    assert rc == 0, err
    text = (tmp_path / "m.yaml").read_text()
    ops = ("instance_norm", "prelu", "conv_transpose", "op: pad", "mode: reflect", "mode: bilinear", "mode: bicubic")
    for op in ops:
        assert op in text, op
    assert "affine: true" in text and "(FP32 rule: passed)" in out
    _assert_predicts_as_onnx_runtime(
        tmp_path, path, np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    )


def test_torchvision_lraspp_imports_and_predicts_as_onnx_runtime(tmp_path):
    """torchvision's LRASPP-MobileNetV3 (its segmentation head upsamples bilinearly to the high-resolution branch
    and to the input), seeded weights, its dense [N, K, H, W] output."""
    segmentation = torchvision_models().segmentation

    class Out(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)

        def forward(self, x):
            return self.net(x)["out"]

    path = _export(init_weights(Out(), seed=3), tmp_path / "lraspp.onnx", 64, 17)
    rc, out, err = tcc_cli("import", path, "-o", tmp_path / "m.yaml")
    assert rc == 0, err
    assert "mode: bilinear" in (tmp_path / "m.yaml").read_text()
    _assert_predicts_as_onnx_runtime(
        tmp_path, path, np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    )


def test_monai_basic_unet_imports_and_predicts_as_onnx_runtime(tmp_path):
    """MONAI's BasicUNet (2-D): transposed-conv upsampling, its replicate padding to the skip's size, instance norms
    and LeakyReLU; seeded weights."""
    from monai.networks.nets import BasicUNet

    torch.manual_seed(0)
    net = init_weights(BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, features=(8, 8, 16, 32, 64, 8)), 4)
    path = _export(net, tmp_path / "basic_unet.onnx", 32, 17)
    rc, out, err = tcc_cli("import", path, "-o", tmp_path / "m.yaml")
    assert rc == 0, err
    text = (tmp_path / "m.yaml").read_text()
    assert "conv_transpose" in text and "instance_norm" in text
    x = np.random.default_rng(4).standard_normal((2, 3, 32, 32)).astype(np.float32)
    _assert_predicts_as_onnx_runtime(tmp_path, path, x)


class ConstantOperands(nn.Module):
    """What timm's hybrids write with constants: a layer scale, a position embedding, a bias after a product, a
    constant subtracted from and divided by, and the quotient and difference of two computed values."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.gamma = nn.Parameter(torch.rand(6, 1, 1) + 0.5)
        self.pos = nn.Parameter(torch.randn(1, 6, 16, 16))
        self.divisor = nn.Parameter(torch.rand(6, 1, 1) + 0.5)
        self.row_bias = nn.Parameter(torch.randn(16))

    def forward(self, x):
        y = self.conv(x) * self.gamma + self.pos
        y = (y - 0.5) / self.divisor + self.row_bias
        y = 2.0 - y
        return y / (torch.relu(y) + 1.0) - torch.sigmoid(y)


def test_constant_operands_import_as_params_and_scales(tmp_path):
    """A constant operand of any broadcast shape becomes the spec's param (a divisor its reciprocal, a subtrahend
    its negation; one factor per channel the spec's scale); sub and div of computed values are spec ops."""
    torch.manual_seed(0)
    path = _export(ConstantOperands(), tmp_path / "constants.onnx", 16, 17)
    rc, out, err = tcc_cli("import", path, "-o", tmp_path / "m.yaml")
    assert rc == 0, err
    text = (tmp_path / "m.yaml").read_text()
    assert "op: param" in text and "op: scale" in text and "op: sub" in text and "op: div" in text
    x = np.random.default_rng(5).standard_normal((2, 3, 16, 16)).astype(np.float32)
    _assert_predicts_as_onnx_runtime(tmp_path, path, x)


def _one_node(tmp_path, node, inits, out_shape):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, out_shape)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["a"], name="first"), node], "g", [x], [y], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return tcc_cli("import", path, "-o", tmp_path / "m.yaml")


@pytest.mark.parametrize(
    ("node", "inits", "out_shape", "message"),
    [
        (
            helper.make_node(
                "Resize",
                ["a", "", "s"],
                ["y"],
                name="up",
                mode="cubic",
                coordinate_transformation_mode="tf_half_pixel_for_nn",
            ),
            {"s": np.array([1, 1, 2, 2], np.float32)},
            [1, 3, 16, 16],
            "node 'up' (Resize): coordinate_transformation_mode tf_half_pixel_for_nn",
        ),
        (
            helper.make_node(
                "Resize", ["a", "", "s"], ["y"], name="up", coordinate_transformation_mode="tf_crop_and_resize"
            ),
            {"s": np.array([1, 1, 2, 2], np.float32)},
            [1, 3, 16, 16],
            "node 'up' (Resize): coordinate_transformation_mode tf_crop_and_resize",
        ),
        (
            helper.make_node("Pad", ["a", "p"], ["y"], name="wrap", mode="wrap"),
            {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)},
            [1, 3, 10, 10],
            "node 'wrap' (Pad): mode wrap",
        ),
        (
            helper.make_node("Pad", ["a", "p"], ["y"], name="chan"),
            {"p": np.array([0, 1, 0, 0, 0, 1, 0, 0], np.int64)},
            [1, 5, 8, 8],
            "node 'chan' (Pad): pads [0, 1, 0, 0, 0, 1, 0, 0] pad the batch or the channels",
        ),
        (  # a value past the op table's limits: the written spec's line, not a temporary file's position
            helper.make_node("Resize", ["a", "", "s"], ["y"], name="up", mode="cubic", cubic_coeff_a=-1.5),
            {"s": np.array([1, 1, 2, 2], np.float32)},
            [1, 3, 16, 16],
            "m.onnx: the spec written for it is refused at `- {id: up, op: resize, mode: bicubic, scale: 2.0, "
            "cubic_coeff_a: -1.5}`: resize argument 'cubic_coeff_a': must be >= -1, got -1.5; nothing written",
        ),
    ],
)
def test_what_the_spec_cannot_say_is_refused_by_name(node, inits, out_shape, message, tmp_path):
    rc, out, err = _one_node(tmp_path, node, [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()], out_shape)
    assert rc == 2 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_squeeze_and_unsqueeze_of_sample_axes_read_back_as_reshapes(tmp_path):
    """x.unsqueeze(2).squeeze(2) and a pooled [N, C, 1, 1] squeezed to [N, C]: reshapes; a squeeze of the batch axis
    is refused by name."""

    class Squeezes(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            y = self.conv(x).unsqueeze(2).squeeze(2)
            return self.fc(y.mean((2, 3), keepdim=True).squeeze(-1).squeeze(-1))

    path = _export(Squeezes(), tmp_path / "squeezes.onnx", 8, 13)
    rc, out, err = tcc_cli("import", path, "-o", tmp_path / "m.yaml")
    assert rc == 0, err
    assert "op: reshape" in (tmp_path / "m.yaml").read_text()
    _assert_predicts_as_onnx_runtime(
        tmp_path, path, np.random.default_rng(6).standard_normal((2, 3, 8, 8)).astype(np.float32)
    )
    node = helper.make_node("Squeeze", ["a", "axes"], ["y"], name="drop_batch")
    (tmp_path / "b").mkdir()
    rc, out, err = _one_node(
        tmp_path / "b", node, [onnx.numpy_helper.from_array(np.array([0], np.int64), "axes")], [3, 8, 8]
    )
    assert rc == 2 and "node 'drop_batch' (Squeeze): Squeeze of axes [0] (the batch axis)" in err, err


def test_a_cast_to_float_of_a_computed_value_is_no_node(tmp_path):
    """timm's `.float()` before an attention's normalization: a Cast to float32 of a float32 value reads back as
    nothing (its input passes on)."""

    class Casts(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return torch.relu(self.conv(x).float())

    path = _export(Casts(), tmp_path / "casts.onnx", 8, 17)
    assert "Cast" in {n.op_type for n in onnx.load(path).graph.node}
    rc, out, err = tcc_cli("import", path, "-o", tmp_path / "m.yaml")
    assert rc == 0, err
    _assert_predicts_as_onnx_runtime(
        tmp_path, path, np.random.default_rng(7).standard_normal((2, 3, 8, 8)).astype(np.float32)
    )
