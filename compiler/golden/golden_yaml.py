"""A golden set's plan, `golden.yaml`: the models, their inputs, calibration data and entries (hand-written).

Validated by spec/schema/golden.schema.json; an error names golden.yaml:line:column. Paths are relative to the
file. `defaults` apply to every model unless the model sets its own
(`calibration` key by key).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import Location, SpecError
from ..files import is_onnx_file
from ..resources import schema_path
from ..spec.yamlpos import PosDict, load_file
from .entries import ENTRIES

PLAN_FILE = "golden.yaml"
FORMAT = "tcc-golden/1"
SCHEMA_PATH = schema_path("golden")
DEFAULT_FLOOR = {"cosine": 0.99, "top1": 1.0}
DEFAULT_CALIBRATION = {"method": "kl+cos", "crops": 8, "seed": 0}


@dataclass(frozen=True)
class Calibration:
    method: str
    crops: int
    seed: int
    images: tuple[Path, ...]


@dataclass(frozen=True)
class ModelPlan:
    name: str
    spec: Path
    overrides: dict
    weights: Path | None
    by_order: bool
    key_map: Path | None
    seeded: int  # inputs ~ N(0, 1), numpy default_rng(i) for i < seeded
    images: tuple[Path, ...]  # image inputs, through the spec's preprocessing
    calibration: Calibration
    entries: tuple[str, ...]  # entry ids, in the registry's order
    slow: frozenset[str]  # entries checked only with `--all`
    int8_floor: dict
    opset: int


@dataclass(frozen=True)
class GoldenPlan:
    root: Path
    models: dict[str, ModelPlan]

    @property
    def file(self) -> Path:
        return self.root / PLAN_FILE


def load_plan(root: str | Path) -> GoldenPlan:
    import jsonschema  # deferred for start-up: loads jsonschema

    root = Path(root)
    path = root / PLAN_FILE
    if not path.is_file():
        raise SpecError(
            f"{path}: no golden plan here (a golden set is a folder with {PLAN_FILE}; see tests/golden/README.md)"
        )
    doc = load_file(path)
    errors = sorted(
        jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).iter_errors(doc),
        key=lambda e: list(e.absolute_path),
    )
    if errors:
        e = errors[0]
        where = _where(doc, list(e.absolute_path), path)
        if e.validator == "additionalProperties" and hasattr(e.instance, "key_pos"):  # point at the unknown key
            extra = [k for k in e.instance if k not in e.schema.get("properties", {})]
            where = e.instance.key_pos.get(extra[0], where) if extra else where
        raise SpecError(e.message, where)
    assert isinstance(doc, PosDict)  # the schema takes a mapping
    defaults = doc.get("defaults", {})
    models = {}
    for name, m in doc["models"].items():

        def get(key, fallback, m=m):
            return m.get(key, defaults.get(key, fallback))

        entries = tuple(get("entries", list(ENTRIES)))
        for i, e in enumerate(entries):
            if e not in ENTRIES:
                where = m.where("entries") if "entries" in m else doc["defaults"].where("entries")
                raise SpecError(f"unknown golden entry {e!r}; known: {', '.join(ENTRIES)}", where)
        slow = frozenset(get("slow", []))
        unknown = sorted(slow - set(ENTRIES))
        if unknown:
            raise SpecError(
                f"unknown golden entry {unknown[0]!r} in slow; known: {', '.join(ENTRIES)}",
                m.where("slow") if "slow" in m else doc["defaults"].where("slow"),
            )
        files = {}
        for key in ("spec", "weights", "key_map"):
            if key in m:
                files[key] = _existing(root, m[key], m.where(key))
        baked = [key for key in ("weights", "by_order", "key_map") if key in m]
        if is_onnx_file(files["spec"]) and baked:
            raise SpecError(
                f"model {name}: an ONNX file carries its weights; drop {baked[0]} (its set: takes the "
                "import's size, mean and std)",
                m.where(baked[0]),
            )
        inputs = get("inputs", {})
        cal = {**DEFAULT_CALIBRATION, **defaults.get("calibration", {}), **m.get("calibration", {})}
        if "images" not in cal:
            cal["images"] = inputs.get("images", [])
        if not cal["images"]:
            raise SpecError(f"model {name}: calibration needs images (calibration: images: [...])", m.where())
        models[name] = ModelPlan(
            name=name,
            spec=files["spec"],
            overrides=dict(m.get("set", {})),
            weights=files.get("weights"),
            by_order=bool(m.get("by_order", False)),
            key_map=files.get("key_map"),
            seeded=int(inputs.get("seeded", 1)),
            images=tuple(_existing(root, p, _loc(inputs, "images", path)) for p in inputs.get("images", [])),
            calibration=Calibration(
                cal["method"],
                int(cal["crops"]),
                int(cal["seed"]),
                tuple(_existing(root, p, _loc(cal, "images", path)) for p in cal["images"]),
            ),
            entries=tuple(e for e in ENTRIES if e in entries),
            slow=slow,
            int8_floor={**DEFAULT_FLOOR, **get("int8_floor", {})},
            opset=int(get("opset", 13)),
        )
    return GoldenPlan(root, models)


def _existing(root: Path, rel: str, where) -> Path:
    try:
        p = (root / rel).resolve()
        found = p.exists()
    except (OSError, ValueError) as e:  # a name too long for the file system (exists() raises), a NUL character
        raise SpecError(
            f"not a usable file name: {rel[:60]}{'...' if len(rel) > 60 else ''} ({getattr(e, 'strerror', None) or e})",
            where,
        ) from None
    if not found:
        raise SpecError(f"no such file: {rel} (resolved to {p})", where)
    return p


def _loc(d, key, path):
    return d.where(key) if hasattr(d, "where") else Location(str(path), 1, 1)


def _where(doc, keys: list, path: Path):
    """The location of the deepest existing value along `keys`."""
    node, where = doc, getattr(doc, "pos", Location(str(path), 1, 1))
    for k in keys:
        try:
            child = node[k]
        except (KeyError, IndexError, TypeError):
            break
        if hasattr(node, "where"):
            where = node.where(k)
        node = child
    return where
