"""The tensor ops attention is written with (tcc/ops/tensor.py, tcc/ops/norm.py, tcc/ops/attention.py), each alone
at odd sizes: the PyTorch lowering and the ONNX forms at opsets 13, 17, 18 and 21 (ONNX Runtime, raw and after the
pass pipeline) against PyTorch's own tensor functions evaluated in float64, within the FP32 contract; shapes as the
IR infers them; MACs of matmul; the multihead_attention block against torch.nn.MultiheadAttention with its
state_dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tcc
from tcc.ops.attention import shifted_window_mask
from tcc.tolerance import compare
from tests.helpers.lowering import assert_case_equals_pytorch, one_op_spec

OPSETS = (13, 17, 18, 21)  # 18: ReduceMean's axes became an input; 13: ReduceSum's and Softmax over one axis
SHAPE = (5, 7, 9)  # odd C, H, W

# name -> (the nodes (YAML, after the input), the input shape, the function of x and the parameters by key)
CASES = {
    "reshape": ("{op: reshape, shape: [7, -1]}", SHAPE, lambda x, p: x.reshape(len(x), 7, 45)),
    "reshape_rank5": ("{op: reshape, shape: [5, 7, 3, 3]}", SHAPE, lambda x, p: x.reshape(len(x), 5, 7, 3, 3)),
    "permute_full": ("{op: permute, perm: [0, 3, 1, 2]}", SHAPE, lambda x, p: x.permute(0, 3, 1, 2)),
    "permute_trailing": ("{op: permute, perm: [-1, -2]}", SHAPE, lambda x, p: x.permute(0, 1, 3, 2)),
    "transpose": ("{op: transpose, axes: [1, 3]}", SHAPE, lambda x, p: x.transpose(1, 3)),
    "flatten_tail": ("{op: flatten, start: 2}", SHAPE, lambda x, p: x.flatten(2)),
    "flatten_head": ("{op: flatten, start: 1, end: -2}", SHAPE, lambda x, p: x.flatten(1, 2)),
    "select": ("{op: select, axis: -1, index: -2}", SHAPE, lambda x, p: x[..., -2]),
    "slice": ("{op: slice, axis: 2, start: 1, end: -1, step: 2}", SHAPE, lambda x, p: x[:, :, 1:-1:2]),
    "slice_open_end": ("{op: slice, axis: -1, start: -4}", SHAPE, lambda x, p: x[..., -4:]),
    "roll": ("{op: roll, shifts: [2, -3], axes: [2, 3]}", SHAPE, lambda x, p: torch.roll(x, (2, -3), (2, 3))),
    "mean": ("{op: mean, axes: [1, -1]}", SHAPE, lambda x, p: x.mean((1, 3))),
    "sum_keepdims": ("{op: sum, axes: [-1], keepdims: true}", SHAPE, lambda x, p: x.sum(-1, keepdim=True)),
    "softmax_rows": ("{op: softmax, axis: -2}", SHAPE, lambda x, p: torch.softmax(x, -2)),
    "matmul_scaled": (
        "{op: matmul, in: [input, input], transpose_b: true, scale: 0.25}",
        SHAPE,
        lambda x, p: x @ x.transpose(-1, -2) * 0.25,
    ),
    "matmul_broadcast": (
        """{id: row, op: select, axis: 1, index: 0}
          - {id: column, op: transpose, axes: [1, 2]}
          - {id: one, op: reshape, shape: [1, 9, 7]}
          - {op: matmul, in: [input, one]}""",
        SHAPE,
        lambda x, p: x @ x[:, 0].transpose(-1, -2)[:, None],
    ),
    "param_added": (
        """{id: table, op: param, shape: [1, 7, 9], std: 0.5}
          - {op: add, in: [input, table]}""",
        SHAPE,
        lambda x, p: x + p["table.weight"],
    ),
    "param_concat": (
        """{id: token, op: param, shape: [1, 9]}
          - {id: tokens, op: select, in: input, axis: 1, index: 0}
          - {op: concat, axis: 1, in: [token, tokens]}""",
        SHAPE,
        lambda x, p: torch.cat([p["token.weight"].expand(len(x), 1, 9), x[:, 0]], 1),
    ),
    "linear_tokens": (
        "{id: fc, op: linear, axis: -1, out: 4}",
        SHAPE,
        lambda x, p: F.linear(x, p["fc.weight"], p["fc.bias"]),
    ),
    "linear_tokens_no_bias": (
        """{op: select, axis: 1, index: 1}
          - {id: fc, op: linear, axis: -1, out: 4, bias: false}""",
        SHAPE,
        lambda x, p: F.linear(x[:, 1], p["fc.weight"]),
    ),
    "groupnorm": (
        "{id: gn, op: groupnorm, groups: 5, eps: 1.0e-3}",
        SHAPE,
        lambda x, p: F.group_norm(x, 5, p["gn.weight"], p["gn.bias"], 1e-3),
    ),
    "l2_normalize_last": ("{op: l2_normalize, axis: -1}", SHAPE, lambda x, p: F.normalize(x, dim=-1)),
    "l2_normalize_channels": ("{op: l2_normalize, eps: 1.0}", SHAPE, lambda x, p: F.normalize(x, dim=1, eps=1.0)),
    "groupnorm_one": ("{id: gn, op: groupnorm}", SHAPE, lambda x, p: F.group_norm(x, 1, p["gn.weight"], p["gn.bias"])),
    "relative_position_bias": (
        "{id: bias, op: relative_position_bias, window: 2}",
        (2, 4, 4),
        lambda x, p: x + p["bias.weight"][p["bias.index"].long()].view(4, 4, 2).permute(2, 0, 1),
    ),
    "window_mask": (
        """{op: reshape, shape: [2, 1, 4, 4]}
          - {op: window_mask, size: [2, 4], window: 2, shift: [1, 1]}""",
        (2, 4, 4),
        lambda x, p: (
            x.reshape(-1, 2, 1, 4, 4) + torch.from_numpy(shifted_window_mask((2, 4), (2, 2), (1, 1))).to(x.dtype)
        ),
    ),
    "layernorm_tokens": (
        """{op: select, axis: 1, index: 1}
          - {id: ln, op: layernorm, axis: -1}""",
        SHAPE,
        lambda x, p: F.layer_norm(x[:, 1], (9,), p["ln.weight"], p["ln.bias"]),
    ),
}


def _model(write, name):
    return one_op_spec(write, name, CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_op_alone_equals_pytorch(name, write):
    assert_case_equals_pytorch(write, name, CASES[name], OPSETS)


def test_matmul_macs_and_parameter_layouts(write):
    """matmul counts M x N x K per leading index (torch's FlopCounterMode halves the same); a learned tensor is
    stored [1, ...] as torchvision's class token; linear over the last axis keeps nn.Linear's [out, in]."""
    model, module, _ = _model(write, "matmul_scaled")
    node = next(n for n in model.graph.nodes.values() if n.op == "matmul")
    assert node.shape == (5, 7, 7) and node.macs == 5 * 7 * 7 * 9
    shapes = {k: tuple(v.shape) for k, v in _model(write, "param_concat")[1].state_dict().items()}
    assert shapes == {"token.weight": (1, 1, 9)}
    shapes = {k: tuple(v.shape) for k, v in _model(write, "linear_tokens")[1].state_dict().items()}
    assert shapes == {"fc.weight": (4, 9), "fc.bias": (4,)}
    fc = _model(write, "linear_tokens")[0].graph.nodes["fc"]
    assert fc.macs == 5 * 7 * 4 * 9


def test_multihead_attention_block_equals_torch_nn_multiheadattention(write):
    """The zoo block over tokens with a leading axis ([P, S, D], MobileViT's layout) against nn.MultiheadAttention
    (batch_first) on [N P, S, D], its state_dict imported through the key map of nn.MultiheadAttention's packed
    projection."""
    spec = write(
        "mha.yaml",
        """
        kind: model
        name: mha
        input: {shape: [4, 6, 12]}
        layers:
          - {id: attn, block: multihead_attention, heads: 3}   # [P, S, D] tokens, P leading
    """,
    )
    model = tcc.load_spec(spec)
    module = tcc.to_torch(model.graph)
    torch.manual_seed(0)
    reference = torch.nn.MultiheadAttention(12, 3, batch_first=True).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    state = {f"attn.{k.replace('in_proj_', 'in_proj.')}": v for k, v in reference.state_dict().items()}
    module.load_state_dict(state)
    x = torch.randn(2, 4, 6, 12)
    with torch.no_grad():
        want = reference(*(x.reshape(8, 6, 12),) * 3, need_weights=False)[0].reshape(2, 4, 6, 12)
        exact = module.double()(x.double())
        got = module.float()(x)
    assert compare(want.numpy(), got.numpy(), "fp32", exact=exact.numpy())["passed"]
    attention = model.graph.nodes["attn.scores"]
    assert attention.shape == (4, 3, 6, 6) and attention.attrs["scale"] == 0.5  # 1 / sqrt(12 / 3)
