"""The scale of a tensor a normalization reads, chosen by the normalized output's cosine
(tcc.quant.scales.norm_search), checked against PyTorch's layer and instance norms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tcc.frontend import lower_spec
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.match import plan
from tcc.quant.scales.norm_search import COLUMNS, VALUES, norm_inputs, norm_search, row_budget, rows
from tcc.quant.table.quantizer import fake_quant, scale_for_threshold

SPEC = """\
kind: model
name: tiny_norm
input: {shape: [3, 16, 16]}
layers:
  - {id: stem, block: conv_bn_act, out: 16, kernel: 3, stride: 2, act: relu}   # [16, 8, 8]
  - {id: tokens, op: reshape, shape: [16, 64]}
  - {id: seq, op: permute, perm: [0, 2, 1]}                                    # [64, 16]: 64 tokens
  - {id: norm, op: layernorm, axis: -1}
  - {id: mlp, op: linear, out: 16, axis: -1}
  - {id: back, op: permute, perm: [0, 2, 1]}
  - {id: image, op: reshape, shape: [16, 8, 8]}
  - {id: pool, op: global_avgpool}
  - {id: flatten, op: flatten}
  - {id: fc, op: linear, out: 5}
"""


def _stream(seed: int = 0) -> np.ndarray:
    """A residual stream's shape of values: [2, 37, 64], heavy tails and one channel far larger than the rest."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(4, (2, 37, 64)).astype(np.float32)
    x[..., 3] *= 6
    return x


def test_rows_are_the_values_one_statistic_covers():
    x = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    got = rows(x, (2,), 100, np.random.default_rng(0))
    assert got.shape == (10, 3)
    assert sorted(map(tuple, got)) == sorted(map(tuple, x.reshape(-1, 3)))  # every token once, none made up
    image = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    got = rows(image, (2, 3), 4, np.random.default_rng(0))
    assert got.shape == (4, 16)
    channels = {tuple(c) for c in image.reshape(6, 16)}
    assert all(tuple(r) in channels for r in got)  # each row one channel of one sample, over its positions
    # over the whole data: a layer's row count, fewer where the rows would hold more than VALUES values
    assert row_budget((8, 37, 192), (2,), 4096) == VALUES // 192
    assert row_budget((8, 37, 16), (2,), 4096) == 4096
    assert row_budget((8, 16, 96, 96), (2, 3), 4096) == VALUES // COLUMNS
    wide = np.random.default_rng(1).standard_normal((2, 3, 48, 48)).astype(np.float32)
    got = rows(wide, (2, 3), 6, np.random.default_rng(0))
    assert got.shape == (6, COLUMNS)  # a channel of 2,304 positions: 1,024 of them, the same for every row
    positions = wide.reshape(6, -1)  # all 6 rows drawn, in order
    columns = [int(np.flatnonzero(positions[0] == v)[0]) for v in got[0]]
    assert np.array_equal(got, positions[:, columns])


@pytest.mark.parametrize("kind", ["layer", "instance"])
def test_the_cosines_are_pytorchs_normalization(kind):
    x = _stream() if kind == "layer" else _stream().reshape(2, 37, 8, 8)
    axes = (2,) if kind == "layer" else (2, 3)
    sampled = rows(x, axes, 10_000, np.random.default_rng(0))
    amax = float(np.abs(x).max())
    coarse = float(scale_for_threshold(0.5 * amax))
    scale, (before, after) = norm_search(sampled, 1e-5, coarse, amax, signed=True)

    def torch_cos(s: float) -> float:
        t = torch.from_numpy(x).double()
        q = torch.from_numpy(fake_quant(x, s)).double()
        if kind == "layer":
            a, b = (torch.nn.functional.layer_norm(v, (x.shape[-1],), eps=1e-5) for v in (t, q))
        else:
            a, b = (torch.nn.functional.instance_norm(v, eps=1e-5) for v in (t, q))
        return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))

    # every row sampled (fewer than the cap): the search's cosines are the whole tensor's, as PyTorch computes them
    assert before == pytest.approx(torch_cos(coarse), abs=1e-9)
    assert after == pytest.approx(torch_cos(scale), abs=1e-9)
    assert after > before and scale > coarse  # half the range clipped the large channel: the search widens it


def test_a_coarse_scale_that_is_best_stays():
    sampled = rows(_stream(1), (2,), 10_000, np.random.default_rng(0))
    amax = float(np.abs(sampled).max())
    best, (_, after) = norm_search(sampled, 1e-5, float(scale_for_threshold(0.3 * amax)), amax, signed=True)
    again, (before, after_again) = norm_search(sampled, 1e-5, best, amax, signed=True)
    assert again == best and before == after_again == after  # a tie keeps the coarse scale: never lower


def test_calibration_chooses_the_layernorm_inputs_scale(tmp_path):
    path = tmp_path / "tiny_norm.yaml"
    path.write_text(SPEC)
    fe = lower_spec(path)
    graph = plan(fe.onnx, rules="ort")
    (found,) = norm_inputs(graph)
    assert len(found.axes) == 1 and graph.shapes[found.tensor][found.axes[0]] == 16  # each token over its channels
    data = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)
    table = calibrate_onnx(fe.onnx, data, method="kl+cos", target="ort", graph=graph)
    entry = table.tensors[found.tensor]
    assert entry["method"] == "kl+cos"  # searched (KL's threshold alone before)
    cosines = entry["diagnostics"]
    assert cosines["cos_after"] >= cosines["cos_before"]
    plain = calibrate_onnx(fe.onnx, data, method="kl", target="ort", graph=graph)
    assert plain.tensors[found.tensor]["method"] == "kl"  # the search is kl+cos's, as the layers' is
