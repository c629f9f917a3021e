"""IR -> ONNX: equal to the PyTorch lowering on every zoo spec (opset 13, a subset at 11), valid (full checker,
shape inference agrees with the IR), named after the IR, deterministic; opset differences and clear errors."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import tcc
from tcc.errors import ExportError, OpsetError, TccError, WeightsError
from tcc.lower.to_onnx import MAX_OPSET, MIN_OPSET, to_onnx
from tcc.passes.base import infer_value_shapes
from tcc.tolerance import compare
from tests.helpers import LOCAL_SPECS, REPO
from tests.helpers.lowering import (
    assert_close,
    compare_every_value,
    lowered,
    sample,
    seeded,
    spec_id,
    torch_out,
    zoo_specs,
)
from tests.helpers.onnx_util import run

ZOO = zoo_specs()
OPS_SPEC = LOCAL_SPECS / "onnx_ops.yaml"
OPSET11 = ["ddsnet", "fastnet", "shufflenet_v2_x1_0", "mobilenet_v2", "efficientnet_b0", "googlenet"]


def check_valid(model, m: onnx.ModelProto, tmp_path) -> Path:
    """Full checker, and ONNX shape inference gives every IR node's shape to the tensor named after it. Returns
    the model's file (ONNX Runtime loads it from there: VGG is not serialized twice)."""
    path = tmp_path / "model.onnx"
    path.write_bytes(m.SerializeToString())
    onnx.checker.check_model(str(path), full_check=True)  # a path: big models are not re-serialized in Python
    shapes = infer_value_shapes(m)
    graph = model.graph
    assert [i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["output"]
    assert shapes["input"][1] == ("N", *graph.input.shape)
    assert shapes["output"][1] == ("N", *graph.shape(graph.output))
    for node in graph.nodes.values():
        for k, shape in enumerate(node.shapes):
            name = node.name if len(node.shapes) == 1 else f"{node.name}.{k}"
            if name in shapes:
                assert shapes[name][1][1:] == tuple(shape), f"{name}: ONNX infers {shapes[name][1]}, IR {shape}"
    return path


# the largest specs at full size (10-35 s each): tools/slow_tests.sh; their ops and blocks are in smaller specs here,
# and zoo/test_numbers_c.py matches ConvNeXt-T, MNASNet and RegNetY logits with torchvision's at reduced sizes
BIG = (
    "unet",  # 31 M parameters, 48 G MACs at 256 x 256: its ops at 32 x 32 in the golden set (unet, unet_bilinear)
    "alexnet",
    "convnext_tiny",
    "efficientnet_v2_s",
    "resnext50_32x4d",
    "vgg11",
    "vgg16",
    "wide_resnet50_2",
    "vit_b_16",
    "swin_t",
    "maxvit_t",
)


@pytest.mark.parametrize(
    "path", [pytest.param(p, marks=pytest.mark.slow) if p.stem in BIG else p for p in ZOO], ids=spec_id
)
def test_zoo_equals_torch(path, tmp_path):
    model, module, m = lowered(path, 13)
    file = check_valid(model, m, tmp_path)
    x = sample(model)
    # the project's FP32 rule (tcc.tolerance): against PyTorch in float64, within 1e-5 of the output's scale or 4x
    # PyTorch's own float32 error (seeded random weights make MobileNetV3-Large amplify roundoff past 1e-5)
    import copy

    with torch.no_grad():
        exact = copy.deepcopy(module).double()(torch.from_numpy(x).double()).numpy()
    verdict = compare(run(file, x), torch_out(module, x), "fp32", exact=exact)
    assert verdict["passed"], (path.name, verdict)
    # Names: every computing IR node of the inference graph is an ONNX node; aux heads, dropout and stochastic
    # depth (both the identity at inference) are not.
    onnx_nodes = {n.name for n in m.graph.node}
    live = model.graph.inference_nodes()
    for node in model.graph.nodes.values():
        if node.op in ("input", "dropout", "stochastic_depth"):
            continue
        assert (node.name in onnx_nodes) == (node.name in live), node.name
    assert not any(n.op_type == "Dropout" for n in m.graph.node)
    # Initializers are the state_dict's tensors under their own names (BN statistics included).
    state = seeded(path)[2]
    for init in m.graph.initializer:
        if "/" not in init.name:
            assert init.raw_data == state[init.name].numpy().tobytes(), init.name


@pytest.mark.parametrize("name", OPSET11)
def test_zoo_opset11(name, tmp_path):
    path = next(p for p in ZOO if p.stem == name)
    model, module, m = lowered(path, 11)
    file = check_valid(model, m, tmp_path)
    assert m.opset_import[0].version == 11 and m.ir_version == 6
    x = sample(model)
    assert_close(run(file, x), torch_out(module, x), what=f"{name} opset 11")


@pytest.mark.parametrize("opset", [9, 10, 11, 13, 14, 17, MAX_OPSET])
def test_every_lowering_path(opset, tmp_path):
    """tests/specs/onnx_ops.yaml: each intermediate value, not only the output, equals PyTorch's."""
    overrides = (("pool_dilation", 1),) if opset < 10 else ()
    model, module, m = lowered(OPS_SPEC, opset, overrides)
    check_valid(model, m, tmp_path)
    x = sample(model, batch=3)
    assert_close(run(m, x), torch_out(module, x))
    assert compare_every_value(model, module, m, x) >= 25
    ops = collections.Counter(n.op_type for n in m.graph.node)
    assert ops["HardSwish" if opset >= 14 else "HardSigmoid"] == 1
    assert ops["Transpose"] == (1 if opset >= 13 else 3)  # channel softmax before 13: moved to the last axis
    assert ops["Clip"] == 1 and ops["Split"] == 1 and ops["Pad"] == 1


def _pool_spec(write, h, w, k, s, p):
    return write(
        f"pool_{h}_{w}_{k}_{s}_{p}.yaml",
        f"""
        kind: model
        name: pools
        input: {{shape: [2, {h}, {w}]}}
        layers:
          - id: pools
            branches:
              - body: [{{id: max, op: maxpool, kernel: {k}, stride: {s}, padding: {p}, ceil_mode: true}},
                       {{op: global_avgpool}}]
              - body: [{{id: avg, op: avgpool, kernel: {k}, stride: {s}, padding: {p}, ceil_mode: true}},
                       {{op: global_avgpool}}]
              - body: [{{id: avgx, op: avgpool, kernel: {k}, stride: {s}, padding: {p}, ceil_mode: true,
                         count_include_pad: false}}, {{op: global_avgpool}}]
          - {{op: flatten}}
    """,
    )


def test_pool_ceil_mode(write, tmp_path):
    """ceil_mode windows (PyTorch drops a last window starting in the right padding; ONNX's shape formula does
    not), count_include_pad, mixed H/W cases: equal values and shapes at opsets 9 (no ceil_mode) and 13, through
    each of the lowering's forms (ceil_mode=1, extended end pads, an explicit Pad for counted padding)."""
    seen = collections.Counter()
    for k, s, p in [(2, 2, 0), (2, 2, 1), (3, 2, 1), (3, 3, 1), (3, 2, 0), (5, 3, 2), (3, 1, 1)]:
        for h, w in [(5, 6), (7, 8), (11, 12), (10, 13)]:
            spec = _pool_spec(write, h, w, k, s, p)
            model = tcc.load_spec(spec)
            module = tcc.to_torch(model.graph, inference_only=True)
            x = sample(model, batch=2)
            for opset in (9, 13):
                m = to_onnx(model.graph, module.state_dict(), opset)
                check_valid(model, m, tmp_path)
                assert compare_every_value(model, module, m, x) == 7, (k, s, p, h, w, opset)
                for n in m.graph.node:
                    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
                    seen["Pad"] += n.op_type == "Pad"
                    seen["ceil_mode"] += attrs.get("ceil_mode", 0)
                    pads = attrs.get("pads", [0] * 4)
                    seen["end_pads"] += n.op_type.endswith("Pool") and pads[2:] != pads[:2]
    assert seen["Pad"] and seen["ceil_mode"] and seen["end_pads"], seen


def test_opset_too_low_names_the_node():
    model, module, state = seeded(OPS_SPEC)
    with pytest.raises(OpsetError) as e:
        to_onnx(model.graph, state, 9)
    msg = str(e.value)
    assert "'mp_dil'" in msg and "dilation" in msg and "opset 10" in msg and "onnx_ops.yaml:" in msg
    assert isinstance(e.value, TccError) and e.value.node == "mp_dil"
    for bad in (MIN_OPSET - 1, MAX_OPSET + 1, "13"):
        with pytest.raises(OpsetError, match="not supported"):
            to_onnx(model.graph, state, bad)


def test_adaptive_pool_not_divisible(write):
    spec = write(
        "adaptive.yaml",
        """
        kind: model
        name: adaptive
        input: {shape: [3, 10, 10]}
        layers:
          - {id: conv, op: conv2d, out: 4, kernel: 3, padding: 1}
          - {id: pool, op: adaptive_avgpool, size: 3}
          - {op: flatten}
    """,
    )
    model = tcc.load_spec(spec)
    state = tcc.to_torch(model.graph).state_dict()
    with pytest.raises(ExportError) as e:
        to_onnx(model.graph, state)
    assert "'pool'" in str(e.value) and "10x10" in str(e.value) and "3x3" in str(e.value)
    assert "adaptive.yaml:6:5: node 'pool'" in str(e.value)


def test_weights_must_fit():
    model, module, state = seeded(REPO / "spec" / "ddsnet.yaml")
    missing = {k: v for k, v in state.items() if k != "trans1.conv.weight"}
    with pytest.raises(WeightsError, match="'trans1.conv'.*trans1.conv.weight"):
        to_onnx(model.graph, missing)
    wrong = {**state, "head.fc.bias": torch.zeros(7)}
    with pytest.raises(WeightsError, match=r"head.fc.bias.*\[7\].*\[6\]"):
        to_onnx(model.graph, wrong)
    numpy_state = {k: v.numpy() for k, v in state.items()}  # numpy arrays work as well as tensors
    assert to_onnx(model.graph, numpy_state).SerializeToString() == to_onnx(model.graph, state).SerializeToString()


def test_deterministic_and_named():
    model, module, state = seeded(REPO / "spec" / "ddsnet.yaml")
    a = to_onnx(model.graph, state).SerializeToString()
    b = to_onnx(model.graph, {k: v.clone() for k, v in state.items()}).SerializeToString()
    assert a == b
    m = onnx.load_from_string(a)
    assert m.producer_name == "tcc" and m.ir_version == 7 and m.opset_import[0].version == 13
    conv = next(n for n in m.graph.node if n.name == "dense1.layer0.dw.conv")
    assert conv.op_type == "Conv" and list(conv.output) == ["dense1.layer0.dw.conv"]
    assert list(conv.input) == ["stem.pool", "dense1.layer0.dw.conv.weight", "dense1.layer0.dw.conv.bias"]
    assert conv.doc_string == "dds_layer.yaml:14:9"  # spec location, file name only
    bn = next(n for n in m.graph.node if n.name == "stem.bn")
    assert bn.op_type == "BatchNormalization" and list(bn.input)[1:] == [
        "stem.bn.weight",
        "stem.bn.bias",
        "stem.bn.running_mean",
        "stem.bn.running_var",
    ]
    assert next(n for n in m.graph.node if n.name == "head.fc").output[0] == "output"
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [3, 224, 224]


def test_aux_heads_are_dropped():
    path = next(p for p in ZOO if p.stem == "googlenet")
    model, module, m = lowered(path, 13, (("aux_logits", True),))
    assert model.graph.aux_outputs
    aux = set(model.graph.nodes) - model.graph.inference_nodes()
    assert aux and not aux & {n.name for n in m.graph.node}
    assert not any(i.name.rsplit(".", 1)[0] in aux for i in m.graph.initializer)


def test_output_is_a_pass_through_value(write):
    """The last node lowers to no ONNX node (dropout): its input's tensor becomes `output`; when that is the
    graph input itself, an Identity named after the output node writes `output`."""
    tail = write(
        "tail.yaml",
        """
        kind: model
        name: tail
        input: {shape: [4, 1, 1]}
        layers:
          - {op: flatten}
          - {id: fc, op: linear, out: 3}
          - {id: drop, op: dropout}
    """,
    )
    bare = write(
        "bare.yaml",
        """
        kind: model
        name: bare
        input: {shape: [4, 1, 1]}
        layers:
          - {id: drop, op: dropout}
    """,
    )
    for spec, nodes in ((tail, [("flatten", "Flatten"), ("fc", "Gemm")]), (bare, [("drop", "Identity")])):
        model = tcc.load_spec(spec)
        module = tcc.to_torch(model.graph, inference_only=True)
        m = to_onnx(model.graph, module.state_dict())
        onnx.checker.check_model(m, full_check=True)
        x = np.arange(8, dtype=np.float32).reshape(2, 4, 1, 1)
        assert_close(run(m, x), torch_out(module, x))
        assert [(n.name, n.op_type) for n in m.graph.node] == nodes and m.graph.node[-1].output[0] == "output"
