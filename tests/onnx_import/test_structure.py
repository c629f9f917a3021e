"""`tcc import` writes the structure back: small specs lowered to ONNX by tcc, imported, and the spec read for the
forms the spec language has (conv_bn_act calls, residuals with and without a shortcut, branches, parallel copies,
dense connections, local blocks with parameters, `repeat`), with the same parameters, MACs and logits."""

from __future__ import annotations

import tcc
import tcc.onnx_import as onnx_import
from tcc.lower.to_torch import init_weights
from tcc.onnx_import import import_onnx

HEAD = """kind: model
name: {name}
input: {{shape: [3, 16, 16]}}
layers:
"""
TAIL = """  - {op: global_avgpool}
  - {op: flatten}
  - {id: fc, op: linear, out: 3}
"""


def imported_from(layers: str, tmp_path, name: str = "small"):
    """The spec with these layers (stem and head around them), lowered by tcc, imported; both, and the text."""
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(HEAD.format(name=name) + layers + TAIL)
    model = tcc.load_spec(spec)
    module = init_weights(tcc.to_torch(model.graph, inference_only=True), seed=1)
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(tcc.to_onnx(model.graph, module.state_dict()).SerializeToString())
    imported = import_onnx(path)
    out = tmp_path / f"{name}-imported.yaml"
    out.write_text(imported.spec_text)
    back = tcc.load_spec(out)
    assert (back.graph.param_count, back.graph.macs) == (model.graph.param_count, model.graph.macs)
    assert imported.check["passed"] and not imported.notes
    return imported.spec_text, imported


def test_residuals_repeats_and_conv_bn_act(tmp_path):
    text, imported = imported_from(
        """  - {id: stem, block: conv_bn_act, out: 8, stride: 2}
  - {id: stage, repeat: 3, block: resnet_basic, planes: 8}
  - {id: down, block: resnet_basic, planes: 16, stride: 2}
  - {id: tail, repeat: 2, block: resnet_basic, planes: 16}
""",
        tmp_path,
    )
    assert "- {id: stem, block: conv_bn_act, out: 8, stride: 2}" in text  # Conv + BN + ReLU: the zoo's block
    assert "residual: true" in text  # the identity shortcut
    shortcut = "- {id: downsample, block: conv_bn_act, out: 16, kernel: 1, stride: 2, act: none}"
    assert f"        residual:\n          {shortcut}" in text  # the projection shortcut, after the main path
    # the three identical blocks of `stage` are one block called with repeat, copies named as before (stage.0 ...)
    assert "- {id: stage, repeat: 3, block:" in text
    assert '- {repeat: 2, name: "${i + 1}"' not in text
    assert "stage.0.add.conv1.conv.weight" in imported.state_dict


def test_branches_parallel_copies_and_dense_connections(tmp_path):
    text, _ = imported_from(
        """  - {id: stem, op: conv2d, out: 8, kernel: 3, padding: 1}
  - id: mix
    branches:
      - {id: a, block: conv_bn_act, out: 4, kernel: 1}
      - id: b
        body:
          - {id: pool, op: maxpool, kernel: 3, stride: 1, padding: 1}
          - {id: proj, block: conv_bn_act, out: 4, kernel: 1}
  - {id: twins, repeat: 3, connect: parallel, merge: add,
     body: [{op: conv2d, out: 8, kernel: 3, padding: 1}, {op: relu}]}
  - {id: grow, repeat: 3, connect: dense, block: dds_layer, growth: 4}
""",
        tmp_path,
    )
    assert "- id: mix\n    branches:\n      - {id: a, block: conv_bn_act, out: 4, kernel: 1}\n      - id: b\n" in text
    assert "- id: twins\n    repeat: 3\n    connect: parallel\n    merge: add\n    body:\n" in text
    assert "- id: grow\n    repeat: 3\n    connect: dense\n" in text


def test_a_block_takes_what_differs_between_its_uses(tmp_path):
    """Squeeze-excite gates of two widths: one local block, its squeeze a parameter, the channels `${in_ch}`; the
    gate's product reads the block's input by name (`x`)."""
    text, _ = imported_from(
        """  - {id: stem, op: conv2d, out: 8, kernel: 3, padding: 1}
  - {id: se1, block: squeeze_excite, squeeze: 2}
  - {id: widen, op: conv2d, out: 16, kernel: 1}
  - {id: se2, block: squeeze_excite, squeeze: 4}
""",
        tmp_path,
    )
    assert "blocks:\n  se1:  # 2 uses: se1, se2\n" in text
    assert 'params: {fc1_out: {type: int}, fc2_out: {type: int, default: "${in_ch}"}}' in text
    assert "- {id: scale, op: mul, in: [scale_activation, x]}" in text
    assert "- {id: se1, block: se1, fc1_out: 2}" in text and "- {id: se2, block: se1, fc1_out: 4}" in text


def test_a_failing_structure_falls_back_to_the_flat_list_with_a_note(tmp_path, monkeypatch):
    def broken(items, memo):
        raise ValueError("a bug")

    monkeypatch.setattr(onnx_import, "choose_blocks", broken)
    spec = tmp_path / "s.yaml"
    spec.write_text(HEAD.format(name="s") + "  - {id: stem, block: conv_bn_act, out: 8}\n" + TAIL)
    model = tcc.load_spec(spec)
    path = tmp_path / "s.onnx"
    module = init_weights(tcc.to_torch(model.graph, inference_only=True), seed=1)
    path.write_bytes(tcc.to_onnx(model.graph, module.state_dict()).SerializeToString())
    imported = import_onnx(path)
    assert imported.notes == ["written as one flat list: the nested spec failed (ValueError: a bug)"]
    assert "one node per ONNX layer" in imported.spec_text and imported.check["passed"]


def test_ids_never_hide_the_names_they_read(tmp_path):
    """A node whose module is named `x` inside a block, whose input is `x`, is renamed, so `in:` still reads the
    block's input."""
    text, _ = imported_from(
        """  - {id: stem, op: conv2d, out: 8, kernel: 3, padding: 1}
  - id: g1
    body:
      - {id: x, op: global_avgpool}
      - {id: gate, op: sigmoid}
      - {id: scale, op: mul, in: [gate, stem]}
  - id: g2
    body:
      - {id: x, op: global_avgpool}
      - {id: gate, op: sigmoid}
      - {id: scale, op: mul, in: [gate, g1]}
""",
        tmp_path,
    )
    assert "- {id: x_2, op: global_avgpool}" in text and "in: [gate, x]" in text
