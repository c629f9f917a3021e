"""The spec language end to end, on small specs written here: expressions, repeat/connect, branches, residuals,
explicit DAGs, when, auxiliary heads, block parameters, local/imported/path blocks, --set, JSON, hierarchical names,
hand-computed shapes/params/MACs, numerical equality with hand-written PyTorch, and a YAML-only block that trains.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import torch
import yaml
from torch import nn

import tcc
from tcc.lower.to_torch import init_weights
from tcc.spec.expr import evaluate, make_divisible
from tcc.spec.schema import build_schema
from tests.helpers import REPO

HERE = tcc.Location("test", 1, 1)


def load(write, text: str, overrides: dict | None = None, name: str = "m.yaml") -> tcc.Model:
    return tcc.load_spec(write(name, text), overrides)


def shapes(model) -> dict[str, list]:
    return {n: list(node.shape) for n, node in model.graph.nodes.items()}


# ---------------------------------------------------------------------------------------------------- expressions
@pytest.mark.parametrize(
    "source, value",
    [
        ("${7 // 2}", 3),
        ("${-7 // 2}", -4),
        ("${7 % 3}", 1),
        ("${7 / 2}", 3.5),
        ("${2 ** 10}", 1024),
        ("${min(4, w)}", 4),
        ("${max([1, w, 3])}", 10),
        ("${8 if w > 5 else 4}", 8),
        ("${'big' if w >= 100 else 'small'}", "small"),
        ("${w > 5 and not (w == 3 or false)}", True),
        ("${[w, w * 2][1]}", 20),
        ("${len(xs) + xs[-1]}", 7),
        ("${2 in xs}", True),
        ("${int(w * 1.5)}", 15),
        ("${round(2.5)} ${ceil(2.1)} ${floor(2.9)} ${abs(-3)}", "2 3 2 3"),
        ("${make_divisible(w * 1.5, 8)}", 16),
        ("${make_divisible(10, 8)}", 16),  # rounding down to 8 would lose more than 10%: torchvision adds a divisor
        ("${make_divisible(24, 8)}", 24),
        ("${make_divisible(3, 8, 16)}", 16),
        ("layer${w + 1}_${xs[0]}", "layer11_1"),
        ("plain text", "plain text"),
        ("${w == 10}", True),
        (
            "${sum(xs)} ${sum(xs[:2])} ${sum(xs[1:])} ${xs[::-1]} ${sum([])}",
            "7 3 6 [4, 2, 1] 0",
        ),  # a stage's first block
    ],
)
def test_expressions(source, value):
    assert evaluate(source, {"w": 10, "xs": [1, 2, 4]}, HERE) == value


@pytest.mark.parametrize(
    "source, message",
    [
        ("${sum(w)}", "sum() takes a list of numbers"),
        ("${sum(['a'])}", "sum() takes a list of numbers"),
        ("${xs[0.5:]}", "slice bounds must be integers"),
        ("${xs[::0]}", "slice step cannot be zero"),
    ],
)
def test_expression_errors_sum_and_slices(source, message):
    with pytest.raises(tcc.SpecError, match=re.escape(message)):
        evaluate(source, {"w": 10, "xs": [1, 2, 4]}, HERE)


def test_make_divisible_matches_torchvision():
    # torchvision.models._utils._make_divisible, as MobileNetV2 uses it (width multipliers 0.35 .. 1.4)
    def reference(v, divisor, min_value=None):
        min_value = min_value or divisor
        new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
        return new_v + divisor if new_v < 0.9 * v else new_v

    for channels in (16, 24, 32, 64, 96, 160, 320, 1280):
        for mult in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
            assert make_divisible(channels * mult, 8) == reference(channels * mult, 8)


def test_expressions_in_a_model(write):
    m = load(
        write,
        """
        kind: model
        name: exprs
        params: {w: 10}
        input: {shape: [3, 32, 32]}
        layers:
          - {id: a, op: conv2d, out: "${w // 3}", kernel: 1}                      # 3
          - {id: b, op: conv2d, out: "${w % 4 + 1}", kernel: 1}                   # 3
          - {id: c, op: conv2d, out: "${max(2, min(w, 5))}", kernel: 1}           # 5
          - {id: d, op: conv2d, out: "${8 if w > 5 else 4}", kernel: 1}           # 8
          - {id: e, op: conv2d, out: "${make_divisible(w * 1.5, 8)}", kernel: 1}  # 16
          - {id: f, op: conv2d, out: "${in_ch * 2}", kernel: 3, stride: "${in_h // 16}", padding: 1}  # 32 x 16 x 16
          - {repeat: 2, name: "conv_${w}_${i + 1}", op: conv2d, out: "${in_ch // 2}", kernel: 1}
        """,
    )
    s = shapes(m)
    assert [s[k][0] for k in "abcde"] == [3, 3, 5, 8, 16]
    assert s["f"] == [32, 16, 16]
    assert s["conv_10_1"] == [16, 16, 16] and s["conv_10_2"] == [8, 16, 16]


def test_interpolated_id_must_still_be_a_name(write):
    # a plain `id` is literal (an interpolated name belongs in a repeat `name` template)
    with pytest.raises(tcc.SpecError, match="id"):
        load(
            write,
            """
            kind: model
            name: x
            input: {shape: [3, 8, 8]}
            layers: [{id: "a.b", op: relu}]
            """,
        )


# ---------------------------------------------------------------------------------------------------- repeat / connect
REPEATS = """
kind: model
name: repeats
params: {depth: 3}
input: {shape: [8, 8, 8]}
blocks:
  unit:
    params:
      out: {type: int, min: 1}
      k: {type: int, default: 3, choices: [1, 3]}
    body:
      - {id: dw, op: conv2d, out: "${in_ch}", kernel: "${k}", padding: "${k // 2}", groups: "${in_ch}", bias: false}
      - {id: pw, op: conv2d, out: "${out}", kernel: 1, bias: false}
layers:
  - {id: dense2, repeat: "${depth}", connect: dense, block: unit, out: 4}
  - {id: stages, repeat: [8, 16], var: c, block: unit, out: "${c}", k: "${1 if index == 0 else 3}"}
  - {repeat: [5, 6], var: c, name: "layer${index + 1}_c${c}", op: conv2d, out: "${c}", kernel: 1}
  - {id: par, repeat: 3, connect: parallel, merge: add, op: conv2d, out: 8, kernel: 1}
  - {id: cat, repeat: 2, connect: parallel, op: conv2d, out: "${4 * (i + 1)}", kernel: 1}
  - {id: seq, repeat: 2, body: [{op: relu}, {id: inner, repeat: 2, op: identity}]}
  - {id: none, repeat: 0, op: conv2d, out: 99, kernel: 1}
"""


def test_repeat_names_and_shapes(write):
    m = load(write, REPEATS)
    s = shapes(m)
    # dense: copy k sees the concat of the input and every earlier output: 8 -> 12 -> 16 -> 20 channels
    assert [s[f"dense2.{k}.dw"][0] for k in range(3)] == [8, 12, 16]
    assert [s[f"dense2.{k}_concat"][0] for k in range(3)] == [12, 16, 20]
    # a list repeat with `var`; nested under the id like nn.Sequential; `index` counts copies
    assert s["stages.0.pw"] == [8, 8, 8] and s["stages.1.pw"] == [16, 8, 8]
    assert m.graph.nodes["stages.0.dw"].attrs["kernel"] == (1, 1)
    assert m.graph.nodes["stages.1.dw"].attrs["kernel"] == (3, 3)
    # with a `name` template the copies are siblings named by it
    assert s["layer1_c5"] == [5, 8, 8] and s["layer2_c6"] == [6, 8, 8]
    # parallel: every copy takes the same input; merged by add or (default) concat
    assert [r.node for r in m.graph.nodes["par.add"].inputs] == ["par.0", "par.1", "par.2"]
    assert all(m.graph.nodes[f"par.{k}"].inputs == m.graph.nodes["par.0"].inputs for k in range(3))
    assert s["par.add"] == [8, 8, 8] and s["cat.concat"] == [12, 8, 8]
    # nesting: repeated body with a repeated node inside
    assert {"seq.0.relu", "seq.0.inner.0", "seq.0.inner.1", "seq.1.relu", "seq.1.inner.1"} <= set(s)
    # repeat: 0 passes its input through
    assert not any(n.startswith("none") for n in s)
    assert m.graph.output.node == "seq.1.inner.1"


def test_repeat_count_from_set(write):
    m = load(write, REPEATS, tcc.parse_overrides(["depth=1"]))
    assert "dense2.0_concat" in m.graph.nodes and "dense2.1.dw" not in m.graph.nodes
    assert m.graph.nodes["stages.0.dw"].shape == (12, 8, 8)


# ---------------------------------------------------------------------------------------------------- DAG features
DAG = """
kind: model
name: dag
params: {use_gate: false}
input: {shape: [8, 8, 8]}
layers:
  - {id: sp, op: split, sizes: [3, 5]}
  - {id: a, op: conv2d, in: sp.1, out: 5, kernel: 1}
  - {id: cat, op: concat, in: [sp.0, a]}
  - {id: br, branches: [{op: relu}, {id: deep, body: [{op: sigmoid}, {id: conv, op: conv2d, out: 8, kernel: 1}]}]}
  - {id: sum, branches: [{op: relu}, {op: sigmoid}], merge: add}
  - {id: res, body: [{id: conv, op: conv2d, out: 16, kernel: 3, padding: 1}], residual: true}
  - {id: res_off, body: [{op: relu}], residual: "${in_ch == 3}"}
  - {id: res_on, body: [{op: relu}], residual: "${in_ch == 16 and in_h == 8}"}
  - id: down
    body:
      - {id: conv, op: conv2d, out: 32, kernel: 3, stride: 2, padding: 1}
    residual:
      - {id: proj, op: conv2d, out: 32, kernel: 1, stride: 2}
  - {id: gate, op: sigmoid, when: "${use_gate}"}
  - {id: mix, op: add, in: [gate, res_on]}
"""


def test_split_branches_residual_when(write):
    with pytest.raises(tcc.SpecError, match=r"mix \(add\).*32 vs 16"):  # `down` halves H, W and doubles C
        load(write, DAG)
    m = load(write, DAG.replace("in: [gate, res_on]", "in: [gate, down]"))
    s = shapes(m)
    assert s["sp"] == [3, 8, 8] and m.graph.nodes["sp"].shapes[1] == (5, 8, 8)
    assert [str(r) for r in m.graph.nodes["a"].inputs] == ["sp.1"]
    assert [str(r) for r in m.graph.nodes["cat"].inputs] == ["sp", "a"]
    assert s["br.concat"] == [16, 8, 8] and s["br.deep.conv"] == [8, 8, 8]
    assert s["sum.add"] == [16, 8, 8]
    assert [r.node for r in m.graph.nodes["res.residual"].inputs] == ["res.conv", "sum.add"]
    assert "res_off.residual" not in s and "res_on.residual" in s
    assert s["down.residual"] == [32, 4, 4]
    assert [r.node for r in m.graph.nodes["down.residual"].inputs] == ["down.conv", "down.proj"]
    assert "gate" not in s  # `when` false: skipped, and `gate` names its input
    assert [r.node for r in m.graph.nodes["mix"].inputs] == ["down.residual", "down.residual"]
    on = load(write, DAG.replace("in: [gate, res_on]", "in: [gate, down]"), {"use_gate": True})
    assert on.graph.nodes["gate"].inputs[0].node == "down.residual"
    assert [r.node for r in on.graph.nodes["mix"].inputs] == ["gate", "down.residual"]


def test_side_output_heads(write):
    spec = """
        kind: model
        name: aux
        input: {shape: [3, 16, 16]}
        layers:
          - {id: stem, op: conv2d, out: 8, kernel: 3, padding: 1}
          - id: aux
            side: true
            output: aux1
            body: [{op: global_avgpool}, {op: flatten}, {id: fc, op: linear, out: 3}]
          - {id: body, op: conv2d, out: 16, kernel: 3, padding: 1}
          - {op: global_avgpool}
          - {op: flatten}
          - {id: fc, op: linear, out: 3}
        """
    m = load(write, spec)
    g = m.graph
    assert g.nodes["body"].inputs[0].node == "stem"  # the chain continues from before the side node
    assert g.aux_outputs == {"aux1": tcc.Ref("aux.fc")}
    assert g.param_count == (8 * 27 + 8) + (16 * 72 + 16) + (16 * 3 + 3) + (8 * 3 + 3)  # aux head counted
    assert g.macs == 8 * 256 * 27 + 16 * 256 * 72 + 16 * 3  # ... but not its MACs
    module = init_weights(tcc.to_torch(g), 0)
    x = torch.randn(2, 3, 16, 16)
    module.train()
    main, aux = module(x)
    assert main.shape == (2, 3) and set(aux) == {"aux1"} and aux["aux1"].shape == (2, 3)
    module.eval()
    out = module(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)
    assert "aux.fc.weight" not in tcc.to_torch(g, inference_only=True).state_dict()


# ---------------------------------------------------------------------------------------------------- blocks
BLOCK_FILE = """
kind: block
name: conv_unit
doc: conv, BN, activation
params:
  out: {type: int, min: 1, max: 1024}
  stride: {type: int, default: 1, min: 1}
  act: {type: str, default: relu, choices: [relu, relu6, identity]}
body:
  - {id: conv, op: conv2d, out: "${out}", kernel: 3, stride: "${stride}", padding: 1, bias: false}
  - {id: bn, op: batchnorm}
  - {id: act, op: "${act}"}
"""


def test_block_parameters_defaults_and_choices(write):
    write("lib/conv_unit.yaml", BLOCK_FILE)
    m = load(
        write,
        """
        kind: model
        name: blocks
        imports: [lib/conv_unit.yaml]
        input: {shape: [3, 16, 16]}
        layers:
          - {id: a, block: conv_unit, out: 8}
          - {id: b, block: conv_unit, out: 16, stride: 2, act: relu6}
        """,
    )
    g = m.graph
    assert g.nodes["a.conv"].attrs["stride"] == (1, 1) and g.nodes["a.act"].op == "relu"
    assert g.nodes["b.conv"].attrs["stride"] == (2, 2) and g.nodes["b.act"].op == "relu6"
    assert g.nodes["b.act"].shape == (16, 8, 8)


def test_block_with_two_inputs_and_outputs(write):
    m = load(
        write,
        """
        kind: model
        name: two
        input: {shape: [4, 8, 8]}
        blocks:
          swap:
            inputs: [left, right]
            body:
              - {id: l, op: relu, in: left}
              - {id: r, op: sigmoid, in: right}
            outputs: [r, l]
        layers:
          - {id: sp, op: split, parts: 2}
          - {id: s, block: swap, in: [sp.0, sp.1]}
          - {op: concat, in: [s.0, s.1]}
        """,
    )
    g = m.graph
    assert [str(r) for r in g.nodes["concat"].inputs] == ["s.r", "s.l"]
    assert g.nodes["s.r"].inputs[0] == tcc.Ref("sp", 1)


def test_block_from_TCC_BLOCK_PATH(write, monkeypatch):
    block = write("elsewhere/conv_unit.yaml", BLOCK_FILE)
    monkeypatch.setenv("TCC_BLOCK_PATH", str(block.parent))
    m = load(
        write,
        """
        kind: model
        name: path
        input: {shape: [3, 8, 8]}
        layers: [{id: u, block: conv_unit, out: 4}]
        """,
    )
    assert m.graph.nodes["u.conv"].shape == (4, 8, 8)
    assert str(block) in m.sources  # part of the spec hash


def test_local_block_shadows_nothing_and_is_reusable(write):
    m = load(
        write,
        """
        kind: model
        name: local
        input: {shape: [3, 8, 8]}
        blocks:
          pair:
            params: {c: {type: int}}
            body: [{id: x1, op: conv2d, out: "${c}", kernel: 1}, {id: x2, op: conv2d, out: "${c}", kernel: 1}]
        layers:
          - {id: p, repeat: 2, block: pair, c: "${4 * (i + 1)}"}
        """,
    )
    assert [n for n in m.graph.nodes if n != "input"] == ["p.0.x1", "p.0.x2", "p.1.x1", "p.1.x2"]
    assert m.graph.nodes["p.1.x2"].shape == (8, 8, 8)


# ---------------------------------------------------------------------------------------------------- --set, JSON
PARAMS = """
kind: model
name: params
params:
  width: {type: int, default: 8, min: 1, max: 64}
  act: {type: str, default: relu, choices: [relu, relu6]}
  scale: 1.0
  use_bn: true
  sizes: [1, 3]
input: {shape: [3, 8, 8]}
labels: [a, b]
layers:
  - {id: conv, op: conv2d, out: "${int(width * scale)}", kernel: "${sizes[1]}", padding: "${sizes[1] // 2}"}
  - {id: bn, op: batchnorm, when: "${use_bn}"}
  - {id: act, op: "${act}"}
  - {op: global_avgpool}
  - {op: flatten}
  - {id: fc, op: linear, out: 2}
"""


def test_set_overrides(write):
    overrides = tcc.parse_overrides(["width=16", "act=relu6", "scale=0.5", "use_bn=false", "sizes=[1, 1]"])
    assert overrides == {"width": 16, "act": "relu6", "scale": 0.5, "use_bn": False, "sizes": [1, 1]}
    m = load(write, PARAMS, overrides)
    g = m.graph
    assert g.nodes["conv"].shape == (8, 8, 8) and g.nodes["conv"].attrs["kernel"] == (1, 1)
    assert "bn" not in g.nodes and g.nodes["act"].op == "relu6"
    assert m.params["width"] == 16 and m.labels == ["a", "b"]
    assert load(write, PARAMS).spec_hash != m.spec_hash
    with pytest.raises(tcc.SpecError, match="must be <= 64"):
        load(write, PARAMS, tcc.parse_overrides(["width=65"]))
    with pytest.raises(tcc.SpecError, match="must be one of"):
        load(write, PARAMS, {"act": "gelu"})


def test_json_spec_equals_yaml_spec(write):
    yaml_path = write("m.yaml", REPEATS)
    json_path = write("m.json", json.dumps(yaml.safe_load(yaml_path.read_text()), indent=1))
    a, b = tcc.load_spec(yaml_path), tcc.load_spec(json_path)
    assert a.graph.summary() == b.graph.summary()
    assert [n.attrs for n in a.graph.nodes.values()] == [n.attrs for n in b.graph.nodes.values()]
    assert b.graph.nodes["dense2.1.dw"].where.file == str(json_path)


# ---------------------------------------------------------------------------------------------------- numbers
SMALL = """
kind: model
name: small
input: {shape: [3, 32, 32]}
layers:
  - id: conv1
    body:
      - {id: conv, op: conv2d, out: 8, kernel: 3, stride: 2, padding: 1, bias: false}
      - {id: bn, op: batchnorm}
      - {id: act, op: relu}
  - id: block
    residual: true
    body:
      - {id: conv1, op: conv2d, out: 8, kernel: 3, padding: 1, bias: false}
      - {id: bn1, op: batchnorm}
      - {id: relu, op: relu}
      - {id: conv2, op: conv2d, out: 8, kernel: 3, padding: 1, groups: 2, bias: false}
      - {id: bn2, op: batchnorm}
  - {id: relu, op: relu}
  - {id: pool, op: maxpool, kernel: 3, stride: 2, padding: 1, ceil_mode: true}
  - {id: gap, op: global_avgpool}
  - {id: flat, op: flatten}
  - {id: drop, op: dropout, p: 0.2}
  - {id: fc, op: linear, out: 5}
"""


class HandWritten(nn.Module):
    """SMALL written by hand, with the same module names."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Module()
        self.conv1.conv = nn.Conv2d(3, 8, 3, 2, 1, bias=False)
        self.conv1.bn = nn.BatchNorm2d(8)
        self.block = nn.Module()
        self.block.conv1 = nn.Conv2d(8, 8, 3, 1, 1, bias=False)
        self.block.bn1 = nn.BatchNorm2d(8)
        self.block.conv2 = nn.Conv2d(8, 8, 3, 1, 1, groups=2, bias=False)
        self.block.bn2 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.conv1.bn(self.conv1.conv(x)))
        b = self.block
        x = torch.relu(x + b.bn2(b.conv2(torch.relu(b.bn1(b.conv1(x))))))
        x = self.pool(x).mean((2, 3))
        return self.fc(self.drop(x))


def test_shapes_params_macs_by_hand(write):
    g = load(write, SMALL).graph
    s = {n: list(node.shape) for n, node in g.nodes.items()}
    assert s["conv1.conv"] == [8, 16, 16]
    assert s["block.residual"] == [8, 16, 16]
    assert s["pool"] == [8, 9, 9]  # ceil((16 + 2 - 3) / 2) + 1
    assert s["fc"] == [5]
    params = 8 * 3 * 9 + 16 + 8 * 8 * 9 + 16 + 8 * 4 * 9 + 16 + 8 * 5 + 5  # convs, BN weight+bias, fc
    assert g.param_count == params == 1173
    assert g.nodes["block.conv2"].params["weight"].shape == (8, 4, 3, 3)
    macs = 8 * 16 * 16 * 3 * 9 + 8 * 16 * 16 * 8 * 9 + 8 * 16 * 16 * 4 * 9 + 8 * 5
    assert g.macs == macs == 276_520
    buffers = 3 * (2 * 8 + 1)  # running mean/var + num_batches_tracked per BN
    assert len(g.parameters()) == 3 * 5 + 3 + 2
    assert g.size_bytes_fp32 == 4 * (params + 3 * 2 * 8)
    module = tcc.to_torch(g)
    assert sum(p.numel() for p in module.parameters()) == params
    assert sum(b.numel() for b in module.buffers()) == buffers


def test_hierarchical_names_in_graph_and_state_dict(write):
    dense = load(
        write,
        REPEATS.replace(
            '  - {id: dense2, repeat: "${depth}", connect: dense, block: unit, out: 4}',
            '  - {id: dense2, body: [{repeat: "${depth}", name: "layer${i + 1}", connect: dense, block: unit, '
            "out: 4}]}",
        ),
    )
    names = set(dense.graph.nodes)
    assert {"dense2.layer1.dw", "dense2.layer3.dw", "dense2.layer3.pw", "dense2.layer3_concat"} <= names
    assert "dense2.layer3.dw.weight" in tcc.to_torch(dense.graph).state_dict()
    m = load(write, REPEATS)
    sd = tcc.to_torch(m.graph).state_dict()
    assert "dense2.2.dw" in m.graph.nodes and "dense2.2.dw.weight" in sd
    assert "stages.1.pw.weight" in sd and "layer2_c6.weight" in sd and "par.1.bias" in sd
    assert list(sd) == [name for name, _ in m.graph.parameters()]  # spec order = state_dict order
    g = load(write, SMALL).graph
    assert list(tcc.to_torch(g).state_dict()) == list(HandWritten().state_dict())


def test_forward_equals_hand_written_module(write):
    g = load(write, SMALL).graph
    ours = init_weights(tcc.to_torch(g), seed=3)
    ref = HandWritten()
    ref.load_state_dict(ours.state_dict(), strict=True)
    ours.eval(), ref.eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- a new block
GHOST = """
# yaml-language-server: $schema=../../spec/schema/tcc.schema.json
kind: block
name: ghost_module
doc: >-
  GhostNet's Ghost module (Han et al., CVPR 2020): a 1x1 "primary" conv makes half of the output channels, a cheap
  depthwise conv makes the other half from them, and the two are concatenated.
params:
  out: {type: int, min: 2}
  dw_kernel: {type: int, default: 3, choices: [1, 3, 5]}
  relu: {type: bool, default: true}
body:
  - id: primary
    body:
      - {id: conv, op: conv2d, out: "${out // 2}", kernel: 1, bias: false}
      - {id: bn, op: batchnorm}
      - {id: act, op: relu, when: "${relu}"}
  - id: cheap
    body:
      - {id: conv, op: conv2d, out: "${out - out // 2}", kernel: "${dw_kernel}", padding: "${dw_kernel // 2}",
         groups: "${in_ch}", bias: false}
      - {id: bn, op: batchnorm}
      - {id: act, op: relu, when: "${relu}"}
  - {id: cat, op: concat, in: [primary, cheap]}
"""

GHOSTNET = """
kind: model
name: ghostnet_tiny
params: {num_classes: 3}
IMPORTS
input:
  shape: [1, 32, 32]
  preprocess: {color: L, mean: [0.5], std: [0.5]}
layers:
  - id: stem
    body:
      - {id: conv, op: conv2d, out: 8, kernel: 3, stride: 2, padding: 1, bias: false}
      - {id: bn, op: batchnorm}
      - {id: act, op: relu}
  - {id: ghost1, block: ghost_module, out: 8, residual: true}
  - {id: ghost2, block: ghost_module, out: 16, dw_kernel: 5}
  - {op: maxpool, kernel: 2}
  - {id: ghost3, block: ghost_module, out: 16, relu: false, residual: true}
  - {op: global_avgpool}
  - {op: flatten}
  - {id: fc, op: linear, out: "${num_classes}"}
"""


def _ghost_numbers(g):
    s = {n: list(node.shape) for n, node in g.nodes.items()}
    assert s["ghost1.primary.conv"] == [4, 16, 16] and s["ghost1.cheap.conv"] == [4, 16, 16]
    assert s["ghost1.cat"] == [8, 16, 16] and s["ghost1.residual"] == [8, 16, 16]
    assert g.nodes["ghost2.cheap.conv"].params["weight"].shape == (8, 1, 5, 5)
    assert "ghost3.primary.act" not in g.nodes
    assert s["ghost3.residual"] == [16, 8, 8] and s["fc"] == [3]
    stem = 8 * 9 + 16
    ghost = lambda c_in, out, k: (out // 2) * c_in + 2 * (out // 2) + (out // 2) * k * k + 2 * (out // 2)  # noqa
    assert g.param_count == stem + ghost(8, 8, 3) + ghost(8, 16, 5) + ghost(16, 16, 3) + 16 * 3 + 3


def _train(module, steps=10):
    """A few SGD steps on one random batch: a trainable model memorises it."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 3, (8,))
    opt = torch.optim.SGD(module.parameters(), lr=0.2, momentum=0.9)
    module.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(module(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_yaml_only_block_via_imports_trains(write):
    write("blocks/ghost_module.yaml", GHOST)
    m = load(write, GHOSTNET.replace("IMPORTS", "imports: [blocks/ghost_module.yaml]"))
    _ghost_numbers(m.graph)
    module = init_weights(tcc.to_torch(m.graph), seed=0)
    assert "ghost2.cheap.conv.weight" in module.state_dict()
    losses = _train(module)
    assert losses[-1] < 0.6 * losses[0], losses


def test_yaml_only_block_via_TCC_BLOCK_PATH(write, monkeypatch, tmp_path):
    block = write("my_blocks/ghost_module.yaml", GHOST)
    monkeypatch.setenv("TCC_BLOCK_PATH", str(block.parent))
    m = load(write, GHOSTNET.replace("IMPORTS\n", ""))
    _ghost_numbers(m.graph)
    losses = _train(init_weights(tcc.to_torch(m.graph), seed=1))
    assert losses[-1] < 0.6 * losses[0], losses
    # the block validates on its own against the schema, like a zoo block
    jsonschema.validate(yaml.safe_load(GHOST), json.loads(SCHEMA_FILE.read_text()))


def test_odd_width_ghost_is_refused_with_the_reason(write):
    write("blocks/ghost_module.yaml", GHOST)
    spec = GHOSTNET.replace("IMPORTS", "imports: [blocks/ghost_module.yaml]").replace(
        "out: 16, dw_kernel: 5", "out: 15, dw_kernel: 5"
    )
    with pytest.raises(tcc.SpecError, match=r"groups=7 must divide both input channels 7 and output channels 8"):
        load(write, spec)


# ---------------------------------------------------------------------------------------------------- the schema
SCHEMA_FILE = REPO / "spec" / "schema" / "tcc.schema.json"


def test_schema_file_is_generated_from_the_op_table():
    assert SCHEMA_FILE.is_file(), "run tools/gen_schema.py"
    assert json.loads(SCHEMA_FILE.read_text()) == build_schema(), "stale: run tools/gen_schema.py"
    assert SCHEMA_FILE.read_text() == json.dumps(build_schema(), indent=2) + "\n"
    jsonschema.Draft202012Validator.check_schema(build_schema())


class _EditorLoader(yaml.SafeLoader):
    """YAML as an editor reads it (YAML 1.2 numbers: `1e-5` is a float)."""


_EditorLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _spec_files() -> list[Path]:
    files = [p for pattern in ("spec/**/*.yaml", "spec/**/*.json", "zoo/blocks/*.yaml") for p in REPO.glob(pattern)]
    return sorted(p for p in files if "schema" not in p.relative_to(REPO).parts)


@pytest.mark.parametrize("path", _spec_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_spec_validates_against_the_schema_file(path):
    if not path.is_file():
        pytest.skip("not written yet")
    doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_EditorLoader)
    if not (isinstance(doc, dict) and doc.get("kind") in ("model", "block")):
        pytest.skip("not a tcc spec")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, "\n".join(errors)


def test_the_schema_refuses_what_tcc_refuses():
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    good = {
        "kind": "model",
        "name": "m",
        "input": {"shape": [3, 8, 8]},
        "layers": [{"op": "conv2d", "out": 4, "kernel": 3}, {"body": [{"op": "relu"}], "residual": True}],
    }
    assert validator.is_valid(good)
    bad = [
        {**good, "layer": []},
        {**good, "layers": [{"op": "conv2", "out": 4, "kernel": 3}]},
        {**good, "layers": [{"op": "conv2d", "out": 4, "kernel": 3, "strid": 2}]},
        {**good, "layers": [{"op": "relu", "body": [{"op": "relu"}]}]},
        {**good, "layers": [{"body": [{"op": "relu", "inplace": True}]}]},
    ]
    for doc in bad:
        assert not validator.is_valid(doc), doc


def test_spec_hash_does_not_depend_on_how_or_where_the_spec_is_named(tmp_path, monkeypatch):
    """A table calibrated from `spec/ddsnet.yaml` builds with `tcc build ddsnet` (the hash checks the table's spec):
    the relative path, the absolute one, the zoo name and a copy elsewhere hash alike; an edit does not."""
    monkeypatch.chdir(REPO)
    want = tcc.load_spec(REPO / "spec" / "ddsnet.yaml").spec_hash
    copy = tmp_path / "elsewhere" / "ddsnet.yaml"
    copy.parent.mkdir()
    copy.write_text((REPO / "spec" / "ddsnet.yaml").read_text())
    assert [tcc.load_spec(p).spec_hash for p in ("spec/ddsnet.yaml", "ddsnet", copy)] == [want] * 3
    copy.write_text(copy.read_text() + "\n# an edit\n")
    assert tcc.load_spec(copy).spec_hash != want
