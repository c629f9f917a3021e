"""Statistics collection: exact histogram growth, zeros, per-tensor ranges from ORT, weight channel ranges."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from tcc.errors import DataError
from tcc.quant.collect.stats import Histogram, collect_stats, run_fp32
from tcc.quant.intgraph.layers import find_layers
from tcc.quant.intgraph.match import plan
from tests.helpers.onnx_util import make_model
from tests.helpers.quant_models import tiny_cnn, tiny_data


def test_histogram_growth_is_exact_merge():
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal(5000) * s for s in (0.1, 0.1, 1.0, 7.0, 3.0)]
    h = Histogram(2048)
    for p in parts:
        h.update(p)
    allx = np.abs(np.concatenate(parts))
    assert h.max == pytest.approx(max(p.max() for p in parts)) and h.min == pytest.approx(min(p.min() for p in parts))
    assert h.range >= allx.max() and h.counts.sum() + h.zeros == allx.size
    direct = np.bincount(np.minimum((allx / h.width).astype(np.int64), 2047), minlength=2048)
    assert np.abs(direct - h.counts).sum() <= 4  # equal up to float rounding at a few bin edges
    # the first batch's range was ~0.4: it grew by a power of two
    first = np.abs(parts[0]).max() / 2048
    k = np.log2(h.width / first)
    assert k == pytest.approx(round(k)) and round(k) >= 4


def test_histogram_zeros_are_apart():
    h = Histogram(8)
    h.update(np.zeros(10))
    assert h.width == 0 and h.zeros == 10
    h.update(np.array([0.0, 1.0, 2.0, 3.99, -4.0]))
    assert h.zeros == 11 and h.counts.sum() == 4 and h.with_zeros[0] == h.counts[0] + 11
    assert h.amax == 4.0 and h.min == -4.0


@pytest.mark.parametrize("relu", [False, True])
def test_histogram_counted_in_slices_equals_one_pass(relu):
    """An update larger than a slice (stats.CHUNK) gives the counts and zeros of binning the whole batch at once, as
    the update did before it went slice by slice (float32 |x| times 1 / width, clamped, truncated)."""
    from tcc.quant.collect.stats import CHUNK

    rng = np.random.default_rng(1)
    first = rng.standard_normal(1000).astype(np.float32)
    x = rng.standard_normal(3 * CHUNK + 123).astype(np.float32) * 3
    x[rng.random(x.size) < 0.3] = 0
    first, x = (np.maximum(first, 0), np.maximum(x, 0)) if relu else (first, x)
    h = Histogram(2048)
    h.update(first)
    counts, zeros = h.counts.copy(), h.zeros
    h.update(x)  # grows: the range of the first batch is a third of this one's
    counts = counts.reshape(-1, round(h.width / (np.abs(first).max() / 2048))).sum(axis=1)
    counts = np.concatenate([counts, np.zeros(2048 - len(counts), np.int64)])
    whole = np.minimum(np.abs(x) * np.float32(1.0 / h.width), np.float32(2047)).astype(np.intp)
    z = int(np.sum(x == 0))
    expected = counts + np.bincount(whole, minlength=2048)
    expected[0] -= z
    assert np.array_equal(h.counts, expected) and h.zeros == zeros + z


def test_collect_stats_matches_a_direct_run():
    model, x = tiny_cnn(), tiny_data(20)
    graph = plan(model)
    names = graph.quantized
    assert "stem.conv" not in names and "stem.relu" in names and "input" in names  # conv+relu fused
    assert graph.internal == {"stem.conv", "dw"}
    st = collect_stats(model, x, batch_size=6, tensors=names)
    ref = run_fp32(model, x, names, batch_size=20)
    for n in names:
        assert st.activations[n].min == pytest.approx(float(ref[n].min()))
        assert st.activations[n].max == pytest.approx(float(ref[n].max()))
        assert st.activations[n].count == ref[n].size
    assert [l.name for l in st.layers] == ["stem.conv", "dw", "pw", "fc"]
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_allclose(st.weights["pw.weight"].ch_max, w["pw.weight"].reshape(6, -1).max(1))
    np.testing.assert_allclose(st.weights["fc.weight"].ch_min, w["fc.weight"].min(1))  # transB: axis 0
    assert st.weights["dw.weight"].ch_absmax.shape == (8,)


def test_nan_activations_are_a_data_error():
    model = tiny_cnn()
    for t in model.graph.initializer:
        if t.name == "pw.bias":
            t.CopyFrom(numpy_helper.from_array(np.full(6, np.nan, np.float32), "pw.bias"))
    with pytest.raises(DataError, match="'pw' holds NaN"):
        collect_stats(model, tiny_data(4))


def test_find_layers_gemm_without_transb_and_matmul():
    from onnx import helper

    m = make_model(
        [
            helper.make_node("Gemm", ["input", "w1"], ["h"], name="g"),
            helper.make_node("MatMul", ["h", "w2"], ["output"], name="m"),
        ],
        {"input": ["N", 4]},
        {"output": ["N", 2]},
        {"w1": np.ones((4, 3), np.float32), "w2": np.ones((3, 2), np.float32)},
        name="t",
        check=True,
    )
    layers = find_layers(m)
    assert [(l.op, l.w_axis) for l in layers] == [("Gemm", 1), ("MatMul", 1)]
