"""The JSON Schema of spec documents, derived from the op table, and its check with positioned errors.

`spec/schema/tcc.schema.json` is this schema written out (`tools/gen_schema.py`); a test keeps the two equal.
"""

from __future__ import annotations

import functools

import jsonschema

from ..errors import SpecError, suggest
from ..ops import OPS
from .expand import COMMON_KEYS, NODE_KINDS
from .train_options import train_schema
from .yamlpos import PosDict, PosList

_EXPR = {"type": "string", "pattern": r"\$\{.*\}"}
_IDENT = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}
_NODE_ID = {"type": "string", "pattern": r"^([A-Za-z_][A-Za-z0-9_]*|[0-9]+)$"}  # digits: nn.Sequential-style


def _or_expr(schema: dict) -> dict:
    return {"anyOf": [schema, {"$ref": "#/$defs/expr"}]}


_INT = _or_expr({"type": "integer"})
_NUM = _or_expr({"type": "number"})
_BOOL = _or_expr({"type": "boolean"})
_PAIR = _or_expr({"anyOf": [{"type": "integer"}, {"type": "array", "items": _INT, "minItems": 2, "maxItems": 2}]})


def _arg_schema(arg) -> dict:
    k = arg.kind
    if k == "int":
        return _INT
    if k == "float":
        return _NUM
    if k == "bool":
        return _BOOL
    if k == "pair":
        return _PAIR
    if k == "float_pair":
        return _or_expr({"anyOf": [{"type": "number"}, {"type": "array", "items": _NUM, "minItems": 2, "maxItems": 2}]})
    if k == "padding":
        four = {"type": "array", "items": _INT, "minItems": 4, "maxItems": 4}
        return {"anyOf": [_PAIR, four, {"enum": ["same", "valid"]}]}
    if k == "ints":
        return _or_expr({"type": "array", "items": _INT, "minItems": 1})
    if k == "str":
        return _or_expr({"enum": list(arg.choices)})
    raise AssertionError(k)


_COMMON = {
    "id": {**_NODE_ID, "description": "node name (hierarchical names join ids with dots)"},
    "in": {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
        "description": "explicit input(s): earlier node ids or block inputs; name.k picks output k",
    },
    "when": {**_BOOL, "description": "skip the node (pass its input through) when false"},
    "repeat": {
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "array"}, {"$ref": "#/$defs/expr"}],
        "description": "repeat the node: a count or a list of items",
    },
    "var": {**_IDENT, "description": "the repeat variable (default i)"},
    "name": {
        "type": "string",
        "description": "name template of repeated copies; without it copies nest under the id: id.0, id.1, ...",
    },
    "connect": {"enum": ["chain", "dense", "parallel"], "description": "how repeated copies connect"},
    "merge": {"enum": ["concat", "add"], "description": "how branches / parallel copies are merged"},
    "residual": {
        "anyOf": [{"type": "boolean"}, {"$ref": "#/$defs/expr"}, {"$ref": "#/$defs/body"}],
        "description": "add the input to the output; a list of nodes is the shortcut path",
    },
    "side": {"type": "boolean", "description": "hang off the chain (auxiliary head)"},
    "output": {"type": "string", "description": "name of an auxiliary (training-only) output"},
    "order": {
        "enum": ["first"],
        "description": "first: the node's tensors come before the rest of its body's in "
        "the parameter order (a module's own nn.Parameter, e.g. ConvNeXt's "
        "layer_scale, precedes its submodules' in PyTorch's state_dict)",
    },
}
assert set(_COMMON) == set(COMMON_KEYS)


def _node_schema() -> dict:
    kinds = {
        "op": {"anyOf": [{"enum": sorted(OPS)}, {"$ref": "#/$defs/expr"}], "description": "an op of the op table"},
        "block": {"type": "string", "description": "a block from zoo/, imports or blocks:"},
        "body": {"$ref": "#/$defs/body"},
        "branches": {"type": "array", "items": {"$ref": "#/$defs/node"}, "minItems": 1},
    }
    # The rules only list the keys allowed beside each kind (`true`: the value is checked once, by the node's
    # own `properties`). Repeating the value schemas here would check every nested body twice per level, which
    # is exponential in the nesting depth.
    common = dict.fromkeys(_COMMON, True)
    rules = []
    for name, opdef in sorted(OPS.items()):
        props = {**common, "op": {"const": name}, **{a.name: _arg_schema(a) for a in opdef.args}}
        rules.append(
            {
                "if": {"properties": {"op": {"const": name}}, "required": ["op"]},
                "then": {"properties": props, "additionalProperties": False},
            }
        )
    for kind in ("body", "branches"):
        rules.append(
            {
                "if": {"required": [kind]},
                "then": {"properties": {**common, kind: True}, "additionalProperties": False},
            }
        )
    return {
        "type": "object",
        "properties": {**_COMMON, **kinds},
        "oneOf": [{"required": [k]} for k in kinds],
        "allOf": rules,
    }


_PARAM = {
    "anyOf": [
        {"type": ["integer", "number", "boolean", "string", "array"]},
        {
            "type": "object",
            "properties": {
                "type": {"enum": ["int", "float", "bool", "str", "list", "any"]},
                "default": {},
                "min": {"type": "number"},
                "max": {"type": "number"},
                "choices": {"type": "array"},
                "doc": {"type": "string"},
            },
            "additionalProperties": False,
        },
    ]
}

_BLOCK_PROPS = {
    "name": _IDENT,
    "doc": {"type": "string"},
    "params": {"type": "object", "additionalProperties": {"$ref": "#/$defs/param"}},
    "inputs": {"type": "array", "items": _IDENT, "minItems": 1},
    "body": {"$ref": "#/$defs/body"},
    "outputs": {"type": "array", "items": {"type": "string"}, "minItems": 1},
}

_PREPROCESS = {
    "type": "object",
    "properties": {
        "resize": {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"$ref": "#/$defs/expr"},
                {"type": "array", "items": _or_expr({"type": "integer", "minimum": 1}), "minItems": 2, "maxItems": 2},
            ]
        },
        "interpolation": {"enum": ["nearest", "bilinear", "bicubic", "lanczos"]},
        "color": {"enum": ["RGB", "BGR", "L"]},
        "scale": {"type": "number"},
        "mean": {"type": "array", "items": {"type": "number"}, "minItems": 1},
        "std": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1},
    },
    "additionalProperties": False,
}


_CHECKPOINT = {
    "type": "object",
    "description": "a checkpoint layout this spec is known to match: a plain --weights tries the spec's names, "
    "then each layout in order",
    "properties": {
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$"},
        "doc": {"type": "string", "description": "where such checkpoints come from"},
        "match": {
            "enum": ["by_name", "by_order"],
            "description": "by_name: keys (through key_map) equal the spec's names; by_order: the tensors in "
            "the spec's parameter order, shapes checked",
        },
        "key_map": {
            "anyOf": [
                {"type": "string", "description": "a YAML/JSON key map file, relative to the spec"},
                {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "minProperties": 1,
                    "description": "checkpoint key (exact, 'prefix.' or a pattern with *) -> spec name",
                },
            ]
        },
        "params": {
            "type": "object",
            "description": "model parameters read from the checkpoint: the size of `dim` of the checkpoint tensor "
            "that imports into the spec tensor `tensor` (e.g. num_classes from the classifier), or, for a boolean "
            "parameter, whether the checkpoint has the key `present` (e.g. an auxiliary head's weights)",
            "additionalProperties": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"tensor": {"type": "string"}, "dim": {"type": "integer", "minimum": 0}},
                        "required": ["tensor", "dim"],
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "properties": {"present": {"type": "string", "minLength": 1}},
                        "required": ["present"],
                        "additionalProperties": False,
                    },
                ]
            },
        },
    },
    "required": ["name", "match"],
    "additionalProperties": False,
}


# the method and post-training steps a model's INT8 calibration runs by default (tcc.quant.prepare.method_for,
# tcc.quant.table.steps.Steps); a command-line flag (--method, --bias-correction / --no-bias-correction, ...)
# overrides it
_CALIBRATE = {
    "type": "object",
    "description": "INT8 calibration defaults for this model: the method and which post-training steps `tcc "
    "calibrate` and `tcc build --data` run unless their flags say otherwise (tcc's own default: the method and bias "
    "correction chosen per model)",
    "properties": {
        "doc": {"type": "string", "description": "why (what was measured)"},
        "method": {
            "enum": ["auto", "kl+cos", "minmax", "percentile", "kl"],
            "description": "activation method (`--method`): auto chooses kl+cos, minmax or percentile per model on "
            "held-back calibration samples",
        },
        "equalization": {"type": "boolean"},
        "bias_correction": {"type": "boolean"},
        "rounding": {"type": "boolean"},
        "asymmetric": {
            "type": "boolean",
            "description": "signed activations on u8 grids over their clipped range (`--asymmetric`; rules that "
            "take any zero point: ort)",
        },
        "activation_bits": {
            "enum": [8, 16],
            "description": "activation width (`--activation-bits`): 16 for int16 "
            "activations with 8-bit weights, TVM targets and TFLite (its 16x8 mode)",
        },
    },
    "additionalProperties": False,
}


@functools.cache
def build_schema() -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://tcc.invalid/spec/schema/tcc.schema.json",
        "title": "tcc spec: a model or a block",
        "description": "Generated from tcc's op table (tools/gen_schema.py). See spec/LANGUAGE.md.",
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": ["model", "block"]}},
        "allOf": [
            {"if": {"properties": {"kind": {"const": "model"}}}, "then": {"$ref": "#/$defs/model"}},
            {"if": {"properties": {"kind": {"const": "block"}}}, "then": {"$ref": "#/$defs/block"}},
        ],
        "$defs": {
            "expr": _EXPR,
            "param": _PARAM,
            "node": _node_schema(),
            "train": train_schema(),
            "checkpoint": _CHECKPOINT,
            "body": {"type": "array", "items": {"$ref": "#/$defs/node"}, "minItems": 1},
            "block": {
                "type": "object",
                "properties": {"kind": {"const": "block"}, **_BLOCK_PROPS},
                "required": ["kind", "name", "body"],
                "additionalProperties": False,
            },
            "local_block": {
                "type": "object",
                "properties": {k: v for k, v in _BLOCK_PROPS.items() if k != "name"},
                "required": ["body"],
                "additionalProperties": False,
            },
            "model": {
                "type": "object",
                "properties": {
                    "kind": {"const": "model"},
                    "name": _IDENT,
                    "doc": {"type": "string"},
                    "params": {"type": "object", "additionalProperties": {"$ref": "#/$defs/param"}},
                    "input": {
                        "type": "object",
                        "properties": {
                            "shape": {
                                "type": "array",
                                "items": _or_expr({"type": "integer", "minimum": 1}),
                                "minItems": 3,
                                "maxItems": 3,
                                "description": "C, H, W; expressions over the model's params allowed",
                            },
                            "layout": {"const": "NCHW"},
                            "preprocess": _PREPROCESS,
                        },
                        "required": ["shape"],
                        "additionalProperties": False,
                    },
                    "labels": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "imports": {"type": "array", "items": {"type": "string"}},
                    "blocks": {"type": "object", "additionalProperties": {"$ref": "#/$defs/local_block"}},
                    "layers": {"$ref": "#/$defs/body"},
                    "train": {"$ref": "#/$defs/train"},
                    "calibrate": _CALIBRATE,
                    "checkpoints": {"type": "array", "items": {"$ref": "#/$defs/checkpoint"}, "minItems": 1},
                },
                "required": ["kind", "name", "input", "layers"],
                "additionalProperties": False,
            },
        },
    }


@functools.cache
def _validator():
    return jsonschema.Draft202012Validator(build_schema())


@functools.cache
def _train_validator():
    return jsonschema.Draft202012Validator(train_schema())


def validate(doc) -> None:
    """Check a document against the schema; the first error becomes a SpecError at its position."""
    _raise_first(_validator().iter_errors(doc), doc)


def validate_train(doc) -> None:
    """Check the options of `tcc train` (a `--config` file: a spec's `train:` section on its own)."""
    _raise_first(_train_validator().iter_errors(doc), doc)


def _raise_first(errors, doc) -> None:
    errors = list(errors)
    if errors:
        raise _to_spec_error(min(errors, key=_rank), doc)


def _rank(err):
    # Prefer the most specific error: deepest path, then concrete validators over combinators, then an unknown key
    # over a missing one (`layer:` for `layers:` is reported as the misspelling, with a suggestion).
    combinator = err.validator in ("anyOf", "oneOf", "allOf", "if", "then")
    return (-len(err.absolute_path), combinator, err.validator == "required", str(err.message))


def _fitting_branch(err: jsonschema.ValidationError) -> jsonschema.ValidationError | None:
    """The most specific error of the one anyOf/oneOf branch whose type fits the value, if exactly one fits.

    `choices: 3` in a parameter declaration fails both forms of a parameter; only the mapping form fits a mapping,
    so its error (`choices` is not a list) is the useful one.
    """
    branches: dict = {}
    for e in err.context:
        branches.setdefault(next(iter(e.relative_schema_path), None), []).append(e)
    mismatch = ("type", "enum", "const", "pattern")
    fitting = [
        errs for errs in branches.values() if not any(e.validator in mismatch and not e.relative_path for e in errs)
    ]
    return min(fitting[0], key=_rank) if len(fitting) == 1 else None


def _locate(doc, path):
    """The container holding the value at `path`, and the last key."""
    parent, key = None, None
    node = doc
    for key in path:
        parent, node = node, node[key]
    return parent, key, node


def _where(doc, path):
    parent, key, node = _locate(doc, path)
    if isinstance(node, (PosDict, PosList)):
        return node.pos
    if isinstance(parent, (PosDict, PosList)):
        return parent.where(key)
    return getattr(doc, "pos", None)


def _to_spec_error(err, doc) -> SpecError:
    path = list(err.absolute_path)
    _, _, node = _locate(doc, path)
    where = _where(doc, path)
    at = ".".join(str(p) for p in path) or "document"
    v = err.validator
    kinds = [k for k in NODE_KINDS if isinstance(node, PosDict) and k in node]
    if v == "additionalProperties" and len(kinds) > 1:  # e.g. `body` beside `op`: not an unknown argument
        return SpecError(f"a node needs exactly one of {', '.join(NODE_KINDS)} (has {', '.join(kinds)})", where)
    if v == "additionalProperties" and isinstance(node, PosDict):
        allowed = list(err.schema.get("properties", {}))
        extra = [k for k in node if k not in allowed]
        key = extra[0] if extra else None
        hint = suggest(key, allowed) if key is not None else ""
        op = node.get("op")
        if isinstance(op, str) and op in OPS and not any(f"'{k}'" in hint for k in _COMMON):
            args = [a.name for a in OPS[op].args]
            return SpecError(
                f"unknown argument '{key}' for op {op}{hint} (arguments: {', '.join(args) or 'none'})",
                node.key_pos.get(key, where),
            )
        return SpecError(
            f"unknown key '{key}'{hint} (allowed here: {', '.join(allowed)})", node.key_pos.get(key, where)
        )
    if path and path[-1] == "op" and isinstance(node, str) and v in ("anyOf", "enum"):
        return SpecError(f"unknown op {node!r}{suggest(node, OPS)} (ops: {', '.join(sorted(OPS))})", where)
    if v == "required":
        return SpecError(f"{at}: {err.message}", where)
    if v == "oneOf" and isinstance(node, PosDict) and "branches" in err.schema.get("properties", {}):
        return SpecError("a node needs exactly one of op, block, body, branches", where)
    if v in ("anyOf", "oneOf"):
        inner = _fitting_branch(err)
        if inner is None and isinstance(node, str):  # a word that is no expression: the choices it missed
            inner = next((e for e in err.context if e.validator == "enum" and not e.relative_path), None)
        if inner is not None:
            return _to_spec_error(inner, doc)
        return SpecError(f"{at}: value {_short(node)} is not of an allowed form", where)
    if v == "enum":
        hint = suggest(node, err.validator_value) if isinstance(node, str) else ""
        return SpecError(f"{at}: {_short(node)} is not one of {err.validator_value}{hint}", where)
    if v == "const":
        return SpecError(f"{at}: expected {err.validator_value!r}, got {_short(node)}", where)
    return SpecError(f"{at}: {err.message}", where)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."
