"""Output channels to whole vectors (backends/tvm/passes/channel_pad.py), AVX-512 host FP32 only: the weights padded
with
zero filters, a slice keeping the real channels, the tile written back through the slice, outputs bit-identical.
Speed is measured by `tcc bench`, not here."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from tests.helpers.onnx_util import make_model, run
from tests.helpers.tvm_util import host_outputs_with_and_without, needs_tvm

pytestmark = needs_tvm

AVX512 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"}
AVX2 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}


def _transition(channels: int = 120):
    """DDSNet's third transition in small: ReLU, a 1x1 conv of 240 -> `channels` with bias, ReLU, 2x2 average pool."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((channels, 240, 1, 1)) * 0.1).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Conv", ["r", "w", "b"], ["c"]),
        helper.make_node("Relu", ["c"], ["a"]),
        helper.make_node("AveragePool", ["a"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    return make_model(nodes, {"x": [1, 240, 14, 14]}, {"y": [1, channels, 7, 7]}, inits, name="transition")


def _rewritten(model, target_dict):
    import tvm

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import schedule as tvm_schedule
    from tcc.backends.tvm.passes.channel_pad import conv_channels_to_whole_vectors

    target = tvm.target.Target(target_dict)
    passes = [*tvm_schedule.layout_passes(), tvm_compile.fold_numpy_constants(), conv_channels_to_whole_vectors(target)]
    return tvm.transform.Sequential(passes)(tvm_compile.import_onnx(model, {"x": [1, 240, 14, 14]})), target


@pytest.mark.parametrize(
    "channels, width, work, padded",
    [
        (120, 14, 240, 128),
        (112, 28, 224, 128),  # DDSNet's third and second transitions: ymm / one-zmm tiles
        (58, 28, 58, 64),
        (116, 14, 116, 128),  # ShuffleNet's: no whole vector divides them
        (144, 28, 144, None),  # 9 zmm: 3-vector tiles already cost less than 160 channels' would per real channel
        (96, 56, 192, None),
        (128, 14, 240, None),  # whole two-vector tiles
        (8, 63, 576, None),  # FastNet's 8 channels: 16 would be twice the work
    ],
)
def test_padded_channels(channels, width, work, padded):
    from tcc.backends.tvm.isa import Simd
    from tcc.backends.tvm.passes.channel_pad import padded_channels

    assert padded_channels(channels, width, work, Simd(16, 32)) == padded


def test_the_conv_computes_whole_vectors_and_a_slice_keeps_its_channels_on_avx512_only():
    avx512, _ = _rewritten(_transition(), AVX512)
    text = avx512["main"].script()
    assert "R.nn.conv2d(" in text and "R.Tensor((1, 14, 14, 128)" in text
    assert "R.strided_slice(" in text and "R.Tensor((1, 14, 14, 120)" in text
    avx2, _ = _rewritten(_transition(), AVX2)
    assert "R.strided_slice(" not in avx2["main"].script() and "128" not in avx2["main"].script()


def test_the_tile_is_written_back_through_the_slice():
    """No 128-channel buffer outside the register tile: the padded channels are summed, never stored."""
    import tvm
    from tvm import relax

    from tcc.backends.tvm.schedule.float_rules import WindowReduction

    mod, target = _rewritten(_transition(), AVX512)
    with target:
        mod = tvm.transform.Sequential(
            [
                relax.transform.LegalizeOps(),
                relax.transform.AnnotateTIROpPattern(),
                relax.transform.FuseOps(),
                relax.transform.FuseTIR(),
            ]
        )(mod)
    fused = [f for gv, f in mod.functions_items() if "strided_slice" in gv.name_hint]
    assert len(fused) == 1, [gv.name_hint for gv in mod.functions]
    text = WindowReduction().apply(fused[0], target, False).mod["main"].script()
    assert "T.Buffer((T.int64(1), T.int64(1), T.int64(240), T.int64(128))" in text  # the padded filters
    wide = [line for line in text.split("\n") if "sblock_alloc_buffer" in line and "T.int64(128))" in line]
    assert wide and all('scope="local"' in line for line in wide), wide


def test_outputs_bit_identical_with_and_without_the_rewrite(tmp_path):
    model = _transition()
    x = np.random.default_rng(1).standard_normal((1, 240, 14, 14)).astype(np.float32)
    outs = host_outputs_with_and_without(model, x, "whole_vectors", tmp_path)
    assert outs[0].shape == (1, 120, 7, 7) and np.array_equal(outs[0], outs[1])
    np.testing.assert_allclose(outs[1], run(model, x), atol=1e-5, rtol=1e-4)
