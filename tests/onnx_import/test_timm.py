"""timm models of families the zoo does not have, exported by torch.onnx.export and imported: logits equal to
ONNX Runtime on the original within the FP32 rule, INT8 builds for ort and host bit-exact with the integer reference.
LCNet and GhostNet small and fast; those two and MixNet, ReXNet, MobileNetV4 at full size are `slow`.

`make venv` installs timm with `pip install --no-deps` (beside torchvision's); models are built with
pretrained=False and seeded weights: nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tcc.lower.to_torch import init_weights
from tcc.onnx_import import import_onnx
from tests.helpers import torchvision_reference as tv
from tests.onnx_import.common import assert_builds_int8_bit_exact, assert_predicts_as_onnx_runtime, tcc_cli

FAST = ["lcnet_050", "ghostnet_050"]  # LCNet (hardswish, SE late), GhostNet (ghost modules: concat, no-op slices)
FULL = ["lcnet_050", "ghostnet_100", "mixnet_s", "rexnet_100", "mobilenetv4_conv_small"]


def timm_onnx(name: str, path, size: int):
    tv.torchvision_models()  # timm imports torchvision, whose compiled-operator registrations need the stub
    timm = pytest.importorskip("timm", reason="timm is installed by `make venv`")
    model = init_weights(timm.create_model(name, pretrained=False, num_classes=5), seed=1).eval()
    torch.onnx.export(
        model,
        torch.randn(1, 3, size, size),
        path,
        dynamo=False,
        opset_version=13,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}},
    )
    return path


@pytest.fixture(scope="module", params=FAST)
def imported(request, tmp_path_factory):
    work = tmp_path_factory.mktemp(request.param)
    path = timm_onnx(request.param, work / f"{request.param}.onnx", 64)
    rc, out, err = tcc_cli("import", path, "-o", work / "m.yaml")
    assert rc == 0 and "(FP32 rule: passed)" in out, err
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.save(work / "x.npy", x)
    return path, work, x


def test_a_timm_model_imports_and_predicts_as_onnx_runtime(imported):
    path, work, x = imported
    assert "\nblocks:\n" in (work / "m.yaml").read_text()
    assert_predicts_as_onnx_runtime(work / "m.yaml", work / "m.pt", path, work / "x.npy")


# GhostNet's host build (29 s in CI) is slow: an imported model's host INT8 is built in CI from LCNet here and by
# onnx_import/test_import.py, GhostNet's ops on ORT here
@pytest.mark.parametrize(
    "imported, target",
    [
        ("lcnet_050", "ort"),
        ("lcnet_050", "host"),
        ("ghostnet_050", "ort"),
        pytest.param("ghostnet_050", "host", marks=pytest.mark.slow),
    ],
    indirect=["imported"],
)
def test_a_timm_model_builds_int8(imported, target):
    path, work, x = imported
    assert_builds_int8_bit_exact(work, target)


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_timm_models_at_full_size(name, tmp_path):
    imported = import_onnx(timm_onnx(name, tmp_path / f"{name}.onnx", 224))
    assert imported.check["passed"] and not imported.notes and "\nblocks:\n" in imported.spec_text
