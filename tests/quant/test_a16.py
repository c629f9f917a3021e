"""16-bit activations (W8A16): int16 codes with 8-bit weights, through the calibration table, the integer reference,
the QDQ lowering (int16 Q/DQ, opset 21), the TVM lowering, and the targets that refuse them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.reference import run_reference
from tcc.quant.lower.qdq import quant_points, run, to_qdq
from tcc.quant.table.file import CalibrationError, CalibrationTable, load_table
from tcc.tolerance import TOLERANCES
from tests.helpers import REPO
from tests.helpers.onnx_util import make_model, run_all
from tests.helpers.quant_models import rows_gemm, table_json, tiny_cnn, tiny_data
from tests.helpers.tvm_util import check_all, host_vm, skip_unless_runtime


@pytest.fixture(scope="module")
def a16():
    m = tiny_cnn()
    return m, calibrate_onnx(m, tiny_data(24), target="tvm", activation_bits=16)


def test_table_is_int16_and_round_trips_the_schema(a16, tmp_path):
    _, t = a16
    acts = {n: e for n, e in t.tensors.items() if e["kind"] == "activation"}
    assert acts and all(e["bits"] == 16 and e["signed"] and e["zero_point"] == 0 for e in acts.values())
    assert all(e["method"] == "minmax" for e in acts.values())  # kl+cos at 16 bits: the range seen
    assert t.activation_bits == 16
    # the whole range seen, on 32767 steps: the threshold is the largest |x| (a tensor that shares no scale)
    e = acts["dw.relu"]
    assert "group" not in e
    assert e["scale"] == pytest.approx(max(abs(e["min"]), abs(e["max"])) / 32767, rel=1e-6)
    back = load_table(t.save(tmp_path / "t16.json"))
    assert table_json(back) == table_json(t)


def test_reference_equals_ort_fake_quant_of_int16_qdq(a16):
    """Per quantization point, the integer reference's int16 codes against ONNX Runtime running the QDQ model as
    float fake-quant (no fusion): within the int8 precision's stated tolerance (1 LSB, tcc.tolerance), and the
    graph output too. Below opset 21 the int16 Q/DQ pairs are ONNX Runtime's contrib ops and the model keeps its
    opset (raising it would change other ops: ReduceMean's axes)."""
    m, t = a16
    q = to_qdq(m, t)
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    assert opset < 21 and next(o.version for o in q.opset_import if o.domain in ("", "ai.onnx")) == opset
    assert {n.domain for n in q.graph.node if n.op_type == "QuantizeLinear"} == {"com.microsoft"}
    assert {n.domain for n in to_qdq(_opset(m, 21), t).graph.node if n.op_type == "QuantizeLinear"} == {""}
    zps = {i.name: i for i in q.graph.initializer if i.name.endswith("/zero_point")}
    points = quant_points(m, t)
    assert {"stem.relu", "cat", "pool", "gap"} <= set(points)
    assert all(zps[f"{p}/zero_point"].data_type == TensorProto.INT16 for p in points)
    x = tiny_data(8, seed=5) * 2
    for p in points:
        q.graph.output.append(helper.make_tensor_value_info(f"{p}/q", TensorProto.INT16, None))
    outs = run_all(q, x, optimize=False)
    ref, codes = run_reference(m, t, x, return_all=True)
    lsb = TOLERANCES["int8"]["lsb_tolerance"]
    for p, got in zip(points, outs[1:]):
        assert got.dtype == np.int16 and codes[p].q.max() > 127  # really on the wide grid
        d = np.abs(got.astype(np.int64) - codes[p].q)
        assert d.max() <= lsb, (p, d.max())
    step = t.tensors["flat"]["scale"] * np.abs(t.weight_scale("fc.weight")).max() * 64  # a few accumulator LSBs
    np.testing.assert_allclose(ref, outs[0], atol=step)


def _opset(m, version):
    out = onnx.ModelProto()
    out.CopyFrom(m)
    for o in out.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = version
    return out


def test_16_bit_activations_are_closer_to_fp32(a16):
    m, t16 = a16
    t8 = calibrate_onnx(m, tiny_data(24), target="tvm", method="minmax")
    x = tiny_data(8, seed=5)
    fp = run(m, x)
    err = [np.abs(run_reference(m, t, x) - fp).max() for t in (t8, t16)]
    assert err[1] < 0.7 * err[0], err  # measured 0.031 vs 0.053: what is left is the 8-bit weights' error


def _wide_conv(channels: int, relu_first: bool = False):
    """Conv(channels -> 4, 3x3) with weights of one magnitude: every weight code is +-127 per channel
    (`relu_first`: on a ReLU of the input, then a sigmoid, a global pool, a flatten and a gemm)."""
    rng = np.random.default_rng(0)
    w = np.sign(rng.standard_normal((4, channels, 3, 3))).astype(np.float32)
    first = [helper.make_node("Relu", ["input"], ["r"], name="front.relu")] if relu_first else []
    tail = (
        [
            helper.make_node("Sigmoid", ["c"], ["s"], name="gate"),
            helper.make_node("GlobalAveragePool", ["s"], ["p"], name="gap"),
            helper.make_node("Flatten", ["p"], ["f"], name="flat"),
            helper.make_node("Gemm", ["f", "fc"], ["output"], name="fc", transB=1),
        ]
        if relu_first
        else [helper.make_node("Relu", ["c"], ["output"], name="wide.relu")]
    )
    out = ["N", 3] if relu_first else ["N", 4, 3, 3]
    conv = helper.make_node("Conv", ["r" if relu_first else "input", "w"], ["c"], name="wide.conv", kernel_shape=[3, 3])
    m = make_model(
        [*first, conv, *tail],
        {"input": ["N", channels, 5, 5]},
        {"output": out},
        {"w": w, "fc": rng.standard_normal((3, 4)).astype(np.float32)},
        name="wide",
        ir_version=8,
    )
    return m, rng.standard_normal((4, channels, 5, 5)).astype(np.float32)


def test_accumulator_guard_names_the_overflowing_16_bit_conv():
    """576 weight codes of +-127 times int16 inputs that take both signs (each product up to 127 * 32768, about
    2.397e9 in all) exceed int32: a table that keeps the input at 16 bits is refused naming the layer and the
    input's codes; the calibration gives that input one bit less (below); 8 bits, or 7 input channels at 16 bits
    (2.6e8), need nothing."""
    from tcc.quant.intgraph.match import plan
    from tcc.quant.intgraph.qgraph import quantize_graph

    m, x = _wide_conv(64)
    t = calibrate_onnx(m, x, target="tvm", activation_bits=16)
    e = t.tensors["input"]
    e.update(bits=16, scale=e["scale"] * 16383 / 32767)  # as the 16-bit range had it
    with pytest.raises(
        CalibrationError,
        match=r"layer 'wide\.conv'.*int32 accumulator can overflow \(worst case "
        r"2,39\d,\d{3},\d{3} > 2,147,483,647\): its input 'input' \(codes "
        r"-32,768\.\.32,767, zero point 0\).*8-bit activations",
    ):
        quantize_graph(plan(m, rules="tvm"), t)
    quantize_graph(plan(m, rules="tvm"), calibrate_onnx(m, x, target="tvm", method="minmax"))
    m, x = _wide_conv(7)
    t = calibrate_onnx(m, x, target="tvm", activation_bits=16)
    assert {e["bits"] for e in t.tensors.values() if e["kind"] == "activation"} == {16}
    quantize_graph(plan(m, rules="tvm"), t)


@pytest.mark.parametrize("target", ["host", None])
def test_16_bit_calibration_narrows_the_grid_an_accumulator_needs(target, tmp_path):
    """The overflowing conv's input gets 15 bits (int16 codes in [-16384, 16383], the same range: twice the step),
    recorded with the layer that needed it; nothing else narrows; the table passes the guard, validates and round-
    trips, ort's rules refuse it as a wide table, and both TVM lowerings equal the reference bit for bit with
    inputs that saturate the narrowed codes."""
    tvm = pytest.importorskip("tvm")
    from tcc.backends.tvm.int8.lower import lower_int8
    from tcc.quant.intgraph.match import plan
    from tcc.quant.intgraph.qgraph import quantize_graph
    from tcc.quant.prepare import check_table_bits
    from tcc.quant.table.rules import get_rules

    m, x = _wide_conv(64)
    t = calibrate_onnx(m, x, target="tvm", activation_bits=16)
    e = t.tensors["input"]
    assert e["bits"] == 15 and e["headroom_for"] == "wide.conv"
    assert e["scale"] == pytest.approx(max(abs(e["min"]), abs(e["max"])) / 16383, rel=1e-6)
    assert {n for n, e in t.tensors.items() if e["kind"] == "activation" and e["bits"] != 16} == {"input"}
    qg = quantize_graph(plan(m, rules="tvm"), t)
    assert (qg.input_q.lo, qg.input_q.hi, qg.input_q.dtype) == (-16384, 16383, "int16")
    assert table_json(load_table(t.save(tmp_path / "t.json"))) == table_json(t)
    check_table_bits(t, get_rules("tvm"), "t.json: target host")
    with pytest.raises(CalibrationError, match="tensor 'input' is 15-bit.*rules tvm"):
        check_table_bits(t, get_rules("ort"), "t.json: target ort")
    xs = np.concatenate([x * 3, -x * 3])
    ref_out, ref_codes = run_reference(m, t, xs, return_all=True)
    assert ref_codes["input"].q.min() == -16384 and ref_codes["input"].q.max() == 16383
    names = list(ref_codes)
    mod = lower_int8(m, t, expose=names, batch=len(xs), target=target)
    assert check_all(host_vm(mod)["main"](tvm.runtime.tensor(xs)), ref_out, ref_codes, names) > 0


def test_16_bit_calibration_refuses_what_no_grid_fits():
    """A gemm over 70,000 inputs of weight codes +-127: even on the narrowest wide grid (9 bits, codes to 256 from
    zero) the worst case is 2.3e9: the calibration itself refuses, naming the layer (exit 2, no table)."""
    rng = np.random.default_rng(0)
    k = 70_000
    m = make_model(
        [helper.make_node("Gemm", ["input", "w"], ["output"], name="huge.fc")],
        {"input": ["N", k]},
        {"output": ["N", 1]},
        {"w": np.sign(rng.standard_normal((k, 1))).astype(np.float32)},
        name="huge",
        ir_version=8,
    )
    with pytest.raises(CalibrationError, match=r"layer 'huge\.fc'.*can overflow.*codes -256\.\.255.*down to 9 bits"):
        calibrate_onnx(m, rng.standard_normal((4, k)).astype(np.float32), target="tvm", activation_bits=16)


@pytest.mark.parametrize("target", ["host", None])
def test_16_bit_conv_after_relu_is_bounded_by_the_codes_it_can_hold(target):
    """The same conv on a ReLU'd input: its codes are >= 0, so the accumulator sums the positive weights' products
    or the negative ones', never both (about 1.2e9): accepted (it was refused as if the input took both signs;
    the zoo's 16-bit builds were refused so, e.g. ResNet-18's layer2.0.conv2). The intervals hold every code the
    reference computes from inputs that saturate the range (the sigmoid's table, the pool and the flatten keep its
    output >= 0), and both TVM lowerings equal the reference bit for bit."""
    tvm = pytest.importorskip("tvm")
    from tcc.backends.tvm.int8.lower import lower_int8
    from tcc.quant.intgraph.match import plan
    from tcc.quant.intgraph.qgraph import quantize_graph
    from tcc.quant.intgraph.qtypes import accumulator_bound

    m, x = _wide_conv(64, relu_first=True)
    t = calibrate_onnx(m, x, target="tvm", activation_bits=16)
    qg = quantize_graph(plan(m, rules="tvm"), t)
    assert qg.reached["r"] == (0, 32767) and qg.reached["input"] == (-32768, 32767)
    assert all(qg.reached[n][0] >= 0 for n in ("s", "p", "f"))
    conv = qg.producer["c"]
    assert 2**30 < accumulator_bound("conv", conv.weight, conv.bias, conv.qin[0], qg.reached["r"]).max() < 2**31 - 1
    assert accumulator_bound("conv", conv.weight, conv.bias, conv.qin[0]).max() > 2**31 - 1  # the full range
    xs = np.concatenate([x * 50, -x * 50, np.abs(x) * 1e3])  # every code, and the ends of the range
    ref_out, ref_codes = run_reference(m, t, xs, return_all=True)
    assert ref_codes["r"].q.max() == 32767 and ref_codes["input"].q.min() == -32768
    for name, c in ref_codes.items():
        lo, hi = qg.reached[name]
        assert lo <= c.q.min() and c.q.max() <= hi, name
    names = list(ref_codes)
    mod = lower_int8(m, t, expose=names, batch=len(xs), target=target)
    assert check_all(host_vm(mod)["main"](tvm.runtime.tensor(xs)), ref_out, ref_codes, names) > 0


def test_rules_without_16_bit_kernels_refuse_a_16_bit_table(a16):
    from tcc.errors import DataError
    from tcc.quant.intgraph.match import plan
    from tcc.quant.intgraph.qgraph import quantize_graph
    from tcc.quant.prepare import check_table_bits
    from tcc.quant.table.rules import get_rules

    m, t = a16
    with pytest.raises(
        CalibrationError,
        match=r"calib\.json: target ort .*8-bit activations only.*tensor 'input' "
        r"is 16-bit",
    ):
        check_table_bits(t, get_rules("ort"), "calib.json: target ort")
    check_table_bits(t, get_rules("tvm"), "calib.json: target host")
    ort_table = CalibrationTable({**table_json(t), "target": "ort"})
    with pytest.raises(CalibrationError, match="tensor 'input': 16-bit activations are not supported under rules"):
        quantize_graph(plan(m, rules="ort"), ort_table)
    with pytest.raises(DataError, match="activation_bits=16: target rules 'pulsar2' take 8-bit"):
        calibrate_onnx(m, tiny_data(4), target="pulsar2", activation_bits=16)


def test_cli_refuses_16_bit_activations_for_ort_before_any_work(tmp_path, capsys):
    from tcc.cli.main import main

    code = main(
        [
            "calibrate",
            str(REPO / "spec" / "ddsnet.yaml"),
            "--data",
            str(tmp_path / "missing"),
            "--target",
            "ort",
            "--activation-bits",
            "16",
            "-o",
            str(tmp_path / "t.json"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--activation-bits 16: target rules 'ort' take 8-bit activations only" in err, err
    assert "--target tvm" in err and not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("target", ["host", None])
def test_tvm_lowering_of_16_bit_table_is_bit_exact(a16, target):
    """The host target's lowering (int16 codes straight into its depthwise kernel, and into its dense kernel where
    that multiplies int16 pairs: x86 without VNNI) and the generic lowering (target None) equal the integer
    reference on every tensor, with inputs that saturate the input's codes."""
    tvm = pytest.importorskip("tvm")
    from tcc.backends.tvm.int8.choose import dot_kernel
    from tcc.backends.tvm.int8.lower import lower_int8

    m, t = a16
    x = tiny_data(3, seed=6) * 3
    ref_out, ref_codes = run_reference(m, t, x, return_all=True)
    assert ref_codes["input"].q.min() == -32768  # saturated
    names = list(ref_codes)
    mod = lower_int8(m, t, expose=names, batch=3, target=target)
    funcs = {gv.name_hint for gv, _ in mod.functions_items()}
    kernel = dot_kernel(target)
    if kernel is not None:
        assert any(f.startswith("tcc_dw_conv") for f in funcs), funcs
        if kernel.act_dtype == "int16":
            assert any(f.startswith("tcc_dot_conv") for f in funcs), funcs
    assert check_all(host_vm(mod)["main"](tvm.runtime.tensor(x)), ref_out, ref_codes, names) > 3000


def test_spec_calibrate_section_sets_the_activation_width(tmp_path):
    """`calibrate: {activation_bits: 16}` in a spec is the default width; the command line's wins; another value is
    a spec error naming the place."""
    import tcc
    from tcc.quant.prepare import activation_bits
    from tcc.spec.loader import load_spec

    text = (REPO / "spec" / "ddsnet.yaml").read_text()
    assert "  bias_correction: true\n" in text
    spec = tmp_path / "ddsnet.yaml"
    spec.write_text(text.replace("  bias_correction: true\n", "  bias_correction: true\n  activation_bits: 16\n"))
    section = load_spec(spec).calibrate
    assert section == {"method": "kl+cos", "bias_correction": True, "activation_bits": 16, "asymmetric": True}
    assert activation_bits(section, None) == 16 and activation_bits(section, 8) == 8 and activation_bits({}, None) == 8
    spec.write_text(text.replace("  bias_correction: true\n", "  activation_bits: 12\n"))
    with pytest.raises(tcc.SpecError, match=r"ddsnet\.yaml:\d+:\d+.*activation_bits"):
        load_spec(spec)


@pytest.mark.parametrize("target", ["host", "arm-a7", "aarch64", "aarch64-dotprod"])
def test_exported_w8a16_module_bit_exact_with_tcc_run(a16, target, tmp_path):
    """The .so as the TVM backend exports it, with the target's kernels, gives the reference's bits. ARM's dense
    kernels read s8 codes: on arm-a7 int16 ones take the generic conv, on AArch64 two 8-bit digits through the
    kernel (`sdot`, or ARMv8.0's widening form: variants/digits.py), cross-compiled and run under qemu."""
    pytest.importorskip("tvm")
    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run
    from tcc.backends.tvm.int8.lower import lower_int8

    skip_unless_runtime(target)
    m, t = a16
    x = tiny_data(2, seed=9) * 2
    ref_out, ref_codes = run_reference(m, t, x, return_all=True)
    names = list(ref_codes)
    mod = lower_int8(m, t, expose=names, batch=2, target=target)
    so = tvm_compile.compile_module(mod, target, tmp_path / f"tiny-w8a16-{target}.so")
    outs, _ = tvm_run.run_module(so, target, x)
    assert len(outs) == 1 + len(names)
    check_all(outs, ref_out, ref_codes, names)


@pytest.mark.parametrize("target", ["aarch64", "aarch64-dotprod"])
def test_w8a16_linear_over_rows_bit_exact_on_aarch64_digits(target, tmp_path):
    """A linear layer over rows of int16 codes ([R, K] @ [K, F]: attention's projections) takes AArch64's two-digit
    form through the 8-bit kernel (variants/digits.py), bit-exact with the reference under qemu, negative codes and a
    wide grid included."""
    pytest.importorskip("tvm")
    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run
    from tcc.backends.tvm.int8.lower import lower_int8

    skip_unless_runtime(target)
    rng = np.random.default_rng(4)
    m = rows_gemm(rng)
    t = calibrate_onnx(
        m,
        rng.standard_normal((8, 32, 4, 4)).astype(np.float32) * 3,
        target="tvm",
        activation_bits=16,
        method="minmax",
        batch_size=1,
    )  # the reshape fixes one image
    x = rng.standard_normal((1, 32, 4, 4)).astype(np.float32) * 3
    ref_out, ref_codes = run_reference(m, t, x, return_all=True)
    names = list(ref_codes)
    assert ref_codes["rows"].q.min() < -256 and ref_codes["rows"].q.max() > 256  # both digits carry
    mod = lower_int8(m, t, expose=names, batch=1, target=target)
    assert "tcc_dot_conv" in str(mod)  # the kernel, not the generic matmul
    so = tvm_compile.compile_module(mod, target, tmp_path / f"rows-w8a16-{target}.so")
    outs, _ = tvm_run.run_module(so, target, x)
    check_all(outs, ref_out, ref_codes, names)
