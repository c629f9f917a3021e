"""The AArch64 FP32 conv tile in assembly (backends/tvm/fp32/a64_tile.py, schedule/float_tile.py,
passes/whole_tiles.py): which convs take it, on which target and in which core's form, and that its sums are
the conv's (run under qemu against ONNX Runtime). Its speed is measured by the cycle estimate (`tcc build
--count-instructions`, docs/notes/arm-cycle-estimate.md), not here."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from tests.helpers.onnx_util import make_model, run
from tests.helpers.tvm_util import needs_tvm, skip_unless_runtime

pytestmark = needs_tvm


def _conv_model(c, o, size, kernel, stride, pad, seed=0):
    """Conv (+ bias) -> ReLU on [1, c, size, size], and a residual add where the output has the input's shape."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((o, c, kernel, kernel)) * 0.3).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(o).astype(np.float32), "b"),
    ]
    out = (size + 2 * pad - kernel) // stride + 1
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[pad] * 4, strides=[stride] * 2),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    return make_model(nodes, {"x": [1, c, size, size]}, {"y": [1, o, out, out]}, inits, name="conv"), out


def _scheduled(model, target_name: str) -> str:
    """The conv's PrimFunc after tcc's pipeline up to scheduling, as TVMScript."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cg

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import schedule as ts
    from tcc.backends.tvm.passes.whole_tiles import conv_width_to_whole_tiles
    from tcc.backends.tvm.schedule.float_tile import takes

    inp = model.graph.input[0]
    mod = tvm_compile.import_onnx(model, {inp.name: [d.dim_value for d in inp.type.tensor_type.shape.dim]})
    target = tvm.target.Target(tvm_compile.resolve_tvm_target(target_name))
    passes = ts.layout_passes() + [tvm_compile.fold_numpy_constants()]
    passes += [conv_width_to_whole_tiles(target)] if takes(target) else []
    with target:
        mod = tvm.transform.Sequential([*passes, *cg.legalize_passes(target), ts.default_schedule_pass()])(mod)
    return "\n".join(f.script() for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc))


# (input channels, output channels, size, kernel, stride, padding, the tile's name part): DDSNet's stem (7 x 7 / 2
# on RGB: window rows of 21 floats, one step past the runs of 4, pixels 24 bytes apart: `ldur`), FastNet's (3 x 3 /
# 2 valid on RGB, a width of 13 computed as 14 and cropped), a pointwise conv (runs of 4 only, one row), a 1 x 1 on 6
# channels into 4 (one vector, a tail of 2) and one of width 13 (computed as 14), a padded 3 x 3 on 16 channels
CASES = [
    (3, 16, 32, 7, 2, 3, "tile8x8_w7x7x3_s2"),
    (3, 8, 28, 3, 2, 0, "tile7x8_w3x3x3_s2"),
    (12, 8, 16, 1, 1, 0, "tile8x8_w1x1x12_s1"),
    (6, 4, 8, 1, 1, 0, "tile8x4_w1x1x6_s1"),
    (8, 8, 13, 1, 1, 0, "tile7x8_w1x1x8_s1"),
    (16, 16, 8, 3, 1, 1, "tile8x8_w3x3x16_s1"),
]


@pytest.mark.parametrize("target, core", [("aarch64", "cortex_a53"), ("aarch64-dotprod", "cortex_a55")])
@pytest.mark.parametrize("case", CASES, ids=[case[-1] for case in CASES])
def test_float_tile_sums_equal_the_conv(target, core, case, tmp_path):
    """Each case takes the kernel's tile named, in its core's form (the schedule's TIR calls it), and computes the
    conv, bias and ReLU as ONNX Runtime does, within float32 rounding, executed under qemu. On the A55 a 1 x 1 conv
    whose width whole tiles divide keeps WindowReduction's code (RunForm.pointwise)."""
    skip_unless_runtime(target)
    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run

    c, o, size, kernel, stride, pad, tile = case
    model, out = _conv_model(c, o, size, kernel, stride, pad)
    kept = core == "cortex_a55" and kernel == 1 and out % 8 in (0, out)
    text = _scheduled(model, target)
    assert (f"tcc_a64_f32_{tile}" in text and text.count(f"_{core}") > 0) != kept, tile
    x = np.random.default_rng(1).standard_normal((1, c, size, size)).astype(np.float32)
    so = tvm_compile.compile_onnx(model, target, tmp_path / "conv.so", {"x": [1, c, size, size]})
    got = tvm_run.run_module(so, target, x)[0][0]
    np.testing.assert_allclose(got, run(model, x), atol=1e-5, rtol=1e-5)


def test_armv7_keeps_window_reduction():
    """The kernel is AArch64's: arm-a7 takes none, and widens no conv."""
    model, _ = _conv_model(3, 8, 28, 3, 2, 0)
    text = _scheduled(model, "arm-a7")
    assert "tcc_a64_f32" not in text and "T.int64(14)" not in text


def test_widths_rounded_up_only_where_no_tile_divides_them():
    """whole_tile_width: FastNet's 127 -> 128 (8-pixel tiles), 13 -> 14 (7); 63 (7 x 9) and 16 keep theirs; no tile
    within a quarter more columns (3 pixels) leaves the conv as it is; fewer than 4 output channels take none."""
    from tcc.backends.tvm.passes.whole_tiles import whole_tile_width

    def width(w, c=3, o=8, k=3, s=2, pad=0):
        return whole_tile_width([1, w, w, c], [k, k, c, o], [s, s], [pad] * 4)

    assert width(256) == 128 and width(28) == 14
    assert width(128) is None and width(33) is None  # 63 and 16 outputs: whole tiles already
    assert width(7) is None  # 3 outputs: 8 would be 5 more
    assert width(256, o=2) is None


def test_a_window_no_immediate_offset_reaches_keeps_window_reduction():
    """A pixel stride past `ldr q`'s scaled offsets (a 1 x 1 conv on 4,100 channels: 16,400 bytes a pixel, 8 pixels)
    or unaligned past `ldur`'s 255 bytes (3 x 3 / 2 on 6 channels: 48 bytes, fine; on 35: 280, not a multiple of
    16) does not fit the kernel."""
    from tcc.backends.tvm.fp32.a64_tile import FloatTile

    assert FloatTile(8, 2, 1, 1, 4100, 1, 4100, 8).fits() is False
    assert FloatTile(8, 2, 3, 3, 6, 2, 600, 8).fits() is True
    assert FloatTile(8, 2, 3, 3, 35, 2, 3500, 8).fits() is False
    assert FloatTile(8, 4, 1, 1, 16, 1, 16, 16).fits() is False  # 32 accumulators
