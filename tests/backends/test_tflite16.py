"""TFLite's 16x8 mode (`--activation-bits 16` for --target tflite): int16 activations at zero point 0, int8
per-channel weights, int64 biases. The integer reference under the tflite rules equals LiteRT's reference kernels
bit for bit, tensor by tensor, on DDSNet's and FastNet's kinds; the written file has the 16x8 types and operator
versions; a kind without a 16-bit form here is refused before any work, naming the node and the target."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from tcc.backends import get_backend
from tcc.build import build, build_settings
from tcc.cli.main import main
from tests.helpers.cli import int8_build_argv, tcc
from tests.helpers.int8_zoo import SMALL, spec_path
from tests.helpers.quant_models import table_json


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data16") / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32))
    return path


def _build16(name: str, target: str, data, out):
    """The zoo model `name` at its small size (SMALL) built for `target` with 16-bit activations, calibrated on
    `data` (kl, 8 samples)."""
    calibration = {"method": "kl", "calib_size": 8, "activation_bits": 16}
    settings = build_settings(target, precision="int8", overrides=SMALL[name], data=data, calibration=calibration)
    return build(spec_path(name), settings, out)


@pytest.mark.parametrize("name,target", [("ddsnet", "tflite"), ("fastnet", "tflite"), ("ddsnet", "tflite16-i32")])
def test_16x8_equals_litert_reference_kernels_tensor_by_tensor(name, target, data, tmp_path):
    """Every tensor the integer graph quantizes, as LiteRT's reference kernels compute it (preserve-all-tensors),
    equals the integer reference's codes, on inputs that saturate the input's int16 codes too. `tflite16-i32`:
    int32 bias and accumulators on CONV_2D / FULLY_CONNECTED (gemmlowp rounding), int64 on DEPTHWISE_CONV_2D."""
    from tcc.frontend import lower_spec
    from tcc.quant.intgraph.match import plan
    from tcc.quant.intgraph.qgraph import quantize_graph
    from tcc.quant.table.file import CalibrationTable

    r = _build16(name, target, data, tmp_path / "b")
    m = r.manifest
    assert m["self_check"]["result"]["bit_exact"]
    assert m["quantization"]["activation_bits"] == {"16": m["quantization"]["quantized_tensors"]}
    assert m["target_checks"]["optimized"]["per_op"]["max_lsb"] <= 1.0
    table = CalibrationTable(json.loads((r.out / "calibration.json").read_text()))
    qg = quantize_graph(plan(lower_spec(spec_path(name), SMALL[name]).onnx, rules=target), table)
    roundings = {(n.attrs["group"] > 1, n.requant.mult.rounding) for n in qg.nodes if n.kind == "conv"}
    assert roundings == (
        {(False, "tflite_int64"), (True, "tflite_int64")}
        if target == "tflite"
        else {(False, "gemmlowp"), (True, "tflite_int64")}
    )
    _equals_reference_kernels(r.out, qg, np.concatenate([np.load(data)[:2], 40 * np.load(data)[2:3]]))


def test_16x8_int32_narrowed_grids_equal_litert_reference_kernels(tmp_path):
    """`tflite16-i32` on AlexNet (3x3 convs over 256 ReLU'd channels, a 9216-wide FC): the calibration narrows 5
    grids to 13-15 bits so no int32 accumulator can overflow, and the model clamps those tensors to their grids
    (LiteRT clamps a requantized int16 output to the type only): every tensor equals the reference's codes on
    LiteRT's reference kernels, inputs that saturate included."""
    from tcc.frontend import lower_spec
    from tcc.quant.calibrate import calibrate_onnx
    from tcc.quant.intgraph.match import plan
    from tcc.quant.intgraph.qgraph import quantize_graph

    fe = lower_spec(spec_path("alexnet"), SMALL["alexnet"])
    x = np.random.default_rng(0).standard_normal((4, *fe.model.input_shape)).astype(np.float32)
    g = plan(fe.onnx, rules="tflite16-i32", lowering="tflite")
    t = calibrate_onnx(fe.onnx, x, target="tflite16-i32", method="kl", activation_bits=16, graph=g)
    narrowed = sorted(v["bits"] for v in t.tensors.values() if v["kind"] == "activation" and v["bits"] < 16)
    assert len(narrowed) >= 3 and narrowed[0] >= 13, narrowed
    from tcc.backends import EmitOptions

    get_backend("tflite").emit(fe.onnx, EmitOptions("tflite16-i32", "int8", table=t), tmp_path)
    _equals_reference_kernels(tmp_path, quantize_graph(g, t), np.concatenate([x[:2], 40 * x[2:3]]))


def _equals_reference_kernels(bundle, qg, x):
    from tcc.quant.intgraph.reference import Reference

    _, ref = Reference().run(qg, x, return_all=True)  # the last input saturates
    assert ref[qg.input].q.min() == qg.input_q.lo and ref[qg.input].q.max() == qg.input_q.hi
    backend = get_backend("tflite")
    loaded = backend.load(bundle, "reference")
    where = loaded.info["tensors"]
    _, kept = backend.run(loaded, x, preserve=where)
    compared = 0
    for tensor, codes in ref.items():
        if tensor == qg.input:
            continue
        got = kept[tensor]
        assert got.dtype == np.int16, tensor
        np.testing.assert_array_equal(got.astype(np.int64), codes.q, err_msg=tensor)
        compared += 1
    assert compared == len(qg.nodes)


def test_16x8_file_types_and_versions(data, tmp_path):
    """int16 activations with the table's scale and zero point 0, int8 weights, int64 biases; operator versions as
    TFLite's versioning rules give them for 16x8 (op_version.cc)."""
    from ai_edge_litert import schema_py_generated as S

    r = _build16("ddsnet", "tflite", data, tmp_path / "b")
    table = json.loads((r.out / "calibration.json").read_text())["tensors"]
    model = S.ModelT.InitFromPackedBuf((r.out / "model.tflite").read_bytes(), 0)
    g = model.subgraphs[0]
    types = {getattr(S.TensorType, k): k for k in dir(S.TensorType) if not k.startswith("_")}
    by_name = {t.name.decode(): t for t in g.tensors}
    for name, t in table.items():
        tt = by_name[name]
        if t["kind"] == "activation":
            assert types[tt.type] == "INT16" and list(tt.quantization.zeroPoint) == [0], name
            assert list(tt.quantization.scale) == [float(np.float32(t["scale"]))]
        else:
            assert types[tt.type] == "INT8", name
    biases = [t for n, t in by_name.items() if n.endswith("/bias")]
    assert biases and {types[t.type] for t in biases} == {"INT64"}
    ops = {S.BuiltinOperator.__dict__[k]: k for k in dir(S.BuiltinOperator) if not k.startswith("_")}
    versions = {ops[c.builtinCode]: c.version for c in model.operatorCodes}
    assert versions == {
        "QUANTIZE": 2,
        "PAD": 3,
        "CONV_2D": 8,
        "PADV2": 3,
        "MAX_POOL_2D": 3,
        "DEPTHWISE_CONV_2D": 1,
        "CONCATENATION": 3,
        "AVERAGE_POOL_2D": 3,
        "RESHAPE": 1,
        "FULLY_CONNECTED": 11,
        "DEQUANTIZE": 3,
    }
    info = json.loads((r.out / "tflite.json").read_text())
    assert info["input_dtype"] == "float32"


def test_16x8_int32_bias_file_and_refusals(data, tmp_path, capsys):
    """`tflite16-i32`: CONV_2D and FULLY_CONNECTED with int32 bias and `quantized_bias_type` INT32 (LiteRT's 16x8
    kernels choose int32 by it; without it they read the int32 bias as int64), versions 8 / 11 (op_version.cc);
    DEPTHWISE_CONV_2D keeps its int64 bias (LiteRT refuses int32 there). The target takes 16-bit activations only
    (its default): an 8-bit calibration is refused before any work (exit 2)."""
    from ai_edge_litert import schema_py_generated as S

    r = _build16("ddsnet", "tflite16-i32", data, tmp_path / "b")
    assert r.manifest["quantization"]["rules"] == "tflite16-i32"
    assert r.manifest["target_checks"]["optimized"]["per_op"]["max_lsb"] <= 1.0
    model = S.ModelT.InitFromPackedBuf((r.out / "model.tflite").read_bytes(), 0)
    g = model.subgraphs[0]
    ops = {S.BuiltinOperator.__dict__[k]: k for k in dir(S.BuiltinOperator) if not k.startswith("_")}
    types = {getattr(S.TensorType, k): k for k in dir(S.TensorType) if not k.startswith("_")}
    seen = {}
    for op in g.operators:
        name = ops[model.operatorCodes[op.opcodeIndex].builtinCode]
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            opts = op.builtinOptions
            declared = getattr(opts, "quantizedBiasType", None)
            seen.setdefault(name, set()).add((types[g.tensors[op.inputs[2]].type], declared and types[declared]))
    assert seen == {
        "CONV_2D": {("INT32", "INT32")},
        "FULLY_CONNECTED": {("INT32", "INT32")},
        "DEPTHWISE_CONV_2D": {("INT64", None)},
    }
    versions = {ops[c.builtinCode]: c.version for c in model.operatorCodes}
    assert (versions["CONV_2D"], versions["FULLY_CONNECTED"], versions["DEPTHWISE_CONV_2D"]) == (8, 11, 1)
    small = [spec_path("ddsnet"), "--set", "image_size=64"]
    code = tcc(*int8_build_argv(small, "tflite16-i32", tmp_path / "c", "--data", data, "--activation-bits", "8"))
    err = capsys.readouterr().err
    assert code == 2 and "16-bit" in err and not (tmp_path / "c").exists(), err


def test_int16_io(data, tmp_path):
    """--io int8 at 16 bits: the model takes and gives int16 codes; quantizing outside equals QUANTIZE inside."""
    kw = dict(
        precision="int8",
        overrides=SMALL["ddsnet"],
        data=data,
        calibration={"method": "kl", "calib_size": 8, "activation_bits": 16},
    )
    a = build(spec_path("ddsnet"), build_settings("tflite", **kw), tmp_path / "a")
    c = build(spec_path("ddsnet"), build_settings("tflite", io="int8", **kw), tmp_path / "c")
    info = json.loads((c.out / "tflite.json").read_text())
    assert info["input_dtype"] == "int16" and info["output_dtype"] == "int16"
    backend = get_backend("tflite")
    x = np.random.default_rng(5).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(
        backend.run(backend.load(a.out, "reference"), x), backend.run(backend.load(c.out, "reference"), x)
    )


def test_kind_without_16_bit_form_is_refused_before_any_work(tmp_path, capsys):
    """ViT's class token (a constant broadcast) has no 16x8 form here: `tcc build` and `tcc calibrate` exit 2
    naming the node and the target before reading the (missing) data; nothing is written. The same model at 8 bits
    goes past the check (and then misses the data)."""
    spec = str(spec_path("vit_b_16"))
    sets = [a for k, v in SMALL["vit_b_16"].items() for a in ("--set", f"{k}={v}")]
    missing = str(tmp_path / "missing")
    code = tcc(*int8_build_argv([spec, *sets], "tflite", tmp_path / "b", "--data", missing, "--activation-bits", "16"))
    err = capsys.readouterr().err
    assert code == 2 and "--activation-bits 16: node 'class_token'" in err and "kind 'broadcast'" in err, err
    assert "target tflite" in err and not (tmp_path / "b").exists()
    code = main(
        [
            "calibrate",
            spec,
            *sets,
            "--target",
            "tflite",
            "--data",
            missing,
            "--activation-bits",
            "16",
            "-o",
            str(tmp_path / "t.json"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "integer kind 'broadcast'" in err and not (tmp_path / "t.json").exists(), err
    code = main(["calibrate", spec, *sets, "--target", "tflite", "--data", missing, "-o", str(tmp_path / "t.json")])
    err = capsys.readouterr().err
    assert code == 2 and "integer kind" not in err and "missing" in err, err


def test_lookup_without_16_bit_kernel_is_refused():
    """LOGISTIC is the one lookup with a 16x8 kernel here: a Tanh is refused at 16 bits naming it, a Sigmoid is
    not."""
    import onnx
    from onnx import TensorProto, helper

    from tcc.errors import DataError
    from tcc.quant.intgraph.match import plan
    from tcc.quant.prepare import check_wide_kinds
    from tcc.quant.table.rules import RULES

    def graph(op):
        w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], np.ones(12, np.float32))
        g = helper.make_graph(
            [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node(op, ["c"], ["y"], name="act")],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
            [w],
        )
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        return plan(onnx.shape_inference.infer_shapes(model), rules="tflite")

    check_wide_kinds(graph("Sigmoid"), 16, RULES["tflite"])
    with pytest.raises(DataError, match=r"node 'act' \(Tanh, integer kind 'lookup'\).*\(lookups: Sigmoid\)"):
        check_wide_kinds(graph("Tanh"), 16, RULES["tflite"])


def _one_op(op, inputs, out_scale, out_shape, opts=None, kernels="BUILTIN_REF", dtype="int16"):
    """Run one LiteRT operator on tensors of `dtype` at zero point 0: inputs [(codes, scale)]; returns its codes."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tcc.backends.tflite.model import Quant, TfliteModel

    m = TfliteModel("one op")
    ins = [m.tensor(f"in{k}", c.shape, dtype, None, Quant((s,), (0,))) for k, (c, s) in enumerate(inputs)]
    out = m.tensor("out", out_shape, dtype, None, Quant((out_scale,), (0,)))
    m.operator(op, ins, [out], opts)
    it = Interpreter(
        model_content=m.to_bytes(ins, [out]), experimental_op_resolver_type=getattr(OpResolverType, kernels)
    )
    it.allocate_tensors()
    for d, (c, _) in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], c.astype(dtype))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).astype(np.int64)


@pytest.mark.parametrize("kernels", ["BUILTIN_REF", "BUILTIN"])
def test_int16_logistic_equals_litert_on_every_code(kernels):
    """LOGISTIC at 16 bits, as the quantizer tables it (tflite_logistic16: LiteRT's 256-entry table, interpolated),
    equals LiteRT's kernel on all 65,536 input codes at input steps from 3e-5 to 3 (one of them 1% off 2^-12). A
    step LiteRT takes for a power of two (its other path), or one whose product with a code overflows its int32, is
    refused instead of modelled."""
    from tcc.quant.intgraph.node_constants import tflite_logistic16

    codes = np.arange(-32768, 32768, dtype=np.int64).reshape(1, -1)
    for scale in (3.1e-5, 1.3e-4, 3.7e-4, 2.0**-12 * 1.01, 1.1e-3, 2.0**-10, 1.23e-2, 3.0):
        got = _one_op("LOGISTIC", [(codes, scale)], 2.0**-15, codes.shape, kernels=kernels)
        np.testing.assert_array_equal(got[0], tflite_logistic16(codes[0], scale), err_msg=str(scale))
    with pytest.raises(ValueError, match="power of two"):
        tflite_logistic16(codes[0], 2.0**-12)
    with pytest.raises(ValueError, match="overflows"):  # seeded EfficientNetV2's deep SiLUs reached 11 a step
        tflite_logistic16(codes[0], 6.0)


def test_mul_and_batch_matmul_multipliers_and_rounding():
    """MUL at 16 bits: the int32 product of codes requantized with gemmlowp's two roundings by s_a s_b / s_out in
    float32 (mul.cc); BATCH_MATMUL: s_a s_b in float32 divided by s_out in float64 (its convolution multiplier),
    products summed in int64 at 16 bits and requantized by TFLite's int64 rounding (the rules' 16-bit matmul
    one). Equal to LiteRT on random codes over the whole int16 range, outputs saturating too; at 8 bits, on the
    tie MobileViT-XXS met (acc 13,169 -> 54, where the division in float32 gives 53)."""
    from tcc.backends.tflite.model import options
    from tcc.quant.intgraph.fixed_point import ROUNDING_FUNCTIONS, quantize_multiplier
    from tcc.quant.intgraph.qgraph import matmul_ratio, mul_ratio
    from tcc.quant.intgraph.qtypes import QParams
    from tcc.quant.table.rules import RULES

    rules = RULES["tflite"]
    rng = np.random.default_rng(0)
    bmm = options("BatchMatMulOptions", adjX=False, adjY=False)

    def requantized(acc, scales, ratio, rounding, bits=16):
        q, shift = quantize_multiplier(ratio(*(QParams(s, 0, -32768, 32767) for s in scales)))
        return np.clip(ROUNDING_FUNCTIONS[rounding](acc, q, shift), -(1 << (bits - 1)), (1 << (bits - 1)) - 1)

    for sa, sb, so in ((1.3e-3, 9.1e-4, 7e-4), (3e-4, 2.0**-15, 2.7e-4), (1e-4, 1e-4, 1e-6)):
        a, b = (rng.integers(-32768, 32768, (1, 16, 512)) for _ in range(2))
        got = _one_op("MUL", [(a, sa), (b, sb)], so, a.shape, options("MulOptions"))
        np.testing.assert_array_equal(got, requantized(a * b, (sa, sb, so), mul_ratio, rules.rounding))
    for (sa, sb, so), depth in (((1.3e-3, 9.1e-4, 7e-2), 64), ((1.1e-2, 4e-4, 0.9), 144)):
        a, b = rng.integers(-32768, 32768, (1, 4, 32, depth)), rng.integers(-32768, 32768, (1, 4, depth, 48))
        got = _one_op("BATCH_MATMUL", [(a, sa), (b, sb)], so, (1, 4, 32, 48), bmm)
        np.testing.assert_array_equal(
            got, requantized(np.matmul(a, b), (sa, sb, so), matmul_ratio, rules.wide.matmul_rounding)
        )
    scales = (0.002305958652868867, 0.056377019733190536, 0.0320025309920311)
    a, b = np.array([[[127, 1], [-127, -1]]]), np.array([[[103], [88]]])  # acc 13169 and -13169
    got = _one_op("BATCH_MATMUL", [(a, scales[0]), (b, scales[1])], scales[2], (1, 2, 1), bmm, dtype="int8")
    assert got.ravel().tolist() == [54, -54]
    np.testing.assert_array_equal(got, requantized(np.matmul(a, b), scales, matmul_ratio, rules.rounding, 8))


def test_int16_fully_connected_rounds_acc_times_its_double_multiplier():
    """FULLY_CONNECTED at 16x8 (int64 bias, per-channel int8 weights): acc times s_in s_w / s_out in float64, rounded
    once half away (the rules' gemm rounding, `double_half_away`), on accumulators up to ~2^26 over random codes
    (outputs to ~10,000 codes); the 16x8 convs' int64 rounding differs on hundreds of them, and one rounding of the
    31-bit fixed-point product (the 8-bit rule before) on one (seed 183: a near tie)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tcc.backends.tflite.model import Quant, TfliteModel, options
    from tcc.quant.intgraph.fixed_point import ROUNDING_FUNCTIONS, double_half_away_multiply, quantize_multiplier
    from tcc.quant.table.rules import RULES

    assert RULES["tflite"].wide.gemm_rounding == "double_half_away"
    rng = np.random.default_rng(183)
    x = rng.integers(-32768, 32768, (64, 512))
    w = rng.integers(-127, 128, (96, 512))
    s_in, s_out = np.float32(3.1e-4), np.float32(1.5e-3)  # outputs over most of the int16 range
    sw = (rng.uniform(0.5, 2.0, 96) * 1e-3).astype(np.float32)
    m = TfliteModel("fc")
    xi = m.tensor("x", x.shape, "int16", None, Quant((float(s_in),), (0,)))
    wi = m.tensor("w", w.shape, "int8", w.astype(np.int8), Quant(tuple(map(float, sw)), (0,) * 96, 0))
    bi = m.tensor(
        "b", (96,), "int64", np.zeros(96, np.int64), Quant(tuple(float(np.float32(s_in * v)) for v in sw), (0,) * 96, 0)
    )
    yi = m.tensor("y", (64, 96), "int16", None, Quant((float(s_out),), (0,)))
    m.operator(
        "FULLY_CONNECTED", [xi, wi, bi], [yi], options("FullyConnectedOptions", quantizedBiasType=m.s.TensorType.INT64)
    )
    it = Interpreter(model_content=m.to_bytes([xi], [yi]), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x.astype(np.int16))
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"]).astype(np.int64)
    acc = x @ w.T
    real = np.float64(s_in) * sw.astype(np.float64) / np.float64(s_out)
    np.testing.assert_array_equal(got, np.clip(double_half_away_multiply(acc, real[None]), -32768, 32767))
    q, shift = quantize_multiplier(real)
    int64_rounded = np.clip(ROUNDING_FUNCTIONS["tflite_int64"](acc, q[None], shift[None]), -32768, 32767)
    assert np.count_nonzero(int64_rounded != got) > 100  # measured: 400 of 6,144
    fixed_point = np.clip(ROUNDING_FUNCTIONS["single_half_away"](acc, q[None], shift[None]), -32768, 32767)
    assert np.count_nonzero(fixed_point != got) == 1


def test_16x8_attention_every_integer_op_exact(tmp_path):
    """MobileViT-XXS at 16 bits on TFLite: its convs, linear layers, SiLU (LOGISTIC, then MUL), residual ADD,
    attention's BATCH_MATMUL and scalar MUL, slices and transposes run on LiteRT's int16 kernels, each bit-exact
    with the integer reference on its own input codes (LiteRT's reference kernels; its optimized ones within 1
    LSB); softmax and layer norm are float islands within 1 LSB. The int16 operators carry TFLite's versions."""
    from ai_edge_litert import schema_py_generated as S

    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).standard_normal((8, 3, 128, 128)).astype(np.float32))
    r = build(
        spec_path("mobilevit_xxs"),
        build_settings(
            "tflite",
            precision="int8",
            overrides=SMALL["mobilevit_xxs"],
            data=x,
            calibration={"method": "kl", "calib_size": 8, "activation_bits": 16},
        ),
        tmp_path / "b",
    )
    m = r.manifest
    check = m["self_check"]["result"]
    assert check["passed"] and m["quantization"]["activation_bits"] == {"16": m["quantization"]["quantized_tensors"]}
    by_kind = check["per_op"]["max_lsb_by_kind"]
    integer = {k: v for k, v in by_kind.items() if "island" not in k}
    assert {"add", "mul", "matmul", "lookup", "channel_scale", "slice", "transpose", "conv", "gemm"} <= set(integer)
    assert max(integer.values()) == 0 and max(by_kind.values()) <= 1, by_kind
    assert m["target_checks"]["optimized"]["per_op"]["max_lsb"] <= 1.0
    table = json.loads((r.out / "calibration.json").read_text())["tensors"]
    sigmoids = [t for n, t in table.items() if n.endswith("/sigmoid")]
    assert sigmoids and all((t["scale"], t["zero_point"], t["bits"]) == (2.0**-15, 0, 16) for t in sigmoids)
    model = S.ModelT.InitFromPackedBuf((r.out / "model.tflite").read_bytes(), 0)
    ops = {S.BuiltinOperator.__dict__[k]: k for k in dir(S.BuiltinOperator) if not k.startswith("_")}
    versions = {}
    for c in model.operatorCodes:
        versions.setdefault(ops[c.builtinCode], set()).add(c.version)
    assert {op: max(versions[op]) for op in ("LOGISTIC", "BATCH_MATMUL", "MUL", "ADD", "TRANSPOSE")} == {
        "LOGISTIC": 3,
        "BATCH_MATMUL": 3,
        "MUL": 4,
        "ADD": 3,
        "TRANSPOSE": 6,
    }


def test_16x8_mobilevitv2_every_integer_op_exact(tmp_path):
    """MobileViTv2 (separable attention: its context vector's MUL of two activations, a clamp, a split, SiLU) at 16
    bits on TFLite: every integer op bit-exact with the integer reference on its own input codes; group norm, the
    context sum and softmax float islands within 1 LSB."""
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).standard_normal((4, 3, 128, 128)).astype(np.float32))
    r = build(
        spec_path("mobilevitv2_050"),
        build_settings(
            "tflite",
            precision="int8",
            overrides={**SMALL["mobilevitv2_050"], "transformer_depths": [1, 1, 1]},
            data=x,
            calibration={"method": "kl", "calib_size": 4, "activation_bits": 16},
        ),
        tmp_path / "b",
    )
    check = r.manifest["self_check"]["result"]
    by_kind = check["per_op"]["max_lsb_by_kind"]
    integer = {k: v for k, v in by_kind.items() if "island" not in k}
    assert check["passed"] and {"mul", "clamp", "split", "lookup"} <= set(integer)
    assert max(integer.values()) == 0 and max(by_kind.values()) <= 1, by_kind


def test_16_bit_zero_point_must_be_zero(data):
    """LiteRT's 16x8 kernels take zero point 0 only: a table with another is refused naming the tensor."""
    from tcc.frontend import lower_spec
    from tcc.quant.calibrate import calibrate_onnx
    from tcc.quant.intgraph.match import plan
    from tcc.quant.intgraph.qgraph import quantize_graph
    from tcc.quant.table.file import CalibrationError, CalibrationTable

    fe = lower_spec(spec_path("ddsnet"), SMALL["ddsnet"])
    g = plan(fe.onnx, rules="tflite")
    t = calibrate_onnx(fe.onnx, np.load(data)[:4], target="tflite", method="minmax", activation_bits=16, graph=g)
    doc = table_json(t)
    name = g.nodes[3].outputs[0]
    doc["tensors"][name]["zero_point"] = 5
    with pytest.raises(
        CalibrationError,
        match=rf"tensor '{name}': zero point 5; rules 'tflite' take 16-bit "
        r"activations at zero point 0",
    ):
        quantize_graph(g, CalibrationTable(doc))
