"""The PyTorch lowering: trainable, torch.compile-able, named by the IR, readable generated code."""

from __future__ import annotations

import pytest
import torch

import tcc
from tcc.lower.to_torch import init_weights

SPEC = """
kind: model
name: mixed
params: {num_classes: 4, aux: true}
input: {shape: [3, 24, 24]}
layers:
  - {id: stem, op: conv2d, out: 8, kernel: 3, stride: 2, padding: same, bias: false}
  - {op: batchnorm, eps: 0.001}
  - {op: hardswish}
  - {id: dense, repeat: 2, connect: dense, body: [{op: conv2d, out: 4, kernel: 3, padding: 1}, {op: silu}]}
  - {id: sp, op: split, sizes: [6, 10]}
  - {id: right, in: sp.1, body: [{op: conv2d, out: 6, kernel: 1}, {op: relu6}]}
  - {op: concat, in: [sp.0, right]}
  - {op: channel_shuffle, groups: 2}
  - {id: se, residual: true, body: [{op: avgpool, kernel: 3, stride: 1, padding: 1, count_include_pad: false}]}
  - {id: head_aux, side: true, output: aux, when: "${aux}",
     body: [{op: adaptive_avgpool, size: 1}, {op: flatten}, {op: linear, out: "${num_classes}"}]}
  - {op: maxpool, kernel: 3, stride: 2, ceil_mode: true}
  - {op: global_avgpool}
  - {op: flatten}
  - {op: dropout, p: 0.2}
  - {id: fc, op: linear, out: "${num_classes}"}
"""


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text(SPEC)
    return tcc.load_spec(path)


def test_parameters_follow_ir_names_and_counts(model):
    module = tcc.to_torch(model.graph)
    names = list(dict(module.named_parameters()))
    assert names[:2] == ["stem.weight", "batchnorm.weight"]
    assert "dense.0.conv2d.weight" in names and "head_aux.linear.weight" in names
    assert sum(p.numel() for p in module.parameters()) == model.graph.param_count
    assert [n for n, _ in model.graph.parameters()] == list(module.state_dict())


def test_train_mode_returns_aux_and_every_parameter_gets_a_gradient(model):
    module = init_weights(tcc.to_torch(model.graph), seed=1).train()
    main, aux = module(torch.randn(2, 3, 24, 24))
    assert main.shape == (2, 4) and set(aux) == {"aux"} and aux["aux"].shape == (2, 4)
    (main.square().mean() + aux["aux"].square().mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    module.eval()
    assert module(torch.randn(1, 3, 24, 24)).shape == (1, 4)


def test_inference_only_drops_aux_heads(model):
    module = tcc.to_torch(model.graph, inference_only=True)
    assert not any(n.startswith("head_aux") for n in module.state_dict())
    assert module.train()(torch.randn(2, 3, 24, 24)).shape == (2, 4)


def test_generated_code_reads_like_pytorch(model):
    code = tcc.to_torch(model.graph).code
    assert "self.stem(" in code and "torch.cat(" in code and "dense_0_conv2d" in code


def test_seeded_weights_are_reproducible(model):
    a = init_weights(tcc.to_torch(model.graph), seed=7).state_dict()
    b = init_weights(tcc.to_torch(model.graph), seed=7).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torch_compile_gives_the_same_numbers(model):
    module = init_weights(tcc.to_torch(model.graph, inference_only=True), seed=3).eval()
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        want = module(x)
        got = torch.compile(module, backend="aot_eager")(x)  # the full inductor path needs a C++ build per run
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
