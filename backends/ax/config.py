"""The toolchains' config files: written from data, parsed back, validated before a kit is finished.

Pulsar v1 (AX620A/U) reads a proto3 text-format `config.prototxt`; its .proto is not public, so the file is written
and read here by a small text-format codec (`dump_prototxt` / `parse_prototxt`) and checked structurally against
the fields and enum values the docs give (PULSAR_FIELDS). Pulsar2 (AX620E, AX650) reads JSON checked against a JSON
Schema written from the `BuildConfig` proto in its docs (spec/schema/pulsar2_config.schema.json). Both are
round-tripped: what is parsed back equals what was written.

Sources: [pulsar-docs-en] source/test_configs/config.rst and [pulsar-docs] source/user_guides_quick/quick_start.rst
(the prototxt fields, their enums and the complete example); [pulsar2-docs-en] source/user_guides_config/config.md
(BuildConfig), [pulsar2-docs] the same file (adds KL to QuantMethod).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tcc.errors import BuildError
from tcc.resources import schema_path

SCHEMA = schema_path("pulsar2_config")


# ---------------------------------------------------------------------------------------------------- prototxt
@dataclass(frozen=True)
class Enum:
    """A bare enum token in text format (written without quotes)."""

    name: str


Message = list  # [(field, value)], fields repeat for repeated fields; a value is a scalar, Enum, list or Message


def _scalar(v) -> str:
    if isinstance(v, Enum):
        return v.name
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a double-quoted string with the same escapes as text format's
    if isinstance(v, float):
        return repr(v)
    return str(int(v))


def dump_prototxt(msg: Message, indent: int = 0) -> str:
    pad = "  " * indent
    out = []
    for key, value in msg:
        if isinstance(value, list) and value and isinstance(value[0], tuple):
            out.append(f"{pad}{key} {{")
            out.append(dump_prototxt(value, indent + 1))
            out.append(f"{pad}}}")
        elif isinstance(value, list):
            out.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            out.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(out)


_TOKEN = re.compile(r'\s+|#[^\n]*|"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"#]+')


def parse_prototxt(text: str, where: str = "config.prototxt") -> Message:  # noqa: PLR0915
    """Text format -> Message (comments dropped; numbers as int or float, true/false as bool, bare words Enum)."""
    tokens, line_of, pos, line = [], [], 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise BuildError(f"{where}:{line}: cannot read {text[pos : pos + 20]!r}")
        t = m.group(0)
        if not t.isspace() and not t.startswith("#"):
            tokens.append(t)
            line_of.append(line)
        line += t.count("\n")
        pos = m.end()

    def value(t):
        if t.startswith('"'):
            return json.loads(t)
        if t in ("true", "false"):
            return t == "true"
        try:
            return int(t)
        except ValueError:
            pass
        try:
            return float(t)
        except ValueError:
            return Enum(t)

    def message(i, closing):
        msg = []
        while i < len(tokens):
            t = tokens[i]
            if t == "}":
                if not closing:
                    raise BuildError(f"{where}:{line_of[i]}: unexpected '}}'")
                return msg, i + 1
            key = t
            if i + 1 >= len(tokens):
                raise BuildError(f"{where}:{line_of[i]}: field {key!r} has no value")
            if tokens[i + 1] == "{" or (tokens[i + 1] == ":" and i + 2 < len(tokens) and tokens[i + 2] == "{"):
                i += 2 if tokens[i + 1] == "{" else 3
                sub, i = message(i, True)
                msg.append((key, sub))
            elif tokens[i + 1] == ":":
                if i + 2 >= len(tokens):
                    raise BuildError(f"{where}:{line_of[i]}: field {key!r} has no value")
                if tokens[i + 2] == "[":
                    j, items = i + 3, []
                    while j < len(tokens) and tokens[j] != "]":
                        if tokens[j] != ",":
                            items.append(value(tokens[j]))
                        j += 1
                    if j >= len(tokens):
                        raise BuildError(f"{where}:{line_of[i]}: unclosed '[' in field {key!r}")
                    msg.append((key, items))
                    i = j + 1
                else:
                    msg.append((key, value(tokens[i + 2])))
                    i += 3
            else:
                raise BuildError(f"{where}:{line_of[i]}: expected ':' or '{{' after {key!r}")
        if closing:
            raise BuildError(f"{where}: unclosed '{{' at the end of the file")
        return msg, i

    msg, _ = message(0, False)
    return msg


# The Pulsar v1 fields tcc writes, with the values the docs allow: a nested dict for a message, a set for an enum,
# a type for a scalar ([pulsar-docs-en] source/test_configs/config.rst)
_COLOR = {
    "TENSOR_COLOR_SPACE_BGR",
    "TENSOR_COLOR_SPACE_RGB",
    "TENSOR_COLOR_SPACE_GRAY",
    "TENSOR_COLOR_SPACE_NV12",
    "TENSOR_COLOR_SPACE_NV21",
    "TENSOR_COLOR_SPACE_BGR0",
    "TENSOR_COLOR_SPACE_AUTO",
}
_DTYPE = {
    "DATA_TYPE_UNKNOWN",
    "UINT2",
    "INT2",
    "MINT2",
    "UINT4",
    "MINT4",
    "UINT8",
    "INT8",
    "MINT8",
    "UINT16",
    "INT16",
    "FLOAT32",
}
_TENSOR = {
    "tensor_name": str,
    "color_space": _COLOR,
    "data_type": _DTYPE,
    "quantization_value": int,
    "color_standard": {"CSC_LEGACY", "CSS_ITU_BT601_STUDIO_SWING", "CSS_ITU_BT601_FULL_SWING"},
    "tensor_layout": {"NHWC", "NCHW", "NATIVE"},
}
_DATASET = {
    "path": str,
    "type": {
        "DATASET_TYPE_NONE",
        "DATASET_TYPE_DUMMY",
        "DATASET_TYPE_PYMODULE",
        "DATASET_TYPE_PYFILE",
        "DATASET_TYPE_MEMORY",
        "DATASET_TYPE_TAR",
        "DATASET_TYPE_ONE_SAMPLE",
    },
    "size": int,
    "batch_size": int,
    "calibration_strategy": {"CALIB_STRATEGY_PER_TENSOR", "CALIB_STRATEGY_PER_CHANNEL"},
    "observer_method": {"OBSVR_METHOD_MIN_MAX", "OBSVR_METHOD_MSE_CLIPPING"},
}
_MODE = {"mode": {"DEFAULT", "ENABLED", "DISABLED"}}
PULSAR_FIELDS = {
    "input_path": str,
    "output_path": str,
    "input_type": {"INPUT_TYPE_AUTO", "INPUT_TYPE_ONNX"},
    "output_type": {"OUTPUT_TYPE_AUTO", "OUTPUT_TYPE_JOINT", "OUTPUT_TYPE_SUPERNET"},
    "target_hardware": {"TARGET_HARDWARE_AX630", "TARGET_HARDWARE_AX620"},
    "src_input_tensors": _TENSOR,
    "dst_input_tensors": _TENSOR,
    "src_output_tensors": _TENSOR,
    "dst_output_tensors": _TENSOR,
    "cpu_backend_settings": {
        "onnx_setting": _MODE,
        "axe_setting": {**_MODE, "axe_param": {"optimize_slim_model": bool}},
    },
    "neuwizard_conf": {
        "operator_conf": {
            "input_conf_items": {
                "selector": {"op_name": str, "op_name_regex": str},
                "attributes": {
                    "type": _DTYPE,
                    "input_modifications": {
                        "affine_preprocess": {
                            "slope": float,
                            "slope_divisor": float,
                            "bias": float,
                            "bias_divisor": float,
                        },
                        "input_normalization": {"mean": float, "std": float},
                    },
                },
            }
        },
        "dataset_conf_calibration": _DATASET,
        "dataset_conf_error_measurement": _DATASET,
        "evaluation_conf": {
            "path": str,
            "type": {"EVALUATION_TYPE_NONE", "EVALUATION_TYPE_ERROR_MEASURE"},
            "source_ir_types": {"IR_TYPE_ONNX"},
            "ir_types": {"IR_TYPE_LAVA"},
            "score_compare_per_layer": bool,
        },
    },
    "pulsar_conf": {
        "ax620_virtual_npu": {
            "AX620_VIRTUAL_NPU_MODE_AUTO",
            "AX620_VIRTUAL_NPU_MODE_0",
            "AX620_VIRTUAL_NPU_MODE_111",
            "AX620_VIRTUAL_NPU_MODE_112",
        },
        "batch_size_option": {"BSO_AUTO", "BSO_STATIC", "BSO_DYNAMIC"},
        "batch_size": int,
        "debug": bool,
    },
}


def check_prototxt(msg: Message, fields: dict = PULSAR_FIELDS, path: str = "") -> list[str]:
    """What in `msg` the docs do not allow: unknown fields, wrong kinds, enum values outside the documented sets."""
    problems = []
    for key, v in msg:
        where = f"{path}.{key}" if path else key
        kind = fields.get(key)
        if kind is None:
            problems.append(f"{where}: not a documented field")
        elif isinstance(kind, dict):
            if not isinstance(v, list) or (v and not isinstance(v[0], tuple)):
                problems.append(f"{where}: expected a message")
            else:
                problems += check_prototxt(v, kind, where)
        elif isinstance(kind, set):
            if not isinstance(v, Enum) or v.name not in kind:
                problems.append(f"{where}: {v!r} is not one of {sorted(kind)}")
        else:
            items = v if isinstance(v, list) else [v]
            if not all(_is(kind, i) for i in items):
                problems.append(f"{where}: {v!r} is not a {kind.__name__}")
    return problems


def _is(kind: type, v) -> bool:
    if kind is bool or isinstance(v, bool):
        return kind is bool and isinstance(v, bool)
    if kind is float:
        return isinstance(v, (int, float))
    return isinstance(v, kind)


def write_prototxt(msg: Message, path: Path, header: list[str]) -> None:
    """Write, parse back, compare and check: a config Pulsar could not read is never left in a kit."""
    text = "".join(f"# {h}\n" for h in header) + dump_prototxt(msg) + "\n"
    back = parse_prototxt(text, path.name)
    if _numbers_as_floats(back) != _numbers_as_floats(msg):
        raise BuildError(f"{path.name}: the written prototxt does not read back as written")
    problems = check_prototxt(back)
    if problems:
        raise BuildError(f"{path.name}: " + "; ".join(problems))
    path.write_text(text)


def _numbers_as_floats(msg):
    """1 and 1.0 are one value in text format."""
    out = []
    for k, v in msg:
        if isinstance(v, list) and v and isinstance(v[0], tuple):
            out.append((k, _numbers_as_floats(v)))
        elif isinstance(v, list):
            out.append((k, [float(i) if isinstance(i, (int, float)) and not isinstance(i, bool) else i for i in v]))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((k, float(v)))
        else:
            out.append((k, v))
    return out


# ---------------------------------------------------------------------------------------------------- Pulsar2 JSON
def pulsar2_schema() -> dict:
    return json.loads(SCHEMA.read_text())


def validate_pulsar2(config: dict, where: str = "config.json") -> None:
    import jsonschema  # deferred for start-up: loads jsonschema

    try:
        jsonschema.validate(config, pulsar2_schema())
    except jsonschema.ValidationError as e:
        at = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise BuildError(f"{where}: {at}: {e.message}") from None


def write_pulsar2(config: dict, path: Path) -> None:
    """Validate against the schema, write, read back and compare."""
    validate_pulsar2(config, path.name)
    text = json.dumps(config, indent=2) + "\n"
    if json.loads(text) != config:
        raise BuildError(f"{path.name}: the written JSON does not read back as written")
    path.write_text(text)
