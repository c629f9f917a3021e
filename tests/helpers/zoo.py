"""The zoo's baseline specs (spec/baselines), shared by the zoo/test_numbers_* files."""

from __future__ import annotations

import torch

import tcc
from tests.helpers import REPO

BASELINES = REPO / "spec" / "baselines"


def load_baseline(name: str, **overrides) -> tcc.Model:
    """spec/baselines/<name>.yaml with --set overrides."""
    return tcc.load_spec(BASELINES / f"{name}.yaml", overrides or None)


def assert_forward_batch1(name: str) -> None:
    """The baseline's PyTorch lowering runs one 224 x 224 image to 6 finite logits."""
    module = tcc.to_torch(load_baseline(name).graph).eval()
    with torch.no_grad():
        y = module(torch.rand(1, 3, 224, 224))
    assert tuple(y.shape) == (1, 6)
    assert torch.isfinite(y).all()
