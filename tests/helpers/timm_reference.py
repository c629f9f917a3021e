"""timm 1.0.x's own model definitions as the tests' reference for the attention zoo specs (MobileViT and the
hybrids): parameters, MACs, state_dict layout, logits. Test-only: tcc itself never imports timm.

`make venv` installs timm with `pip install --no-deps` beside torchvision; timm imports torchvision, whose
compiled-operator registrations need the stub of tests/helpers/torchvision_reference.py. Models are built with
pretrained=False and timm's own initialisation drawn under a seed: nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers import torchvision_reference as tv


def timm_module():
    """`timm`, imported after the torchvision stub; the test is skipped where the venv lacks it."""
    tv.torchvision_models()
    return pytest.importorskip("timm", reason="timm is installed by `make venv`")


def build(name: str, num_classes: int = 6, seed: int = 0, **kwargs) -> torch.nn.Module:
    """timm.create_model(name, pretrained=False, num_classes=...) with timm's initialisation drawn under `seed`,
    in eval mode."""
    timm = timm_module()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    return model.eval()


def macs(model: torch.nn.Module, image_size: int) -> int:
    """Multiply-accumulates of one image as PyTorch's FlopCounterMode counts them (convolutions, matrix products
    including attention's two, halved from its FLOPs), with timm's fused attention off so that q k^T and the
    weights times v are plain matmuls that it sees."""
    from torch.utils.flop_counter import FlopCounterMode

    fused = [m for m in model.modules() if getattr(m, "fused_attn", False)]  # decided when timm built the module
    for m in fused:
        m.fused_attn = False
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for m in fused:
            m.fused_attn = True
    return counter.get_total_flops() // 2
