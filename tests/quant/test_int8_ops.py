"""Every kind of the integer op table on its own: one small graph per kind, calibrated under the TVM and the ORT
rules; the TVM lowering equals the integer reference bit for bit on every quantized tensor, ONNX Runtime's kernels
are within 1 LSB of the reference op by op (on their own input codes), and the integer result is the float
function's within its rounding."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from tcc.backends.base import EmitOptions
from tcc.backends.ort.backend import OrtBackend
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.reference import Reference, per_op_deviation, quantize_input
from tcc.quant.lower.qdq import run, to_qdq
from tests.helpers.onnx_util import make_model

RNG = np.random.default_rng(7)
C, H = 4, 7


def _w(*shape, scale=0.4):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _graph(nodes, inits=(), in_shape=(None, C, H, H), opset=13, int_inits=()):
    m = make_model(nodes, {"x": in_shape}, {"y": None}, [*inits, *((f"#{k}", v) for k, v in int_inits)], opset=opset)
    m.ir_version = max(8, helper.find_min_ir_version_for(m.opset_import))
    inferred = onnx.shape_inference.infer_shapes(m).graph
    y = next(
        v for v in [*inferred.value_info, *inferred.output] if v.name == "y" and v.type.tensor_type.HasField("shape")
    )
    m.graph.output[0].CopyFrom(y)
    onnx.checker.check_model(m)
    return m


def _lowered(node: str, opset: int = 13):
    """One op of the spec language on a [C, H, H] input, lowered by tcc (its ONNX form at `opset`, after the
    passes): for the ops tcc writes as several ONNX nodes."""
    import tempfile
    from pathlib import Path

    from tcc.frontend import lower_spec

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "one.yaml"
        spec.write_text(f"kind: model\nname: one\ninput: {{shape: [{C}, {H}, {H}]}}\nlayers: [{node}]\n")
        return lower_spec(spec, opset=opset).onnx


def _conv(x, y, name, w, **attrs):
    return helper.make_node("Conv", [x, f"{name}.w"], [y], name=name, **attrs), (f"{name}.w", w)


def _cases():
    """name -> (model, the kinds it must contain)."""
    cases = {}
    conv, w = _conv("x", "c", "conv", _w(C, 1, 3, 3), group=C, dilations=[2, 2], pads=[2, 2, 2, 2], strides=[2, 2])
    cases["conv_relu6"] = (
        _graph([conv, helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="relu6")], [w, ("lo", 0.0), ("hi", 6.0)]),
        {"conv"},
    )
    cases["gemm_relu_output"] = (
        _graph(
            [
                helper.make_node("Flatten", ["x"], ["f"], name="flat"),
                helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["g"], name="fc", transB=1),
                helper.make_node("Relu", ["g"], ["y"], name="fc.relu"),
            ],  # a folded ReLU on a float graph output
            [("fc.w", _w(5, C * H * H, scale=0.1)), ("fc.b", _w(5))],
        ),
        {"reshape", "gemm"},
    )
    cases["matmul"] = (
        _graph(
            [
                helper.make_node("GlobalAveragePool", ["x"], ["p"], name="gap"),
                helper.make_node("Flatten", ["p"], ["f"], name="flat"),
                helper.make_node("MatMul", ["f", "mm.w"], ["y"], name="mm"),
            ],
            [("mm.w", _w(C, 3))],
        ),
        {"global_avg_pool", "reshape", "gemm"},
    )
    conv, w = _conv("x", "c", "conv", _w(C, C, 1, 1))
    cases["add_broadcast_relu"] = (
        _graph(
            [
                conv,
                helper.make_node("GlobalAveragePool", ["c"], ["p"], name="gap"),
                helper.make_node("Add", ["c", "p"], ["a"], name="add"),
                helper.make_node("Relu", ["a"], ["y"], name="add.relu"),
            ],
            [w],
        ),
        {"conv", "global_avg_pool", "add"},
    )
    # attention's constants added to the scores: a relative position bias (the input's shape) and a mask
    # broadcast over the channels and rows (MaxViT's and Swin's, here on a tiny graph for every backend)
    cases["add_constant_bias"] = (
        _graph([helper.make_node("Add", ["x", "bias"], ["y"], name="bias")], [("bias", _w(C, H, H, scale=1.5))]),
        {"add_constant"},
    )
    cases["add_constant_mask"] = (
        _graph([helper.make_node("Add", ["mask", "x"], ["y"], name="mask")], [("mask", _w(1, 1, H, scale=3.0))]),
        {"add_constant"},
    )
    cases["mul_squeeze_excite"] = (
        _graph(
            [
                helper.make_node("GlobalAveragePool", ["x"], ["p"], name="se.pool"),
                helper.make_node("Sigmoid", ["p"], ["g"], name="se.gate"),
                helper.make_node("Mul", ["x", "g"], ["y"], name="se.scale"),
            ]
        ),
        {"global_avg_pool", "lookup", "mul"},
    )
    for op, attrs in (("Sigmoid", {}), ("HardSigmoid", {"alpha": 0.25, "beta": 0.4}), ("HardSwish", {}), ("Tanh", {})):
        cases[f"lookup_{op}"] = (
            _graph([helper.make_node(op, ["x"], ["y"], name=op.lower(), **attrs)], opset=14),
            {"lookup"},
        )
    cases["lookup_silu"] = (
        _graph(
            [
                helper.make_node("Sigmoid", ["x"], ["s"], name="silu.sigmoid"),
                helper.make_node("Mul", ["s", "x"], ["y"], name="silu"),
            ]
        ),
        {"lookup"},
    )
    cases["lookup_hardswish_opset13"] = (
        _graph(
            [
                helper.make_node("HardSigmoid", ["x"], ["s"], name="hs.gate", alpha=1 / 6, beta=0.5),
                helper.make_node("Mul", ["x", "s"], ["y"], name="hs"),
            ]
        ),
        {"lookup"},
    )
    for op, attrs, opset in (
        ("Gelu", {}, 20),
        ("Gelu", {"approximate": "tanh"}, 20),
        ("LeakyRelu", {"alpha": 0.1}, 13),
        ("Elu", {"alpha": 0.7}, 13),
    ):
        suffix = "_tanh" if attrs.get("approximate") else ""
        cases[f"lookup_{op}{suffix}"] = (
            _graph([helper.make_node(op, ["x"], ["y"], name=op.lower(), **attrs)], opset=opset),
            {"lookup"},
        )
    cases["lookup_gelu_composite"] = (_lowered("{op: gelu}"), {"lookup"})  # Div, Erf, Add, Mul, Mul below opset 20
    slope = _w(C, 1, 1)
    slope[0] = -0.5
    cases["channel_scale_prelu"] = (
        _graph([helper.make_node("PRelu", ["x", "slope"], ["y"], name="prelu")], [("slope", slope)]),
        {"channel_scale"},
    )
    cases["channel_scale_prelu_one"] = (
        _graph([helper.make_node("PRelu", ["x", "slope"], ["y"], name="prelu")], [("slope", [0.25])]),
        {"channel_scale"},
    )
    factor = np.array([0.3, -1.7, 0.0, 2.5], np.float32).reshape(1, C, 1, 1)
    cases["channel_scale_mul"] = (
        _graph([helper.make_node("Mul", ["factor", "x"], ["y"], name="layer_scale")], [("factor", factor)]),
        {"channel_scale"},
    )
    cases["global_max_pool"] = (
        _graph([helper.make_node("GlobalMaxPool", ["x"], ["y"], name="gmp")]),
        {"global_max_pool"},
    )
    cases["clamp_standalone"] = (
        _graph(
            [
                helper.make_node("Concat", ["x", "x"], ["cat"], name="cat", axis=1),
                helper.make_node("Relu", ["cat"], ["r"], name="relu"),
                helper.make_node("Clip", ["r", "lo", "hi"], ["y"], name="clip"),
            ],
            [("lo", -1.0), ("hi", 0.8)],
        ),
        {"concat", "clamp"},
    )
    cases["max_pool_pad_and_ceil"] = (
        _graph(
            [
                helper.make_node(
                    "MaxPool", ["x"], ["m"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
                ),
                helper.make_node(
                    "MaxPool", ["m"], ["y"], name="pool.ceil", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1
                ),
            ]
        ),
        {"max_pool"},
    )
    cases["avg_pool"] = (
        _graph(
            [
                helper.make_node(
                    "AveragePool",
                    ["x"],
                    ["a"],
                    name="avg.pad",
                    kernel_shape=[3, 3],
                    pads=[1, 1, 1, 1],
                    count_include_pad=1,
                ),
                helper.make_node("AveragePool", ["a"], ["y"], name="avg", kernel_shape=[2, 2], strides=[2, 2]),
            ]
        ),
        {"avg_pool"},
    )
    c1, w1 = _conv("x", "a", "c1", _w(2, C, 1, 1, scale=0.2))
    c2, w2 = _conv("x", "b", "c2", _w(3, C, 3, 3, scale=0.8), pads=[1, 1, 1, 1])
    cases["concat_two_scales"] = (
        _graph([c1, c2, helper.make_node("Concat", ["a", "b", "x"], ["y"], name="cat", axis=1)], [w1, w2]),
        {"conv", "concat"},
    )
    cases["shuffle_split"] = (
        _graph(
            [
                helper.make_node("Reshape", ["x", "s5"], ["r5"], name="shuffle.reshape"),
                helper.make_node("Transpose", ["r5"], ["t5"], name="shuffle.transpose", perm=[0, 2, 1, 3, 4]),
                helper.make_node("Reshape", ["t5", "s4"], ["r4"], name="shuffle"),
                helper.make_node("Split", ["r4", "sizes"], ["p", "q"], name="split", axis=1),
                helper.make_node("Concat", ["q", "p"], ["y"], name="cat", axis=1),
            ],
            in_shape=(None, C, H, H),
            int_inits=[("s5", [-1, 2, C // 2, H, H]), ("s4", [-1, C, H, H]), ("sizes", [1, 3])],
        ),
        {"reshape", "transpose", "split", "concat"},
    )
    # a 1 x 1 conv on exact window sums (tcc.passes.pool runs the pool first): on a ReLU's u8 codes with a 2 x 2
    # window (TVM: two calls of the dot kernel on 8-bit digits of the sums), on signed codes into a grouped conv and
    # with a 3 x 3 window (the generic conv on the sums)
    c0, w0 = _conv("x", "c0", "c0", _w(C, C, 3, 3, scale=0.3), pads=[1, 1, 1, 1])
    conv, w = _conv("p", "y", "pw", _w(8, C, 1, 1, scale=0.5))  # 8: the narrowest dot kernel's lanes divide it
    cases["pooled_conv"] = (
        _graph(
            [
                c0,
                helper.make_node("Relu", ["c0"], ["r"], name="c0.relu"),
                helper.make_node("AveragePool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
                conv,
            ],
            [w0, w],
        ),
        {"conv", "pooled_conv"},
    )
    c1, w1 = _conv("x", "c", "c1", _w(C, C, 3, 3, scale=0.3), pads=[1, 1, 1, 1])
    conv, w = _conv("p", "y", "pw", _w(6, C // 2, 1, 1, scale=0.5), group=2)
    cases["pooled_conv_grouped_3x3"] = (
        _graph(
            [c1, helper.make_node("AveragePool", ["c"], ["p"], name="pool", kernel_shape=[3, 3], strides=[3, 3]), conv],
            [w1, w],
        ),
        {"conv", "pooled_conv"},
    )
    return cases


CASES = _cases()


def _followed_by_identity(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its output written by an Identity of what it wrote (a node that moves codes)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    out = m.graph.output[0].name
    for n in m.graph.node:
        n.output[:] = [f"{out}.last" if o == out else o for o in n.output]
    m.graph.node.append(helper.make_node("Identity", [f"{out}.last"], [out], name="identity"))
    onnx.checker.check_model(m)
    return m


def _data(n=16):
    x = RNG.standard_normal((n, C, H, H)).astype(np.float32) * 2
    x[:, 0] = np.abs(x[:, 0])  # one channel never negative
    return x


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_kind_tvm_bit_exact_and_ort_within_one_lsb(name):
    tvm = pytest.importorskip("tvm")
    from tvm import relax

    from tcc.backends.tvm.compile import CompileOptions, _relax_pipeline, resolve_tvm_target
    from tcc.backends.tvm.int8.lower import lower_int8

    model, kinds = CASES[name]
    g = plan(model)
    assert kinds == {n.kind for n in g.nodes}, [n.kind for n in g.nodes]
    data, x = _data(), _data(2)

    # TVM: every quantized tensor's codes and the output, bit for bit
    table = calibrate_onnx(model, data, method="minmax", target="tvm")
    out, codes = Reference().run(quantize_graph(g, table), x, return_all=True)
    names = list(codes)
    target = tvm.target.Target(resolve_tvm_target("host"))
    ex = tvm.compile(
        lower_int8(model, table, expose=names, batch=len(x)),
        target=target,
        relax_pipeline=_relax_pipeline(target, CompileOptions()),
    )
    got = list(relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)))  # output, then the codes
    np.testing.assert_array_equal(got[0].numpy(), out)
    for n, v in zip(names, got[1:]):
        np.testing.assert_array_equal(v.numpy(), codes[n].q, err_msg=n)

    # ORT: the deployed QDQ model's own codes, op by op, on calibration samples, the kind followed by an Identity:
    # a graph output stays float in the QDQ model, so a computing kind that writes one is a float island under ORT's
    # rules (TargetRules.float_graph_outputs), and followed it gets its QuantizeLinear and ORT's integer kernel
    model = _followed_by_identity(model)
    table = calibrate_onnx(model, data, method="minmax", target="ort")
    qg = quantize_graph(plan(model, rules="ort"), table)  # its float kinds are islands (a pooled conv)
    x = data[:2]
    y = run(to_qdq(model, table, compact=True), x)
    ort_codes = OrtBackend().int8_codes(model, EmitOptions("ort", "int8", table=table), None, x, y)
    dev = per_op_deviation(qg, {**ort_codes, qg.input: quantize_input(x, qg.input_q)}, {model.graph.output[0].name: y})
    assert dev["ops_checked"] == len(qg.nodes) and dev["max_lsb"] <= 1.0, dev


def test_lookup_tables_are_the_function_rounded_once():
    """A lookup op's output code is the float function of the input's real value, quantized once: within half an
    LSB of f(dequantized input); the x * g(x) patterns too."""
    from tcc.intops import LOOKUP_FUNCTIONS, gated

    for name in (
        "lookup_Sigmoid",
        "lookup_HardSigmoid",
        "lookup_HardSwish",
        "lookup_Tanh",
        "lookup_silu",
        "lookup_hardswish_opset13",
        "lookup_Gelu",
        "lookup_Gelu_tanh",
        "lookup_LeakyRelu",
        "lookup_Elu",
        "lookup_gelu_composite",
    ):
        model = CASES[name][0]
        g = plan(model)
        table = calibrate_onnx(model, _data(), method="minmax", target="tvm")
        qg = quantize_graph(g, table)
        n, node = qg.nodes[0], g.nodes[0]
        f = gated(node.gate) if node.gate else LOOKUP_FUNCTIONS[node.lookup]
        codes = np.arange(n.qin[0].lo, n.qin[0].hi + 1)
        real = f((codes - n.qin[0].zp) * np.float64(np.float32(n.qin[0].scale)), node.attrs)
        q = n.qout[0]
        inside = (real / q.scale + q.zp >= q.lo) & (real / q.scale + q.zp <= q.hi)
        err = np.abs((n.table - q.zp) * q.scale - real)[inside]
        assert err.max() <= 0.5 * q.scale * (1 + 1e-6), name
        assert n.table.size == 256


def test_mul_and_add_within_one_lsb_of_float():
    """Mul (squeeze-excite) and Add: the integer result within 1 LSB of (dequantized a op dequantized b), quantized."""
    for name, kind, fn in (("mul_squeeze_excite", "mul", np.multiply), ("add_broadcast_relu", "add", np.add)):
        model = CASES[name][0]
        table = calibrate_onnx(model, _data(), method="minmax", target="tvm")
        qg = quantize_graph(plan(model), table)
        _, codes = Reference().run(qg, _data(4), return_all=True)
        n = next(n for n in qg.nodes if n.kind == kind)
        a, b = (codes[i].dequant().astype(np.float64) for i in n.inputs)
        q = n.qout[0]
        want = np.clip(np.rint(fn(a, b) / q.scale) + q.zp, q.lo, q.hi)
        if kind == "add":
            want = np.maximum(want, q.zp)  # the folded ReLU
        assert np.abs(codes[n.outputs[0]].q - want).max() <= 1, name


# no TFLite int8 kernel computes these exactly (hard-sigmoid, hard-swish), or LiteRT's reference kernels lack it (ELU)
TFLITE_CASES = sorted(
    k
    for k in CASES
    if k
    not in (
        "lookup_HardSigmoid",
        "lookup_HardSwish",
        "lookup_hardswish_opset13",
        "lookup_Elu",
        "pooled_conv_grouped_3x3",
    )
)  # TFLite: no grouped CONV_2D


@pytest.mark.parametrize("name", TFLITE_CASES)
def test_each_kind_tflite_reference_kernels_bit_exact(name, tmp_path):
    """Under the tflite rules every kind's .tflite model, run by LiteRT's reference kernels, gives the reference's
    codes on every quantized tensor (read back by name), and LiteRT's optimized kernels are within 1 LSB per op."""
    pytest.importorskip("ai_edge_litert")
    from tcc.backends.tflite.backend import TfliteBackend

    model = CASES[name][0]
    table = calibrate_onnx(model, _data(), method="minmax", target="tflite")
    g = plan(model, lowering="tflite", rules="tflite")
    qg = quantize_graph(g, table)
    x = _data(2)
    out, codes = Reference().run(qg, x, return_all=True)
    backend = TfliteBackend()
    backend.emit(model, EmitOptions("tflite", "int8", table=table), tmp_path)
    tensors = backend.load(tmp_path).info["tensors"]
    for kernels in ("reference", "optimized"):
        y, got = backend.run(backend.load(tmp_path, kernels), x, preserve=tensors)
        got[qg.input] = quantize_input(x, qg.input_q, qg.input_rounding)
        if kernels == "reference":
            np.testing.assert_array_equal(y, out)
            for t, c in codes.items():
                np.testing.assert_array_equal(got[t], c.q, err_msg=t)
        else:
            dev = per_op_deviation(qg, got, {})
            assert dev["ops_checked"] == len(qg.nodes) and dev["max_lsb"] <= 1.0, dev


@pytest.mark.parametrize("rules, pairs", [("tvm", True), ("ort", False), ("tflite", False), ("pulsar2", False)])
def test_pooled_conv_only_where_the_rules_take_it(rules, pairs):
    """The pool and the conv are one pooled_conv (the pooled tensor never quantized) under rules whose kernels take
    window sums (tcc's TVM); elsewhere the INT8 graph runs the conv first again, its output requantized at full
    size and then pooled (ORT's and TFLite's 8-bit convs, the NPUs' toolchains); a TFLite lowering never pairs them."""
    model = CASES["pooled_conv"][0]
    graph = plan(model, rules=rules)
    assert [n.kind for n in graph.nodes] == (["conv", "pooled_conv"] if pairs else ["conv", "conv", "avg_pool"])
    assert ("p" in graph.nodes[-1].internal) == pairs and graph.nodes[-1].covers[0] == "pool"
    assert [n.kind for n in plan(model, lowering="tflite").nodes] == ["conv", "conv", "avg_pool"]
    assert [n.kind for n in plan(model, rules=rules, integer=False).nodes] == ["conv", "avg_pool", "conv"]


@pytest.mark.parametrize(
    "op, attrs",
    [
        ("Gelu", {}),
        ("Gelu", {"approximate": "tanh"}),
        ("LeakyRelu", {"alpha": 0.1}),
        ("LeakyRelu", {"alpha": 0.0}),
        ("LeakyRelu", {"alpha": 1.7}),
        ("Elu", {}),
        ("Sigmoid", {}),
        ("Tanh", {}),
    ],
)
def test_tflite_unary_tables_equal_litert_kernels(op, attrs):
    """Under the tflite rules a lookup's table is what LiteRT's int8 kernel computes for each of the 256 input
    codes, bit for bit, at random scales and zero points: LUTPopulate's float32 tables (GELU both forms, ELU,
    LOGISTIC, TANH) and LEAKY_RELU's two fixed-point multipliers. ELU on LiteRT's optimized kernels (its reference
    op resolver has none), the others on the reference kernels."""
    pytest.importorskip("ai_edge_litert")
    from types import SimpleNamespace

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tcc.backends.tflite.lower import options
    from tcc.backends.tflite.model import Quant, TfliteModel
    from tcc.quant.intgraph.litert_unary import TFLITE_UNARY
    from tcc.quant.intgraph.node_constants import tflite_table
    from tcc.quant.intgraph.qtypes import QParams

    kernel = TFLITE_UNARY[op]
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if op == "Elu" else OpResolverType.BUILTIN_REF
    fixed = {"Sigmoid": (1 / 256, -128), "Tanh": (1 / 128, 0)}.get(op)
    rng = np.random.default_rng(11)
    codes = np.arange(-128, 128, dtype=np.int64)
    for _ in range(8):
        qi = QParams(float(np.float32(rng.uniform(0.005, 0.08))), int(rng.integers(-40, 40)), -128, 127)
        s_out, zp_out = fixed or (float(np.float32(rng.uniform(0.003, 0.05))), int(rng.integers(-100, 20)))
        qo = QParams(float(np.float32(s_out)), zp_out, -128, 127)
        m = TfliteModel("table")
        x = m.tensor("x", [1, 256], "int8", quant=Quant((qi.scale,), (qi.zp,)))
        y = m.tensor("y", [1, 256], "int8", quant=Quant((qo.scale,), (qo.zp,)))
        opts = {
            "Gelu": options("GeluOptions", approximate=attrs.get("approximate") == "tanh"),
            "LeakyRelu": options("LeakyReluOptions", alpha=attrs.get("alpha", 0.01)),
        }.get(op)
        m.operator(kernel.builtin, [x], [y], opts)
        it = Interpreter(model_content=m.to_bytes([x], [y]), experimental_op_resolver_type=resolver)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], codes.astype(np.int8).reshape(1, 256))
        it.invoke()
        got = it.get_tensor(it.get_output_details()[0]["index"]).reshape(-1).astype(np.int64)
        want = np.clip(tflite_table(SimpleNamespace(lookup=op, attrs=attrs), codes, qi, qo) + qo.zp, -128, 127)
        np.testing.assert_array_equal(got, want, err_msg=f"{op} {attrs} {qi} {qo}")


def test_tflite_softmax_equals_litert_reference_kernel():
    """Under the tflite rules the integer softmax is LiteRT's reference int8 SOFTMAX (gemmlowp fixed point:
    tcc.quant.intgraph.gemmlowp): bit for bit on random codes at input steps from 0.003 to 1.3, rows of 7 to 256
    (a row of equal codes, rows with differences past diff_min), its constants as SoftmaxPrepare computes them."""
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tcc.backends.tflite.lower import options
    from tcc.backends.tflite.model import Quant, TfliteModel
    from tcc.quant.intgraph import gemmlowp
    from tcc.quant.intgraph.node_constants import tflite_softmax_params

    rng = np.random.default_rng(5)
    for s_in, zp, depth in [
        (0.05, 3, 64),
        (0.2, -10, 16),
        (0.01, 0, 256),
        (0.5, 20, 7),
        (0.08, -128, 197),
        (1.3, 5, 33),
        (0.003, 0, 64),
    ]:
        m = TfliteModel("softmax")
        x = m.tensor("x", [8, depth], "int8", quant=Quant((s_in,), (zp,)))
        y = m.tensor("y", [8, depth], "int8", quant=Quant((1 / 256,), (-128,)))
        m.operator("SOFTMAX", [x], [y], options("SoftmaxOptions", beta=1.0))
        it = Interpreter(model_content=m.to_bytes([x], [y]), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
        codes = rng.integers(-128, 128, size=(8, depth)).astype(np.int8)
        codes[0] = 5  # all equal: 1 / depth each
        codes[1] = -128
        codes[1, 0] = 127  # differences of 255 (past diff_min at the larger steps): the lowest code
        it.set_tensor(it.get_input_details()[0]["index"], codes)
        it.invoke()
        got = it.get_tensor(it.get_output_details()[0]["index"]).astype(np.int64)
        np.testing.assert_array_equal(
            gemmlowp.softmax_codes(codes, *tflite_softmax_params(s_in)), got, err_msg=f"step {s_in}, {depth} per row"
        )
    with pytest.raises(ValueError, match="below 2\\^-26"):
        tflite_softmax_params(1e-9)
