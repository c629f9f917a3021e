"""The ops of the torchvision families, each alone at odd sizes: the PyTorch lowering and the ONNX forms at opsets 11,
13, 17 and 20 (ONNX Runtime, raw and after the pass pipeline) against PyTorch's functional op evaluated in float64,
within the FP32 contract; parameter names and shapes as torch.nn's (a state_dict imports); MACs; GELU and layer norm
written as several ONNX nodes are still one function for the INT8 planner after the passes; stochastic depth."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

import tcc
from tcc.lower.to_onnx import COMPOSITES_KEY, to_onnx
from tcc.lower.to_torch import init_weights
from tcc.passes import run_pipeline
from tcc.passes.composites import composites
from tcc.quant.intgraph.match import plan
from tests.helpers import LOCAL_SPECS
from tests.helpers.lowering import assert_one_op_equals_reference

OPSETS = (11, 13, 17, 20)
SHAPE = (5, 7, 9)  # odd C, H, W


def _nchw(fn):
    """A functional op over the channels of NCHW, applied as torchvision does: on NHWC."""
    return lambda x, *a: fn(x.permute(0, 2, 3, 1), *a).permute(0, 3, 1, 2)


# op node (YAML) -> the input shape, and PyTorch's functional op given x and the node's parameters (by key)
CASES = {
    "hardsigmoid": ("{op: hardsigmoid}", SHAPE, lambda x, p: F.hardsigmoid(x)),
    "gelu": ("{op: gelu}", SHAPE, lambda x, p: F.gelu(x)),
    "gelu_tanh": ("{op: gelu, approximate: tanh}", SHAPE, lambda x, p: F.gelu(x, approximate="tanh")),
    "layernorm_channels": (
        "{op: layernorm, eps: 1.0e-6}",
        SHAPE,
        lambda x, p: _nchw(F.layer_norm)(x, (SHAPE[0],), p["weight"], p["bias"], 1e-6),
    ),
    "layernorm_last": ("{op: layernorm, axis: -1, affine: false}", SHAPE, lambda x, p: F.layer_norm(x, (SHAPE[2],))),
    "layernorm_features": (
        "{op: layernorm, axis: 1}",
        (13,),
        lambda x, p: F.layer_norm(x, (13,), p["weight"], p["bias"]),
    ),
    "leaky_relu": ("{op: leaky_relu, negative_slope: -0.3}", SHAPE, lambda x, p: F.leaky_relu(x, -0.3)),
    "prelu_channels": ("{op: prelu, num_parameters: 5}", SHAPE, lambda x, p: F.prelu(x, p["weight"])),
    "prelu_one": ("{op: prelu}", SHAPE, lambda x, p: F.prelu(x, p["weight"])),
    "prelu_features": ("{op: prelu, num_parameters: 13}", (13,), lambda x, p: F.prelu(x, p["weight"])),
    "elu": ("{op: elu, alpha: 0.7}", SHAPE, lambda x, p: F.elu(x, 0.7)),
    "scale": ("{op: scale, init: 1.0e-6}", SHAPE, lambda x, p: x * p["weight"]),
    "scale_features": ("{op: scale}", (13,), lambda x, p: x * p["weight"]),
    "global_maxpool": ("{op: global_maxpool}", SHAPE, lambda x, p: F.adaptive_max_pool2d(x, 1)),
    "linear_channels": (
        "{op: linear, out: 6, axis: 1}",
        SHAPE,
        lambda x, p: _nchw(F.linear)(x, p["weight"], p["bias"]),
    ),
    "stochastic_depth": ("{op: stochastic_depth, p: 0.4, mode: batch}", SHAPE, lambda x, p: x),
}


def _one_op(write, name):
    """(model, module with seeded weights, the functional op on the model's input) of one op alone; an [F] input
    is [F, 1, 1] flattened first."""
    node, shape, fn = CASES[name]
    features = len(shape) == 1
    spec = write(
        f"{name}.yaml",
        f"""
        kind: model
        name: {name}
        input: {{shape: {list(shape) + [1, 1] if features else list(shape)}}}
        layers:
          - {{op: {"flatten" if features else "identity"}}}
          - {{id: op, {node[1:]}
    """,
    )
    model = tcc.load_spec(spec)
    module = init_weights(tcc.to_torch(model.graph, inference_only=True), seed=4)
    return model, module, (lambda x, p: fn(x.flatten(1), p)) if features else fn


def _reference(module, fn, x):
    """(float32, float64) of the functional op with the module's parameters."""
    params = {k.split(".", 1)[1]: v for k, v in module.state_dict().items()}
    with torch.no_grad():
        r32 = fn(torch.from_numpy(x), params).numpy()
        r64 = fn(torch.from_numpy(x).double(), {k: v.double() for k, v in params.items()}).numpy()
    return r32, r64


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_op_alone_equals_pytorch_functional(name, write):
    model, module, fn = _one_op(write, name)
    x = (np.random.default_rng(0).standard_normal((3, *model.input_shape)) * 3).astype(np.float32)
    r32, r64 = _reference(module, fn, x)
    assert_one_op_equals_reference(model, module, x, r32, r64, OPSETS, name)


def test_onnx_forms_by_opset():
    """GELU is one Gelu node from opset 20 (Erf or Tanh and arithmetic below); layer norm over the channels is
    LayerNormalization between two Transposes from opset 17 (reductions below); both are marked as composites."""
    model = tcc.load_spec(LOCAL_SPECS / "torchvision_ops.yaml")
    state = init_weights(tcc.to_torch(model.graph), 0).state_dict()
    ops = {}
    for opset in (13, 17, 20):
        m = to_onnx(model.graph, state, opset)
        ops[opset] = [n.op_type for n in m.graph.node]
        marks = json.loads(next(p.value for p in m.metadata_props if p.key == COMPOSITES_KEY))
        if opset < 20:
            assert {"g", "block.act"} <= set(marks)
        else:
            assert "g" not in marks  # one Gelu node
        assert marks["block.norm"]["function"] == "LayerNormalization"
    assert "Erf" in ops[13] and "Gelu" not in ops[17] and ops[20].count("Gelu") == 2
    assert "LayerNormalization" not in ops[13] and ops[17].count("LayerNormalization") == 2
    assert ops[17].count("Transpose") == 2  # the channel norm only; [F] normalizes its last axis as it is


@pytest.mark.parametrize("opset", [11, 13, 17, 21])
def test_composites_survive_the_passes_as_one_function(opset):
    """After the pipeline (onnxsim included) each GELU is one lookup and each layer norm one float node for the
    planner; their inner tensors are never quantized."""
    model = tcc.load_spec(LOCAL_SPECS / "torchvision_ops.yaml")
    state = init_weights(tcc.to_torch(model.graph), 0).state_dict()
    m, _ = run_pipeline(to_onnx(model.graph, state, opset))
    g = plan(m, integer=False)
    kinds = {n.name: (n.kind, n.lookup) for n in g.nodes}
    assert kinds["g"] == kinds["block.act"] == ("lookup", "Gelu")
    assert kinds["block.norm"][0] == kinds["ln_f"][0] == "layernorm"
    by_name = {n.name: n for n in g.nodes}
    assert by_name["block.act"].attrs["approximate"] == "tanh" and by_name["g"].attrs["approximate"] == "none"
    assert by_name["block.norm"].attrs["axes"] == [1] and by_name["block.norm"].weight == "block.norm.weight"
    assert not set(g.internal) & set(g.quantized)
    assert "block.layer_scale" not in {n.name for n in m.graph.node}  # folded into fc2 (a 1x1 conv)
    assert {n.name: n.kind for n in g.nodes}["ls"] == "channel_scale"  # after an ELU: nothing to fold into


def test_a_broken_composite_is_dropped():
    """A mark whose region a rewrite opened (an inner tensor read outside) no longer describes one function: the
    planner then sees, and names, the plain nodes."""
    model = tcc.load_spec(LOCAL_SPECS / "torchvision_ops.yaml", {"layernorm": False})
    state = init_weights(tcc.to_torch(model.graph), 0).state_dict()
    m = to_onnx(model.graph, state, 13)
    assert "g" in composites(m)
    erf = next(n for n in m.graph.node if n.name == "g/erf")
    m.graph.output.append(onnx.helper.make_tensor_value_info(erf.output[0], onnx.TensorProto.FLOAT, None))
    assert "g" not in composites(m) and "block.act" in composites(m)


def test_parameters_are_torch_nn_modules_and_macs():
    """Parameter names and shapes as nn.LayerNorm, nn.PReLU, nn.Linear (applied over the channels) and
    torchvision's layer scale ([C, 1, 1]); linear over the channels counts H x W x in x out MACs."""
    model = tcc.load_spec(LOCAL_SPECS / "torchvision_ops.yaml")
    shapes = {k: tuple(v.shape) for k, v in tcc.to_torch(model.graph).state_dict().items()}
    assert shapes["block.norm.weight"] == shapes["block.norm.bias"] == (8,)
    assert shapes["block.fc1.weight"] == (16, 8) and shapes["block.fc1.bias"] == (16,)
    assert shapes["block.layer_scale.weight"] == (8, 1, 1)
    assert shapes["pr.weight"] == (8,) and shapes["pr1.weight"] == (1,)
    assert shapes["ln_f.weight"] == (8,)
    nodes = model.graph.nodes
    assert nodes["block.fc1"].macs == 9 * 11 * 8 * 16 and nodes["block.fc1"].shape == (16, 9, 11)
    assert all(nodes[n].macs == 0 for n in ("block.norm", "pr", "g", "gmp", "ls"))
    layer = torch.nn.Linear(8, 16)
    module = tcc.to_torch(model.graph)
    module.get_submodule("block.fc1").load_state_dict(layer.state_dict())
    x = torch.randn(2, 8, 9, 11)
    torch.testing.assert_close(module.get_submodule("block.fc1")(x), layer(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_stochastic_depth_trains_as_torchvision_and_is_the_identity_at_inference(write):
    """torchvision.ops.stochastic_depth: in training each sample (row) or the whole batch is zeroed with
    probability p and the rest scaled by 1 / (1 - p); at inference the input itself, with no ONNX node."""
    model, module, _ = _one_op(write, "stochastic_depth")
    x = torch.ones(64, *model.input_shape)
    with torch.no_grad():
        assert torch.equal(module(x), x)
        full = tcc.to_torch(model.graph).train()
        outs = [full(x) for _ in range(40)]
    assert all(o.unique().numel() == 1 for o in outs)  # batch mode: the whole batch kept or dropped
    assert {round(float(o.max()), 5) for o in outs} == {0.0, round(1 / 0.6, 5)}
    row = tcc.load_spec(
        write(
            "row.yaml",
            """
        kind: model
        name: row
        input: {shape: [2, 3, 3]}
        layers: [{op: stochastic_depth, p: 0.5}]
    """,
        )
    )
    with torch.no_grad():
        y = tcc.to_torch(row.graph).train()(torch.ones(400, 2, 3, 3))
    per_sample = y.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 2).all(1)).all()
    assert 120 < int((per_sample[:, 0] == 0).sum()) < 280
    assert not [n for n in to_onnx(model.graph, module.state_dict(), 13).graph.node if n.op_type != "Identity"]


def test_stochastic_depth_draws_belong_to_samples_in_training():
    """tcc train's keyed stochastic depth: a sample's draw is the same in any batch position (row), one draw per
    global batch step (batch), new draws in a new epoch."""
    from tcc.train.modules import SampleStochasticDepth
    from tcc.train.sample_rng import BatchKeys

    keys = BatchKeys(seed=3)
    row = SampleStochasticDepth(0.5, "row", keys, stream=5).train()
    x = torch.ones(6, 2, 3, 3)
    keys.set(2, torch.arange(10, 16), step=0)
    whole = row(x)
    keys.set(2, torch.tensor([13, 10]), step=7)
    assert torch.equal(row(x[:2]), whole[[3, 0]])
    assert set(whole.unique().tolist()) <= {0.0, 2.0}
    batch = SampleStochasticDepth(0.5, "batch", keys, stream=6).train()
    draws = []
    for step in range(12):
        keys.set(2, torch.arange(4), step=step)
        y = batch(x[:4])
        assert y.unique().numel() == 1
        draws.append(float(y.max()))
        keys.set(2, torch.arange(4, 8), step=step)  # another process, same global batch: the same draw
        assert float(batch(x[:4]).max()) == draws[-1]
    assert set(draws) == {0.0, 2.0}
