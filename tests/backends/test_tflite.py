"""The TFLite backend: the four precisions on the paper models and MobileNetV2, every zoo spec in FP32 against
PyTorch, the written file parsed back (types, shapes, each tensor's scale and zero point as the table has them,
builtin versions), byte-identical rebuilds, int8 I/O, and the user mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from tcc.backends import TARGETS, get_backend
from tcc.build import TOLERANCES, build, build_settings
from tcc.cli.main import main
from tests.helpers.cli import build_from_table, calibrate
from tests.helpers.int8_zoo import SMALL, spec_path, zoo_names

CALIB = {"method": "kl", "calib_size": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """8 seeded N(0, 1) inputs per input shape the tests use."""
    d = tmp_path_factory.mktemp("data")

    def make(shape):
        path = d / f"{'x'.join(map(str, shape))}.npy"
        if not path.exists():
            np.save(path, np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32))
        return path

    return make


def _build(name, tmp_path, precision, data=None, overrides=None, **kw):
    from tcc.frontend import lower_spec

    overrides = SMALL[name] if overrides is None else overrides
    shape = lower_spec(spec_path(name), overrides).model.input_shape
    extra = {"data": data(shape), "calibration": dict(CALIB)} if precision == "int8" else {}
    return build(
        spec_path(name),
        build_settings("tflite", precision=precision, overrides=overrides, **{**extra, **kw}),
        tmp_path / f"{name}-{precision}",
    )


def test_target_and_capabilities():
    t = TARGETS["tflite"]
    assert t.backend == "tflite" and t.precisions == ("fp32", "fp16", "dynamic", "int8") and t.rules == "tflite"
    caps = get_backend("tflite").capabilities
    assert caps.int8_lowering == "tflite" and caps.int8_exact and caps.runs_here


@pytest.mark.parametrize("name", ["ddsnet", "fastnet", "mobilenet_v2"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "dynamic", "int8"])
def test_four_precisions(name, precision, tmp_path, data):
    r = _build(name, tmp_path, precision, data)
    m = r.manifest
    check = m["self_check"]
    assert check["result"]["passed"]
    if precision == "int8":  # LiteRT's reference kernels bit for bit; its optimized kernels within 1 LSB per op
        assert check["result"]["bit_exact"]
        opt = m["target_checks"]["optimized"]
        assert opt["passed"] and opt["per_op"]["max_lsb"] <= 1.0
        assert "end_to_end_max_lsb" in m["target_checks"]["default"]
    elif precision == "fp32":
        assert check["result"]["max_abs_vs_float64"] <= check["result"]["bound"]
    sizes = {f: v["bytes"] for f, v in m["files"].items()}
    print(
        f"\n[tflite] {name} {precision}: model.tflite {sizes['model.tflite']:,} B, "
        f"{json.dumps({k: v for k, v in check['result'].items() if k in ('max_abs', 'cosine', 'bit_exact')})}"
    )


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_attention_mobilevit(precision, tmp_path, data):
    """MobileViT-XXS (issue 35): BATCH_MATMUL of two activations, STRIDED_SLICE of q, k and v, MUL by the scalar
    1 / sqrt(d) on rank-5 scores, tokens folded into rows for FULLY_CONNECTED (their tensors' first axis a row
    count, not the batch); softmax and LayerNorm as float islands in int8 (int8 SOFTMAX: `tflite-int`). INT8
    bit-exact with the integer reference on LiteRT's reference kernels, every op within 1 LSB on its optimized
    ones."""
    r = _build("mobilevit_xxs", tmp_path, precision, data)
    check = r.manifest["self_check"]["result"]
    assert check["passed"]
    if precision == "int8":
        assert check["bit_exact"]
        assert r.manifest["target_checks"]["optimized"]["per_op"]["max_lsb"] <= 1.0
        assert r.manifest["quantization"]["integer_ops"]["matmul"] == 6  # q k^T and weights x v, 3 blocks
        assert r.manifest["quantization"]["integer_ops"]["slice"] == 9
        assert {i["kind"] for i in r.manifest["quantization"]["float_islands"]} == {"softmax", "layernorm"}


# MaxViT's build (25 s in CI) is slow: its add_constant kind is checked on LiteRT's kernels on a small graph by
# quant/test_int8_ops.py, MaxViT itself on ORT by zoo/test_int8_ort.py
@pytest.mark.parametrize(
    "name,kind,count",
    [pytest.param("maxvit_t", "add_constant", 6, marks=pytest.mark.slow), ("vit_b_16", "broadcast", 2)],
)
def test_attention_int8_kinds(name, kind, count, tmp_path, data):
    """MaxViT's relative position bias (a constant ADD on the scores, int8 codes at its own scale) and ViT's class
    token and position embedding (constants at their output's scale; the model's batch is 1), and ViT's softmax on
    rank-4 scores stored channels last (SOFTMAX in the graph's order): bit-exact with the integer reference on
    LiteRT's reference kernels."""
    r = _build(name, tmp_path, "int8", data)
    assert r.manifest["self_check"]["result"]["bit_exact"]
    assert r.manifest["quantization"]["integer_ops"][kind] == count


# one transformer layer per MobileViTv2 block (the zoo's test size has 2, 4, 3): the same ops, a third of the build
MOBILEVITV2_SHALLOW = {**SMALL["mobilevitv2_050"], "transformer_depths": [1, 1, 1]}


def test_mobilevitv2_group_norm_and_sum_as_float_islands(tmp_path, data):
    """MobileViTv2's one-group norm (RESHAPE, MEAN / RSQRT over the group, RESHAPE back, the affine) and its
    context's ReduceSum (SUM) are float islands: every integer op bit-exact on LiteRT's reference kernels, each island
    within 1 LSB."""
    r = _build("mobilevitv2_050", tmp_path, "int8", data, overrides=MOBILEVITV2_SHALLOW)
    result = r.manifest["self_check"]["result"]
    assert result["passed"] and result["per_op"]["max_lsb_integer"] == 0
    kinds = {i["kind"] for i in r.manifest["quantization"]["float_islands"]}
    assert {"groupnorm", "reduce_sum", "softmax"} <= kinds


def test_int8_with_every_calibration_step_is_bit_exact(tmp_path, data):
    """Equalization, rounding and bias correction change what the table holds; the TFLite lowering reads them through
    the quantized graph and stays bit-exact with the integer reference (LiteRT's reference kernels)."""
    from tcc.quant.table.steps import Steps

    steps = Steps(equalization=True, bias_correction=True, rounding=True)
    r = _build("fastnet", tmp_path, "int8", data, calibration={**CALIB, "steps": steps})
    assert all(s["enabled"] for s in json.loads((r.out / "calibration.json").read_text())["steps"])
    check = r.manifest["self_check"]
    assert check["result"]["passed"] and check["result"]["bit_exact"]


@pytest.mark.parametrize("name", zoo_names())
def test_every_zoo_spec_converts_fp32(name, tmp_path):
    r = _build(name, tmp_path, "fp32")
    assert r.manifest["self_check"]["result"]["passed"] and r.manifest["self_check"]["tolerance"] == TOLERANCES["fp32"]


def test_int8_file_parses_back_with_the_tables_quantization(tmp_path, data):
    """Every quantized tensor of the table is a TFLite tensor of the same name with exactly its scale (float32) and
    zero point; weights per channel, int8 in [-127, 127]; int32 biases at s_in * s_w; builtin versions as TFLite's
    rules give them for int8."""
    from ai_edge_litert import schema_py_generated as S

    r = _build("efficientnet_b0", tmp_path, "int8", data)
    table = json.loads((r.out / "calibration.json").read_text())["tensors"]
    model = S.ModelT.InitFromPackedBuf((r.out / "model.tflite").read_bytes(), 0)
    g = model.subgraphs[0]
    by_name = {t.name.decode(): t for t in g.tensors}
    types = {getattr(S.TensorType, k): k for k in dir(S.TensorType) if not k.startswith("_")}
    checked = 0
    for name, t in table.items():
        tt = by_name[name]
        q = tt.quantization
        assert types[tt.type] == "INT8", name
        if t["kind"] == "activation":
            assert list(q.scale) == [float(np.float32(t["scale"]))] and list(q.zeroPoint) == [t["zero_point"]]
        else:
            assert list(q.scale) == [float(np.float32(v)) for v in t["scale"]] and not any(q.zeroPoint)
            codes = np.frombuffer(bytes(model.buffers[tt.buffer].data), np.int8)
            assert codes.min() >= -127 and t["narrow_range"]
        checked += 1
    assert checked == len(table)
    ops = {S.BuiltinOperator.__dict__[k]: k for k in dir(S.BuiltinOperator) if not k.startswith("_")}
    versions = {ops[c.builtinCode]: c.version for c in model.operatorCodes}
    assert versions["CONV_2D"] == 3 and versions["DEPTHWISE_CONV_2D"] == 3 and versions["FULLY_CONNECTED"] == 4
    assert versions["LOGISTIC"] == 2 and versions["MUL"] in (2, 3) and versions["ADD"] == 2
    assert versions["QUANTIZE"] == 1 and versions["DEQUANTIZE"] == 2
    sig = model.signatureDefs[0]
    assert sig.signatureKey.decode() == "serving_default"
    sigmoid = [n for n, t in table.items() if t.get("method") == "fixed by the target"]
    assert sigmoid and all(
        table[n]["scale"] == float(np.float32(1 / 256)) and table[n]["zero_point"] == -128 for n in sigmoid
    )


def test_builds_are_byte_identical_and_int8_io(tmp_path, data):
    from ai_edge_litert import schema_py_generated as S

    a = _build("ddsnet", tmp_path / "a", "int8", data)
    b = _build("ddsnet", tmp_path / "b", "int8", data)
    for f in a.manifest["files"]:
        assert (a.out / f).read_bytes() == (b.out / f).read_bytes(), f
    # the stem's max pool reads a ReLU's codes, none below the zero point: its pads are a PAD with it (XNNPACK
    # takes it), not a PADV2 with the lowest code (LiteRT's reference kernel); the same maxima (bit-exact above)
    model = S.ModelT.InitFromPackedBuf((a.out / "model.tflite").read_bytes(), 0)
    names = {S.BuiltinOperator.__dict__[k]: k for k in dir(S.BuiltinOperator) if not k.startswith("_")}
    ops = [names[model.operatorCodes[o.opcodeIndex].builtinCode] for o in model.subgraphs[0].operators]
    assert "PADV2" not in ops and ops[ops.index("MAX_POOL_2D") - 1] == "PAD"
    c = _build("ddsnet", tmp_path / "c", "int8", data, io="int8")
    info = json.loads((c.out / "tflite.json").read_text())
    assert info["input_dtype"] == "int8" and set(info["input_quantization"]) == {"scale", "zero_point"}
    backend = get_backend("tflite")
    x = np.random.default_rng(5).standard_normal((3, 3, 64, 64)).astype(np.float32)
    for kernels in ("reference", "default"):  # quantizing outside the model = QUANTIZE inside it
        np.testing.assert_array_equal(
            backend.run(backend.load(a.out, kernels), x), backend.run(backend.load(c.out, kernels), x)
        )
    np.save(tmp_path / "x.npy", x[:1])
    assert main(["predict", "--artifact", str(c.out), "--input", str(tmp_path / "x.npy"), "--json"]) == 0


def test_calibrate_for_tflite_then_build_from_the_table(tmp_path, data, capsys):
    small = [spec_path("ddsnet"), "--set", "image_size=64"]
    options = ["--method", "kl", "--calib-size", "8", "--report-samples", "2"]
    table = tmp_path / "t.json"
    assert calibrate(small, data((3, 64, 64)), table, "--target", "tflite", *options) == 0
    assert json.loads(table.read_text())["target"] == "tflite"
    assert build_from_table(small, "tflite", table, tmp_path / "b") == 0
    other = tmp_path / "ort.json"
    assert calibrate(small, data((3, 64, 64)), other, "--target", "ort", *options) == 0
    capsys.readouterr()
    assert build_from_table(small, "tflite", other, tmp_path / "c") == 2
    assert "--target tflite" in capsys.readouterr().err and not (tmp_path / "c").exists()


HARDSIGMOID_SPEC = """kind: model
name: gated
input: {shape: [3, 16, 16]}
layers:
  - {id: conv, op: conv2d, out: 8, kernel: 3, padding: 1}
  - {id: act, op: hardswish}
  - {op: global_avgpool}
  - {op: flatten}
  - {id: fc, op: linear, out: 3}
"""


def test_op_without_a_tflite_int8_form_is_named(tmp_path, capsys):
    """hard-swish (below opset 14: x * HardSigmoid(x)) has a TFLite FP32 form but no int8 kernel that rounds once:
    the int8 build is refused before calibration, naming the node; the FP32 build is fine."""
    spec = tmp_path / "m.yaml"
    spec.write_text(HARDSIGMOID_SPEC)
    np.save(tmp_path / "d.npy", np.zeros((4, 3, 16, 16), np.float32))
    assert main(["build", str(spec), "--target", "tflite", "-o", str(tmp_path / "f")]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "build",
                str(spec),
                "--target",
                "tflite",
                "--precision",
                "int8",
                "--data",
                str(tmp_path / "d.npy"),
                "-o",
                str(tmp_path / "i"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "node 'act/hardsigmoid' (op HardSigmoid)" in err and "calibrating" not in err and "Traceback" not in err
    assert not (tmp_path / "i").exists()


FC_SPEC = (
    "kind: model\nname: fconly\ninput: {shape: [64, 4, 4]}\nlayers:\n  - {op: conv2d, out: 64, kernel: 1}\n"
    "  - {op: global_avgpool}\n  - {op: flatten}\n  - {op: linear, out: 32}\n"
)


def _fully_connected_runs(model_path, n_inputs, seed=1):
    """LiteRT's reference kernels on seeded inputs. Yields, per run, the FULLY_CONNECTED's int32 accumulator
    (from its own input codes), its output codes minus the zero point, and its multiplier as LiteRT computes it
    (s_in * s_w / s_out in double from the file's float32 scales): QuantizeMultiplier's (q, shift), and the double."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tcc.quant.intgraph.fixed_point import quantize_multiplier

    it = Interpreter(
        model_path=str(model_path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    it.allocate_tensors()
    fc = next(o for o in it._get_ops_details() if o["op_name"] == "FULLY_CONNECTED")
    q = {t["index"]: t["quantization_parameters"] for t in it.get_tensor_details()}
    x_i, w_i, b_i = fc["inputs"]
    y_i = fc["outputs"][0]
    real = np.float64(q[x_i]["scales"][0]) * q[w_i]["scales"].astype(np.float64) / np.float64(q[y_i]["scales"][0])
    multiplier = (*quantize_multiplier(real), real)
    inp = it.get_input_details()[0]
    rng = np.random.default_rng(seed)
    for _ in range(n_inputs):
        it.set_tensor(inp["index"], (rng.standard_normal(inp["shape"]) * rng.uniform(0.2, 2)).astype(np.float32))
        it.invoke()
        x = it.get_tensor(x_i).astype(np.int64).reshape(1, -1) - q[x_i]["zero_points"][0]
        acc = (x @ it.get_tensor(w_i).astype(np.int64).T + it.get_tensor(b_i).astype(np.int64)).ravel()
        yield acc, it.get_tensor(y_i).astype(np.int64).ravel() - q[y_i]["zero_points"][0], multiplier


def _with_fc_scales(model_path, out_path, s_in, s_w, s_out):
    """The .tflite with its FULLY_CONNECTED's scales replaced (and its bias zeroed): a chosen multiplier."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(Path(model_path).read_bytes(), 0))
    g = m.subgraphs[0]
    fc_code = schema.BuiltinOperator.FULLY_CONNECTED
    fc = next(
        o
        for o in g.operators
        if max(m.operatorCodes[o.opcodeIndex].builtinCode, m.operatorCodes[o.opcodeIndex].deprecatedBuiltinCode)
        == fc_code
    )
    x_i, w_i, b_i = fc.inputs
    for index, scale in ((x_i, s_in), (w_i, s_w), (b_i, s_in * s_w), (fc.outputs[0], s_out)):
        g.tensors[index].quantization.scale = [scale] * len(g.tensors[index].quantization.scale)
    bias = m.buffers[g.tensors[b_i].buffer]
    bias.data = np.zeros(len(bias.data), np.uint8)
    fb = flatbuffers.Builder(0)
    fb.Finish(m.Pack(fb), b"TFL3")
    Path(out_path).write_bytes(fb.Output())
    return out_path


def test_fully_connected_requantizes_with_one_rounding(tmp_path):
    """LiteRT's reference FULLY_CONNECTED rounds acc times its double multiplier once; gemmlowp's two roundings (its
    CONV_2D's) differ on near ties. The tflite rules' gemm rounding predicts every code (and so does one rounding of
    the fixed-point product acc * q, the same but within 2^-31 of a tie), gemmlowp does not. Exact ties (the
    multiplier made exactly 1/64 by editing the file's scales) go away from zero, not to even."""
    from tcc.quant.intgraph.fixed_point import double_half_away_multiply
    from tcc.quant.intgraph.reference import gemmlowp_multiply, single_half_away_multiply
    from tcc.quant.table.rules import RULES

    assert RULES["tflite"].gemm_rounding == "double_half_away"
    spec = tmp_path / "fc.yaml"
    spec.write_text(FC_SPEC)
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((32, 64, 4, 4)).astype(np.float32))
    model = (
        build(
            spec,
            build_settings(
                "tflite",
                precision="int8",
                data=tmp_path / "calib.npy",
                calibration={"method": "minmax", "calib_size": 32},
            ),
            tmp_path / "b",
        ).out
        / "model.tflite"
    )
    wrong = {"double": 0, "single": 0, "gemmlowp": 0}
    for acc, y, (q, shift, real) in _fully_connected_runs(model, 200):
        wrong["double"] += int((np.clip(double_half_away_multiply(acc, real), -128, 127) != y).sum())
        wrong["single"] += int((np.clip(single_half_away_multiply(acc, q, shift), -128, 127) != y).sum())
        wrong["gemmlowp"] += int((np.clip(gemmlowp_multiply(acc, q, shift), -128, 127) != y).sum())
    # measured: 0, 0 and 38 of 6,400 codes
    assert wrong["double"] == 0 and wrong["single"] == 0 and wrong["gemmlowp"] > 0, wrong

    ties = _with_fc_scales(model, tmp_path / "ties.tflite", 1.0, 1.0, 64.0)
    seen = 0
    for acc, y, (q, shift, real) in _fully_connected_runs(ties, 100):
        tie = (acc % 64 == 32) & (np.abs(acc) < 64 * 127)  # exact halves, inside the int8 range
        seen += int(tie.sum())
        assert np.array_equal(y[tie], np.sign(acc[tie]) * ((np.abs(acc[tie]) + 32) // 64))
        assert np.array_equal(double_half_away_multiply(acc, real)[tie], y[tie])
    assert seen > 20


GROUPED_SPEC = """\
kind: model
name: grouped
input: {shape: [8, 12, 12]}
layers:
  - {op: conv2d, out: 16, kernel: 3, padding: 1, groups: 4}
  - {op: relu}
  - {op: conv2d, out: 16, kernel: 3, padding: 1, groups: 16}
  - {op: global_avgpool}
  - {op: flatten}
  - {id: fc, op: linear, out: 3}
"""


def test_grouped_conv_is_a_grouped_conv_2d(tmp_path):
    """A grouped conv (ResNeXt, RegNet: groups of several channels) is a CONV_2D whose filter holds a group's input
    channels (TFLite infers the groups from the depths; builtin version 6), not a depthwise conv: FP32 within the
    FP32 contract of the PyTorch module. int8 has no TFLite grouped kernel and is refused by name
    (tcc.quant.table.rules)."""
    from ai_edge_litert import schema_py_generated as S

    spec = tmp_path / "grouped.yaml"
    spec.write_text(GROUPED_SPEC)
    r = build(spec, build_settings("tflite"), tmp_path / "b")
    assert r.manifest["self_check"]["result"]["passed"]
    model = S.ModelT.InitFromPackedBuf((r.out / "model.tflite").read_bytes(), 0)
    names = {getattr(S.BuiltinOperator, k): k for k in dir(S.BuiltinOperator) if not k.startswith("_")}
    codes = {names[c.builtinCode]: c.version for c in model.operatorCodes}
    assert codes["CONV_2D"] == 6 and "DEPTHWISE_CONV_2D" in codes
