"""INT8 of attention (issue 35): the integer op table's `matmul` (two activations at their own per-tensor scales)
and `slice` kinds. On a small attention model (the zoo's multihead_attention block over the tokens of a conv stem):
the plan takes every node (LayerNorm as a float island; softmax as tcc's integer softmax under the tvm rules, an
island under ORT's and TFLite's), the integer reference's matmul is the
requantized integer product of its input codes (checked against the dequantized float product: within one output
LSB; q k^T with its 1 / sqrt(d) taken into the requantization), its slices move codes, and the whole INT8 model
stays close to FP32. The zoo's MobileViT-XXS builds INT8 on host (bit-exact) and ORT (within 1 LSB) in
zoo/test_int8_{host,ort}.py, on TFLite (bit-exact with LiteRT's reference kernels) in backends/test_tflite.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from onnx import numpy_helper

from tcc.frontend import lower_spec
from tcc.intops import QDQ, TFLITE, TVM, supported
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.match import UnsupportedOps, plan
from tcc.quant.intgraph.node_constants import softmax_normalizer, softmax_table
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.qtypes import QParams
from tcc.quant.intgraph.reference import Reference, softmax_codes
from tests.helpers.int8_zoo import SMALL, spec_path

SPEC = """\
kind: model
name: tiny_attention
input: {shape: [3, 16, 16]}
layers:
  - {id: stem, block: conv_bn_act, out: 16, kernel: 3, stride: 2, act: relu}   # [16, 8, 8]
  - {id: tokens, op: reshape, shape: [16, 64]}
  - {id: seq, op: permute, perm: [0, 2, 1]}                                    # [64, 16]: 64 tokens
  - {id: norm, op: layernorm}
  - {id: attn, block: multihead_attention, heads: 2}
  - {id: back, op: permute, perm: [0, 2, 1]}
  - {id: image, op: reshape, shape: [16, 8, 8]}
  - {id: pool, op: global_avgpool}
  - {id: flatten, op: flatten}
  - {id: fc, op: linear, out: 5}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("attn") / "tiny_attention.yaml"
    path.write_text(SPEC)
    fe = lower_spec(path)
    data = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)
    graph = plan(fe.onnx, lowering=TVM, rules="tvm")
    table = calibrate_onnx(fe.onnx, data, method="kl", target="tvm", graph=graph)
    return fe, graph, table


def test_every_lowering_takes_the_kinds():
    for kind in ("matmul", "slice"):
        assert all(supported(kind, lowering) for lowering in (TVM, QDQ, TFLITE))


def test_plan_takes_attention_with_islands_for_layernorm(tiny):
    fe, graph, _ = tiny
    kinds = [n.kind for n in graph.nodes if n.integer]
    assert kinds.count("matmul") == 2  # q k^T and weights x v
    assert kinds.count("slice") == 3  # q, k and v out of the one projection
    assert kinds.count("softmax") == 1  # tcc's integer softmax under the tvm rules
    assert {n.kind for n in graph.nodes if not n.integer} == {"layernorm"}
    # ONNX Runtime's kernel rounds its softmax otherwise, LiteRT's int8 SOFTMAX measured slower than its island: an
    # island under their rules; LiteRT's int8 SOFTMAX under the tflite-int rules
    for rules in ("ort", "tflite"):
        assert {n.kind for n in plan(fe.onnx, rules=rules).nodes if not n.integer} == {"softmax", "layernorm"}
    with pytest.raises(UnsupportedOps) as refused:  # int8 builtins only: the LayerNorm refused, not the softmax
        plan(fe.onnx, rules="tflite-int")
    assert "LayerNormalization" in str(refused.value) and "Softmax" not in str(refused.value)


def test_softmax_codes_by_hand():
    """One row of codes at input step ln(2) / 4 (exp of a distance d is 2^(-d/4)), output step 1/255: the table,
    the per-row division and the rounded shift, each step computed by hand."""
    out = QParams(1 / 255, 0, 0, 255)
    table = softmax_table(math.log(2) / 4, 256)
    assert table[0] == 1 << 15 and table[4] == 1 << 14 and table[8] == 1 << 13 and table[-1] == 0
    assert len(table) == 65 and table[63] == 1  # 2^15 * 2^(-64/4) = 1/2 rounds to 0: the first zero ends it
    numerator, shift = softmax_normalizer(out.scale)
    # C = 2^k / s_out (the step as float32, as every kernel reads it): k = 23, since 255.5 * 2^23 < 2^31 <= 255.5 * 2^24
    assert shift == 23 and numerator == round(2**23 / float(np.float32(out.scale)))
    q = np.array([[10, 6, 2, -90]])  # distances 0, 4, 8, 100 (past the table: its last entry, 0)
    e = np.array([32768, 16384, 8192, 0])
    r = numerator // e.sum()
    want = (e * r + (1 << 22)) >> 23
    np.testing.assert_array_equal(softmax_codes(q, table, numerator, shift, out)[0], want)
    np.testing.assert_array_equal(want, [146, 73, 36, 0])  # 255 * (4, 2, 1, 0) / 7, rounded
    assert softmax_normalizer(1 / 32767)[0] + (1 << (softmax_normalizer(1 / 32767)[1] - 1)) <= 2**31 - 1


def test_integer_softmax_is_the_float_softmax_within_one_step(tiny):
    """The reference's integer softmax against softmax of its dequantized input codes, rounded to the output's grid:
    the table's and the division's roundings (< 2^-15 of a probability together, against a step of ~1/255) move a
    code by at most one, and rarely."""
    _, graph, table = tiny
    qg = quantize_graph(graph, table)
    x = np.random.default_rng(1).standard_normal((4, 3, 16, 16)).astype(np.float32)
    _, env = Reference().run(qg, x, return_all=True)
    (n,) = [n for n in qg.nodes if n.kind == "softmax"]
    z = env[n.inputs[0]].dequant().astype(np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out = n.qout[0]
    want = np.clip(np.rint(p / out.scale) + out.zp, out.lo, out.hi)
    diff = np.abs(env[n.outputs[0]].q - want)
    assert diff.max() <= 1 and diff.mean() < 0.01, (diff.max(), diff.mean())


def test_reference_matmul_is_the_requantized_integer_product(tiny):
    fe, graph, table = tiny
    qg = quantize_graph(graph, table)
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    out, env = Reference().run(qg, x, return_all=True)
    matmuls = [n for n in qg.nodes if n.kind == "matmul"]
    assert len(matmuls) == 2
    planned = {n.name: n for n in graph.nodes}
    inits = {t.name: numpy_helper.to_array(t) for t in fe.onnx.graph.initializer}
    # q k^T takes its Mul by 1 / sqrt(d) into the requantization (one rounding); weights x v has none
    assert [planned[n.name].factor is not None for n in matmuls] == [True, False]
    for n in matmuls:
        a, b, y = (env[t] for t in (*n.inputs, n.outputs[0]))
        factor = float(inits[planned[n.name].factor]) if planned[n.name].factor else 1.0
        exact = np.matmul(a.dequant().astype(np.float64), b.dequant().astype(np.float64)) * factor
        codes = np.clip(np.rint(exact / n.qout[0].scale) + n.qout[0].zp, n.qout[0].lo, n.qout[0].hi)
        assert np.abs(y.q - codes).max() <= 1, n.name  # fixed-point requantization vs float: a tie at most
    for n in (n for n in qg.nodes if n.kind == "slice"):
        x_in, y = env[n.inputs[0]], env[n.outputs[0]]
        assert y.q.size * 3 == x_in.q.size and n.qin[0] == n.qout[0]  # a third of qkv, at its scale: moves codes
    with torch.no_grad():
        want = fe.module(torch.from_numpy(x)).numpy().astype(np.float64)
    cos = (out * want).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() > 0.99, cos


def test_a_scaled_product_kept_in_float_keeps_its_scale_inside(tiny):
    """The accuracy placement may keep q k^T in float: its island computes the 1 / sqrt(d) too, so that the product
    stays internal as the calibration saw it, and the table quantizes the graph (the scale's input had no entry:
    `tcc build --min-cos` failed on MobileViT)."""
    fe, graph, table = tiny
    scores = next(n for n in graph.nodes if n.kind == "matmul" and n.factor is not None)
    placed = plan(fe.onnx, lowering=TVM, rules="tvm", floats={scores.name})
    island = next(n for n in placed.nodes if n.name == scores.name)
    assert not island.integer and island.covers == scores.covers and island.outputs == scores.outputs
    assert set(island.internal) == set(scores.internal) and not set(island.internal) & set(placed.quantized)
    qg = quantize_graph(placed, table)
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    assert np.isfinite(Reference().run(qg, x)).all()


def test_slices_with_a_step_and_from_the_end(tmp_path):
    """Slice's ONNX forms (a step; a start counted from the end, no end) as (axis, start, stop, step) ranges: the
    reference's codes equal numpy's slicing of the input codes."""
    spec = tmp_path / "slices.yaml"
    spec.write_text(
        "kind: model\nname: slices\ninput: {shape: [4, 6, 6]}\nlayers:\n"
        "  - {id: conv, op: conv2d, out: 8, kernel: 1}\n"
        "  - {id: every_other, op: slice, axis: 2, start: 1, end: 6, step: 2}\n"
        "  - {id: last, op: slice, axis: 3, start: -4}\n"
        "  - {id: pool, op: global_avgpool}\n  - {id: flatten, op: flatten}\n"
    )
    fe = lower_spec(spec)
    data = np.random.default_rng(0).standard_normal((8, 4, 6, 6)).astype(np.float32)
    graph = plan(fe.onnx, lowering=TVM, rules="tvm")
    qg = quantize_graph(graph, calibrate_onnx(fe.onnx, data, method="kl", target="tvm", graph=graph))
    _, env = Reference().run(qg, data[:2], return_all=True)
    slices = [n for n in qg.nodes if n.kind == "slice"]
    # the passes merge the two slices into one Slice of two axes
    assert [n.attrs["ranges"] for n in slices] == [[[2, 1, 6, 2], [3, 2, 6, 1]]]
    conv_out = env[slices[0].inputs[0]].q
    assert np.array_equal(env[slices[0].outputs[0]].q, conv_out[:, :, 1:6:2, 2:])


def test_a_constant_added_to_the_scores_is_its_int8_codes():
    """MaxViT's relative position bias: the add_constant kind adds the constant's int8 codes (zero point 0, scale
    max |c| / 127, the largest value exact) with TFLite's integer ADD: within one output LSB of adding the
    dequantized operands in float."""
    fe = lower_spec(spec_path("maxvit_t"), SMALL["maxvit_t"])
    data = np.random.default_rng(0).standard_normal((8, *fe.model.input_shape)).astype(np.float32)
    graph = plan(fe.onnx, lowering=TVM, rules="tvm")
    qg = quantize_graph(graph, calibrate_onnx(fe.onnx, data, method="kl", target="tvm", graph=graph))
    _, env = Reference().run(qg, data[:2], return_all=True)
    adds = [n for n in qg.nodes if n.kind == "add_constant"]
    assert len(adds) == 6
    inits = {t.name: numpy_helper.to_array(t) for t in fe.onnx.graph.initializer}
    planned = {n.name: n for n in graph.nodes}
    for n in adds:
        c = inits[planned[n.name].factor]
        scale = float(n.weight_scale[0])
        assert np.float32(np.abs(c).max() / 127) == np.float32(scale) and np.abs(n.weight).max() == 127
        assert np.abs(n.weight * scale - c.reshape(n.weight.shape)).max() <= scale / 2 + 1e-9  # rounded codes
        x, y = env[n.inputs[0]], env[n.outputs[0]]
        exact = x.dequant().astype(np.float64) + n.weight * scale
        q = n.qout[0]
        codes = np.clip(np.rint(exact / q.scale) + q.zp, q.lo, q.hi)
        assert np.abs(y.q - codes).max() <= 1, n.name


def test_a_learned_tensor_broadcast_over_the_batch():
    """ViT's class token and position embedding (`param`: a constant [1, ...] expanded to the input's batch through
    Shape -> Slice -> Concat -> Expand): the plan leaves the shape arithmetic out and takes the Expand as a
    `broadcast` of the constant's codes at its output's scale, repeated over any batch."""
    fe = lower_spec(spec_path("vit_b_16"), SMALL["vit_b_16"])
    graph = plan(fe.onnx, lowering=TVM, rules="tvm")
    shape_ops = {
        n.name for n in fe.onnx.graph.node if n.op_type in ("Shape", "Concat") and n.name.startswith("class_token/")
    }
    assert shape_ops and not shape_ops & {c for n in graph.nodes for c in n.covers}
    assert [n.name for n in graph.nodes if n.kind == "broadcast"] == ["class_token", "encoder.pos_embedding"]
    data = np.random.default_rng(0).standard_normal((8, *fe.model.input_shape)).astype(np.float32)
    qg = quantize_graph(graph, calibrate_onnx(fe.onnx, data, method="kl", target="tvm", graph=graph))
    inits = {t.name: numpy_helper.to_array(t) for t in fe.onnx.graph.initializer}
    _, env = Reference().run(qg, data[:3], return_all=True)
    for n in (n for n in qg.nodes if n.kind == "broadcast"):
        y, q = env[n.outputs[0]], n.qout[0]
        weight = inits[next(g.weight for g in graph.nodes if g.name == n.name)]
        assert y.q.shape == (3, *weight.shape[1:]) and (y.q == y.q[:1]).all()
        assert np.abs(y.dequant() - weight).max() <= q.scale / 2 + 1e-6  # the constant within half a step


def test_a_16_bit_softmax_output_covers_its_whole_range(tiny):
    """A softmax's probabilities lie in [0, 1] whatever its input (IntOp.output_range): a 16-bit grid covers all
    of it, from a W8A16 calibration (here the data reached 0.999) and from widening an 8-bit table's tensor (its
    entry edited to a range of 0.4 seen: flatter attention). Data the calibration did not see may reach more, and
    clipped, the largest weights are the tokens attended to. The 8-bit grid keeps the range seen."""

    from tcc.quant.intgraph.widths import widened

    fe, graph, table = tiny
    (probs,) = [o for n in graph.nodes if n.kind == "softmax" for o in n.outputs]
    assert graph.output_amax() == {probs: 1.0}
    seen = table.tensors[probs]["max"]
    assert seen < 1.0 and table.tensors[probs]["scale"] * 255 <= seen * (1 + 1e-6)
    data = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)
    w16 = calibrate_onnx(fe.onnx, data, method="kl", target="tvm", graph=graph, activation_bits=16)
    flat = table.copy()
    flat.tensors[probs]["max"] = 0.4
    for t in (w16, widened(flat, graph, {probs})):
        e = t.tensors[probs]
        top = e["scale"] * ((1 << (e["bits"] - 1)) - 1)
        assert e["bits"] > 8 and 1.0 - 1e-6 <= top < 1.0 + 2 * e["scale"], e  # (float32 scales)
