"""The first conv reading the NCHW input itself (backends/tvm/passes/nchw_input.py) and heavy convs' padding by rows
(schedule.loops.pad_by_rows), x86 host FP32 only: bit-identical outputs, the transpose kernel gone, the padding
without bounds tests, ARM untouched. Speed is measured by `tcc bench`, not here."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from tests.helpers.onnx_util import make_model, run
from tests.helpers.tvm_util import needs_tvm, x86_options

pytestmark = needs_tvm

SHAPE = [1, 3, 29, 33]  # odd, unequal sides: no vector width divides a row, the maps 15 x 17, then 8 x 9


def _stem_net():
    """A stem-like 7x7/s2/p3 conv on 3 channels (+ bias, ReLU), a 3x3/p1 conv on 12 channels (its NHWC padding
    is a pass of its own: 108 multiply-adds an output), a 3x3/s2/p1 max pool on a width of 17 (no tile divides
    it) and a grouped conv (left alone)."""
    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[7, 7], strides=[2, 2], pads=[3] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1] * 4),
        helper.make_node("MaxPool", ["c2"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
        helper.make_node("Conv", ["p", "w3"], ["y"], group=4, pads=[1] * 4),
    ]
    inits = [init("w1", 12, 3, 7, 7), init("b1", 12), init("w2", 8, 12, 3, 3), init("b2", 8), init("w3", 8, 2, 3, 3)]
    return make_model(nodes, {"x": SHAPE}, {"y": [1, 8, 8, 9]}, inits, name="stem")


def _rewritten(target_name="host"):
    """The Relax module after the layout passes, the constant folds and the rewrite, and its target."""
    import tvm

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import schedule as tvm_schedule
    from tcc.backends.tvm.passes.nchw_input import conv_reads_nchw_input

    mod = tvm_compile.import_onnx(_stem_net(), {"x": SHAPE})
    target = tvm.target.Target(tvm_compile.resolve_tvm_target(target_name))
    passes = [*tvm_schedule.layout_passes(), tvm_compile.fold_numpy_constants(), conv_reads_nchw_input(target)]
    return tvm.transform.Sequential(passes)(mod), target


def test_only_the_conv_of_the_transposed_input_is_rewritten():
    mod, _ = _rewritten()
    text = mod["main"].script()
    assert text.count("R.call_tir(tcc_nchw_input_conv, (x,") == 1
    assert "axes=[0, 2, 3, 1]" not in text  # the input's transpose is gone (the one left: the output's, to NCHW)
    assert text.count("R.nn.conv2d(") == 2  # the 3x3 conv on a feature map and the grouped conv stay


@pytest.mark.parametrize("target_name, applied", [("host", True), ("arm-a7", False), ("aarch64", False)])
def test_the_rewrite_is_in_the_x86_pipeline_only(target_name, applied):
    import tvm

    from tcc.backends.tvm import compile as tvm_compile

    target = tvm.target.Target(tvm_compile.resolve_tvm_target(target_name))
    names = {p.info.name for p in tvm_compile._relax_pipeline(target, x86_options(nchw_input=True)).passes}
    assert ("TccConvReadsNchwInput" in names) == applied
    assert "TccConvReadsNchwInput" not in {
        p.info.name for p in tvm_compile._relax_pipeline(target, x86_options()).passes
    }


def test_padding_by_rows_has_no_bounds_tests_on_x86_and_is_not_used_on_arm():
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cg

    from tcc.backends.tvm.passes.nchw_input import PAD_BLOCK
    from tcc.backends.tvm.schedule.float_rules import WindowReduction

    def scheduled(target_name):
        mod, target = _rewritten(target_name)
        with target:
            mod = tvm.transform.Sequential(list(cg.legalize_passes(target)))(mod)
        return {
            gv.name_hint: WindowReduction().apply(f, target, False).mod["main"].script()
            for gv, f in mod.functions_items()
            if (isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in gv.name_hint) or "nchw_input" in gv.name_hint
        }

    host = scheduled("host")
    stem = next(text for name, text in host.items() if "nchw_input" in name)
    assert f'T.sblock("{PAD_BLOCK}_pad_const")' in stem and "if_then_else" not in stem
    nhwc = next(text for name, text in host.items() if "pad_temp" in text and "group" not in name)
    assert 'T.sblock("pad_temp_pad_const")' in nhwc and "if_then_else" not in nhwc.split("conv2d_nhwc")[0]
    arm = next(text for name, text in scheduled("arm-a7").items() if "nchw_input" in name)
    assert "_pad_const" not in arm and "if_then_else" in arm  # ARM's FP32 code (and instruction counts) stay


def test_a_width_no_register_tile_divides_is_computed_whole_and_cropped():
    """The stem's 17 output columns: the sum runs over whole register tiles (no predicate in the reduction; the
    columns past the width read the last input column again), and only the crop's stores test the width."""
    import re

    import tvm

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm.int8.kernels import CROP_BLOCK
    from tcc.backends.tvm.passes.nchw_input import nchw_input_conv_primfunc
    from tcc.backends.tvm.schedule.float_rules import WindowReduction
    from tcc.backends.tvm.schedule.tiles import float_pixel_tile

    target = tvm.target.Target(tvm_compile.resolve_tvm_target("host"))
    tile = float_pixel_tile(12, target)
    assert 17 % tile  # the case under test on this CPU (8 pixels with AVX2 or AVX-512)
    func = nchw_input_conv_primfunc(SHAPE, [7, 7, 3, 12], [2, 2], [3, 3, 3, 3], [1, 1], width_tile=tile)
    text = WindowReduction().apply(func, target, False).mod["main"].script()
    width = -(-17 // tile) * tile
    assert "T.Buffer((T.int64(1), T.int64(15), T.int64(17), T.int64(12))" in text  # the output keeps its shape
    update = text.split('T.sblock("conv2d_nhwc_update")')[1].split("T.sblock(")[0]
    assert f"T.axis.spatial(T.int64({width})" in update and "T.where" not in update
    crop = text.split(f'T.sblock("{CROP_BLOCK}")')[1]
    assert re.search(r"T\.where\(.* < T\.int64\(17\)\)", crop)


def test_outputs_bit_identical_with_and_without_the_changes(tmp_path, monkeypatch):
    """The host module against the same module compiled the way it was before (the input transposed by a
    kernel of its own, the padding vectorized with its bounds tests), and ONNX Runtime (float32 ulps)."""
    from tvm.s_tir.schedule import ScheduleError

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run
    from tcc.backends.tvm.schedule import float_rules

    model, x = _stem_net(), np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32) * 3
    new = tvm_run.run_module(
        tvm_compile.compile_module(
            tvm_compile.import_onnx(model, {"x": SHAPE}), "host", tmp_path / "new.so", x86_options(nchw_input=True)
        ),
        "host",
        x,
    )[0][0]

    def by_rows_refused(*_args):
        raise ScheduleError("disabled")

    monkeypatch.setattr(float_rules, "pad_by_rows", by_rows_refused)  # WindowReduction's padding by rows
    old = tvm_run.run_module(
        tvm_compile.compile_module(
            tvm_compile.import_onnx(model, {"x": SHAPE}), "host", tmp_path / "old.so", x86_options()
        ),
        "host",
        x,
    )[0][0]
    assert new.shape == old.shape == (1, 8, 8, 9) and np.array_equal(new, old)
    ref = run(model, x)
    np.testing.assert_allclose(new, ref, atol=1e-5, rtol=1e-4)
