"""TFLite's 16x8 mode (`--activation-bits 16` for --target tflite): int16 activations at zero point 0, int8
per-channel weights, int64 biases. The integer reference under the tflite rules equals LiteRT's reference kernels
bit for bit, tensor by tensor, on DDSNet's and FastNet's kinds; the written file has the 16x8 types and operator
versions; a kind without a 16-bit form here is refused before any work, naming the node and the target."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from tcc.backends import get_backend  # noqa: E402
from tcc.build import build  # noqa: E402
from tcc.cli.main import main  # noqa: E402

from tests.helpers.int8_zoo import SMALL, spec_path  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data16") / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32))
    return path


@pytest.mark.parametrize("name,target", [("ddsnet", "tflite"), ("fastnet", "tflite"), ("ddsnet", "tflite16-i32")])
def test_16x8_equals_litert_reference_kernels_tensor_by_tensor(name, target, data, tmp_path):
    """Every tensor the integer graph quantizes, as LiteRT's reference kernels compute it (preserve-all-tensors),
    equals the integer reference's codes, on inputs that saturate the input's int16 codes too. `tflite16-i32`:
    int32 bias and accumulators on CONV_2D / FULLY_CONNECTED (gemmlowp rounding), int64 on DEPTHWISE_CONV_2D."""
    from tcc.frontend import lower_spec
    from tcc.quant.intgraph.plan import plan
    from tcc.quant.intgraph.qgraph import quantize_graph
    from tcc.quant.table.file import CalibrationTable

    r = build(spec_path(name), target, tmp_path / "b", precision="int8", overrides=SMALL[name], data=data,
              calib_options={"method": "kl", "calib_size": 8, "activation_bits": 16})
    m = r.manifest
    assert m["self_check"]["result"]["bit_exact"]
    assert m["quantization"]["activation_bits"] == {"16": m["quantization"]["quantized_tensors"]}
    assert m["target_checks"]["optimized"]["per_op"]["max_lsb"] <= 1.0
    table = CalibrationTable(json.loads((r.out / "calibration.json").read_text()))
    qg = quantize_graph(plan(lower_spec(spec_path(name), SMALL[name]).onnx, rules=target), table)
    roundings = {(n.attrs["group"] > 1, n.requant.mult.rounding) for n in qg.nodes if n.kind == "conv"}
    assert roundings == ({(False, "tflite_int64"), (True, "tflite_int64")} if target == "tflite" else
                         {(False, "gemmlowp"), (True, "tflite_int64")})
    _equals_reference_kernels(r.out, qg, np.concatenate([np.load(data)[:2], 40 * np.load(data)[2:3]]))


def test_16x8_int32_narrowed_grids_equal_litert_reference_kernels(tmp_path):
    """`tflite16-i32` on AlexNet (3x3 convs over 256 ReLU'd channels, a 9216-wide FC): the calibration narrows 5
    grids to 13-15 bits so no int32 accumulator can overflow, and the model clamps those tensors to their grids
    (LiteRT clamps a requantized int16 output to the type only): every tensor equals the reference's codes on
    LiteRT's reference kernels, inputs that saturate included."""
    from tcc.frontend import lower_spec
    from tcc.quant.calibrate import calibrate_onnx
    from tcc.quant.intgraph.plan import plan
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

    r = build(spec_path("ddsnet"), "tflite", tmp_path / "b", precision="int8", overrides=SMALL["ddsnet"], data=data,
              calib_options={"method": "kl", "calib_size": 8, "activation_bits": 16})
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
    assert versions == {"QUANTIZE": 2, "PAD": 3, "CONV_2D": 8, "PADV2": 3, "MAX_POOL_2D": 3, "DEPTHWISE_CONV_2D": 1,
                        "CONCATENATION": 3, "AVERAGE_POOL_2D": 3, "RESHAPE": 1, "FULLY_CONNECTED": 11,
                        "DEQUANTIZE": 3}
    info = json.loads((r.out / "tflite.json").read_text())
    assert info["input_dtype"] == "float32"


def test_16x8_int32_bias_file_and_refusals(data, tmp_path, capsys):
    """`tflite16-i32`: CONV_2D and FULLY_CONNECTED with int32 bias and `quantized_bias_type` INT32 (LiteRT's 16x8
    kernels choose int32 by it; without it they read the int32 bias as int64), versions 8 / 11 (op_version.cc);
    DEPTHWISE_CONV_2D keeps its int64 bias (LiteRT refuses int32 there). The target takes 16-bit activations only
    (its default): an 8-bit calibration is refused before any work (exit 2)."""
    from ai_edge_litert import schema_py_generated as S

    r = build(spec_path("ddsnet"), "tflite16-i32", tmp_path / "b", precision="int8", overrides=SMALL["ddsnet"],
              data=data, calib_options={"method": "kl", "calib_size": 8, "activation_bits": 16})
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
    assert seen == {"CONV_2D": {("INT32", "INT32")}, "FULLY_CONNECTED": {("INT32", "INT32")},
                    "DEPTHWISE_CONV_2D": {("INT64", None)}}
    versions = {ops[c.builtinCode]: c.version for c in model.operatorCodes}
    assert (versions["CONV_2D"], versions["FULLY_CONNECTED"], versions["DEPTHWISE_CONV_2D"]) == (8, 11, 1)
    code = main(["build", str(spec_path("ddsnet")), "--set", "image_size=64", "--target", "tflite16-i32",
                 "--precision", "int8", "--data", str(data), "--activation-bits", "8", "-o", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and "16-bit" in err and not (tmp_path / "c").exists(), err


def test_int16_io(data, tmp_path):
    """--io int8 at 16 bits: the model takes and gives int16 codes; quantizing outside equals QUANTIZE inside."""
    kw = dict(precision="int8", overrides=SMALL["ddsnet"], data=data,
              calib_options={"method": "kl", "calib_size": 8, "activation_bits": 16})
    a = build(spec_path("ddsnet"), "tflite", tmp_path / "a", **kw)
    c = build(spec_path("ddsnet"), "tflite", tmp_path / "c", io="int8", **kw)
    info = json.loads((c.out / "tflite.json").read_text())
    assert info["input_dtype"] == "int16" and info["output_dtype"] == "int16"
    backend = get_backend("tflite")
    x = np.random.default_rng(5).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(backend.run(backend.load(a.out, "reference"), x),
                                  backend.run(backend.load(c.out, "reference"), x))


def test_kind_without_16_bit_form_is_refused_before_any_work(tmp_path, capsys):
    """MobileNetV2's residual ADD has no 16x8 form here: `tcc build` and `tcc calibrate` exit 2 naming the node and
    the target before reading the (missing) data; nothing is written. The same model at 8 bits goes past the check
    (and then misses the data)."""
    spec = str(spec_path("mobilenet_v2"))
    missing = str(tmp_path / "missing")
    code = main(["build", spec, "--set", "image_size=64", "--target", "tflite", "--precision", "int8", "--data",
                 missing, "--activation-bits", "16", "-o", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and "--activation-bits 16: node" in err and "integer kind 'add'" in err, err
    assert "target tflite" in err and not (tmp_path / "b").exists()
    code = main(["calibrate", spec, "--set", "image_size=64", "--target", "tflite", "--data", missing,
                 "--activation-bits", "16", "-o", str(tmp_path / "t.json")])
    err = capsys.readouterr().err
    assert code == 2 and "integer kind 'add'" in err and not (tmp_path / "t.json").exists(), err
    code = main(["calibrate", spec, "--set", "image_size=64", "--target", "tflite", "--data", missing,
                 "-o", str(tmp_path / "t.json")])
    err = capsys.readouterr().err
    assert code == 2 and "integer kind" not in err and "missing" in err, err


def test_16_bit_zero_point_must_be_zero(data):
    """LiteRT's 16x8 kernels take zero point 0 only: a table with another is refused naming the tensor."""
    from tcc.frontend import lower_spec
    from tcc.quant.calibrate import calibrate_onnx
    from tcc.quant.intgraph.plan import plan
    from tcc.quant.intgraph.qgraph import quantize_graph
    from tcc.quant.table.file import CalibrationError, CalibrationTable

    fe = lower_spec(spec_path("ddsnet"), SMALL["ddsnet"])
    g = plan(fe.onnx, rules="tflite")
    t = calibrate_onnx(fe.onnx, np.load(data)[:4], target="tflite", method="minmax", activation_bits=16, graph=g)
    doc = json.loads(json.dumps(t.doc))
    name = g.nodes[3].outputs[0]
    doc["tensors"][name]["zero_point"] = 5
    with pytest.raises(CalibrationError, match=rf"tensor '{name}': zero point 5; rules 'tflite' take 16-bit "
                                               r"activations at zero point 0"):
        quantize_graph(g, CalibrationTable(doc))
