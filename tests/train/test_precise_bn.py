"""Precise BatchNorm statistics (tcc.train.precise_bn): against a hand computation, the lag note, and the issue's
short run: FastNet (Keras' BN momentum) trained 4 epochs on two texture classes validates and predicts held-out
crops correctly only with the statistics recomputed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tcc.train.precise_bn import momentum_lag, recompute_statistics
from tests.helpers import REPO
from tests.helpers.train_data import texture_patches
from tests.train.test_train import train, weights


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4, momentum=0.01),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Conv2d(4, 5, 3),
        nn.BatchNorm2d(5, momentum=0.01),
    )


def _batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, 3, 9, 7, generator=g) * 2 + 3 for n in (4, 4, 4, 3, 4)]  # the last one is not used


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased variance per channel of an NCHW array, in float64 (the definition)."""
    per_channel = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)
    return per_channel.mean(1), per_channel.var(1, ddof=1)


def test_statistics_are_those_of_every_input_seen():
    """BN 1's statistics: conv 1's outputs over the 4 batches used (15 images, batches of unequal size); BN 2's: its
    inputs with BN 1 normalizing each batch by that batch's statistics (train mode) and dropout off (eval mode)."""
    net, batches = _net(), _batches()
    conv1, bn1, conv2, bn2 = net[0], net[1], net[4], net[5]
    ref = {k: v.clone() for k, v in net.state_dict().items()}
    assert recompute_statistics(net, iter(batches), limit=4) == 4 and not net.training
    used = batches[:4]
    with torch.no_grad():
        c1 = [F.conv2d(x.double(), conv1.weight.double(), conv1.bias.double()) for x in used]
        mean1, var1 = _moments(torch.cat(c1).numpy())
        c2 = []
        for c in c1:  # by hand: BN 1 in train mode normalizes by the batch's biased variance
            m, v = c.mean((0, 2, 3), keepdim=True), c.var((0, 2, 3), unbiased=False, keepdim=True)
            y = (c - m) / torch.sqrt(v + bn1.eps) * bn1.weight.double().view(1, -1, 1, 1) + bn1.bias.double().view(
                1, -1, 1, 1
            )
            c2.append(F.conv2d(torch.relu(y), conv2.weight.double(), conv2.bias.double()))
        mean2, var2 = _moments(torch.cat(c2).numpy())
    for bn, mean, var in ((bn1, mean1, var1), (bn2, mean2, var2)):
        np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(bn.running_var.numpy(), var, rtol=1e-6)
    assert torch.equal(bn1.num_batches_tracked, ref["1.num_batches_tracked"])  # the counter is not a statistic
    # a layer under `skip` (frozen) keeps its statistics; the others are recomputed the same way
    net.load_state_dict(ref)
    recompute_statistics(net, iter(batches), limit=4, skip=["5"])
    assert torch.equal(bn2.running_mean, ref["5.running_mean"]) and torch.equal(bn2.running_var, ref["5.running_var"])
    np.testing.assert_allclose(bn1.running_mean.numpy(), mean1, rtol=1e-6, atol=1e-6)


def test_a_slow_momentum_on_a_short_epoch_is_named():
    assert momentum_lag(_net(), steps_per_epoch=3) == (0.01, 100)
    assert momentum_lag(_net(), steps_per_epoch=150) is None  # an epoch longer than the averaging window
    assert momentum_lag(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), steps_per_epoch=20) is None


@pytest.fixture(scope="module")
def textures(tmp_path_factory):
    """The issue's folder: two texture classes, 48 training and 16 validation crops each (val/ given), and 32
    held-out crops per class from other places of the photographs (another seed), never trained or validated on."""
    root = tmp_path_factory.mktemp("precise")
    texture_patches(root / "all", per_class=64 + 32, size=64, seed=3)
    for cls in ("brick", "grass"):
        files = sorted((root / "all" / cls).glob("*.png"))
        for part, chosen in (("data/train", files[:48]), ("data/val", files[48:64]), ("held_out", files[64:])):
            (root / part / cls).mkdir(parents=True)
            for f in chosen:
                f.rename(root / part / cls / f.name)
    return root


def _held_out_accuracy(run, root) -> float:
    import tcc
    from tcc.train.data import ImageFolderSet

    model = tcc.load_spec(REPO / "spec" / "fastnet.yaml", {"image_size": 64})
    module = tcc.to_torch(model.graph, inference_only=True)
    module.load_state_dict(weights(run / "best.pt"))
    files = [(p, k) for k, cls in enumerate(("brick", "grass")) for p in sorted((root / "held_out" / cls).glob("*"))]
    images = ImageFolderSet(files, model.preprocess)
    with torch.no_grad():
        x = torch.stack([images[i][0] for i in range(len(images))])
        predicted = module.eval()(x).argmax(1).tolist()
    return float(np.mean([p == k for p, (_, k) in zip(predicted, files)]))


def test_fastnet_short_run_validates_and_predicts_with_precise_statistics(textures):
    """FastNet keeps Keras' BN momentum (0.01 in PyTorch): 4 epochs of 3 steps leave the running averages far behind
    the weights. Precise BN (the default): held-out accuracy >= 0.9 (the issue's target); with --precise-bn 0 the run
    says so, and validation sits at chance (measured on this data: 0.5 at every epoch)."""
    common = [
        REPO / "spec" / "fastnet.yaml",
        "--set",
        "image_size=64",
        "--data",
        textures / "data",
        "--epochs",
        "4",
        "--optimizer",
        "adam",
        "--no-progress",
    ]
    rc, out, err = train(*common, "-o", textures / "precise")
    assert rc == 0, err
    assert "BatchNorm momentum 0.01 averages its running statistics over ~100 steps, more than an epoch's 3" in err
    accuracy = _held_out_accuracy(textures / "precise", textures)
    print(f"held-out accuracy with precise BN: {accuracy:.3f}")
    assert accuracy >= 0.9
    config = (textures / "precise" / "config.yaml").read_text()
    assert "precise_bn: 200" in config and "freeze: []" in config
    rc, out, err = train(*common, "-o", textures / "lagging", "--precise-bn", "0")
    assert rc == 0 and "--precise-bn 0 keeps them: validation and best.pt see stale statistics" in err
    lagging = json.loads((textures / "lagging" / "log.json").read_text())["epochs"]
    print("validation accuracy without precise BN:", [e["accuracy"] for e in lagging])
    assert max(e["accuracy"] for e in lagging) < 0.75
