"""torchvision 0.28's segmenters as zoo specs (spec/segmentation/): the logits per pixel of a torchvision state_dict
imported by the plain `--weights` equal torchvision's own (tcc.tolerance's FP32 rule), the trainable parameters
exactly, and the ONNX Runtime bundle built from the same weights self-checks against PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tcc
from tcc.spec.loader import load_spec
from tests.helpers import REPO
from tests.helpers import torchvision_reference as tv
from tests.helpers.reference_check import assert_logits_equal, assert_ort_build_self_checks

SPECS = REPO / "spec" / "segmentation"


class DenseOut(torch.nn.Module):
    """torchvision's segmentation model (which returns {"out": logits}) as a function of the logits alone."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def reference(name: str, num_classes: int, seed: int = 0, **options) -> torch.nn.Module:
    segmentation = tv.torchvision_models().segmentation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=num_classes, **options)
    return model.eval()


# FCN and DeepLabV3 with torchvision's auxiliary head (what its published weights carry: the spec's aux_loss, set by
# the plain --weights from the head's presence), LRASPP has none
@pytest.mark.parametrize(
    ("name", "size", "options"),
    [
        ("fcn_resnet50", 64, {"aux_loss": True}),
        ("lraspp_mobilenet_v3_large", 64, {}),
        ("deeplabv3_mobilenet_v3_large", 64, {"aux_loss": True}),
    ],
)
def test_logits_per_pixel_equal_torchvisions(name, size, options, tmp_path: Path, capsys):
    model = reference(name, 5, **options)
    for m in model.modules():  # BN statistics that are not 0 / 1, so a mismatched BN shows
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    weights = tmp_path / "torchvision.pth"
    torch.save(model.state_dict(), weights)
    spec = load_spec(SPECS / f"{name}.yaml", {"image_size": size})
    ours = tcc.Model.load(SPECS / f"{name}.yaml", weights, image_size=size)
    assert ours.spec.params["num_classes"] == 5  # read from the checkpoint's classifier
    assert ours.spec.params.get("aux_loss", False) == bool(options)  # from the auxiliary head's presence
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    logits = ours.predict(x.numpy())
    assert logits.shape == (2, 5, size, size)
    assert_logits_equal(DenseOut(model), spec, x, logits, weights)
    counted = tcc.load_spec(SPECS / f"{name}.yaml", {"num_classes": 5, **options}).graph.param_count
    assert counted == tv.trainable_params(model)
    sets = ["--set", f"image_size={size}", "--set", "num_classes=5", *(["--set", "aux_loss=true"] if options else [])]
    assert_ort_build_self_checks(SPECS / f"{name}.yaml", sets, tmp_path / "ort", capsys, "--weights", str(weights))
