"""tcc's default CPU schedules for TVM (backends/tvm/schedule/): which functions they take, what they do to
them, that they change no numbers, and the frontend clean-up (Clip) that keeps the graph channels-last.
Speed is measured by tools/bench_tvm.py, not here."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from tests.helpers import REPO
from tests.helpers.onnx_util import make_model, run
from tests.helpers.tvm_util import host_vm, needs_tvm

pytestmark = needs_tvm


def _legalized(onnx_model, target_name="host"):
    """The Relax module as the TVM backend lowers it, up to (not including) scheduling."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cg

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import schedule as ts

    inp = onnx_model.graph.input[0]
    dims = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    mod = tvm_compile.import_onnx(onnx_model, {inp.name: dims})
    target = tvm.target.Target(tvm_compile.resolve_tvm_target(target_name))
    with target:
        mod = tvm.transform.Sequential(ts.layout_passes() + list(cg.legalize_passes(target)))(mod)
    return mod, target


def _spec_onnx(spec: str):
    from tcc.frontend import lower_spec

    return lower_spec(REPO / spec).onnx


def _small_net():
    """pad+conv3x3+relu6 (Clip) -> depthwise 3x3 s2 -> 1x1 conv -> concat with a max pool -> avg pool -> gap ->
    gemm: every kind of function the rules handle, at a size where channels and widths do not divide evenly."""
    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=12, strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["p1", "c3"], ["cat"], axis=1),
        helper.make_node("AveragePool", ["cat"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    inits = [
        init("w1", 12, 3, 3, 3),
        init("b1", 12),
        init("w2", 12, 1, 3, 3),
        init("w3", 10, 12, 1, 1),
        init("b3", 10),
        init("wf", 5, 22),
        init("bf", 5),
        numpy_helper.from_array(np.float32(0.0), "lo"),
        numpy_helper.from_array(np.float32(6.0), "hi"),
    ]
    return make_model(nodes, {"x": [1, 3, 30, 30]}, {"y": [1, 5]}, inits, name="small")


def test_simd_of_registry_targets():
    import tvm

    from tcc.backends.tvm.compile import resolve_tvm_target
    from tcc.backends.tvm.isa import Simd, simd_of

    assert simd_of(tvm.target.Target(resolve_tvm_target("arm-a7"))) == Simd(4, 16)  # NEON q registers
    assert simd_of(tvm.target.Target(resolve_tvm_target("aarch64"))) == Simd(4, 32)
    host = simd_of(tvm.target.Target(resolve_tvm_target("host")))
    assert host.lanes in (4, 8, 16) and host.accumulators >= 8


@pytest.mark.parametrize(
    "spec, channels_last",
    [
        ("spec/ddsnet.yaml", True),
        pytest.param("spec/fastnet.yaml", True, marks=pytest.mark.slow),  # DDSNet's ops, multiscale
        pytest.param("spec/baselines/mobilenet_v2.yaml", True, marks=pytest.mark.slow),  # DDSNet's structures
        ("spec/baselines/efficientnet_b0.yaml", True),  # squeeze-excite: a broadcast multiply after a 1x1 conv
        ("spec/baselines/shufflenet_v2_x1_0.yaml", False),  # channel shuffle: reshape / transpose / split
    ],
)
def test_every_function_of_the_zoo_cpu_models_gets_a_schedule(spec, channels_last):
    """No function of the zoo's CPU-relevant models is left to TVM's unscheduled default; where the model has no
    reshapes of feature maps the graph stays channels-last: the only layout transposes are at the input (NCHW ->
    NHWC) and before flatten."""
    import tvm

    from tcc.backends.tvm.schedule import default_schedule_pass

    mod, target = _legalized(_spec_onnx(spec))
    rules = default_schedule_pass().rules
    funcs = {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    unscheduled = [name for name, f in funcs.items() if all(r.apply(f, target, False) is None for r in rules)]
    assert unscheduled == []
    transposes = [name for name in funcs if "transpose" in name]
    assert len(transposes) <= 2 or not channels_last, transposes


def test_conv_schedule_is_a_register_tile():
    """The fused conv + bias + ReLU: accumulator tile in local scope, vectorized over channels, unrolled over
    pixels, epilogue fused into the write-back (no separate bias / ReLU pass), rows in parallel."""
    import tvm

    from tcc.backends.tvm.schedule.float_rules import Injective, WindowReduction

    mod, target = _legalized(_small_net())
    conv = next(
        f
        for gv, f in mod.functions_items()
        if isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in gv.name_hint and "maximum" in gv.name_hint
    )
    assert Injective().apply(conv, target, False) is None  # a reduction: WindowReduction's, not Injective's
    text = WindowReduction().apply(conv, target, False).mod["main"].script()
    assert 'scope="local"' in text and "T.vectorized" in text and "T.unroll" in text and "T.parallel" in text
    assert 'T.sblock("T_add")' not in text and "T.max(" in text and "T.min(" in text  # fused into the write-back


def test_short_reductions_are_unrolled_on_x86_only():
    """Innermost reduction loops of at most X86_UNROLLED_TAPS steps in all are unrolled on x86 (host): the
    depthwise conv's 3 x 3 taps, the 3 x 3 x 3 conv's kx x c_in (not ky: 27 steps); ARM keeps the loop nest (its
    FP32 instruction counts are the INT8 ratios' reference). Numbers: test_schedules_change_no_numbers."""
    import tvm

    from tcc.backends.tvm.schedule.float_rules import WindowReduction

    def reduction_loops(target_name):
        mod, target = _legalized(_small_net(), target_name)
        loops = {}
        for gv, func in mod.functions_items():
            if isinstance(func, tvm.tirx.PrimFunc) and gv.name_hint.startswith("fused_conv2d"):
                text = WindowReduction().apply(func, target, False).mod["main"].script()
                loops[gv.name_hint] = [
                    line.strip()
                    for line in text.splitlines()
                    if line.strip().startswith(("for ry", "for rx", "for rc"))
                ]
        return loops

    host, arm = reduction_loops("host"), reduction_loops("arm-a7")
    assert host["fused_conv2d1_relu"] == [
        "for ry in T.unroll(T.int64(3)):",
        "for rx in T.unroll(T.int64(3)):",
        "for rc in T.unroll(T.int64(1)):",
    ]
    assert host["fused_conv2d_add_maximum_minimum"][0] == "for ry in range(T.int64(3)):"
    assert "T.unroll" not in host["fused_conv2d2_add1"][0]  # the 1x1 conv's 12 input channels
    assert all("T.unroll" not in line for lines in arm.values() for line in lines), arm


def test_relax_clips_become_layout_aware_ops():
    import tvm

    from tcc.backends.tvm import compile as tvm_compile

    mod = tvm_compile.import_onnx(_small_net(), {"x": [1, 3, 30, 30]})
    text = mod["main"].script()
    assert "R.maximum(" in text and "R.minimum(" in text
    assert not any(
        gv.name_hint.startswith(("maximum", "minimum"))
        for gv, f in mod.functions_items()
        if isinstance(f, tvm.tirx.PrimFunc)
    )


def test_schedules_change_no_numbers(tmp_path):
    """The same module with and without tcc's schedules, and ONNX Runtime: vectorization runs across output
    channels, never along a reduction, so each output is summed in the same order; only FMA contraction may
    differ (float32 ulps)."""
    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run

    model = _small_net()
    x = np.random.default_rng(1).standard_normal((1, 3, 30, 30)).astype(np.float32) * 3
    outs = {}
    for sched in (True, False):
        so = tvm_compile.compile_onnx(
            model,
            "host",
            tmp_path / f"m{int(sched)}.so",
            {"x": [1, 3, 30, 30]},
            tvm_compile.CompileOptions(schedule=sched),
        )
        outs[sched] = tvm_run.run_module(so, "host", x)[0][0]
    ref = run(model, x)
    np.testing.assert_allclose(outs[True], outs[False], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(outs[True], ref, atol=1e-5, rtol=1e-4)


def test_concat_inlined_into_its_elementwise_consumer_is_cut_at_its_inputs():
    """An INT8 concat fused with the cast / add / cast that shifts its u8 codes to s8: the one block left after
    inlining is cut at the inputs' boundaries like a plain concat, so each part is a vectorized copy (a select
    per element kept ARMv7 on scalar code: FastNet 2.2 M instructions)."""
    import tvm
    from tvm import te, topi

    from tcc.backends.tvm.compile import resolve_tvm_target
    from tcc.backends.tvm.schedule.float_rules import Injective

    a = te.placeholder((1, 5, 5, 16), "uint8", name="a")
    b = te.placeholder((1, 5, 5, 32), "uint8", name="b")
    cat = topi.concatenate([a, b], axis=3)
    wide = te.compute(cat.shape, lambda *i: cat(*i).astype("int16"), name="compute")
    shifted = te.compute(cat.shape, lambda *i: wide(*i) + tvm.tirx.const(-128, "int16"), name="T_add")
    out = te.compute(cat.shape, lambda *i: shifted(*i).astype("int8"), name="compute1")
    func = te.create_prim_func([a, b, out])
    text = Injective().apply(func, tvm.target.Target(resolve_tvm_target("arm-a7")), False).mod["main"].script()
    assert text.count("_partition") >= 2 and "T.vectorized" in text, text


def test_elementwise_on_three_channels_runs_fused_vectors(tmp_path):
    """The u8 -> s8 shift of an RGB input's codes, channels last: its width and channels fused into one contiguous
    run of 16-lane vectors (vectorized 3 lanes wide, lane by lane, it took ARMv7 2.8 M estimated cycles for FastNet's
    input), and the numbers unchanged; a transpose (not elementwise) keeps its loops."""
    import tvm
    from tvm import te, topi

    from tcc.backends.tvm.compile import resolve_tvm_target
    from tcc.backends.tvm.schedule.float_rules import Injective

    arm = tvm.target.Target(resolve_tvm_target("arm-a7"))
    a = te.placeholder((1, 4, 16, 3), "uint8", name="a")
    wide = te.compute(a.shape, lambda *i: a(*i).astype("int16"), name="compute")
    shifted = te.compute(a.shape, lambda *i: wide(*i) + tvm.tirx.const(-128, "int16"), name="T_add")
    out = te.compute(a.shape, lambda *i: shifted(*i).astype("int8"), name="compute1")
    sch = Injective().apply(te.create_prim_func([a, out]), arm, False)
    text = sch.mod["main"].script()
    assert "T.vectorized(16)" in text and "i2_i3_fused" in text, text
    lib = tvm.compile(sch.mod, target="llvm")
    x = np.random.default_rng(0).integers(0, 256, (1, 4, 16, 3)).astype(np.uint8)
    got = tvm.runtime.tensor(np.zeros(x.shape, np.int8))
    lib["main"](tvm.runtime.tensor(x), got)
    np.testing.assert_array_equal(got.numpy(), (x.astype(np.int16) - 128).astype(np.int8))
    transpose = topi.transpose(te.placeholder((1, 3, 4, 16), "float32", name="b"), (0, 2, 3, 1))
    text = Injective().apply(te.create_prim_func([transpose.op.input_tensors[0], transpose]), arm, False)
    assert "ax2_ax3_fused" not in text.mod["main"].script()


@pytest.mark.parametrize("channels", [19, 7, 32])
def test_channel_sums_exact_when_no_vector_divides_the_channels(channels):
    """A global sum over H x W (W8A16's average pool: int16 codes widened to int32) with a channel count no vector
    width divides (19, 7: a tile of one channel) gave every channel one wrong value once: the write-back had no
    loop of its own and the channel loop around the reduction was vectorized. Integer sums are exact: equal."""
    import tvm
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 7, 7, channels), "int16"))
    with bb.function("main", [x]):
        with bb.dataflow():
            total = bb.emit(relax.op.sum(relax.op.astype(x, "int32"), axis=[1, 2], keepdims=True))
            out = bb.emit_output(total)
        bb.emit_func_output(out)
    codes = np.random.default_rng(channels).integers(-32768, 32768, (1, 7, 7, channels)).astype(np.int16)
    got = host_vm(bb.get())["main"](tvm.runtime.tensor(codes)).numpy()
    np.testing.assert_array_equal(got, codes.astype(np.int64).sum(axis=(1, 2), keepdims=True))


def test_x86_float_max_pool_tiles_one_pixel_and_is_exact(tmp_path):
    """x86 float max pools: a tile of one pixel x up to X86_POOL_VECTORS vectors of channels (ARM keeps X pixels
    x 2 vectors); on an odd width the host module equals ONNX Runtime exactly (a max is exact in any order)."""
    import tvm

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run
    from tcc.backends.tvm.schedule.float_rules import WindowReduction

    shape = [1, 48, 13, 17]  # 6 AVX2 or 3 AVX-512 vectors: whole vectors on both x86 classes
    nodes = [
        helper.make_node("Conv", ["x", "eye"], ["c"]),  # 1 x 1, identity weights: exact, and makes it NHWC
        helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    eye = numpy_helper.from_array(np.eye(48, dtype=np.float32).reshape(48, 48, 1, 1), "eye")
    model = make_model(nodes, {"x": shape}, {"y": [1, 48, 7, 9]}, [eye], name="pool")

    def pool_script(target_name):
        mod, target = _legalized(model, target_name)
        func = next(f for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc) and "pool" in gv.name_hint)
        return WindowReduction().apply(func, target, False).mod["main"].script()

    host, arm = pool_script("host"), pool_script("arm-a7")
    assert "T.vectorized(T.int64(48))" in host and "T.unroll(T.int64(1))" in host.split("pool_max_update")[0]
    assert "T.vectorized(T.int64(8))" in arm and "T.vectorized(T.int64(48))" not in arm
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    so = tvm_compile.compile_onnx(model, "host", tmp_path / "pool.so", {"x": shape})
    ref = run(model, x)
    assert np.array_equal(tvm_run.run_module(so, "host", x)[0][0], ref)


def _vector_widths(onnx_model, mcpu: str) -> dict[str, set[str]]:
    """The vectorized loop extents WindowReduction gives each conv, for an x86 CPU named by LLVM."""
    import re

    import tvm

    from tcc.backends.tvm.schedule.float_rules import WindowReduction

    mod, _ = _legalized(onnx_model)
    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu})
    widths = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc) and "conv2d" in gv.name_hint:
            text = WindowReduction().apply(func, target, False).mod["main"].script()
            widths[gv.name_hint] = set(re.findall(r"in T\.vectorized\(T\.int64\((\d+)\)\)", text))
    return widths


def test_avx512_tiles_whole_vectors_and_streams_light_reductions_in_ymm():
    """AVX-512 (16 lanes): a 1x1 conv of 128 channels in zmm vectors (16 lanes each, the tile's vectors
    unrolled); its depthwise conv (9 taps) in 2 ymm vectors (16); 120 output channels, which no zmm count divides,
    in ymm vectors (8), not 30 ragged lanes. AVX2 keeps its widths (2 ymm where they divide)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=128),
        helper.make_node("Conv", ["c2", "w3"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
        for n, s in (("w1", (128, 64, 1, 1)), ("b1", (128,)), ("w2", (128, 1, 3, 3)), ("w3", (120, 128, 1, 1)))
    ]
    model = make_model(nodes, {"x": [1, 64, 14, 14]}, {"y": [1, 120, 14, 14]}, inits, name="widths")
    avx512, avx2 = _vector_widths(model, "skylake-avx512"), _vector_widths(model, "haswell")
    assert avx512 == {"fused_conv2d_add": {"16"}, "conv2d1": {"16"}, "conv2d2": {"8"}}, avx512
    assert avx2 == {"fused_conv2d_add": {"16"}, "conv2d1": {"16"}, "conv2d2": {"8"}}, avx2


def test_avx512_light_tiles_write_back_unrolled():
    """AVX-512: a depthwise conv's tile of pixels is written back by unrolled loops (every access to the tile a
    constant index: LLVM keeps it in registers; a loop over its pixels put it on the stack); AVX2 keeps its loop
    until measured on that class; a max pool's one-pixel tile has no pixel loop to unroll."""
    import re

    import tvm

    from tcc.backends.tvm.schedule.float_rules import WindowReduction

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], group=32),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    model = make_model(
        nodes,
        {"x": [1, 32, 16, 16]},
        {"y": [1, 32, 16, 16]},
        [numpy_helper.from_array(rng.standard_normal((32, 1, 3, 3)).astype(np.float32), "w")],
        name="depthwise",
    )
    mod, _ = _legalized(model)

    def write_back(mcpu):
        target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu})
        func = next(f for gv, f in mod.functions_items() if "conv2d" in gv.name_hint)
        text = WindowReduction().apply(func, target, False).mod["main"].script()
        return re.findall(r"for (ax\d+) in (T\.unroll|T\.vectorized|range)", text)

    assert write_back("skylake-avx512") == [("ax0", "T.unroll"), ("ax1", "T.vectorized")]
    assert write_back("haswell") == [("ax0", "range"), ("ax1", "T.vectorized")]


@pytest.mark.parametrize(
    "channels, width, work, tile",
    [
        (120, 14, 240, (24, 7)),  # DDSNet's third transition: 3 ymm x 7 pixels (was 1 ymm: 7 multiply-adds, 8 loads)
        (112, 28, 224, (16, 7)),  # its second: weights past L1, so more channels per tile would not read fewer
        (32, 15, 1024, (32, 5)),  # FastNet's 1024 -> 32: 2 zmm x 5 pixels
        (64, 112, 147, (32, 8)),  # DDSNet's 7 x 7 x 3 stem: 2 zmm x 8 pixels
        (58, 28, 116, None),  # no whole vector divides 58 channels: the general rule's tile
    ],
)
def test_avx512_register_tile_costs_loads_per_multiply_add(channels, width, work, tile):
    from tcc.backends.tvm.isa import Simd
    from tcc.backends.tvm.schedule.tiles import x86_register_tile

    assert x86_register_tile(channels, width, work, Simd(16, 32)) == tile


def test_x86_tiles_a_prime_width_past_the_row_and_stays_exact(tmp_path):
    """A width with no divisor near the register tile (31, as FastNet's 127 / 63 / 31): on x86 the tile keeps its
    8 pixels, the last one predicated past the row (not 1-pixel tiles); ARM keeps exact divisors. Numbers equal
    ONNX Runtime's."""
    import tvm

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run
    from tcc.backends.tvm.schedule.float_rules import WindowReduction

    rng = np.random.default_rng(2)
    inits = [
        numpy_helper.from_array((rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b"),
    ]
    model = make_model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        {"x": [1, 3, 31, 31]},
        {"y": [1, 16, 31, 31]},
        inits,
        name="prime",
    )

    def tile(target_name):
        mod, target = _legalized(model, target_name)
        func = next(
            f for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in gv.name_hint
        )
        text = WindowReduction().apply(func, target, False).mod["main"].script()
        return text

    host, arm = tile("host"), tile("arm-a7")
    assert "in T.unroll(T.int64(8))" in host and "T.where(" in host
    assert "in T.unroll(T.int64(8))" not in arm and "T.where(" not in arm
    x = rng.standard_normal((1, 3, 31, 31)).astype(np.float32)
    so = tvm_compile.compile_onnx(model, "host", tmp_path / "prime.so", {"x": [1, 3, 31, 31]})
    np.testing.assert_allclose(tvm_run.run_module(so, "host", x)[0][0], run(model, x), atol=1e-5, rtol=1e-4)


def test_dense_convs_and_matmuls_broadcast_depthwise_convs_and_pools_stream():
    """_broadcasts tells a dense conv or matmul (an input value broadcast against a vector of weights: register
    tiles by load cost, zmm even when short) from a depthwise conv or pool (a new input vector per output vector:
    half-width streams on AVX-512)."""
    import tvm

    from tcc.backends.tvm.schedule.float_rules import _broadcasts
    from tcc.backends.tvm.schedule.loops import is_reduction

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"]),  # dense 1x1: 16 multiply-adds an output
        helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=32),  # depthwise
        helper.make_node("MaxPool", ["c2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "s"], ["r"]),
        helper.make_node("MatMul", ["r", "r2"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
        for n, s in (("w1", (32, 16, 1, 1)), ("w2", (32, 1, 3, 3)), ("r2", (16, 8)))
    ]
    inits.append(numpy_helper.from_array(np.array([1, 32, 16], np.int64), "s"))
    model = make_model(nodes, {"x": [1, 16, 8, 8]}, {"y": [1, 32, 8]}, inits, name="kinds")
    mod, _ = _legalized(model)
    kinds = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc):
            sch = tvm.s_tir.Schedule(func)
            reductions = [b for b in sch.get_child_blocks(sch.get_sblock("root")) if is_reduction(sch, b)]
            if reductions:
                kinds[gv.name_hint] = _broadcasts(sch, reductions[-1])
    assert kinds == {"conv2d": True, "conv2d1": False, "max_pool2d": False, "matmul": True}, kinds


def test_a_layer_norm_runs_row_by_row_on_x86_and_keeps_its_numbers(tmp_path):
    """LayerNormalization over rows of 48 (the mean and the variance along the contiguous axis): RowReduction takes
    the functions that reduce (x86 only; ARM keeps WindowReduction's), each reduction a vector of partial results,
    rows in parallel; the module equals ONNX Runtime within float32 rounding."""
    import tvm

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run
    from tcc.backends.tvm.schedule.float_rules import RowReduction

    rng = np.random.default_rng(6)
    inits = [numpy_helper.from_array(rng.standard_normal(48).astype(np.float32), n) for n in ("g", "b")]
    model = make_model(
        [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5)],
        {"x": [1, 64, 48]},
        {"y": [1, 64, 48]},
        inits,
        opset=17,
        name="layer_norm",
    )

    def reductions(target_name):
        mod, target = _legalized(model, target_name)
        with target:
            mod = tvm.transform.Sequential(
                [
                    tvm.relax.transform.AnnotateTIROpPattern(),
                    tvm.relax.transform.FuseOps(),
                    tvm.relax.transform.FuseTIR(),
                ]
            )(mod)
        funcs = [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc) and "T.init()" in f.script()]
        return [RowReduction().apply(f, target, False) for f in funcs]

    host = reductions("host")
    assert host and all(s is not None for s in host)
    assert all("T.parallel(" in s.mod["main"].script() and "_rf" in s.mod["main"].script() for s in host)
    assert all(s is None for s in reductions("arm-a7"))
    x = (rng.standard_normal((1, 64, 48)) * 3 + 1).astype(np.float32)
    so = tvm_compile.compile_module(tvm_compile.import_onnx(model, {"x": [1, 64, 48]}), "host", tmp_path / "ln.so")
    np.testing.assert_allclose(tvm_run.run_module(so, "host", x)[0][0], run(model, x), rtol=1e-5, atol=1e-5)
