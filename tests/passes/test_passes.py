"""Passes on the ONNX graph: each pass fires on a model made for it and leaves ONNX Runtime's output equal
(atol 1e-5 at the output's scale); the pipeline leaves no BatchNormalization in ddsnet, densenet121, resnet18 and
the local specs, reports what changed, is deterministic, keeps IR names; the real DDSNet checkpoint on the real
image gives the same output in PyTorch, ONNX and after the pipeline."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import tcc
from tcc.lower.to_onnx import node_of, to_onnx
from tcc.passes import (
    FUSED_ACTIVATIONS_KEY,
    PIPELINE,
    PassError,
    batchnorm_to_affine,
    eliminate_dead,
    flatten_concat,
    fold_batchnorm,
    fold_constants,
    fused_activations,
    mark_fused_activations,
    op_counts,
    pool_before_conv,
    remove_identity,
    run_pipeline,
    simplify,
)
from tests.helpers import FIXTURES, LOCAL_SPECS, REPO
from tests.helpers.lowering import assert_close, assert_pass_close, lowered, sample, torch_out
from tests.helpers.onnx_util import make_model, run

DDSNET = REPO / "spec" / "ddsnet.yaml"
OPS_SPEC = LOCAL_SPECS / "onnx_ops.yaml"


def zoo(name):
    for path in (REPO / "spec" / f"{name}.yaml", REPO / "spec" / "baselines" / f"{name}.yaml"):
        if path.exists():
            return path
    pytest.skip(f"no spec {name}")


def fires(p, m, x, **expect):
    """Run pass `p` on `m`; assert its stats reach `expect`, ORT's output is unchanged and `m` itself is untouched.
    Returns the new model."""
    original = m.SerializeToString()
    new, stats = p.run(m)
    assert m.SerializeToString() == original, f"{p.name} changed its input model"
    for key, least in expect.items():
        assert stats.get(key, 0) >= least, (p.name, stats)
    onnx.checker.check_model(new, full_check=True)
    assert_pass_close(run(new, x), run(m, x), what=p.name)
    return new


def tiny(nodes, inits, opset=13, shape=(2, 4, 5, 5), out_shape=None):
    """A hand-written model: input `input`, output `output` (an initializer named '#...': int64)."""
    return make_model(
        nodes,
        {"input": shape},
        {"output": out_shape or shape},
        inits,
        name="tiny",
        opset=opset,
        ir_version="min",
        check=True,
        full_check=True,
        producer_name="test",
    )


def x_for(m, batch=2, seed=3):
    dims = [d.dim_value or batch for d in m.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(seed).standard_normal(dims).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- each pass
def test_remove_identity_and_dropout():
    _, _, m = lowered(OPS_SPEC, 13)  # `same` is an identity op
    x = x_for(m)
    new = fires(remove_identity, m, x, identity=1)
    assert op_counts(new)["Identity"] == 0 and "same" not in {n.name for n in new.graph.node}
    # Dropout in inference mode (opset 13: ratio input, 12+: training_mode), Identity on the graph output, and
    # a Dropout whose mask is used (kept).
    r = np.random.default_rng(0).standard_normal((4, 4, 1, 1))
    hand = tiny(
        [
            helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
            helper.make_node("Dropout", ["c", "ratio"], ["d"], name="drop"),
            helper.make_node("Relu", ["d"], ["r"], name="relu"),
            helper.make_node("Identity", ["r"], ["output"], name="last"),
        ],
        {"w": r, "ratio": np.float32(0.3)},
    )
    new = fires(remove_identity, hand, x_for(hand), dropout=1, identity=1)
    assert [n.op_type for n in new.graph.node] == ["Conv", "Relu"]
    assert new.graph.node[-1].name == "relu" and new.graph.node[-1].output[0] == "output"
    masked = tiny(
        [
            helper.make_node("Dropout", ["input"], ["d", "mask"], name="drop"),
            helper.make_node("Cast", ["mask"], ["mf"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["d", "mf"], ["output"], name="add"),
        ],
        {},
        opset=11,
    )
    assert remove_identity.run(masked)[1]["dropout"] == 0
    passthrough = tiny([helper.make_node("Identity", ["input"], ["output"], name="id")], {})
    assert [n.op_type for n in remove_identity(passthrough).graph.node] == ["Identity"]


def test_fold_constants():
    m = tiny(
        [
            helper.make_node("Mul", ["a", "b"], ["ab"], name="scale"),
            helper.make_node("Sqrt", ["ab"], ["s"], name="root"),
            helper.make_node("Mul", ["input", "s"], ["output"], name="apply"),
        ],
        {"a": np.full((1, 4, 1, 1), 2.0), "b": np.arange(1, 5).reshape(1, 4, 1, 1)},
    )
    new = fires(fold_constants, m, x_for(m), folded_nodes=2)
    assert [n.name for n in new.graph.node] == ["apply"]


def test_fold_batchnorm_into_conv_and_gemm():
    _, _, m = lowered(DDSNET, 13)
    x = x_for(m, batch=1)
    new = fires(fold_batchnorm, m, x, conv_bn=33)
    assert op_counts(m)["BatchNormalization"] == 37 and op_counts(new)["BatchNormalization"] == 4
    names = {n.name: n for n in new.graph.node}
    assert "stem.bn" not in names and names["stem.conv"].output[0] == "stem.conv"
    assert names["stem.relu"].input[0] == "stem.conv"  # readers of the BN read the folded conv
    _, _, ops = lowered(OPS_SPEC, 13)
    new = fires(fold_batchnorm, ops, x_for(ops), conv_bn=1, gemm_bn=1)
    fc1 = next(n for n in new.graph.node if n.name == "fc1")
    assert list(fc1.input) == ["bn_flat", "fc1.weight", "fc1.bias"]  # a bias-free Gemm gets one


def test_batchnorm_after_gemm_with_alpha_beta_and_graph_output():
    w = np.random.default_rng(1).standard_normal((3, 4))
    stats = {f"bn.{k}": np.random.default_rng(i).random(3) + 0.5 for i, k in enumerate(["s", "b", "m", "v"])}
    m = tiny(
        [
            helper.make_node("Gemm", ["input", "w", "c"], ["y"], name="fc", alpha=0.5, beta=2.0, transB=1),
            helper.make_node(
                "BatchNormalization", ["y", "bn.s", "bn.b", "bn.m", "bn.v"], ["output"], name="bn", epsilon=1e-3
            ),
        ],
        {"w": w, "c": np.array([[0.1, -0.2, 0.3]]), **stats},
        shape=(2, 4),
        out_shape=(2, 3),
    )
    new = fires(fold_batchnorm, m, x_for(m), gemm_bn=1)
    assert [(n.name, n.op_type, n.output[0]) for n in new.graph.node] == [("fc", "Gemm", "output")]


def test_fold_scale_into_conv_and_gemm():
    """A Mul by a constant per-channel factor (the `scale` op: ConvNeXt's layer scale after its pointwise conv)
    folds into the Conv / Gemm before it, on either side of a BatchNormalization and with the constant first or
    second; a factor after anything else, or one that varies along H or W, stays."""
    r = np.random.default_rng(5)
    stats = {f"bn.{k}": r.random(4) + 0.5 for k in ("s", "b", "m", "v")}
    hand = tiny(
        [
            helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv"),
            helper.make_node("Mul", ["c", "s1"], ["s"], name="scale1"),
            helper.make_node("BatchNormalization", ["s", "bn.s", "bn.b", "bn.m", "bn.v"], ["n"], name="bn"),
            helper.make_node("Mul", ["s2", "n"], ["t"], name="scale2"),
            helper.make_node("Relu", ["t"], ["u"], name="relu"),
            helper.make_node("Mul", ["u", "s3"], ["v"], name="scale3"),
            helper.make_node("Conv", ["v", "w2"], ["c2"], name="conv2"),
            helper.make_node("Mul", ["c2", "full"], ["output"], name="not_per_channel"),
        ],
        {
            "w": r.standard_normal((4, 4, 1, 1)),
            "b": r.standard_normal(4),
            "s1": r.standard_normal((4, 1, 1)),
            "s2": r.standard_normal((1, 4, 1, 1)),
            "s3": r.standard_normal((4, 1, 1)),
            "w2": r.standard_normal((4, 4, 3, 3)),
            "full": r.standard_normal((1, 4, 3, 3)),
            **stats,
        },
        out_shape=(2, 4, 3, 3),
    )
    new = fires(fold_batchnorm, hand, x_for(hand), conv_scale=2, conv_bn=1)
    assert [(n.name, n.op_type) for n in new.graph.node] == [
        ("conv", "Conv"),
        ("relu", "Relu"),
        ("scale3", "Mul"),
        ("conv2", "Conv"),
        ("not_per_channel", "Mul"),
    ]
    gemm = tiny(
        [
            helper.make_node("Gemm", ["input", "w", "c"], ["g"], name="fc", transB=1),
            helper.make_node("Mul", ["g", "f"], ["h"], name="scale"),
            helper.make_node("Mul", ["h", "two"], ["output"], name="twice"),
        ],
        {"w": r.standard_normal((3, 4)), "c": r.standard_normal(3), "f": r.standard_normal(3), "two": np.float32(2)},
        shape=(2, 4),
        out_shape=(2, 3),
    )
    new = fires(fold_batchnorm, gemm, x_for(gemm), gemm_scale=2)
    assert [(n.name, n.op_type, n.output[0]) for n in new.graph.node] == [("fc", "Gemm", "output")]


def test_preactivation_batchnorm_becomes_affine():
    """DDSNet's transitions and head: BN -> ReLU -> Conv after a concat: a depthwise 1x1 Conv with bias."""
    _, _, m = lowered(DDSNET, 13)
    x = x_for(m, batch=1)
    folded = fold_batchnorm(m)
    new = fires(batchnorm_to_affine, folded, x, bn_affine=4)
    assert op_counts(new)["BatchNormalization"] == 0
    names = {n.name: n for n in new.graph.node}
    for bn in ("trans1.bn", "trans2.bn", "trans3.bn", "head.bn"):
        node = names[bn]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert node.op_type == "Conv" and attrs["kernel_shape"] == [1, 1] and attrs["group"] > 1
        assert list(node.input)[1:] == [f"{bn}.weight", f"{bn}.bias"] and node.output[0] == bn
    # [N, C] tensors (BatchNorm1d after a Flatten): Mul + Add.
    _, _, ops = lowered(OPS_SPEC, 13)
    new = fires(batchnorm_to_affine, fold_batchnorm(ops), x_for(ops), bn_affine=2)
    names = {n.name: n.op_type for n in new.graph.node}
    assert names["bn_pre"] == "Conv" and names["bn_flat"] == "Add" and names["bn_flat/scale"] == "Mul"


def test_flatten_concat():
    _, _, m = lowered(OPS_SPEC, 13)  # mix: concat(a, concat(b1, b2))
    new = fires(flatten_concat, m, x_for(m), concat_concat=1)
    cat = next(n for n in new.graph.node if n.op_type == "Concat")
    assert cat.name == "mix.concat" and list(cat.input) == ["mix.a", "mix.b.b1", "mix.b.b2.relu6"]
    # A DenseNet-style chain (the inner concat also feeds a layer) is left alone.
    _, _, dds = lowered(DDSNET, 13)
    assert flatten_concat.run(dds)[1]["concat_concat"] == 0


def test_pool_before_conv():
    """An unpadded average pool read from a 1 x 1 conv alone runs first (ORT's output unchanged within float
    rounding), the conv keeping its name and the pool's output name; DDSNet's three transitions take it."""
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((6, 4, 1, 1)), rng.standard_normal(6)
    m = tiny(
        [
            helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv", kernel_shape=[1, 1]),
            helper.make_node("AveragePool", ["c"], ["output"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        ],
        {"w": w, "b": b},
        shape=(2, 4, 6, 7),
        out_shape=(2, 6, 3, 3),
    )
    new = fires(pool_before_conv, m, x_for(m), conv_pool=1)
    assert [(n.op_type, n.name, n.output[0]) for n in new.graph.node] == [
        ("AveragePool", "pool", "conv/pooled_input"),
        ("Conv", "conv", "output"),
    ]
    _, _, dds = lowered(DDSNET, 13)
    assert pool_before_conv.run(dds)[1]["conv_pool"] == 3


@pytest.mark.parametrize("case", ["3x3 conv", "padded pool", "conv read twice", "stride 1"])
def test_pool_before_conv_leaves_what_does_not_commute(case):
    rng = np.random.default_rng(1)
    k = 3 if case == "3x3 conv" else 1
    conv = helper.make_node("Conv", ["input", "w"], ["c"], name="conv", kernel_shape=[k, k], pads=[k // 2] * 4)
    pool = helper.make_node(
        "AveragePool",
        ["c"],
        ["p"],
        name="pool",
        kernel_shape=[2, 2],
        strides=[1, 1] if case == "stride 1" else [2, 2],
        pads=[1, 1, 1, 1] if case == "padded pool" else [0, 0, 0, 0],
    )
    nodes = [
        conv,
        pool,
        helper.make_node(
            "ReduceMean" if case == "conv read twice" else "Identity",
            ["c"] if case == "conv read twice" else ["p"],
            ["output"],
            name="last",
        ),
    ]
    m = make_model(
        nodes,
        {"input": (1, 4, 6, 6)},
        {"output": None},
        {"w": rng.standard_normal((4, 4, k, k))},
        opset=13,
        ir_version="min",
    )
    if case == "conv read twice":
        m.graph.output.append(helper.make_tensor_value_info("p", TensorProto.FLOAT, None))
    assert pool_before_conv.run(m)[1]["conv_pool"] == 0


def test_eliminate_dead():
    m = tiny(
        [
            helper.make_node("Relu", ["input"], ["output"], name="used"),
            helper.make_node("Sigmoid", ["input"], ["s"], name="dead1"),
            helper.make_node("Mul", ["s", "k"], ["t"], name="dead2"),
        ],
        {"k": np.ones(1)},
    )
    new = fires(eliminate_dead, m, x_for(m), dead_nodes=2)
    assert [n.name for n in new.graph.node] == ["used"] and not new.graph.initializer


def test_simplify():
    m = tiny(
        [
            helper.make_node("Transpose", ["input"], ["t"], name="to_nhwc", perm=[0, 2, 3, 1]),
            helper.make_node("Transpose", ["t"], ["u"], name="to_nchw", perm=[0, 3, 1, 2]),
            helper.make_node("Relu", ["u"], ["output"], name="relu"),
        ],
        {},
    )
    new = fires(simplify, m, x_for(m))
    assert [n.op_type for n in new.graph.node] == ["Relu"]


def test_mark_fused_activations():
    """Conv -> Relu, Conv -> Clip(0, 6), Gemm -> Relu are marked in metadata; the graph is unchanged; a Conv
    whose output has a second reader is not marked."""
    _, _, m = lowered(zoo("fastnet"), 13)
    m = fold_batchnorm(m)
    new = fires(mark_fused_activations, m, x_for(m, batch=1), **{"Conv+Clip": 1, "Conv+Relu": 1})
    assert [n.SerializeToString() for n in new.graph.node] == [n.SerializeToString() for n in m.graph.node]
    raw = json.loads(next(p.value for p in new.metadata_props if p.key == FUSED_ACTIVATIONS_KEY))
    assert fused_activations(new) == raw and raw
    clip = next(v for v in raw.values() if v["activation"] == "Clip")
    assert clip["op"] == "Conv" and clip["min"] == 0.0 and clip["max"] == 6.0
    relu = next(v for v in raw.values() if v["activation"] == "Relu")
    assert relu["min"] == 0.0 and relu["max"] is None
    w = np.random.default_rng(0).standard_normal((4, 4, 1, 1))
    hand = tiny(
        [
            helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("Add", ["r", "c"], ["output"], name="add"),
        ],
        {"w": w},
    )
    assert fused_activations(mark_fused_activations(hand)) == {}
    # Marks that no longer match the graph are dropped when read back.
    stale = onnx.ModelProto()
    stale.CopyFrom(new)
    name = next(iter(raw))
    next(n for n in stale.graph.node if n.name == name).name = "renamed"
    assert name not in fused_activations(stale) and len(fused_activations(stale)) == len(raw) - 1


# ---------------------------------------------------------------------------------------------------- pipeline
@pytest.mark.parametrize("name,bn_before,affine", [("ddsnet", 37, 4), ("densenet121", 121, 62), ("resnet18", 20, 0)])
def test_pipeline_removes_every_batchnorm(name, bn_before, affine):
    model, module, m = lowered(zoo(name), 13)
    x = sample(model, batch=1)
    out, report = run_pipeline(m)
    counts = op_counts(out)
    assert op_counts(m)["BatchNormalization"] == bn_before and counts["BatchNormalization"] == 0
    assert_pass_close(run(out, x), run(m, x), what=name)
    assert_close(run(out, x), torch_out(module, x), what=name)
    onnx.checker.check_model(out, full_check=True)
    # The report: every pass, as data and as a table.
    data = report.to_json()
    assert [p["pass"] for p in data["passes"]] == [p.name for p in PIPELINE]
    fold = next(p for p in data["passes"] if p["pass"] == "fold_batchnorm")
    assert fold["changes"]["BatchNormalization"] == [bn_before, affine]
    assert data["nodes_before"] == len(m.graph.node) and data["nodes_after"] == len(out.graph.node)
    table = report.table()
    assert all(p.name in table for p in PIPELINE)
    row = next(line for line in table.splitlines() if line.startswith("fold_batchnorm"))
    assert row.split()[1:4] == ["BatchNormalization", str(bn_before), str(affine)]
    # Names still point at spec nodes.
    for n in out.graph.node:
        assert node_of(n.name) in model.graph.nodes, n.name
    marks = fused_activations(out)
    assert sum(v["op"] == "Conv" for v in marks.values()) >= {"ddsnet": 37, "densenet121": 121, "resnet18": 9}[name]
    assert sum(v["op"] == "Add" for v in marks.values()) == (8 if name == "resnet18" else 0)  # residual add + ReLU


def test_pipeline_local_specs_and_opsets():
    for opset in (9, 11, 13, 17):
        model, module, m = lowered(OPS_SPEC, opset, (("pool_dilation", 1),) if opset < 10 else ())
        x = sample(model, batch=2)
        out, report = run_pipeline(m)
        assert op_counts(out)["BatchNormalization"] == 0 and op_counts(out)["Identity"] == 0
        assert out.opset_import[0].version == opset
        assert_pass_close(run(out, x), run(m, x), what=f"onnx_ops opset {opset}")
        assert_close(run(out, x), torch_out(module, x))


def test_pipeline_deterministic_and_optional_simplify(capsys):
    _, _, m = lowered(DDSNET, 13)
    a, report = run_pipeline(m, verbose=True)
    assert "fold_batchnorm" in capsys.readouterr().out
    b, _ = run_pipeline(m)
    assert a.SerializeToString() == b.SerializeToString()
    c, report = run_pipeline(m, simplify=False)
    assert "simplify" not in [p.name for p in report.passes]
    assert a.producer_name == "tcc" and a.ir_version == m.ir_version
    docs = {n.name: n.doc_string for n in a.graph.node}
    assert docs["stem.conv"] == "ddsnet.yaml:37:9"  # spec locations survive the passes


def test_pipeline_refuses_to_keep_a_batchnorm():
    """A BN whose statistics are computed at run time can neither fold nor become an affine: a clear error."""
    m = tiny(
        [
            helper.make_node("ReduceMean", ["input"], ["mu"], name="mean", axes=[0, 2, 3], keepdims=0),
            helper.make_node("BatchNormalization", ["input", "s", "b", "mu", "v"], ["output"], name="bn"),
        ],
        {"s": np.ones(4), "b": np.zeros(4), "v": np.ones(4)},
        opset=13,
    )
    with pytest.raises(PassError, match="bn"):
        run_pipeline(m)


@pytest.mark.skipif(not (FIXTURES / "GC_DDS_0.0064.pth").exists(), reason="DDSNet fixtures not present")
def test_real_ddsnet_checkpoint():
    """The published GC checkpoint on the real GC image: PyTorch = ONNX = ONNX after the pipeline."""
    from tcc.data import load_image
    from tcc.lower.weights import load_weights

    model = tcc.load_spec(DDSNET)
    module = tcc.to_torch(model.graph, inference_only=True)
    load_weights(module, model.graph, FIXTURES / "GC_DDS_0.0064.pth", by_order=True, inference_only=True)
    x = load_image(FIXTURES / "GC.png", model.preprocess)[None]
    ref = torch_out(module, x)
    m = to_onnx(model.graph, module.state_dict())
    out, _ = run_pipeline(m)
    got, after = run(m, x), run(out, x)
    assert_close(got, ref, what="ONNX vs PyTorch")
    assert_close(after, ref, what="after passes vs PyTorch")
    assert_pass_close(after, got, what="pipeline")
    assert got.argmax() == ref.argmax() == after.argmax()


def test_batchnorm_folds_into_the_unpadded_convs_that_read_it():
    """FastNet's ReLU -> BN -> valid conv: the BN folds into its readers (weights scaled per input channel, the
    shift summed into the bias; grouped convs by their block of channels), exactly, since no reader pads. A BN read
    by a padded conv, or by anything but a conv, becomes the affine instead (padded zeros are not shifted)."""
    r = np.random.default_rng(7)
    stats = {f"bn.{k}": r.random(4) + 0.5 for k in ("s", "b", "m", "v")}
    hand = tiny(
        [
            helper.make_node("Relu", ["input"], ["a"], name="relu"),
            helper.make_node("BatchNormalization", ["a", "bn.s", "bn.b", "bn.m", "bn.v"], ["n"], name="bn"),
            helper.make_node("Conv", ["n", "w1"], ["c1"], name="valid", strides=[2, 2]),
            helper.make_node(
                "Conv", ["n", "w2", "b2"], ["c2"], name="grouped", group=2, pads=[0, 0, 0, 0], strides=[2, 2]
            ),
            helper.make_node("Add", ["c1", "c2"], ["output"], name="add"),
        ],
        {
            "w1": r.standard_normal((4, 4, 3, 3)),
            "w2": r.standard_normal((4, 2, 3, 3)),
            "b2": r.standard_normal(4),
            **stats,
        },
        shape=(2, 4, 7, 7),
        out_shape=(2, 4, 3, 3),
    )
    new = fires(fold_batchnorm, hand, x_for(hand), bn_conv=1)
    assert [n.op_type for n in new.graph.node] == ["Relu", "Conv", "Conv", "Add"]
    assert all(next(iter(n.input)) == "a" for n in new.graph.node if n.op_type == "Conv")
    padded = tiny(
        [
            helper.make_node("Relu", ["input"], ["a"], name="relu"),
            helper.make_node("BatchNormalization", ["a", "bn.s", "bn.b", "bn.m", "bn.v"], ["n"], name="bn"),
            helper.make_node("Conv", ["n", "w1"], ["c1"], name="valid"),
            helper.make_node("Conv", ["n", "w2"], ["c2"], name="same", pads=[1, 1, 1, 1]),
            helper.make_node("Add", ["c1", "c2"], ["output"], name="add"),
        ],
        {"w1": r.standard_normal((4, 4, 3, 3)), "w2": r.standard_normal((4, 4, 5, 5)), **stats},
        shape=(2, 4, 7, 7),
        out_shape=(2, 4, 5, 5),
    )
    assert fold_batchnorm.run(padded)[1]["bn_conv"] == 0
    fires(batchnorm_to_affine, padded, x_for(padded), bn_affine=1)
    _, _, fastnet = lowered(REPO / "spec" / "fastnet.yaml", 13)
    assert fold_batchnorm.run(fastnet)[1]["bn_conv"] == 4  # the stem's and the three stages' downsampling BNs
