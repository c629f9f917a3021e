"""Per-channel affine steps into the average pool (backends/tvm/passes/channel_scale.py), x86 host FP32: a 1 x 1
depthwise conv (a batch norm after a ReLU) becomes a multiply, and it, the bias and the ReLU are computed inside the
pool's kernel; the outputs agree with ONNX Runtime's. Speed is measured by `tcc bench`, not here."""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from tests.helpers.onnx_util import make_model, run
from tests.helpers.tvm_util import host_outputs_with_and_without, needs_tvm

pytestmark = needs_tvm

AVX512 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"}


def _transition(channels: int = 48):
    """DDSNet's transition in small: a ReLU, the batch norm as a 1 x 1 depthwise conv with bias, a ReLU, a 2 x 2
    average pool, a 1 x 1 conv."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((channels, 1, 1, 1)) * 0.5).astype(np.float32), "s"),
        numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "t"),
        numpy_helper.from_array((rng.standard_normal((16, channels, 1, 1)) * 0.1).astype(np.float32), "w"),
    ]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Conv", ["r", "s", "t"], ["bn"], group=channels),
        helper.make_node("Relu", ["bn"], ["a"]),
        helper.make_node("AveragePool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "w"], ["y"]),
    ]
    return make_model(nodes, {"x": [1, channels, 12, 12]}, {"y": [1, 16, 6, 6]}, inits, name="transition")


def _rewritten(model):
    import tvm

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import schedule as tvm_schedule
    from tcc.backends.tvm.passes.channel_scale import affine_into_avg_pool, depthwise_1x1_to_multiply

    passes = [
        *tvm_schedule.layout_passes(),
        tvm_compile.fold_numpy_constants(),
        depthwise_1x1_to_multiply(),
        affine_into_avg_pool(),
    ]
    with tvm.target.Target(AVX512):
        return tvm.transform.Sequential(passes)(tvm_compile.import_onnx(model, {"x": [1, 48, 12, 12]}))


def test_the_batch_norm_and_relu_are_computed_in_the_pools_kernel():
    mod = _rewritten(_transition())
    text = mod["main"].script()
    assert text.count("R.nn.conv2d(") == 1  # the transition's own conv; the depthwise one is gone
    assert "R.nn.avg_pool2d(" not in text and "R.multiply(" not in text
    assert text.count("R.nn.relu(") == 1  # the input's own, before the NHWC transpose (no chain of constants)
    pooled = [f for gv, f in mod.functions_items() if gv.name_hint.startswith("tcc_affine_avg_pool2d")]
    assert len(pooled) == 1 and "T.max(" in pooled[0].script()  # the ReLU inside


def test_a_strided_or_dense_conv_stays_a_conv():
    """Only an unstrided 1 x 1 depthwise conv is a per-channel multiply."""
    model = _transition()
    model.graph.node[1].attribute.append(helper.make_attribute("strides", [2, 2]))
    model.graph.node[3].attribute[0].ints[:] = [1, 1]  # the pool now 1 x 1 / 2 on the strided conv's 6 x 6
    model.graph.node[3].attribute[1].ints[:] = [1, 1]
    text = _rewritten(model)["main"].script()
    assert text.count("R.nn.conv2d(") == 2 and "R.multiply(" not in text


def test_outputs_agree_with_and_without_the_rewrite(tmp_path):
    """Within one rounding of a product: LLVM may fuse the multiply and the bias add into one multiply-add."""
    model = _transition()
    x = np.random.default_rng(1).standard_normal((1, 48, 12, 12)).astype(np.float32)
    outs = host_outputs_with_and_without(model, x, "channel_scale", tmp_path)
    assert outs[0].shape == (1, 16, 6, 6)
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(outs[1], run(model, x), atol=1e-5, rtol=1e-4)
