"""Checkpoint layouts: how a spec says which published weights it is known to match, and key maps.

A model spec may declare, under `checkpoints:`, the layouts of checkpoints it matches: by name (optionally through
a key map), or by order (the tensors in the spec's parameter order). `tcc ... --weights FILE` without `--by-order`
or `--key-map` tries the spec's names first and then each declared layout, and says which one matched. A layout may
also say where a model parameter can be read from the checkpoint (`params: {num_classes: {tensor: fc.weight, dim:
0}}`), so a checkpoint trained for another number of classes loads without `--set`.

Key maps (a layout's `key_map:` or `--key-map FILE`) map checkpoint keys to spec names: an exact key; a key ending
in `.`, which renames a prefix; or a pattern with `*`, each `*` matching a non-empty run of characters that the
value's `*` (as many, in order) repeats (a pattern ending in `.` renames a prefix too). Exact keys win over patterns,
patterns (in file order) over prefixes (the
longest). This module reads no tensors and imports no torch: the spec loader parses layouts with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import Location, SpecError, WeightsError, suggest
from .yamlpos import PosDict, load_file

MATCHES = ("by_name", "by_order")


@dataclass(frozen=True)
class KeyMap:
    """checkpoint key -> spec name: exact keys, `*` patterns and `prefix.` renames."""

    entries: tuple[tuple[str, str], ...] = ()
    # derived from `entries` in __post_init__
    _exact: dict[str, str] = field(init=False, repr=False, compare=False)
    _patterns: list[tuple[re.Pattern[str], str]] = field(init=False, repr=False, compare=False)
    _prefixes: list[tuple[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        exact, patterns, prefixes = {}, [], []
        for key, value in self.entries:
            if "*" in key:  # a pattern ending in '.' renames a prefix, like a plain prefix
                regex = re.compile(
                    "(.+?)".join(re.escape(p) for p in key.split("*")) + ("" if key.endswith(".") else r"\Z")
                )
                patterns.append((regex, value))
            elif key.endswith("."):
                prefixes.append((key, value))
            else:
                exact[key] = value
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_patterns", patterns)
        object.__setattr__(self, "_prefixes", sorted(prefixes, key=lambda kv: -len(kv[0])))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def rename(self, key: str) -> str:
        if key in self._exact:
            return self._exact[key]
        for regex, value in self._patterns:
            m = regex.match(key)
            if m:
                parts = value.split("*")
                return parts[0] + "".join(g + p for g, p in zip(m.groups(), parts[1:])) + key[m.end() :]
        for prefix, value in self._prefixes:
            if key.startswith(prefix):
                return value + key[len(prefix) :]
        return key


def key_map_problem(key, value) -> str | None:
    """Why one key map entry is malformed, or None."""
    if not isinstance(key, str) or not isinstance(value, str) or not key or not value:
        return "a key map maps checkpoint keys to spec names (non-empty strings)"
    if key.count("*") != value.count("*"):
        return (
            f"'{key}' has {key.count('*')} '*' but '{value}' has {value.count('*')}: each '*' of a key is repeated "
            "by one '*' of its value"
        )
    if key.endswith(".") != value.endswith("."):
        return f"'{key}' -> '{value}': a prefix (ending in '.') renames to a prefix"
    return None


def read_key_map(path: str | Path) -> KeyMap:
    """A `--key-map` file: YAML/JSON mapping of checkpoint keys to spec names."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise WeightsError(f"{path}: cannot read key map ({e})") from None
    if not isinstance(data, dict) or not data:
        raise WeightsError(f"{path}: a key map is a mapping of checkpoint keys to spec names")
    for key, value in data.items():
        problem = key_map_problem(key, value)
        if problem:
            raise WeightsError(f"{path}: {problem}")
    return KeyMap(tuple(data.items()))


@dataclass(frozen=True)
class ParamSource:
    """A model parameter read from a checkpoint: the size of `dim` of the tensor that imports into `tensor`, or (a
    boolean parameter) whether the checkpoint holds the key `present`."""

    param: str
    tensor: str = ""  # a spec tensor name (node.param)
    dim: int = 0
    where: Location | None = None
    present: str = ""  # a checkpoint key


@dataclass(frozen=True)
class CheckpointLayout:
    name: str
    match: str  # by_name | by_order
    doc: str = ""
    key_map: KeyMap = field(default_factory=KeyMap)
    params: tuple[ParamSource, ...] = ()
    where: Location | None = None

    def describe(self) -> str:
        how = "by order" if self.match == "by_order" else ("by name through its key map" if self.key_map else "by name")
        return f"checkpoint layout '{self.name}' ({how})"


def parse_layouts(section, spec_path: Path, params: dict, tensors: dict) -> tuple[list[CheckpointLayout], list[Path]]:
    """The `checkpoints:` section of a model (schema-checked already): each layout's key map (inline, or a file
    beside the spec) and parameter sources are checked against the model (`params`: its parameters, `tensors`:
    spec tensor name -> shape), with errors at file:line:col. Returns the layouts and the key map files read."""
    layouts, seen, files = [], set(), []
    for item, where in zip(section, section.item_pos):
        name = item["name"]
        if name in seen:
            raise SpecError(f"checkpoint layout '{name}' is declared twice", item.where("name"))
        seen.add(name)
        key_map = KeyMap()
        if "key_map" in item:
            km, km_where = item["key_map"], item.where("key_map")
            if isinstance(km, str):
                path = spec_path.parent / km
                if not path.is_file():
                    raise SpecError(f"key map file not found: {km} (relative to the spec)", km_where)
                km = load_file(path)
                files.append(path)
                if not isinstance(km, PosDict) or not km:
                    raise SpecError(
                        "a key map is a mapping of checkpoint keys to spec names", getattr(km, "pos", km_where)
                    )
            for key, value in km.items():
                problem = key_map_problem(key, value)
                if problem:
                    raise SpecError(problem, km.key_pos.get(key, km_where))
            key_map = KeyMap(tuple(km.items()))
            if item["match"] == "by_order":
                raise SpecError(
                    "a by_order layout matches tensors by position: a key map means match: by_name", km_where
                )
        sources = []
        for pname, src in item.get("params", {}).items():
            pwhere = item["params"].key_pos[pname]
            if pname not in params:
                raise SpecError(f"'{pname}' is not a parameter of the model{suggest(pname, params)}", pwhere)
            if "present" in src:
                if not isinstance(params[pname], bool):
                    raise SpecError(f"'{pname}' is not a boolean parameter, so a key's presence cannot set it", pwhere)
                sources.append(ParamSource(pname, where=pwhere, present=src["present"]))
                continue
            if src["tensor"] not in tensors:
                raise SpecError(
                    f"no spec tensor '{src['tensor']}'{suggest(src['tensor'], tensors)} (the names "
                    "`tcc check` prints, with .weight / .bias)",
                    src.where("tensor"),
                )
            rank = len(tensors[src["tensor"]])
            if not 0 <= src["dim"] < rank:
                raise SpecError(
                    f"{src['tensor']} has {rank} dimensions; dim {src['dim']} does not exist", src.where("dim")
                )
            if not isinstance(params[pname], int) or isinstance(params[pname], bool):
                raise SpecError(f"'{pname}' is not an integer parameter, so it cannot be a tensor's size", pwhere)
            sources.append(ParamSource(pname, src["tensor"], src["dim"], pwhere))
        layouts.append(CheckpointLayout(name, item["match"], item.get("doc", ""), key_map, tuple(sources), item.pos))
    return layouts, files
