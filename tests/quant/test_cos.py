"""The cosine fine search: exact Gram-matrix evaluation, never lowers cosine, fixes a bad start."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from tcc.quant.collect.stats import run_fp32
from tcc.quant.intgraph.layers import find_layers, grouped_weight, layer_output, layer_rows
from tcc.quant.scales.cos_search import Inputs, SearchSettings, _cos, _weight_step, cos_search
from tcc.quant.table.quantizer import fake_quant, scale_for_threshold
from tests.helpers.quant_models import tiny_cnn, tiny_data


def _setup(n=16):
    model, x = tiny_cnn(), tiny_data(n)
    layers = find_layers(model)
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    acts = run_fp32(model, x, sorted({l.input for l in layers} | {l.output for l in layers}))
    return model, layers, w, acts


def test_im2col_rows_reproduce_the_conv():
    model, layers, w, acts = _setup(4)
    rng = np.random.default_rng(0)
    for l in layers:
        rows = layer_rows(l, acts[l.input], w[l.weight].shape, 10**9, rng)  # every position, shuffled
        y = layer_output(rows.transpose(1, 0, 2), grouped_weight(l, w[l.weight]), w.get(l.bias))
        ref = acts[l.output]
        ref = ref.reshape(ref.shape[0], ref.shape[1], -1).transpose(0, 2, 1).reshape(-1, ref.shape[1])
        got = y.transpose(1, 0, 2).reshape(len(rows), -1)
        # same multiset of output rows: compare sorted by the first channel
        np.testing.assert_allclose(got[np.lexsort(got.T[::-1])], ref[np.lexsort(ref.T[::-1])], atol=1e-4)


def test_weight_step_gram_evaluation_is_exact():
    """The candidate chosen through Gram-matrix algebra really maximises the directly computed cosine over the
    channel-wise coordinate moves, and never lowers it."""
    model, layers, w, acts = _setup()
    l = next(l for l in layers if l.name == "pw")
    rows = layer_rows(l, acts[l.input], w[l.weight].shape, 2000, np.random.default_rng(1)).transpose(1, 0, 2).copy()
    wg = grouped_weight(l, w[l.weight])
    b = w[l.bias]
    y_fp = layer_output(rows, wg, b)
    a_q = fake_quant(rows, scale_for_threshold(np.abs(rows).max() * 0.7, signed=False), signed=False)
    s0 = scale_for_threshold(np.abs(wg).max(axis=2))
    before = _cos(y_fp, layer_output(a_q, fake_quant(wg, s0[..., None]), b))
    factors = np.linspace(0.5, 2, 100)
    s1 = _weight_step(a_q, wg, b, y_fp, s0, s0, factors)
    after = _cos(y_fp, layer_output(a_q, fake_quant(wg, s1[..., None]), b))
    assert after >= before - 1e-9
    # no single channel move on the grid improves the direct cosine by more than float noise
    for ch in range(s1.shape[1]):
        for f in factors[::9]:
            s = s1.copy()
            s[0, ch] = s0[0, ch] * f
            assert _cos(y_fp, layer_output(a_q, fake_quant(wg, s[..., None]), b)) <= after + 1e-6


def test_weight_step_on_a_large_layer_rows_and_coarse_to_fine(monkeypatch):
    """Past WEIGHT_SCAN_BUDGET (here: every layer) the weight step evaluates its candidates through the rows where
    they are fewer than the reduction -- the same terms as through the Gram matrix, to float64's rounding -- and
    scans every 4th factor, then each channel's neighbours of its choice: it never lowers the cosine, and ends
    within 1e-4 of the full scan's."""
    from tcc.quant.scales import cos_search as cs

    model, layers, w, acts = _setup()
    l = next(l for l in layers if l.name == "pw")
    wg = grouped_weight(l, w[l.weight])
    rows = layer_rows(l, acts[l.input], w[l.weight].shape, wg.shape[2] - 3, np.random.default_rng(1))
    rows = rows.transpose(1, 0, 2).copy()  # fewer rows than the reduction
    b = w[l.bias]
    y_fp = layer_output(rows, wg, b)
    a_q = fake_quant(rows, scale_for_threshold(np.abs(rows).max() * 0.7, signed=False), signed=False)
    s0 = scale_for_threshold(np.abs(wg).max(axis=2))
    factors = np.linspace(0.5, 2, 100)
    cands = np.concatenate([s0[None], s0[None] * factors[::7, None, None]])
    by_gram = cs._WeightCosines(a_q, wg, b, y_fp, by_rows=False)(cands, 8)
    by_rows = cs._WeightCosines(a_q, wg, b, y_fp, by_rows=True)(cands, 8)
    for gram_terms, row_terms in zip(by_gram, by_rows):
        np.testing.assert_allclose(row_terms, gram_terms, rtol=1e-10)
    full = _weight_step(a_q, wg, b, y_fp, s0, s0, factors)
    monkeypatch.setattr(cs, "WEIGHT_SCAN_BUDGET", 0)
    fast = _weight_step(a_q, wg, b, y_fp, s0, s0, factors)

    def cos(s):
        return _cos(y_fp, layer_output(a_q, fake_quant(wg, s[..., None]), b))

    assert cos(fast) >= cos(s0) - 1e-9 and cos(fast) >= cos(full) - 1e-4


@pytest.mark.parametrize("start", [1.0, 0.25, 3.0])
def test_search_never_lowers_cosine(start):
    model, layers, w, acts = _setup()
    rng = np.random.default_rng(0)
    samples = {l.name: layer_rows(l, acts[l.input], w[l.weight].shape, 1500, rng) for l in layers}
    signed = {l.input: bool(acts[l.input].min() < 0) for l in layers}
    scales = {
        l.input: float(scale_for_threshold(np.abs(acts[l.input]).max() * start, signed=signed[l.input])) for l in layers
    }
    res = cos_search(layers, w, samples, Inputs(scales, signed), SearchSettings(steps=40, rounds=2))
    assert set(res.layers) == {"stem.conv", "dw", "pw", "fc"}
    for r in res.layers.values():
        assert r.cos_after >= r.cos_before - 1e-9, r
        assert all(b >= a - 1e-9 for a, b in zip(r.history, r.history[1:])), r.history
    for b, a in res.act_cos.values():
        assert a >= b - 1e-9
    if start != 1.0:  # a bad start (clipping 75% of the range, or a 3x too coarse scale) is improved
        assert res.layers["pw"].cos_after > res.layers["pw"].cos_before
        assert np.mean([r.cos_after - r.cos_before for r in res.layers.values()]) > 1e-4


def test_searches_on_threads_give_the_same_result():
    """Each input tensor's search reads only FP32 samples, so running them on threads changes nothing."""
    model, layers, w, acts = _setup()
    rng = np.random.default_rng(0)
    samples = {l.name: layer_rows(l, acts[l.input], w[l.weight].shape, 1500, rng) for l in layers}
    signed = {l.input: bool(acts[l.input].min() < 0) for l in layers}
    scales = {
        l.input: float(scale_for_threshold(np.abs(acts[l.input]).max() * 0.5, signed=signed[l.input])) for l in layers
    }
    one = cos_search(layers, w, samples, Inputs(scales, signed), SearchSettings(steps=40, rounds=2, threads=1))
    two = cos_search(layers, w, samples, Inputs(scales, signed), SearchSettings(steps=40, rounds=2, threads=3))
    assert list(one.act_scales.items()) == list(two.act_scales.items()) and one.act_cos == two.act_cos
    assert list(one.layers) == list(two.layers)
    for name, r in one.layers.items():
        assert np.array_equal(r.w_scale, two.layers[name].w_scale) and r.history == two.layers[name].history


def test_input_scale_search_goes_past_the_window_up_to_the_tensors_largest_value():
    """A start that clips the input at an eighth of its range: the [0.5, 2] window alone stops at a quarter; with
    the scale of the tensor's largest value as the limit the search goes on and finds a better, interior scale,
    never above that limit."""
    model, layers, w, acts = _setup()
    rng = np.random.default_rng(0)
    samples = {l.name: layer_rows(l, acts[l.input], w[l.weight].shape, 1500, rng) for l in layers}
    signed = {l.input: bool(acts[l.input].min() < 0) for l in layers}
    top = {l.input: float(scale_for_threshold(np.abs(acts[l.input]).max(), signed=signed[l.input])) for l in layers}
    start = {t: s / 8 for t, s in top.items()}
    window = cos_search(layers, w, samples, Inputs(start, signed), SearchSettings(steps=40, rounds=2))
    wider = cos_search(layers, w, samples, Inputs(start, signed, top), SearchSettings(steps=40, rounds=2))
    pw = next(l for l in layers if l.name == "pw").input
    assert window.act_scales[pw] <= 2 * start[pw] * (1 + 1e-6)
    assert 2 * start[pw] < wider.act_scales[pw] <= top[pw] * (1 + 1e-6)
    assert wider.layers["pw"].cos_after > window.layers["pw"].cos_after
    for name, r in wider.layers.items():  # never worse than the window alone
        assert r.cos_after >= window.layers[name].cos_after - 1e-9


@pytest.mark.parametrize("signed", [False, True])
def test_grouped_layer_evaluated_in_slices_gives_the_same_floats(signed):
    """The search's cosine of a many-group (depthwise) layer, quantized and multiplied a few groups at a time, is
    bit for bit the cosine of the whole array quantized at once (layer_output, _cos): the tables do not move."""
    from tcc.quant.scales.cos_search import _LayerEval, _Quant

    rng = np.random.default_rng(3)
    a = rng.standard_normal((40, 3000, 9), dtype=np.float32)  # [G, R, K]: 3000 * 9 * 40 elements, > one slice
    a = a if signed else np.abs(a)
    wg = rng.standard_normal((40, 2, 9), dtype=np.float32)
    bias = rng.standard_normal(80).astype(np.float32)
    ev = _LayerEval(a, wg, bias, signed)
    assert ev.step < len(a)
    y_fp = layer_output(a, wg, bias)
    for s in (0.004, 0.01, 0.03):
        wq = fake_quant(wg, np.float32(0.02), bits=8)
        whole = _cos(y_fp, layer_output(_Quant(a, signed)(s), wq, bias))
        assert ev.cos(s, wq) == whole
        assert ev.cos(s, wq, ev.q(s)) == whole
