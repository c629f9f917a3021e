"""Property test: mutated specs give a clean `tcc.SpecError` (with a position) or a model, never another exception.

Valid small specs are mutated structurally (delete keys, change values to other types, random strings, huge or
negative numbers, random expressions, unknown keys, broken `in:` references, moved nodes), as text (random
characters inserted, deleted or replaced, including YAML's special ones), and through `--set`; random node lists
are also generated from the language's grammar, and those that load are run in PyTorch, whose output shapes must
be the IR's. Derandomized and bounded, so the file runs in well under a minute and the same examples every time.
"""

from __future__ import annotations

import copy
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tcc

SETTINGS = dict(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

MODEL = """\
kind: model
name: fuzz
params:
  width: {type: int, default: 8, min: 1, max: 64}
  depth: 2
  act: {type: str, default: relu, choices: [relu, relu6]}
  aux: true
input:
  shape: [3, 16, 16]
  preprocess: {resize: [16, 16], mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
labels: [a, b, c]
blocks:
  unit:
    params:
      out: {type: int, min: 1}
      k: {type: int, default: 3, choices: [1, 3]}
    body:
      - {id: dw, op: conv2d, out: "${in_ch}", kernel: "${k}", padding: "${k // 2}", groups: "${in_ch}", bias: false}
      - {id: bn, op: batchnorm}
      - {id: pw, op: conv2d, out: "${out}", kernel: 1}
      - {op: "${'relu6' if out > 8 else 'relu'}"}
layers:
  - {id: stem, op: conv2d, out: "${width}", kernel: 3, stride: 2, padding: 1}
  - {id: dense, repeat: "${depth}", connect: dense, block: unit, out: "${width // 2}"}
  - {id: sp, op: split, parts: 2}
  - {id: left, op: conv2d, in: sp.0, out: "${make_divisible(width * 0.75, 4)}", kernel: 1}
  - {id: cat, op: concat, in: [left, sp.1]}
  - {id: br, branches: [{op: relu}, {body: [{op: sigmoid}, {op: identity}]}], merge: add}
  - id: down
    body: [{id: conv, op: conv2d, out: 16, kernel: 3, stride: 2, padding: 1}, {op: "${act}"}]
    residual: [{id: proj, op: conv2d, out: 16, kernel: 1, stride: 2}]
  - {id: res, body: [{op: conv2d, out: 16, kernel: 3, padding: 1}], residual: "${in_ch == 16}"}
  - id: head_aux
    side: true
    output: aux1
    when: "${aux}"
    body: [{op: global_avgpool}, {op: flatten}, {op: linear, out: 3}]
  - {repeat: [1, 2], var: s, name: "pool${s}", op: maxpool, kernel: 2, stride: 1, ceil_mode: true}
  - {op: channel_shuffle, groups: 2}
  - {op: avgpool, kernel: 3, stride: 1, padding: 1, count_include_pad: false}
  - {op: adaptive_avgpool, size: [2, 2]}
  - {op: flatten}
  - {op: dropout, p: 0.1}
  - {id: fc, op: linear, out: 3}
  - {op: softmax, axis: 1}
"""

ZOO_MODEL = """\
kind: model
name: zoo_fuzz
params: {num_classes: 2}
input: {shape: [3, 16, 16]}
layers:
  - {id: stem, op: conv2d, out: 8, kernel: 3, padding: 1}
  - {id: sep, block: dw_separable, out: 16, stride: 2}
  - {id: se, block: squeeze_excite, squeeze: 4}
  - {op: global_avgpool}
  - {op: flatten}
  - {id: fc, op: linear, out: "${num_classes}"}
"""

BLOCK_FILE = """\
kind: block
name: pair
params:
  c: {type: int, default: 4, min: 1}
  mode: {type: str, default: relu, choices: [relu, sigmoid]}
inputs: [x]
body:
  - {id: a, op: conv2d, out: "${c}", kernel: 1}
  - {id: b, op: conv2d, out: "${c}", kernel: 3, padding: 1, in: x}
  - {id: act, op: "${mode}"}
  - {id: m, branches: [{op: identity, in: a}, {op: identity, in: b}], merge: add}
outputs: [m]
"""

IMPORT_MODEL = """\
kind: model
name: imp
imports: [pair.yaml]
input: {shape: [2, 8, 8]}
layers:
  - {id: p1, block: pair}
  - {id: p2, block: pair, c: 6, mode: sigmoid}
  - {op: "${'relu'}"}
  - {op: global_avgpool}
"""

SEEDS = {"model": MODEL, "zoo": ZOO_MODEL, "import": IMPORT_MODEL, "block": BLOCK_FILE}


def test_seeds_are_valid(tmp_path):
    for name in SEEDS:
        assert _load(tmp_path, name, SEEDS[name]) is not None


# ---------------------------------------------------------------------------------------------------- strategies
NAMES = ["width", "depth", "act", "in_ch", "in_h", "in_w", "i", "index", "out", "k", "c", "s", "nope", "x"]
FUNCS = ["min", "max", "abs", "int", "float", "round", "ceil", "floor", "len", "make_divisible", "sum", "eval", "open"]
OPS = ["+", "-", "*", "/", "//", "%", "**", "<", ">=", "==", "!=", " and ", " or ", " in ", "<<", "@", "."]


def expressions():
    atom = st.one_of(
        st.integers(-3, 10**20).map(str),
        st.sampled_from(["0", "0.5", "1e308", "-1", "True", "None", "'relu'", "'%0999d'", "-10**18", "2**63"]),
        st.sampled_from(NAMES),
        st.text("()[]{}+-*/%<>=!&|^~,.:;'\"$ abcxyz0123456789_", max_size=8),
    )

    def extend(inner):
        return st.one_of(
            st.tuples(inner, st.sampled_from(OPS), inner).map(lambda t: f"{t[0]}{t[1]}{t[2]}"),
            inner.map(lambda e: f"({e})"),
            inner.map(lambda e: f"-{e}"),
            inner.map(lambda e: f"not {e}"),
            st.tuples(st.sampled_from(FUNCS), st.lists(inner, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
            st.lists(inner, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
            st.tuples(inner, inner, inner).map(lambda t: f"{t[0]} if {t[1]} else {t[2]}"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
            st.tuples(inner, inner, inner).map(lambda t: f"{t[0]}[{t[1]}:{t[2]}]"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]}[::{t[1]}]"),
        )

    return st.recursive(atom, extend, max_leaves=8).map(lambda e: "${" + e + "}")


def scalars():
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-2, 70),
        st.integers(-(10**30), 10**30),
        st.sampled_from([0, -1, 10**9, 2**63, 65536, 65537]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.5, -0.0, 1e-300, 1e300]),
        st.text(max_size=12),
        st.sampled_from(
            [
                "relu",
                "conv2d",
                "same",
                "valid",
                "input",
                "sp.1",
                "sp.9",
                "x.y",
                "dw_separable",
                "pair",
                "stem",
                "concat",
                "add",
                "parallel",
                "",
            ]
        ),
        expressions(),
    )


def values():
    return st.recursive(
        scalars(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.sampled_from(["op", "id", "in", "body", "out", "k", "zz"]), inner, max_size=3),
        ),
        max_leaves=6,
    )


KEYS = [
    "op",
    "block",
    "body",
    "branches",
    "id",
    "in",
    "when",
    "repeat",
    "var",
    "name",
    "connect",
    "merge",
    "residual",
    "side",
    "output",
    "order",
    "checkpoints",
    "match",
    "key_map",
    "tensor",
    "dim",
    "out",
    "kernel",
    "stride",
    "padding",
    "groups",
    "parts",
    "sizes",
    "axis",
    "kind",
    "params",
    "input",
    "layers",
    "imports",
    "labels",
    "default",
    "type",
    "min",
    "max",
    "choices",
    "shape",
    "preprocess",
    "inputs",
    "outputs",
    "bogus",
    "Op",
    "ouT",
    "",
]


def _paths(node, prefix=()):
    """Every (container path, key/index) in a parsed document."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((prefix, k))
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((prefix, i))
            out += _paths(v, prefix + (i,))
    return out


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def _mutate(doc, data):
    """One random structural edit, in place."""
    paths = _paths(doc)
    parent_path, key = data.draw(st.sampled_from(paths))
    parent = _get(doc, parent_path)
    what = data.draw(st.sampled_from(["delete", "replace", "replace", "expr", "insert", "ref", "dup", "swap"]))
    if what == "delete":
        del parent[key]
    elif what == "replace":
        parent[key] = data.draw(values())
    elif what == "expr":
        parent[key] = data.draw(expressions())
    elif what == "insert":
        target = parent if isinstance(parent, dict) else parent[key]
        if isinstance(target, dict):
            target[data.draw(st.sampled_from(KEYS))] = data.draw(values())
        elif isinstance(target, list):
            target.insert(data.draw(st.integers(0, len(target))), data.draw(values()))
    elif what == "ref":  # break or redirect an `in:` reference (or add one)
        node = parent if isinstance(parent, dict) else parent[key]
        if isinstance(node, dict):
            node["in"] = data.draw(
                st.one_of(
                    st.sampled_from(
                        [
                            "stem",
                            "sp.0",
                            "sp.1",
                            "sp.2",
                            "sp",
                            "input",
                            "fc",
                            "x",
                            "dense",
                            "down",
                            "a",
                            "missing",
                            "stem.0",
                            "br.add",
                            "down.proj",
                            "",
                        ]
                    ),
                    st.lists(
                        st.sampled_from(["stem", "sp.0", "sp.1", "left", "fc", "x", "nope", "a", "b"]), max_size=3
                    ),
                )
            )
    elif what == "dup" and isinstance(parent, list):  # a node twice (duplicate ids) or moved (forward references)
        parent.insert(data.draw(st.integers(0, len(parent))), copy.deepcopy(parent[key]))
    elif what == "swap" and isinstance(parent, list) and len(parent) > 1:
        j = data.draw(st.integers(0, len(parent) - 1))
        parent[key], parent[j] = parent[j], parent[key]


# ---------------------------------------------------------------------------------------------------- the property
def _load(tmp_path, seed: str, text: str, overrides=None):
    """Write `text` as the seed's document (with its companions) and load the model it belongs to."""
    (tmp_path / "pair.yaml").write_text(BLOCK_FILE if seed != "block" else text, encoding="utf-8")
    model_text = {"block": IMPORT_MODEL}.get(seed, text)
    path = tmp_path / "m.yaml"
    path.write_text(model_text, encoding="utf-8")
    model = tcc.load_spec(path, overrides)
    model.graph.summary()  # every node's shape, parameters and MACs are computable
    return model


def _clean(tmp_path, seed, text, overrides=None):
    try:
        _load(tmp_path, seed, text, overrides)
    except tcc.SpecError as e:
        message = str(e)
        assert message and "Traceback" not in message
        if overrides is None:  # a spec mistake points into a file
            assert e.where is not None and e.where.line >= 1 and e.where.col >= 1, message
        return False
    return True


def _dump(doc) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=10_000)


@settings(**SETTINGS)
@given(data=st.data())
def test_structural_mutations_give_clean_errors(tmp_path_factory, data):
    seed = data.draw(st.sampled_from(sorted(SEEDS)))
    doc = yaml.safe_load(SEEDS[seed])
    for _ in range(data.draw(st.integers(1, 4))):
        if isinstance(doc, (dict, list)) and _paths(doc):
            _mutate(doc, data)
    _clean(tmp_path_factory.mktemp("s"), seed, _dump(doc))


SPECIAL = "{}[]:,&*!|>-#%@`'\"?\t\n \\$0123456789.eE+xyz"


@settings(**SETTINGS)
@given(data=st.data())
def test_text_corruption_gives_clean_errors(tmp_path_factory, data):
    seed = data.draw(st.sampled_from(sorted(SEEDS)))
    text = SEEDS[seed]
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(text)))
        how = data.draw(st.sampled_from(["insert", "delete", "replace", "cut"]))
        chars = data.draw(st.one_of(st.text(SPECIAL, min_size=1, max_size=3), st.text(min_size=1, max_size=2)))
        if how == "insert":
            text = text[:at] + chars + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + len(chars) :]
        elif how == "replace":
            text = text[:at] + chars + text[at + len(chars) :]
        else:
            text = text[:at]
    _clean(tmp_path_factory.mktemp("t"), seed, text)


@settings(**{**SETTINGS, "max_examples": 60})
@given(
    pairs=st.lists(
        st.one_of(
            st.tuples(
                st.sampled_from(["width", "depth", "act", "aux", "nope", "", "width "]),
                st.one_of(
                    st.text(max_size=10),
                    st.sampled_from(
                        [
                            "0",
                            "-1",
                            "1e9",
                            "64",
                            "65",
                            "[1, 2]",
                            "{a: 1}",
                            "!!python/object:os.system x",
                            "&a [*a]",
                            "null",
                            "relu6",
                            ".nan",
                            "true",
                            "8.0",
                            "8.5",
                            "[[1]]",
                        ]
                    ),
                ),
            ).map(lambda kv: f"{kv[0]}={kv[1]}"),
            st.text(max_size=12),
        ),
        max_size=3,
    )
)
def test_set_overrides_give_clean_errors(tmp_path_factory, pairs):
    tmp = tmp_path_factory.mktemp("o")
    try:
        overrides = tcc.parse_overrides(pairs)
    except tcc.SpecError as e:
        assert str(e)
        return
    _clean(tmp, "model", MODEL, overrides)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400, -(10**400), 2**63, 1e308])
@pytest.mark.parametrize("key", ["out", "kernel", "stride", "p"])
def test_extreme_numbers(tmp_path, key, value):
    doc = yaml.safe_load(MODEL)
    doc["layers"][-3][key] = value  # the dropout node: `p` is its argument, the others are not
    _clean(tmp_path, "model", _dump(doc))
    doc = yaml.safe_load(MODEL)
    doc["params"]["width"]["default"] = value
    _clean(tmp_path, "model", _dump(doc))


# ---------------------------------------------------------------------------------------------------- generated
OP_ARGS = {
    "conv2d": {
        "out": [1, 2, 4, "${in_ch}", "${in_ch * 2}"],
        "kernel": [1, 3, [1, 3]],
        "stride": [1, 2],
        "padding": [0, 1, "same", "valid", [0, 1, 1, 0]],
        "groups": [1, 2, "${in_ch}"],
        "bias": [True, False],
        "dilation": [1, 2],
    },
    "batchnorm": {},
    "relu": {},
    "sigmoid": {},
    "identity": {},
    "add": {},
    "mul": {},
    "concat": {"axis": [1, 2, -1]},
    "channel_shuffle": {"groups": [1, 2]},
    "split": {"parts": [1, 2], "sizes": [[1, 1], [2, 2]]},
    "maxpool": {"kernel": [1, 2, 3], "stride": [1, 2], "padding": [0, 1], "ceil_mode": [True, False]},
    "avgpool": {"kernel": [1, 2, 3], "ceil_mode": [True, False], "count_include_pad": [True, False]},
    "global_avgpool": {},
    "adaptive_avgpool": {"size": [1, 2, [2, 1]]},
    "flatten": {},
    "linear": {"out": [1, 3]},
    "dropout": {"p": [0.0, 0.5]},
    "softmax": {"axis": [1, -1]},
}
GEN_BLOCKS = {
    "unit": {"params": {"c": {"type": "int", "default": 2}}, "body": [{"op": "conv2d", "out": "${c}", "kernel": 1}]},
    "two": {"inputs": ["p", "q"], "body": [{"id": "s", "op": "add", "in": ["p", "q"]}]},
    "multi": {"body": [{"id": "s", "op": "split", "parts": 2}], "outputs": ["s.0", "s.1"]},
}
IDS = ["a", "b", "sp", "x", "0"]
REFS = IDS + ["sp.0", "sp.1", "sp.2", "input", "x.1"]


@st.composite
def gen_node(draw, depth=0):
    kind = draw(st.sampled_from(["op"] * 4 + (["body", "branches", "block"] if depth < 3 else ["block"])))
    pick = lambda options: draw(st.sampled_from(options))  # noqa: E731
    if kind == "op":
        n = {"op": pick(sorted(OP_ARGS))}
        n.update({k: pick(v) for k, v in OP_ARGS[n["op"]].items() if draw(st.booleans())})
    elif kind in ("body", "branches"):
        n = {kind: draw(st.lists(gen_node(depth + 1), min_size=1, max_size=3))}
    else:
        n = {"block": pick(["unit", "two", "multi", "dw_separable"])}
        n.update({"unit": {"c": 4}, "dw_separable": {"out": 4}}.get(n["block"], {}))
    chance = lambda k: draw(st.integers(0, k)) == 0  # noqa: E731
    if chance(1):
        n["id"] = pick(IDS)
    if chance(3):
        n["in"] = draw(st.one_of(st.sampled_from(REFS), st.lists(st.sampled_from(REFS), min_size=1, max_size=3)))
    if chance(4):
        n["when"] = pick([True, False, "${in_ch > 2}"])
    if chance(3):
        n["repeat"] = pick([0, 1, 2, [1, 2], "${depth}"])
        n.update(
            {
                k: pick(v)
                for k, v in [
                    ("connect", ["chain", "dense", "parallel"]),
                    ("name", ["r${i}", "q"]),
                    ("merge", ["add", "concat"]),
                ]
                if chance(1)
            }
        )
    if chance(4):
        n["residual"] = draw(
            st.one_of(st.sampled_from([True, False, "${in_ch == 4}"]), st.lists(gen_node(3), min_size=1, max_size=2))
        )
    if chance(6):
        n["side"] = True
    if chance(6):
        n["output"] = pick(["o1", "o2"])
    return n


@settings(**{**SETTINGS, "max_examples": 100})
@given(layers=st.lists(gen_node(), min_size=1, max_size=6), shape=st.sampled_from([[4, 8, 8], [1, 5, 7], [2, 1, 1]]))
def test_generated_specs_load_cleanly_and_run_with_the_shapes_of_the_ir(tmp_path_factory, layers, shape):
    import torch

    doc = {
        "kind": "model",
        "name": "gen",
        "params": {"depth": 2},
        "input": {"shape": shape},
        "blocks": GEN_BLOCKS,
        "layers": layers,
    }
    path = tmp_path_factory.mktemp("g") / "m.yaml"
    path.write_text(_dump(doc), encoding="utf-8")
    try:
        model = tcc.load_spec(path)
    except tcc.SpecError as e:
        assert e.where is not None, str(e)
        return
    g = model.graph
    module = tcc.to_torch(g)
    with torch.no_grad():
        assert tuple(module(torch.randn(2, *shape)).shape) == (2, *g.shape(g.output))
        if g.aux_outputs:
            module.train()
            _, aux = module(torch.randn(2, *shape))
            assert {k: tuple(v.shape[1:]) for k, v in aux.items()} == {k: g.shape(r) for k, r in g.aux_outputs.items()}
