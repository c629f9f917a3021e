"""Loading a model spec: documents, the block registry (local, imports, zoo), parameters and `--set` overrides."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from ..errors import Location, SpecError, suggest
from ..ir import Graph
from ..resources import blocks_dir
from .checkpoint_layouts import CheckpointLayout, parse_layouts
from .expand import COMMON_KEYS, NODE_KINDS, REQUIRED, BlockDef, build_graph, parse_params
from .expr import evaluate
from .schema import validate
from .yamlpos import PosDict, load_file, parse_scalar
from .zoo import resolve_spec

ZOO_DIR = blocks_dir()


def zoo_dirs() -> list[Path]:
    """The zoo plus any folders in TCC_BLOCK_PATH (os.pathsep-separated)."""
    extra = [Path(p) for p in os.environ.get("TCC_BLOCK_PATH", "").split(os.pathsep) if p]
    return extra + [ZOO_DIR]


def load_document(path: str | Path) -> PosDict:
    doc = load_file(path)
    if not isinstance(doc, PosDict):
        raise SpecError("a spec must be a mapping with `kind: model` or `kind: block`", Location(str(path), 1, 1))
    validate(doc)
    return doc


def block_from_doc(doc: PosDict, name: str) -> BlockDef:
    inputs = list(doc.get("inputs", ["x"]))
    if len(set(inputs)) != len(inputs):
        raise SpecError("block inputs must have distinct names", doc.where("inputs"))
    return BlockDef(
        name=name,
        params=parse_params(doc.get("params"), reserved=COMMON_KEYS + NODE_KINDS),
        inputs=inputs,
        body=doc["body"],
        outputs=doc.get("outputs"),
        where=doc.pos,
    )


class BlockRegistry:
    """Blocks by name: the model's own `blocks:`, then its `imports:`, then the zoo (loaded on first use)."""

    def __init__(self, local: dict[str, BlockDef], dirs: list[Path]):
        self.local = local
        self.dirs = dirs
        self.files: dict[str, Path] = {}  # name -> file, for every block that was used (for hashing)

    def get(self, name, where: Location) -> BlockDef:
        if not isinstance(name, str):
            raise SpecError(f"block name must be a string, got {name!r}", where)
        if name in self.local:
            return self.local[name]
        for d in self.dirs:
            path = d / f"{name}.yaml"
            if path.is_file():
                try:
                    doc = load_document(path)
                    if doc.get("kind") != "block":
                        raise SpecError(f"{path} is a {doc.get('kind')}, not a block", doc.pos)
                    if doc["name"] != name:
                        raise SpecError(
                            f"block file {path.name} must define block '{name}', not '{doc['name']}'", doc.where("name")
                        )
                    block = block_from_doc(doc, name)
                except SpecError as e:
                    e.message += f"\n  in block '{name}' used at {where}"
                    raise
                self.local[name] = block
                self.files[name] = path
                return block
        known = sorted(set(self.local) | {p.stem for d in self.dirs if d.is_dir() for p in d.glob("*.yaml")})
        raise SpecError(f"unknown block '{name}'{suggest(name, known)}", where)


@dataclass
class Preprocess:
    resize: tuple[int, int]
    interpolation: str = "bilinear"
    color: str | None = "RGB"  # None: the input is not an image (feed arrays)
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def to_json(self) -> dict:
        return {
            "resize": list(self.resize),
            "interpolation": self.interpolation,
            "color": self.color,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
        }


@dataclass
class Spec:
    name: str
    path: Path
    params: dict
    input_shape: tuple[int, int, int]
    preprocess: Preprocess
    labels: list[str] | None
    graph: Graph
    sources: dict[str, str] = field(default_factory=dict)  # file -> text of every document used
    notes: list[str] = field(default_factory=list)  # things the user should hear about (printed by the CLI)
    checkpoints: list = field(default_factory=list)  # the checkpoint layouts it declares (tcc.spec.checkpoint_layouts)
    overrides: dict = field(default_factory=dict)  # the --set values it was loaded with
    calibrate: dict = field(default_factory=dict)  # its `calibrate:` section: default method and post-training steps

    @property
    def spec_hash(self) -> str:
        """sha256 of the resolved parameters and every document the model was built from: the model's file first,
        then the blocks' files by file name (then text). Where the files lie and how the path was written (relative,
        absolute, a zoo name) do not enter: `tcc build ddsnet` and `tcc build spec/ddsnet.yaml` hash alike."""
        h = hashlib.sha256()
        h.update(json.dumps(self.params, sort_keys=True, default=str).encode())
        model_file = str(self.path)
        for name, text in sorted(self.sources.items(), key=lambda kv: (kv[0] != model_file, Path(kv[0]).name, kv[1])):
            h.update(Path(name).name.encode() + b"\0" + text.encode() + b"\0")
        return h.hexdigest()


def parse_overrides(pairs: list[str]) -> dict:
    """`--set key=value` strings; values are read as YAML scalars/lists (`2`, `true`, `[1, 2]`, `relu6`)."""
    out = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(f"--set KEY=VALUE expected, got {pair!r}")
        try:
            value = parse_scalar(text, f"--set {key}") if text.strip() else ""
        except SpecError:
            raise SpecError(f"--set {key}: cannot read value {text!r}") from None
        if _has_mapping(value):
            raise SpecError(f"--set {key}: only scalars and (nested) lists are allowed, not mappings")
        out[key] = value
    return out


def as_overrides(value) -> dict:
    """Model parameter overrides as given: `--set` strings (a list), or a dict from the Python API."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    return parse_overrides(list(value))


def _has_mapping(value) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and any(_has_mapping(v) for v in value))


def _resolve_params(doc: PosDict, overrides: dict) -> dict:
    decls = parse_params(doc.get("params"))
    unknown = [k for k in overrides if k not in decls]
    if unknown:
        known = ", ".join(decls) or "none"
        raise SpecError(
            f"--set {unknown[0]}: the model has no such parameter{suggest(unknown[0], decls)} (parameters: {known})"
        )
    env = {}
    for name, decl in decls.items():
        if name in overrides:
            try:
                env[name] = decl.check(overrides[name], decl.where, "the model")
            except SpecError as e:  # the value is wrong, not the spec: say so, and where the parameter is declared
                raise SpecError(f"--set {name}={overrides[name]!r}: {e.message} (declared at {decl.where})") from None
        elif decl.default is REQUIRED:
            raise SpecError(f"model parameter '{name}' has no default; pass --set {name}=...", decl.where)
        else:
            env[name] = decl.check(evaluate(decl.default, env, decl.where), decl.where, "the model")
    return env


def _dims(values, positions, env: dict, what: str, fallback) -> tuple[int, ...]:
    """Sizes that may be expressions over the model's params (`shape: [3, "${size}", "${size}"]`), each a
    positive integer."""
    out = []
    for k, v in enumerate(values):
        where = positions[k] if k < len(positions) else fallback
        v = evaluate(v, env, where)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpecError(f"{what} must be positive integers, got {v!r}", where)
        out.append(v)
    return tuple(out)


def _input_shape(doc: PosDict, env: dict) -> tuple[int, int, int]:
    shape = doc["input"]["shape"]
    dims = _dims(shape, getattr(shape, "item_pos", []), env, "input shape entries", doc["input"].pos)
    return cast(tuple[int, int, int], dims)  # the schema takes 3 entries


def _preprocess(doc: PosDict, shape, env: dict) -> Preprocess:
    inp = doc["input"]
    pre = inp.get("preprocess", PosDict())
    channels = shape[0]
    resize = pre.get("resize", [shape[1], shape[2]])
    where = pre.where("resize") if "resize" in pre else inp.pos
    if not isinstance(resize, list):
        resize = [resize, resize]
        positions = [where, where]
    else:
        positions = getattr(resize, "item_pos", [])
    resize = cast(tuple[int, int], _dims(resize, positions, env, "preprocess resize entries", where))  # 2 (schema)
    color = pre.get("color", {1: "L", 3: "RGB"}.get(channels))
    want = 1 if color == "L" else 3
    if color is not None and want != channels:
        raise SpecError(
            f"color {color} gives {want} channel(s) but the input shape has {channels}",
            pre.where("color") if "color" in pre else inp.pos,
        )
    stats = {}
    for key, default in (("mean", 0.0), ("std", 1.0)):
        values = tuple(float(v) for v in pre.get(key, [default] * channels))
        if len(values) != channels:
            raise SpecError(f"preprocess {key} has {len(values)} values for {channels} channels", pre.where(key))
        stats[key] = values
    return Preprocess(
        resize=resize,
        interpolation=pre.get("interpolation", "bilinear"),
        color=color,
        scale=float(pre.get("scale", 1 / 255)),
        **stats,
    )


def load_spec(path: str | Path, overrides: dict | None = None) -> Spec:
    """Load, validate and expand a model spec into its IR graph. `path`: a spec file, or a zoo model's name."""
    path = resolve_spec(path)
    doc = load_document(path)
    if doc["kind"] != "model":
        raise SpecError("this is a block, not a model: use it from a model's layers", doc.where("kind"))
    sources = {str(path): path.read_text(encoding="utf-8")}
    local: dict[str, BlockDef] = {}
    imports = doc.get("imports", [])
    for rel, where in zip(imports, getattr(imports, "item_pos", [])):
        ipath = Path(os.path.normpath(path.parent / rel))  # as the user wrote it, so errors name it so
        if not ipath.is_file():
            raise SpecError(f"imported file not found: {rel}", where)
        try:
            idoc = load_document(ipath)
        except SpecError as e:
            e.message += f"\n  imported at {where}"
            raise
        if idoc["kind"] != "block":
            raise SpecError(f"imported file {rel} is a {idoc['kind']}, not a block", where)
        if idoc["name"] in local:
            raise SpecError(f"block '{idoc['name']}' is imported twice", where)
        local[idoc["name"]] = block_from_doc(idoc, idoc["name"])
        sources[str(ipath)] = ipath.read_text(encoding="utf-8")
    for name, bdoc in doc.get("blocks", {}).items():
        if not str(name).isidentifier():
            raise SpecError(f"block name must be an identifier, got {name!r}", doc["blocks"].key_pos[name])
        local[name] = block_from_doc(bdoc, name)
    registry = BlockRegistry(local, zoo_dirs())
    params = _resolve_params(doc, overrides or {})
    shape = _input_shape(doc, dict(params))
    graph = build_graph(doc["name"], shape, doc["input"].pos, doc["layers"], dict(params), registry)
    for name, file in registry.files.items():
        sources[str(file)] = file.read_text(encoding="utf-8")
    checkpoints: list[CheckpointLayout] = []
    if "checkpoints" in doc:
        tensors = {name: p.shape for name, p in graph.parameters()}
        checkpoints, files = parse_layouts(doc["checkpoints"], path, params, tensors)
        sources.update({str(f): f.read_text(encoding="utf-8") for f in files})
    labels = list(doc["labels"]) if "labels" in doc else None
    notes = []
    out_shape = graph.shape(graph.main_output)
    # a label per class: a classifier's [C] output, or a segmenter's [C, H, W] (a class per pixel)
    if labels is not None and (len(out_shape) not in (1, 3) or out_shape[0] != len(labels)):
        if overrides:  # e.g. --set num_classes=2 on a spec whose labels name 6 classes
            changed = ", ".join(f"{k}={v}" for k, v in overrides.items())
            notes.append(
                f"the spec's {len(labels)} labels do not fit the output width {out_shape[0]} with "
                f"{changed}; predictions carry no label"
            )
            labels = None
        else:
            raise SpecError(f"{len(labels)} labels for a model output of shape {list(out_shape)}", doc.where("labels"))
    return Spec(
        name=doc["name"],
        path=path,
        params=params,
        input_shape=shape,
        preprocess=_preprocess(doc, shape, dict(params)),
        labels=labels,
        graph=graph,
        sources=sources,
        notes=notes,
        checkpoints=checkpoints,
        overrides=dict(overrides or {}),
        calibrate={
            k: v if k in ("activation_bits", "method") else bool(v)
            for k, v in doc.get("calibrate", {}).items()
            if k != "doc"
        },
    )
