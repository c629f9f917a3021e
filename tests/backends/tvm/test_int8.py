"""INT8 Relax lowering (backends/tvm/int8/lower.py) vs the integer reference executor: bit for bit.

Every test compares np.array_equal against compiler/quant/reference.py: the graph output and, through
`lower_int8(..., expose=...)`, the codes of every quantized tensor the reference computes. Host code runs in the
Relax VM in-process; the exported .so runs once through tcc-run (host) and once under qemu (arm-a7), skipped with
the reason when the toolchain, qemu or the ARM runtime is missing (like tests/backends/tvm/test_infra.py).
"""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tcc.backends.tvm import compile as tvm_compile
from tcc.backends.tvm import runner as tvm_run
from tcc.backends.tvm.int8.lower import lower_int8
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.reference import multiply_by_quantized_multiplier, quantize_multiplier, run_reference
from tests.helpers import REPO
from tests.helpers.onnx_util import make_model
from tests.helpers.quant_models import residual_model, tiny_cnn, tiny_data
from tests.helpers.tvm_int8 import multiplier_module, requantize_module
from tests.helpers.tvm_util import check_all, host_vm, skip_unless_runtime


def _lowered(model, table, x):
    ref_out, ref_codes = run_reference(model, table, x, return_all=True)
    names = list(ref_codes)
    return lower_int8(model, table, expose=names), ref_out, ref_codes, names


# ---------------------------------------------------------------------------------------------------- requantization
def _edge_cases():
    """Multipliers and accumulators that hit every branch of the fixed-point requantization."""
    rng = np.random.default_rng(0)
    ms = np.concatenate(
        [
            [0.5, 0.25, 0.75, 1.0, 1.5, 2.0**29, 3.0e8, 1e-3, 1e-9, 2.0**-40],  # ties, large M (k = 1..2), tiny M
            rng.uniform(1e-6, 1.0, 3000),  # shift <= 0: the usual conv requantization
            rng.uniform(1.0, 2.0**20, 1000),  # shift > 0
        ]
    )
    q, shift = quantize_multiplier(ms)
    accs = rng.integers(-(2**31), 2**31, len(q))
    accs[:10] = [-7, -5, -3, -1, 1, 3, 5, -(2**31), 2**31 - 1, -1]  # negative and positive ties under M = 1/2, 1/4
    accs[10:40] = rng.integers(-(2**10), 2**10, 30) * 2 + 1  # more odd values: ties for M = 2^-k
    q[10:40], shift[10:40] = 2**30, rng.integers(-20, 1, 30)  # M = 2^(shift - 1): every odd acc ties
    assert (shift > 0).any() and (shift < 0).any() and (31 - shift == 1).any()
    return accs, q, shift


def test_requantize_kernel_bit_exact_on_edge_cases():
    """The shared requantization PrimFunc every layer calls: int32 output, and int8 with a zero point."""
    accs, q, shift = _edge_cases()
    want = multiply_by_quantized_multiplier(accs, q, shift)
    x = tvm.runtime.tensor(accs.astype(np.int32).reshape(1, -1))
    got = host_vm(requantize_module(q, shift))["main"](x).numpy().ravel()
    np.testing.assert_array_equal(got, np.clip(want, -(2**31), 2**31 - 1))
    got8 = host_vm(requantize_module(q, shift, zp=-3, lo=-128, hi=127, dtype="int8"))["main"](x).numpy().ravel()
    assert got8.dtype == np.int8
    np.testing.assert_array_equal(got8, np.clip(want - 3, -128, 127))


def test_requantize_narrow_form_bit_exact():
    """Multipliers below 1 (every conv's): the kernel clamps on int32 lanes (int8.requantize.requantize_params says why
    that is exact), with ties, the int32 extremes and zero points that push y + zp past int32."""
    from tcc.backends.tvm.int8.requantize import requantize_params
    from tests.helpers.tvm_int8 import _requant

    accs, q, shift = _edge_cases()
    keep = shift <= 0
    accs, q, shift = accs[keep], q[keep], shift[keep]
    assert requantize_params(_requant(q, shift, 0, -128, 127, "int8"), len(q))[0]  # the narrow form
    want = multiply_by_quantized_multiplier(accs, q, shift)
    x = tvm.runtime.tensor(accs.astype(np.int32).reshape(1, -1))
    for zp, lo, hi, dtype in (
        (0, -(2**31), 2**31 - 1, "int32"),
        (7, -(2**31), 2**31 - 1, "int32"),
        (-7, -(2**31), 2**31 - 1, "int32"),
        (3, 0, 255, "uint8"),
        (-3, -128, 127, "int8"),
    ):
        got = host_vm(requantize_module(q, shift, zp=zp, lo=lo, hi=hi, dtype=dtype))["main"](x).numpy().ravel()
        np.testing.assert_array_equal(got, np.clip(want + zp, lo, hi), err_msg=f"zp {zp}, {dtype}")


@pytest.mark.parametrize("form", ["int32", "float64"])
def test_x86_requantization_forms_bit_exact_on_edge_cases(form, monkeypatch):
    """The requantizations of an x86 kernel's layers (int8.requantize.requantize_int32_primfunc, where the 64-bit
    product is only the high half; requantize_float64_primfunc, where |acc q| < 2^53 makes float64 exact) on the
    edge cases: ties (M = 2^-s), q with trailing zero bits (the int32 form's low-bits test), the int32 extremes,
    accumulators at the float64 form's bound, zero points. Plain TIR: they run on any host. The float32 form, which
    the lowering tries first, is off (its own tests: test_int8_requantize_float32.py)."""
    from tcc.backends.tvm.int8 import kernels as kn
    from tcc.backends.tvm.int8 import requantize_float32
    from tcc.backends.tvm.int8.requantize import FLOAT64_EXACT, float64_requantize_params, int32_requantize_params
    from tests.helpers.tvm_int8 import _requant

    accs, q, shift = _edge_cases()
    keep = (shift <= -1) & (shift >= -30)  # multipliers below 1/2: where both forms apply
    accs, q, shift = accs[keep], q[keep], shift[keep]
    q[:200] &= ~np.int64(0xFFF)  # trailing zero bits
    bound = None
    if form == "float64":
        bound = np.minimum((FLOAT64_EXACT - 1) // q, 2**31 - 1)
        rng = np.random.default_rng(1)
        accs = rng.integers(-bound, bound + 1)
        accs[:64] = bound[:64] * np.array([1, -1] * 32)  # at the bound
        ties = q == 2**30  # M = 2^(shift - 1): every odd multiple of 2^(-shift) is a tie
        accs[ties] = (rng.integers(-(2**8), 2**8, ties.sum()) * 2 + 1) << (-shift[ties] - 1).clip(0, 20)
        assert ties.sum() >= 10
    monkeypatch.setattr(requantize_float32, "FLOAT32_EXACT", 0)
    kernel = kn.KERNELS["tcc_dot_avx2_madd"]
    for zp, lo, hi, dtype in (
        (0, -(2**31), 2**31 - 1, "int32"),
        (-7, -(2**31), 2**31 - 1, "int32"),
        (3, 0, 255, "uint8"),
        (-3, -128, 127, "int8"),
    ):
        rq = _requant(q, shift, zp, lo, hi, dtype)
        assert int32_requantize_params(rq, len(q)) is not None
        assert (float64_requantize_params(rq, len(q), bound) is not None) == (form == "float64")
        mod = requantize_module(q, shift, zp=zp, lo=lo, hi=hi, dtype=dtype, kernel=kernel, bound=bound)
        assert ("llvm.lrint" in mod.script()) == (form == "float64")
        got = host_vm(mod)["main"](tvm.runtime.tensor(accs.astype(np.int32).reshape(1, -1))).numpy().ravel()
        want = np.clip(multiply_by_quantized_multiplier(accs, q, shift) + zp, lo, hi)
        np.testing.assert_array_equal(got, want, err_msg=f"{form}: zp {zp}, {dtype}")


def test_x86_requantization_falls_back_outside_its_bounds():
    """Where a form's arithmetic would not be exact, the lowering takes the next: float64 needs |acc q| < 2^53
    (one more than the bound refuses it), the int32 form multipliers below 1/2 (M in [1/2, 1): the int64 form)."""
    from tcc.backends.tvm.int8.requantize import FLOAT64_EXACT, float64_requantize_params, int32_requantize_params
    from tests.helpers.tvm_int8 import _requant

    q, shift = np.array([2**30 + 1, 2**31 - 1]), np.array([-3, -1])
    rq = _requant(q, shift, 0, -128, 127, "int8")
    bound = (FLOAT64_EXACT - 1) // q
    assert float64_requantize_params(rq, 2, bound) is not None
    assert float64_requantize_params(rq, 2, bound + np.array([0, 1])) is None
    assert int32_requantize_params(rq, 2) is not None
    assert int32_requantize_params(_requant(q, np.array([-3, 0]), 0, -128, 127, "int8"), 2) is None


def test_elementwise_multiply_bit_exact_on_edge_cases():
    """The int64 Relax-op form used by the residual Add (its intermediate terms are not clamped)."""
    accs, q, shift = _edge_cases()
    got = host_vm(multiplier_module(q, shift))["main"](tvm.runtime.tensor(accs.astype(np.int32))).numpy()
    np.testing.assert_array_equal(got, multiply_by_quantized_multiplier(accs, q, shift))


def test_requantize_rejects_unrepresentable_multiplier():
    q, shift = quantize_multiplier(2.0**31)
    with pytest.raises(OverflowError):
        multiplier_module(q, shift)


# ---------------------------------------------------------------------------------------------------- small models
@pytest.fixture(scope="module")
def tiny():
    m = tiny_cnn()
    t = calibrate_onnx(m, tiny_data(24), method="kl", target="tvm")
    return m, t


@pytest.mark.parametrize("seed", [5, 6])
def test_tiny_cnn_bit_exact(tiny, seed):
    m, t = tiny
    x = tiny_data(3, seed=seed) * (1 + seed)  # the second input saturates more codes
    mod, ref_out, ref_codes, names = _lowered(m, t, x)
    n = check_all(host_vm(mod)["main"](tvm.runtime.tensor(x)), ref_out, ref_codes, names)
    assert n > 3000


def test_tiny_cnn_with_every_calibration_step_bit_exact():
    """Equalized weights, stored roundings and corrected biases reach the TVM lowering through the quantized graph:
    still bit-exact with the integer reference, every tensor."""
    from tcc.quant.table.steps import Steps

    m = tiny_cnn()
    t = calibrate_onnx(
        m,
        tiny_data(24),
        target="tvm",
        cos_steps=10,
        cos_rounds=1,
        steps=Steps(equalization=True, bias_correction=True, rounding=True),
    )
    assert all(s["enabled"] for s in t.steps)
    x = tiny_data(3, seed=7)
    mod, ref_out, ref_codes, names = _lowered(m, t, x)
    assert check_all(host_vm(mod)["main"](tvm.runtime.tensor(x)), ref_out, ref_codes, names) > 3000


@pytest.mark.parametrize("fused_relu", [True, False])
def test_residual_add_bit_exact(fused_relu):
    rng = np.random.default_rng(1)
    m = residual_model(fused_relu=fused_relu)
    t = calibrate_onnx(m, rng.standard_normal((16, 3, 12, 12)).astype(np.float32), method="minmax", target="tvm")
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32) * 1.5
    mod, ref_out, ref_codes, names = _lowered(m, t, x)
    check_all(host_vm(mod)["main"](tvm.runtime.tensor(x)), ref_out, ref_codes, names)
    assert "res" in names


@pytest.mark.parametrize("bits", [8, 12])
def test_padded_max_pool_bit_exact(bits):
    """A padded max pool pads with the tensor's lowest code: where that is its type's minimum (8-bit codes)
    max_pool2d's own padding, otherwise (a 12-bit grid stored in int16, as W8A16 narrows a grid) an explicit pad
    of that code; both bit-exact with the reference."""

    from onnx import helper, numpy_helper

    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.5, "w")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "MaxPool", ["conv"], ["output"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
    ]
    m = make_model(nodes, {"input": ["N", 3, 9, 9]}, {"output": ["N", 8, 5, 5]}, [w])
    t = calibrate_onnx(
        m,
        rng.standard_normal((16, 3, 9, 9)).astype(np.float32),
        method="minmax",
        target="tvm",
        activation_bits=16 if bits > 8 else 8,
    )
    if bits > 8:  # the conv's and the pool's grids narrowed to `bits`, their ranges kept
        t = t.copy()
        for name in ("conv", "output"):
            entry = t.tensors[name]
            entry["scale"] *= 2.0 ** (entry["bits"] - bits)
            entry["bits"] = bits
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32) * 2
    mod, ref_out, ref_codes, names = _lowered(m, t, x)
    assert ("R.nn.pad" in mod.script()) == (bits > 8)
    check_all(host_vm(mod)["main"](tvm.runtime.tensor(x)), ref_out, ref_codes, names)


@pytest.mark.parametrize("relu", [True, False])
def test_pooled_conv_on_digits_bit_exact(relu):
    """A 1 x 1 conv on a 2 x 2 average pool's exact window sums (the integer op table's pooled_conv) on the host's
    dot-product kernel: the sums as two 8-bit digits (S >> 2, S & 3), one kernel call each, bit for bit the
    reference's, on a ReLU's u8 codes and on signed ones."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(4)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.5, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((32, 16, 1, 1)).astype(np.float32) * 0.3, "w2")
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], name="c1", pads=[1, 1, 1, 1])]
    nodes += [helper.make_node("Relu", ["c1"], ["r"], name="c1.relu")] if relu else []
    nodes += [
        helper.make_node(
            "AveragePool", ["r" if relu else "c1"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Conv", ["p", "w2"], ["output"], name="pw"),
    ]
    m = make_model(nodes, {"input": ["N", 3, 10, 10]}, {"output": ["N", 32, 5, 5]}, [w1, w2])
    t = calibrate_onnx(m, rng.standard_normal((16, 3, 10, 10)).astype(np.float32), method="minmax", target="tvm")
    x = rng.standard_normal((2, 3, 10, 10)).astype(np.float32) * 2
    ref_out, ref_codes = run_reference(m, t, x, return_all=True)
    names = list(ref_codes)
    mod = lower_int8(m, t, expose=names, batch=len(x), target="host")  # static shapes: the host's dot kernel
    assert "tcc_window_digits" in mod.script() and "p" not in names  # the pooled tensor is never quantized
    check_all(host_vm(mod)["main"](tvm.runtime.tensor(x)), ref_out, ref_codes, names)


def test_pooled_conv_computes_a_batch_norm_map_in_its_window_sums():
    """DDSNet's transition in small: ReLU -> batch norm (a 1 x 1 depthwise conv: x86 maps it in float32, int8.affine)
    -> ReLU -> 2 x 2 average pool -> 1 x 1 conv. The pool's window sums read the map's input and compute the map
    themselves (its float32 parameters arguments of the digits' function); every tensor bit for bit the
    reference's."""
    from onnx import helper, numpy_helper

    from tcc.backends.tvm.int8.choose import dot_kernel

    if dot_kernel("host") is None or dot_kernel("host").arch != "x86_64":
        pytest.skip("the float32 map is x86's (this CPU has no x86 dot-product kernel)")
    rng = np.random.default_rng(5)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.5, "w1"),
        numpy_helper.from_array(rng.uniform(0.5, 2, (16, 1, 1, 1)).astype(np.float32), "s"),
        numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "t"),
        numpy_helper.from_array(rng.standard_normal((32, 16, 1, 1)).astype(np.float32) * 0.3, "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r"], name="c1.relu"),
        helper.make_node("Conv", ["r", "s", "t"], ["bn"], name="bn", group=16),
        helper.make_node("Relu", ["bn"], ["a"], name="bn.relu"),
        helper.make_node("AveragePool", ["a"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "w2"], ["output"], name="pw"),
    ]
    m = make_model(nodes, {"input": ["N", 3, 10, 10]}, {"output": ["N", 32, 5, 5]}, inits)
    t = calibrate_onnx(m, rng.standard_normal((16, 3, 10, 10)).astype(np.float32), method="minmax", target="tvm")
    x = rng.standard_normal((2, 3, 10, 10)).astype(np.float32) * 2
    ref_out, ref_codes = run_reference(m, t, x, return_all=True)
    names = list(ref_codes)
    mod = lower_int8(m, t, expose=names, batch=len(x), target="host")
    digits = [f.script() for gv, f in mod.functions_items() if gv.name_hint.startswith("tcc_window_digits")]
    assert len(digits) == 1 and "shift" in digits[0] and "scale" in digits[0]
    check_all(host_vm(mod)["main"](tvm.runtime.tensor(x)), ref_out, ref_codes, names)


def test_unsupported_op_is_named():
    from onnx import helper
    from onnx.defs import onnx_opset_version

    m = make_model(
        [helper.make_node("Softsign", ["input"], ["output"], name="soft")],
        {"input": [1, 1, 2, 2]},
        {"output": [1, 1, 2, 2]},
        opset=onnx_opset_version(),
    )
    from tcc.quant.intgraph.match import UnsupportedOps
    from tcc.quant.table.file import CalibrationTable

    entry = {"kind": "activation", "scale": 0.1, "zero_point": 0, "bits": 8, "signed": True}
    table = CalibrationTable({"tensors": {"input": entry, "output": entry}})
    with pytest.raises(UnsupportedOps, match="node 'soft' \\(op Softsign\\): no integer form"):
        lower_int8(m, table)


# ---------------------------------------------------------------------------------------------------- real networks
def _seeded_fp32(spec: str, seed: int = 0, side: int | None = None):
    """The spec's FP32 graph after the passes, seeded weights; `side`: --set image_size=side (the numpy reference is
    the slow part of these tests)."""
    pytest.importorskip("torch")
    from tcc.frontend import Weights, lower_spec

    fe = lower_spec(REPO / "spec" / spec, {"image_size": side} if side else None, Weights(seed=seed))
    return fe.onnx, tuple(fe.model.input_shape)


# MobileNetV2 repeats DDSNet's structures (depthwise-separable convs, residual adds) at a larger scale: slow
# DDSNet at 64 (the numpy reference of every tensor is this test's cost; the golden suite holds its host INT8
# bit-exact at 224)
@pytest.mark.parametrize(
    "spec, side", [("ddsnet.yaml", 64), pytest.param("baselines/mobilenet_v2.yaml", 64, marks=pytest.mark.slow)]
)
def test_network_bit_exact_on_host(spec, side):
    """Every quantized tensor of DDSNet (concat, pools, dense blocks) and MobileNetV2 (ReLU6, residual Add) bit for
    bit; every kind alone: tests/quant/test_int8_ops.py; the outputs of the whole zoo: tests/zoo/test_int8_host.py."""
    m, shape = _seeded_fp32(spec, side=side)
    rng = np.random.default_rng(0)
    t = calibrate_onnx(m, rng.standard_normal((4, *shape)).astype(np.float32), method="kl", target="tvm")
    xs = [rng.standard_normal((2, *shape)).astype(np.float32) * s for s in (1.0, 2.5)]
    ref = [run_reference(m, t, x, return_all=True) for x in xs]
    names = list(ref[0][1])
    vm = host_vm(lower_int8(m, t, expose=names, batch=2))  # static shapes, as deployed (tcc's schedules apply)
    compared = sum(check_all(vm["main"](tvm.runtime.tensor(x)), r[0], r[1], names) for x, r in zip(xs, ref))
    print(f"\n[tvm_int8] {spec}: {len(names)} quantized tensors, {compared} elements bit-exact")
    assert len(names) > 30


# ---------------------------------------------------------------------------------------------------- exported .so
@pytest.mark.parametrize("target", ["host", "arm-a7"])
def test_exported_module_bit_exact_with_tcc_run(tiny, target, tmp_path):
    """The .so exported by tvm_compile.compile_module, as the TVM backend does (cross-compiled for arm-a7, run
    under qemu), gives the reference's bits."""
    skip_unless_runtime(target)
    m, t = tiny
    x = tiny_data(2, seed=9) * 2
    mod, ref_out, ref_codes, names = _lowered(m, t, x)
    so = tvm_compile.compile_module(mod, target, tmp_path / f"tiny-int8-{target}.so")
    outs, _ = tvm_run.run_module(so, target, x)
    assert len(outs) == 1 + len(names)
    check_all(outs, ref_out, ref_codes, names)
