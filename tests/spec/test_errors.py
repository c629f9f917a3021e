"""Bad specs: every mistake is reported as `file:line:col: message` by `tcc check`, exit code 2, no traceback.

Each case writes a small spec and names the text the error must point at (`at`: the first occurrence of that
text in the file, so the expected line and column are exact but stay readable) and fragments the message must
contain (the helpful part: the name that is wrong, a did-you-mean, the limit, the shapes).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

import tcc
from tests.helpers import REPO
from tests.helpers.spec_util import assert_error, position

HEAD = """\
kind: model
name: bad
params:
  width: 16
input: {shape: [3, 8, 8]}
"""


# ---------------------------------------------------------------------------------------------------- syntax
def test_yaml_syntax_error_points_at_problem_and_opening(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: relu\n  - {op: sigmoid}\n")
    err = assert_error(spec, "{op: sigmoid}", "invalid YAML", capsys=capsys)
    # ... and says where the unclosed mapping was opened
    assert f"while parsing a flow mapping at {position(spec, '{op: relu')}" in err


def test_duplicate_yaml_key(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: relu, op: sigmoid}\n")
    assert_error(spec, "op: sigmoid", "duplicate key 'op'", capsys=capsys)


def test_python_object_tag_is_refused(write, capsys):
    spec = write("m.yaml", HEAD + "layers: !!python/object/apply:os.system [echo owned]\n")
    assert_error(spec, "!!python", "YAML tag", "python/object/apply:os.system", "not allowed", capsys=capsys)


def test_python_name_tag_inside_a_node(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: !!python/name:os.system relu}\n")
    assert_error(spec, "!!python", "not allowed in a spec", capsys=capsys)


def test_billion_laughs_is_refused_fast_with_bounded_memory(write, capsys):
    lines = [HEAD.rstrip("\n"), 'lol0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("layers: [{op: relu}]")
    spec = write("m.yaml", "\n".join(lines) + "\n")  # 9**10 (3.5 billion) strings once expanded
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        # the innermost anchor that alone expands past the limit: lol6 = 9**7 = 4.8 million nodes
        assert_error(spec, "&a6", "expands to more than 1,000,000 nodes", capsys=capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 3.0
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_too_many_aliases(write, capsys):
    body = "\n".join(f"x{i}: *a" for i in range(150))
    spec = write("m.yaml", HEAD + "a: &a 1\n" + body + "\nlayers: [{op: relu}]\n")
    assert_error(spec, "*a\nx101", "too many YAML aliases", capsys=capsys)


def test_recursive_alias(write, capsys):
    spec = write("m.yaml", HEAD + "x: &a [1, *a]\nlayers: [{op: relu}]\n")
    assert_error(spec, "&a", "alias is used inside its own anchor", capsys=capsys)


def test_aliases_that_nest_too_deeply(write, capsys):
    lines = [HEAD.rstrip("\n"), "b0: &b0 [{op: relu}]"]
    lines += [f"b{i}: &b{i} [{{body: *b{i - 1}}}]" for i in range(1, 40)]
    spec = write("m.yaml", "\n".join(lines + ["layers: *b39"]) + "\n")
    assert_error(spec, None, "nested more than 64 levels deep (through aliases)", capsys=capsys)


def test_deeply_nested_document(write, capsys):
    spec = write("m.yaml", HEAD + "layers: " + "[" * 200 + "]" * 200 + "\n")
    assert_error(spec, None, "nested more than 64 levels", capsys=capsys)


def test_control_character(write, capsys):
    spec = write("m.yaml", HEAD + "layers: [{op: relu}]\n\x07\n")
    assert_error(spec, "\x07", "U+0007 is not allowed", capsys=capsys)


# ---------------------------------------------------------------------------------------------------- schema
def test_unknown_top_level_key_suggests_the_right_one(write, capsys):
    spec = write("m.yaml", HEAD + "layer:\n  - {op: relu}\n")
    assert_error(spec, "layer:", "unknown key 'layer'", "did you mean 'layers'?", capsys=capsys)


def test_unknown_node_key_suggests(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {body: [{op: relu}], repaet: 2}\n")
    assert_error(spec, "repaet", "unknown key 'repaet'", "did you mean 'repeat'?", capsys=capsys)


def test_unknown_op(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: conv2, out: 4, kernel: 3}\n")
    assert_error(spec, "conv2,", "unknown op 'conv2'", "did you mean 'conv2d'?", capsys=capsys)


def test_unknown_op_from_an_expression(write, capsys):
    spec = write("m.yaml", HEAD.replace("width: 16", "act: rleu") + "layers:\n  - {op: '${act}'}\n")
    assert_error(spec, "'${act}'", "unknown op 'rleu'", "did you mean 'relu'?", capsys=capsys)


def test_unknown_op_argument(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: conv2d, out: 4, kernel: 3, strid: 2}\n")
    assert_error(spec, "strid", "unknown argument 'strid' for op conv2d", "did you mean 'stride'?", capsys=capsys)


def test_argument_of_an_op_without_arguments(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: relu, inplace: true}\n")
    assert_error(spec, "inplace", "unknown argument 'inplace' for op relu (arguments: none)", capsys=capsys)


def test_missing_required_op_argument(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: conv2d, out: 4}\n")
    assert_error(spec, "{op: conv2d", "op conv2d needs argument 'kernel'", capsys=capsys)


def test_mistyped_op_argument(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: conv2d, out: '${width / 3}', kernel: 1}\n")
    assert_error(spec, "'${width / 3}'", "conv2d argument 'out'", "expected an integer", capsys=capsys)


def test_bad_parameter_declaration_names_the_bad_field(write, capsys):
    spec = write(
        "m.yaml",
        HEAD.replace("width: 16", "act: {type: str, choices: relu, default: relu}") + "layers:\n  - {op: relu}\n",
    )
    assert_error(spec, "relu, default", "params.act.choices", "not of type 'array'", capsys=capsys)


def test_node_with_two_kinds(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: relu, body: [{op: relu}]}\n")
    assert_error(
        spec, "{op: relu, body", "a node needs exactly one of op, block, body, branches (has op, body)", capsys=capsys
    )


# ---------------------------------------------------------------------------------------------------- blocks
def test_unknown_block(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {block: dw_separabel, out: 4}\n")
    assert_error(spec, "dw_separabel", "unknown block 'dw_separabel'", "did you mean 'dw_separable'?", capsys=capsys)


LOCAL_BLOCK = """\
blocks:
  unit:
    params:
      out: {type: int, min: 1, max: 64}
      act: {type: str, default: relu, choices: [relu, relu6]}
    body:
      - {id: conv, op: conv2d, out: '${out}', kernel: 1}
      - {op: '${act}'}
"""


def test_missing_block_parameter(write, capsys):
    spec = write("m.yaml", HEAD + LOCAL_BLOCK + "layers:\n  - {block: unit}\n")
    assert_error(spec, "{block: unit}", "block unit needs parameter 'out'", capsys=capsys)


def test_mistyped_block_parameter(write, capsys):
    spec = write("m.yaml", HEAD + LOCAL_BLOCK + "layers:\n  - {block: unit, out: four}\n")
    assert_error(spec, "four", "parameter 'out' of block unit: expected an integer, got 'four'", capsys=capsys)


def test_unknown_block_parameter(write, capsys):
    spec = write("m.yaml", HEAD + LOCAL_BLOCK + "layers:\n  - {block: unit, out: 4, ack: relu6}\n")
    assert_error(spec, "ack", "unknown parameter 'ack' for block unit", "did you mean 'act'?", capsys=capsys)


def test_block_parameter_out_of_range_and_choices(write, capsys):
    spec = write("m.yaml", HEAD + LOCAL_BLOCK + "layers:\n  - {block: unit, out: 65}\n")
    assert_error(spec, "65", "parameter 'out' of block unit: must be <= 64, got 65", capsys=capsys)
    spec = write("m.yaml", HEAD + LOCAL_BLOCK + "layers:\n  - {block: unit, out: 4, act: gelu}\n")
    assert_error(spec, "gelu", "must be one of ['relu', 'relu6'], got 'gelu'", capsys=capsys)


def test_block_that_uses_itself(write, capsys):
    spec = write(
        "m.yaml",
        HEAD
        + """\
blocks:
  ping:
    body: [{op: relu}, {block: pong}]
  pong:
    body: [{block: ping}]
layers:
  - {id: first, block: ping}
""",
    )
    err = assert_error(spec, "{block: ping}]", "block 'ping' uses itself (ping -> pong -> ping)", capsys=capsys)
    assert f"in block 'pong' used at {position(spec, '{block: pong}')}" in err
    assert f"in block 'ping' used at {position(spec, '{id: first')}" in err


IMPORTED_BAD = """\
kind: block
name: grouped
params:
  out: {type: int}
body:
  - {id: conv, op: conv2d, out: '${out}', kernel: 3, padding: 1, groups: 3}
  - {op: relu}
"""


def test_error_inside_an_imported_block_names_both_positions(write, capsys):
    block = write("lib/grouped.yaml", IMPORTED_BAD)
    spec = write(
        "m.yaml", HEAD + "imports: [lib/grouped.yaml]\nlayers:\n  - {op: relu}\n  - {id: g1, block: grouped, out: 16}\n"
    )
    err = assert_error(
        spec, None, "g1.conv (conv2d): groups=3 must divide both input channels 3 and output channels 16", capsys=capsys
    )
    assert err.startswith(position(block, "{id: conv") + ": ")
    assert f"in block 'grouped' used at {position(spec, '{id: g1')}" in err


def test_error_inside_a_block_on_TCC_BLOCK_PATH(write, capsys, monkeypatch):
    block = write("blocks/grouped.yaml", IMPORTED_BAD)
    monkeypatch.setenv("TCC_BLOCK_PATH", str(block.parent))
    spec = write("m.yaml", HEAD + "layers:\n  - {id: g1, block: grouped, out: 16}\n")
    err = assert_error(spec, None, "groups=3 must divide", capsys=capsys)
    assert err.startswith(position(block, "{id: conv") + ": ")
    assert f"in block 'grouped' used at {position(spec, '{id: g1')}" in err


def test_error_inside_a_zoo_block(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {id: sep, block: dw_separable, out: 4, kernel: 99}\n")
    err = assert_error(spec, None, "argument 'kernel': must be <= 64, got 99", capsys=capsys)
    zoo = REPO / "zoo" / "blocks" / "dw_separable.yaml"
    first = err.splitlines()[0]
    assert first.startswith(f"{zoo}:")
    line, col = (int(v) for v in first[len(str(zoo)) + 1 :].split(":")[:2])
    assert "${kernel}" in zoo.read_text().splitlines()[line - 1][col - 1 : col + 11]  # the `kernel:` value
    assert f"in block 'dw_separable' used at {position(spec, '{id: sep')}" in err


def test_syntax_error_in_an_imported_file(write, capsys):
    block = write("lib/broken.yaml", "kind: block\nname: broken\nbody:\n  - {op: relu\n")
    spec = write("m.yaml", HEAD + "imports: [lib/broken.yaml]\nlayers:\n  - {block: broken}\n")
    err = assert_error(spec, None, "invalid YAML", capsys=capsys)
    assert err.startswith(f"{block}:5:1: ")
    assert f"imported at {position(spec, 'lib/broken.yaml')}" in err


def test_missing_import(write, capsys):
    spec = write("m.yaml", HEAD + "imports: [nowhere.yaml]\nlayers:\n  - {op: relu}\n")
    assert_error(spec, "nowhere.yaml", "imported file not found: nowhere.yaml", capsys=capsys)


# ---------------------------------------------------------------------------------------------------- shapes
def test_add_of_16_and_32_channels(write, capsys):
    spec = write(
        "m.yaml",
        HEAD
        + """\
layers:
  - {id: a, op: conv2d, out: 16, kernel: 1}
  - {id: b, op: conv2d, out: 32, kernel: 1, in: input}
  - {id: sum, op: add, in: [a, b]}
""",
    )
    assert_error(
        spec,
        "{id: sum",
        "sum (add): shapes [[16, 8, 8], [32, 8, 8]] do not broadcast",
        "axis 1: 16 vs 32",
        "[inputs: a[16, 8, 8], b[32, 8, 8]]",
        capsys=capsys,
    )


def test_concat_spatial_mismatch(write, capsys):
    spec = write(
        "m.yaml",
        HEAD
        + """\
layers:
  - {id: a, op: conv2d, out: 16, kernel: 1}
  - {id: b, op: conv2d, out: 16, kernel: 3, in: input}
  - {id: cat, op: concat, in: [a, b]}
""",
    )
    assert_error(
        spec, "{id: cat", "concat along axis 1 needs equal other dimensions", "[[16, 8, 8], [16, 6, 6]]", capsys=capsys
    )


def test_residual_channel_mismatch(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {id: r, body: [{op: conv2d, out: 4, kernel: 1}], residual: true}\n")
    assert_error(spec, "{id: r", "r.residual (add)", "4 vs 3", capsys=capsys)


def test_groups_not_dividing_channels(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: conv2d, out: 16, kernel: 3, groups: 2}\n")
    assert_error(
        spec, "{op: conv2d", "groups=2 must divide both input channels 3 and output channels 16", capsys=capsys
    )


def test_conv_after_flatten(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: flatten}\n  - {op: conv2d, out: 4, kernel: 1}\n")
    assert_error(spec, "{op: conv2d", "conv2d expects a [C, H, W] input, got [192]", capsys=capsys)


@pytest.mark.parametrize(
    "layers, at, fragments",
    [
        # an argument an op does not take
        (
            "{op: gelu, approximation: tanh}",
            "approximation",
            ["unknown argument 'approximation' for op gelu", "did you mean 'approximate'?"],
        ),
        ("{op: gelu, approximate: exact}", "exact", ["layers.0.approximate: 'exact' is not one of ['none', 'tanh']"]),
        (
            "{op: layernorm, epsilon: 1.0e-6}",
            "epsilon",
            ["unknown argument 'epsilon' for op layernorm", "did you mean 'eps'?"],
        ),
        ("{op: prelu, channels: 3}", "channels", ["unknown argument 'channels' for op prelu", "num_parameters"]),
        ("{op: hardsigmoid, inplace: true}", "inplace", ["unknown argument 'inplace' for op hardsigmoid"]),
        ("{op: stochastic_depth, mode: row}", "{op: stochastic_depth", ["op stochastic_depth needs argument 'p'"]),
        (
            "{op: stochastic_depth, p: 0.1, mode: rows}",
            "rows",
            ["'rows' is not one of ['row', 'batch']", "did you mean 'row'?"],
        ),
        # a layernorm axis that does not exist, at the argument
        ("{op: flatten}\n  - {op: layernorm, axis: 2}", "2}", ["layernorm): axis 2 is out of range for a rank-2"]),
        ("{op: layernorm, axis: 0}", "0}", ["axis 0 is out of range", "batch axis 0 excluded"]),
        ("{op: layernorm, axis: 9}", "9}", ["layernorm argument 'axis'", "must be <= 8"]),
        (
            "{op: layernorm, axis: 5}",
            "5}",
            ["axis 5 is out of range for a rank-4 NCHW tensor", "[inputs: input[3, 8, 8]]"],
        ),
        # a prelu whose channel count does not match, at the argument
        ("{op: prelu, num_parameters: 4}", "4}", ["num_parameters=4 must be 1 (one slope) or the input's 3 channels"]),
        # linear over a [C, H, W] input needs the channel axis
        ("{op: linear, out: 4}", "{op: linear", ["linear expects a [F] input, got [3, 8, 8]", "`axis: 1`"]),
        (
            "{op: linear, out: 4, axis: 2}",
            "2}",
            [
                "linear applies over the channels of a [C, H, W] input (axis: 1) or over the last axis (axis: -1), "
                "not over axis 2"
            ],
        ),
    ],
)
def test_torchvision_ops_mistakes(write, capsys, layers, at, fragments):
    spec = write("m.yaml", HEAD + f"layers:\n  - {layers}\n")
    assert_error(spec, at, *fragments, capsys=capsys)


@pytest.mark.parametrize(
    "layers,at,fragments",
    [
        # a matmul whose shapes do not agree names both, at the node
        (
            "{id: t, op: slice, axis: 2, start: 1}\n  - {op: matmul, in: [input, t]}",
            "{op: matmul",
            [
                "matmul of [3, 8, 8] and [3, 7, 8]: a's last dimension 8 is not b's second-to-last dimension 7",
                "[inputs: input[3, 8, 8], t[3, 7, 8]]",
            ],
        ),
        (
            "{id: t, op: reshape, shape: [3, 4, 16]}\n  - {op: matmul, in: [input, t], transpose_b: true}",
            "{op: matmul",
            ["matmul of [3, 8, 8] and [3, 4, 16] (b transposed): a's last dimension 8 is not b's last dimension 16"],
        ),
        (
            "{id: t, op: reshape, shape: [24, 8]}\n  - {op: matmul, in: [input, t]}",
            "{op: matmul",
            ["matmul of [3, 8, 8] and [24, 8]: both need the same number of axes per sample"],
        ),
        # a reshape that does not keep the element count, at its shape
        ("{op: reshape, shape: [3, 8, 9]}", "[3, 8, 9]", ["cannot reshape [3, 8, 8] (192 elements) to [3, 8, 9] (216"]),
        (
            "{op: reshape, shape: [5, -1]}",
            "[5, -1]",
            ["cannot reshape [3, 8, 8] (192 elements) to [5, -1]: 192 is not a multiple of 5"],
        ),
        ("{op: reshape, shape: [-1, -1]}", "[-1, -1]", ["each dimension is positive, or one of them -1"]),
        # a permutation that is not one
        (
            "{op: permute, perm: [0, 1, 1, 2]}",
            "[0, 1, 1, 2]",
            ["perm [0, 1, 1, 2] is not a permutation of the axes 0..3"],
        ),
        ("{op: permute, perm: [0, 2, 1]}", "[0, 2, 1]", ["is not a permutation of the axes 0..3 of a rank-4 tensor"]),
        ("{op: permute, perm: [1, 0, 2, 3]}", "[1, 0, 2, 3]", ["the batch axis 0 stays first"]),
        ("{op: permute, perm: [-1, -3]}", "[-1, -3]", ["is not a permutation of the last 2 axes"]),
        ("{op: transpose, axes: [2, -2]}", "[2, -2]", ["transpose: axes [2, -2] name an axis twice"]),
        # positions and ranges
        ("{op: select, axis: 2, index: 8}", "8}", ["select index 8 is out of range for axis 2 of size 8"]),
        ("{op: slice, axis: 1, start: 3, end: 3}", "3, end", ["slice [3:3:1] of axis 1 (size 3) is empty"]),
        ("{op: mean, axes: [1, 2, 3]}", "[1, 2, 3]", ["leaves no per-sample axis"]),
        ("{op: roll, shifts: [1], axes: [2, 3]}", "[1]", ["roll needs one shift per axis"]),
        ("{op: flatten, start: 3, end: 2}", "3, end", ["the start comes after the end"]),
        ("{op: groupnorm, groups: 2}", "2}", ["groups=2 does not divide the 3 channels"]),
        # broadcasting never aligns the implicit batch axis with a sample axis
        (
            "{id: t, op: flatten, start: 2}\n  - {op: add, in: [input, t]}",
            "{op: add",
            ["have different numbers of axes per sample"],
        ),
    ],
)
def test_tensor_op_mistakes(write, capsys, layers, at, fragments):
    spec = write("m.yaml", HEAD + f"layers:\n  - {layers}\n")
    err = assert_error(spec, at, *fragments, capsys=capsys)
    assert err.count("\n") == 1  # one line


def test_a_billion_channels_is_refused_before_anything_is_allocated(write, capsys):
    spec = write(
        "m.yaml",
        HEAD.replace("width: 16", "width: 1000000000") + "layers:\n  - {op: conv2d, out: '${width}', kernel: 3}\n",
    )
    tracemalloc.start()
    try:
        assert_error(spec, "'${width}'", "conv2d argument 'out': must be <= 65536, got 1000000000", capsys=capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20
    spec = write("m.yaml", "kind: model\nname: x\ninput: {shape: [1000000000, 8, 8]}\nlayers: [{op: relu}]\n")
    assert_error(spec, "{shape", "1,000,000,000 channels/features is above the limit of 65,536", capsys=capsys)


def test_too_many_parameters(write, capsys):
    spec = write(
        "m.yaml",
        HEAD
        + """\
layers:
  - {op: conv2d, out: 60000, kernel: 3, padding: 1}
  - {id: huge, op: conv2d, out: 60000, kernel: 3, padding: 1}
""",
    )
    assert_error(spec, "{id: huge", "exceeds 2,000,000,000 parameters", capsys=capsys)


# ---------------------------------------------------------------------------------------------------- graph
def test_forward_reference(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {id: a, op: relu, in: b}\n  - {id: b, op: relu}\n")
    assert_error(spec, "b}", "input 'b' is defined later, at", position(spec, "b, op: relu"), "cycle", capsys=capsys)


def test_cycle_through_in(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {id: a, op: relu}\n  - {id: loop, op: add, in: [a, loop]}\n")
    assert_error(spec, "loop]", "'loop' is this node", "cannot take its own output as input (a cycle)", capsys=capsys)


def test_unknown_input_suggests(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {id: stem, op: relu}\n  - {op: relu, in: stme}\n")
    assert_error(spec, "stme", "unknown input 'stme'", "did you mean 'stem'?", capsys=capsys)


def test_multi_output_needs_a_pick(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {id: sp, op: split, parts: 3}\n  - {op: relu}\n")
    assert_error(spec, "{op: relu}", "the previous node has 3 outputs", "in: name.0", capsys=capsys)
    spec = write("m.yaml", HEAD + "layers:\n  - {id: sp, op: split, parts: 3}\n  - {op: relu, in: sp.3}\n")
    assert_error(spec, "sp.3", "'sp' has 3 output(s); 'sp.3' does not exist", capsys=capsys)


def test_repeat_zero_with_two_inputs(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {id: a, op: relu}\n  - {id: p, repeat: 0, op: add, in: [a, input]}\n")
    assert_error(spec, "{id: p", "no copy was made", "it has 2 inputs", capsys=capsys)


def test_expression_in_in(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {id: a, op: relu}\n  - {repeat: [a], var: r, op: relu, in: '${r}'}\n")
    assert_error(spec, "'${r}'", "`in` takes node names as written", capsys=capsys)


def test_duplicate_id(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {id: a, op: relu}\n  - {id: a, op: sigmoid}\n")
    assert_error(spec, "a, op: sigmoid", "duplicate id 'a'", capsys=capsys)


# ---------------------------------------------------------------------------------------------------- expressions
@pytest.mark.parametrize(
    "expr, message",
    [
        ("${width +}", "bad expression '${width +}': invalid syntax"),
        ("${widht * 2}", "unknown name 'widht'"),
        ("${width // 0}", "division by zero in '${width // 0}'"),
        ("${width % 0}", "division by zero"),
        ("${().__class__}", "'Attribute' is not allowed"),
        ("${open('x')}", "unknown function 'open'"),
        ("${2 ** 1000}", "exponent larger than 64"),
        ("${'a' * 100000}", "repeating strings or lists"),
        ("${round(width, -10**18)}", "round() digits must be an integer from -64 to 64"),  # would compute 10**(10**18)
        ("${'%099999999d' % 1}", "string formatting with '%' is not allowed"),  # would build a 100 MB string
        ("${(-8) ** 0.5}", "result is not a real number"),
    ],
)
def test_bad_expression(write, capsys, expr, message):
    spec = write("m.yaml", HEAD + f'layers:\n  - {{op: conv2d, kernel: 1, out: "{expr}"}}\n')
    assert_error(spec, f'"{expr}"', message, capsys=capsys)


def test_unknown_name_lists_known_names(write, capsys):
    spec = write("m.yaml", HEAD + 'layers:\n  - {op: conv2d, kernel: 1, out: "${widht}"}\n')
    assert_error(spec, '"${widht}"', "known: in_ch, in_h, in_shape, in_w, width", capsys=capsys)


# ---------------------------------------------------------------------------------------------------- --set, labels
def test_unknown_set_key(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: relu}\n")
    err = assert_error(
        spec,
        None,
        "--set widht: the model has no such parameter",
        "did you mean 'width'?",
        args=["--set", "widht=3"],
        capsys=capsys,
    )
    assert err.startswith("error: ")


def test_mistyped_set_value_names_the_declaration(write, capsys):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: conv2d, out: '${width}', kernel: 1}\n")
    assert_error(
        spec,
        None,
        "--set width='sixteen'",
        "expected an integer, got 'sixteen'",
        f"declared at {position(spec, '16')}",
        args=["--set", "width=sixteen"],
        capsys=capsys,
    )
    assert_error(spec, None, "--set KEY=VALUE expected", args=["--set", "width"], capsys=capsys)


def test_set_value_out_of_range(write, capsys):
    spec = write(
        "m.yaml",
        HEAD.replace("width: 16", "width: {type: int, default: 16, min: 1, max: 64}")
        + "layers:\n  - {op: conv2d, out: '${width}', kernel: 1}\n",
    )
    assert_error(spec, None, "--set width=0", "must be >= 1, got 0", args=["--set", "width=0"], capsys=capsys)


def test_labels_count_mismatch(write, capsys):
    spec = write(
        "m.yaml",
        HEAD
        + """\
labels: [benign, malignant, normal]
layers:
  - {op: global_avgpool}
  - {op: flatten}
  - {op: linear, out: 2}
""",
    )
    assert_error(spec, "[benign", "3 labels for a model output of shape [2]", capsys=capsys)


# ---------------------------------------------------------------------------------------------------- the executable
@pytest.mark.parametrize("case", ["syntax", "shape", "set"])
def test_the_tcc_executable_exits_2_without_traceback(write, case):
    if case == "syntax":
        spec, args, at = write("m.yaml", HEAD + "layers: [{op: relu]\n"), [], "]\n"
    elif case == "shape":
        spec = write("m.yaml", HEAD + "layers:\n  - {op: conv2d, out: 16, kernel: 3, groups: 2}\n")
        args, at = [], "{op: conv2d"
    else:
        spec, args, at = write("m.yaml", HEAD + "layers: [{op: relu}]\n"), ["--set", "width=[1, 2]"], None
    exe = Path(sys.executable).with_name("tcc")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tcc.cli.main"]

    def limit_memory():  # a bounded address space: a spec that allocates tensors would fail loudly
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    proc = subprocess.run(
        [*cmd, "check", str(spec), *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit_memory,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    if at is not None:
        assert proc.stderr.startswith(position(spec, at) + ": "), proc.stderr
    else:
        assert proc.stderr.startswith("error: --set width=[1, 2]: parameter 'width' of the model: expected an integer")


def test_spec_error_is_a_tcc_error_with_a_location(write):
    spec = write("m.yaml", HEAD + "layers:\n  - {op: conv2d, out: 4}\n")
    with pytest.raises(tcc.SpecError) as info:
        tcc.load_spec(spec)
    assert isinstance(info.value, tcc.TccError) and info.value.exit_code == 2
    assert (info.value.where.line, info.value.where.col) == (7, 5)
