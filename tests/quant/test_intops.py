"""The integer op table (tcc.intops) and the planner (tcc.quant.intgraph.match): one entry per kind, every interpreter
implementing exactly its kinds, patterns, fusion marks read from the pass, up-front refusal, deterministic groups."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

from tcc.intops import (
    COMPUTING_ROLES,
    FUSES_ACTIVATION,
    INT_OPS,
    QDQ,
    REFERENCE,
    TFLITE,
    TFLITE_LOOKUPS,
    TVM,
    Interpreter,
    Role,
    supported,
)
from tcc.passes.fusion import FUSABLE
from tcc.quant.intgraph.match import UnsupportedOps, plan
from tests.helpers import REPO
from tests.helpers.onnx_util import make_model


def _model(nodes, inits=(), shape=(1, 4, 6, 6), out_shape=None, opset=13):
    return make_model(nodes, {"x": shape}, {"y": out_shape}, inits, opset=opset, ir_version=8)


def test_every_interpreter_implements_exactly_its_kinds():
    """The table lists which lowerings take each kind; each interpreter is checked against it when its class is
    created (importing them is the test), and a subclass that misses a kind is refused."""
    from tcc.backends.tflite.lower import TfliteLowering
    from tcc.backends.tvm.int8.lower import RelaxLowering
    from tcc.quant.intgraph.qgraph import Quantizer
    from tcc.quant.intgraph.reference import Reference
    from tcc.train.qat.quant_points import QatPlanner

    integer = {k for k, op in INT_OPS.items() if op.role is not Role.FLOAT}
    for cls in (Quantizer, Reference, QatPlanner):
        assert {k for k in INT_OPS if callable(getattr(cls, k, None))} == integer
    # a transposed conv reaches TVM's INT8 graph as the conv of its phases (TargetRules.transposed_conv_as_conv)
    assert {k for k in INT_OPS if callable(getattr(RelaxLowering, k, None))} == integer - {"conv_transpose"}
    # TFLite's int8 builtins take no window sums: its INT8 graph runs the conv before the pool (TargetRules.pooled_conv)
    assert {k for k in INT_OPS if callable(getattr(TfliteLowering, k, None))} == set(INT_OPS) - {"pooled_conv"}
    assert all(supported(k, lw) for k in integer for lw in (REFERENCE, QDQ))
    assert all(supported(k, TVM) for k in integer - {"conv_transpose"})
    assert supported("softmax", TVM) and supported("softmax", TFLITE)
    with pytest.raises(TypeError, match=r"lists \['split'\] without a method"):
        type("Partial", (Reference,), {"split": None})


def test_fusion_pass_and_planner_share_the_table():
    """Which producers fold an activation is the table's; the pass marks exactly those and the planner reads the
    marks (one source of truth)."""
    assert FUSABLE == FUSES_ACTIVATION == ("Conv", "Gemm", "MatMul", "Add")
    assert {k for k, op in INT_OPS.items() if op.fuses_activation} == {"conv", "pooled_conv", "gemm", "add"}
    assert INT_OPS["max_pool"].shares_scale and INT_OPS["concat"].role is Role.CONCAT
    w = np.ones((4, 4, 1, 1)) * 0.1
    m = _model(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["y"], name="relu")],
        [("w", w)],
    )
    g = plan(m)  # a model without the pass's marks: the planner asks the pass
    assert [(n.kind, n.activation.op if n.activation else None) for n in g.nodes] == [("conv", "Relu")]
    assert g.internal == {"c"} and g.quantized == ["x", "y"]
    from tcc.passes.fusion import KEY

    m.metadata_props.add(key=KEY, value="{}")  # the pass decided: nothing fused
    assert [n.kind for n in plan(m).nodes] == ["conv", "clamp"]


def test_placement_reads_its_candidates_and_costs_off_the_kind():
    """Which kinds placement weighs (for accuracy and for speed alike) follows from the role: the roles that compute;
    the others move or rescale codes. A weighted kind costs its weight's elements per output channel for every
    output element, whatever the ONNX node's weight layout (a gemm with or without transB); the rest one each."""
    placeable = {k for k, op in INT_OPS.items() if op.placeable}
    assert placeable == {
        "conv",
        "pooled_conv",
        "conv_transpose",
        "gemm",
        "add",
        "add_constant",
        "mul",
        "lookup",
        "avg_pool",
        "global_avg_pool",
        "resize_bilinear",
        "matmul",
        "softmax",
    }
    assert all(op.placeable == (op.role in COMPUTING_ROLES) for op in INT_OPS.values())
    conv, pooled, gemm = INT_OPS["conv"], INT_OPS["pooled_conv"], INT_OPS["gemm"]
    assert conv.macs_per_output((16, 8, 3, 3), 0) == 72 and pooled.macs_per_output((16, 8, 1, 1), 0) == 8
    assert conv.macs_per_output((16, 1, 3, 3), 0) == 9  # depthwise: one input channel per group
    assert gemm.macs_per_output((10, 64), 0) == gemm.macs_per_output((64, 10), 1) == 64
    assert conv.macs_per_output((), 0) == 1 and INT_OPS["add"].macs_per_output((16, 8), 0) == 1


def test_weight_codes_read_by_the_kinds_layout():
    """A weighted kind's weight codes in the quantized graph (a conv's OIHW, a gemm's [K, N]) as [output channels,
    products]: what the accumulator bounds sum over."""
    assert {k for k, op in INT_OPS.items() if op.weight_layout} == {
        k for k, op in INT_OPS.items() if op.role is Role.WEIGHTED
    }
    w = np.arange(16 * 8 * 9).reshape(16, 8, 3, 3)
    np.testing.assert_array_equal(INT_OPS["conv"].weight_rows(w), w.reshape(16, 72))
    np.testing.assert_array_equal(INT_OPS["pooled_conv"].weight_rows(w[:, :, :1, :1]), w[:, :, 0, 0])
    kn = np.arange(64 * 10).reshape(64, 10)
    np.testing.assert_array_equal(INT_OPS["gemm"].weight_rows(kn), kn.T)
    with pytest.raises(TypeError, match="add has no weight"):
        INT_OPS["add"].weight_rows(kn)


def test_litert_kernels_sit_beside_the_reference_and_cover_what_tflite_takes():
    """The table says which unary ops the tflite lowering takes, by LiteRT builtin (TFLITE_LOOKUPS); how those
    kernels compute their tables is LiteRT's, reproduced in the quant layer beside the integer reference: one per
    op the table lists, a float32 function for each but LEAKY_RELU (integer arithmetic)."""
    from tcc.quant.intgraph.litert_unary import TFLITE_UNARY

    assert set(TFLITE_UNARY) == set(TFLITE_LOOKUPS) <= set(INT_OPS["lookup"].onnx)
    assert {op for op, k in TFLITE_UNARY.items() if k.lut is None} == {"LeakyRelu"}
    assert all(TFLITE_UNARY[op].builtin == k.builtin for op, k in TFLITE_LOOKUPS.items())
    assert TFLITE_LOOKUPS["LeakyRelu"].takes({"alpha": -0.1}) and TFLITE_LOOKUPS["LeakyRelu"].takes({}) is None


def test_patterns_become_one_lookup():
    """x * sigmoid(x) (SiLU) and x * hardsigmoid(x) (hard-swish below opset 14) are one 256-entry table; a sigmoid
    gate read by another tensor's Mul (squeeze-excite) stays a lookup and a Mul."""
    m = _model(
        [
            helper.make_node("Sigmoid", ["x"], ["s"], name="silu.sigmoid"),
            helper.make_node("Mul", ["x", "s"], ["a"], name="silu"),
            helper.make_node("HardSigmoid", ["a"], ["h"], name="hs.gate", alpha=1 / 6, beta=0.5),
            helper.make_node("Mul", ["h", "a"], ["b"], name="hs"),
            helper.make_node("GlobalAveragePool", ["b"], ["p"], name="se.pool"),
            helper.make_node("Sigmoid", ["p"], ["g"], name="se.gate"),
            helper.make_node("Mul", ["b", "g"], ["y"], name="se.scale"),
        ]
    )
    g = plan(m)
    assert [(n.kind, n.lookup, n.name) for n in g.nodes] == [
        ("lookup", "silu", "silu.sigmoid"),
        ("lookup", "hardswish", "hs.gate"),
        ("global_avg_pool", None, "se.pool"),
        ("lookup", "Sigmoid", "se.gate"),
        ("mul", None, "se.scale"),
    ]
    assert g.internal == {"s", "h"} and g.quantized == ["x", "a", "b", "p", "g", "y"]


def test_unsupported_nodes_are_all_named_before_any_work():
    # a constant that would broadcast over the batch: neither add (two activations) nor add_constant takes it
    m = _model(
        [
            helper.make_node("Softmax", ["x"], ["s"], name="head.softmax", axis=1),
            helper.make_node("Add", ["s", "c"], ["y"], name="bias.add"),
        ],
        [("c", np.ones((2, 4, 6, 6)))],
    )
    with pytest.raises(UnsupportedOps) as e:
        plan(m)
    text = str(e.value)
    assert "node 'head.softmax' (op Softmax): softmax over an axis other than the last" in text
    assert "node 'bias.add' (op Add): as add: a constant input ('c')" in text
    assert "as add_constant: the constant's shape [2, 4, 6, 6] does not broadcast to the input's" in text
    assert e.value.exit_code == 2 and "nothing was calibrated or written" in text


# slow: CI checks the same end to end, two processes under other hash seeds giving byte-identical INT8 bundles with
# their calibration.json (tests/builds/test_int8.py::test_int8_bundle_is_byte_identical_across_processes)
@pytest.mark.slow
def test_share_groups_are_deterministic_across_processes(tmp_path):
    """Groups (and so the table and the bundle) must not depend on set iteration order, which Python randomizes
    per process: two calibrations under different hash seeds give byte-identical tables (timing aside)."""
    data = tmp_path / "d.npy"
    np.save(data, np.random.default_rng(0).standard_normal((6, 3, 32, 32)).astype(np.float32))
    tables = []
    for seed in ("1", "2"):
        out = tmp_path / f"t{seed}.json"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tcc",
                "calibrate",
                str(REPO / "spec" / "ddsnet.yaml"),
                "--set",
                "image_size=32",
                "--set",
                "growth=8",
                "--set",
                "block_config=[1, 2, 1, 1]",
                "--data",
                str(data),
                "--method",
                "kl",
                "--target",
                "tvm",
                "-o",
                str(out),
                "--no-compare",
                "--report-samples",
                "2",
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        doc = json.loads(out.read_text())
        doc.pop("timing_s")
        tables.append(doc)
    assert tables[0] == tables[1]
    assert tables[0]["groups"] and all(g == sorted(g) for g in tables[0]["groups"])
    first = [min(tables[0]["tensors"], key=list(tables[0]["tensors"]).index)]
    assert first == ["input"]  # tensors in topological order


# every kind the zoo uses appears in these (concat, max / average pools: DDSNet, GoogLeNet; mul and SiLU lookups:
# EfficientNet-B0; hard-swish lookups: MobileNetV3; transpose and split: ShuffleNetV2; LayerNorm islands: ConvNeXt);
# the other specs plan in tools/slow_tests.sh
PLAN_CI = (
    "convnext_tiny",
    "ddsnet",
    "efficientnet_b0",
    "fastnet",
    "googlenet",
    "maxvit_t",
    "mobilenet_v3_small",
    "mobilevit_xxs",
    "mobilevitv2_050",
    "shufflenet_v2_x1_0",
    "vit_b_16",
)


SPATIAL = {"resize_nearest", "resize_bilinear", "resize", "pad", "instancenorm", "sub", "div"}
SPATIAL |= {"conv_transpose", "conv_transpose_float"}  # kept one node under the NPUs' rules only
IN_USE = set(INT_OPS) - {"clamp", "layernorm", "channel_scale", "global_max_pool", "reduce_mean", "l2_normalize"}
IN_USE -= SPATIAL


def _plan_kinds(names) -> set[str]:
    """Plan each zoo spec onto the table under the tvm rules (float-only nodes, ConvNeXt's LayerNorms, as islands);
    a refused node raises. The kinds of all their nodes."""
    from tcc.frontend import lower_spec
    from tests.helpers.int8_zoo import SMALL, spec_path

    return {
        n.kind
        for name in names
        for n in plan(lower_spec(spec_path(name), SMALL[name]).onnx, lowering=TVM, rules="tvm").nodes
    }


def test_plan_of_the_zoo_uses_every_kind():
    """CI's zoo specs plan without a refused node, and between them use every kind but `clamp` (a Relu / Clip no
    producer folds: the passes leave none in the zoo), the float-only layernorm, and the kinds of ops the
    zoo does not use yet (PReLU / layer scale, global max pooling: tests/quant/test_int8_ops.py builds each; the
    spatial kinds of dense prediction: tests/quant/test_spatial_int8.py; an imported LeViT's mean over its tokens
    and EdgeNeXt's L2 normalization: tests/onnx_import/test_patterns.py)."""
    from tests.helpers.int8_zoo import SMALL

    specs = sorted((REPO / "spec").glob("*.yaml")) + sorted((REPO / "spec" / "baselines").glob("*.yaml"))
    assert sorted(p.stem for p in specs) == sorted(SMALL)
    assert _plan_kinds(PLAN_CI) >= IN_USE


def test_attention_is_refused_where_the_rules_keep_no_float_ops():
    """Group norm and ReduceSum have no integer form, softmax none under the ax620 rules (tcc's integer softmax is
    its TVM kernels'): under those rules (Pulsar v1: no float ops) the plan refuses MobileViTv2, naming each such
    node, before any calibration."""
    from tcc.errors import TccError
    from tcc.frontend import lower_spec
    from tests.helpers.int8_zoo import SMALL, spec_path

    with pytest.raises(TccError) as refused:
        plan(lower_spec(spec_path("mobilevitv2_050"), SMALL["mobilevitv2_050"]).onnx, rules="ax620")
    message = str(refused.value)
    for op in ("GroupNormalization", "ReduceSum"):
        assert f"(op {op}): no integer form" in message, op
    assert "(op Softmax): the ax620 rules have no integer softmax" in message
    assert "the ax620 rules keep no float ops" in message and message.endswith("nothing was calibrated or written")


@pytest.mark.slow
def test_plan_of_every_other_zoo_spec_has_no_unsupported_node():
    from tests.helpers.int8_zoo import SMALL

    _plan_kinds(sorted(set(SMALL) - set(PLAN_CI)))


def test_interpreter_dispatch_is_by_kind():
    class Count(Interpreter):
        def conv(self, node):
            return "conv"

    assert Count().run_node(type("N", (), {"kind": "conv"})()) == "conv"


def test_ops_command_lists_the_tables(capsys):
    from tcc.cli.main import main

    assert main(["ops", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["integer_ops"]) == set(INT_OPS) and "conv2d" in doc["ops"]
    assert doc["int8_lowering_by_backend"] == {"ort": QDQ, "tvm": TVM, "tflite": TFLITE, "ax": QDQ}
    assert doc["integer_ops"]["lookup"]["onnx"] == [
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Gelu",
        "LeakyRelu",
        "Elu",
    ]
    assert doc["integer_ops"]["channel_scale"]["onnx"] == ["PRelu", "Mul"]
    assert {"gelu", "layernorm", "scale", "prelu", "stochastic_depth"} <= set(doc["ops"])
    assert main(["ops"]) == 0
    assert "lookup table" in capsys.readouterr().out
