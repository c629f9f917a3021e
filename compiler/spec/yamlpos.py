"""YAML/JSON documents whose containers remember where each child came from.

Only YAML's core types are accepted (mappings, sequences, str, int, float, bool, null): no tags that construct
objects. Aliases are bounded twice, by the number of alias uses and by the number of nodes after expansion (counted
on the composed node graph, where an alias is shared, before anything is copied), so a billion-laughs document is
refused before it costs time or memory. Nesting is bounded too, so no document can exhaust the Python stack.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..errors import Location, SpecError

MAX_ALIASES = 100
MAX_NODES = 1_000_000
MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64  # nested mappings/sequences; real specs use about 15

_CORE_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


class PosDict(dict):
    """A mapping with `pos` (its own location) and `key_pos`/`value_pos` (each entry's)."""

    pos: Location
    key_pos: dict
    value_pos: dict

    def where(self, key=None) -> Location:
        if key is None:
            return self.pos
        return self.value_pos.get(key, self.pos)


class PosList(list):
    """A sequence with `pos` and `item_pos` (each item's location)."""

    pos: Location
    item_pos: list

    def where(self, index=None) -> Location:
        if index is None or index >= len(self.item_pos):
            return self.pos
        return self.item_pos[index]


def make_dict(items: dict, where: Location) -> PosDict:
    """A PosDict for values that were not read from a file (e.g. `--set` overrides)."""
    d = PosDict(items)
    d.pos, d.key_pos, d.value_pos = where, dict.fromkeys(items, where), dict.fromkeys(items, where)
    return d


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts alias uses and nesting depth."""

    def __init__(self, stream, file: str):
        super().__init__(stream)
        self._file = file
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise SpecError(
                    f"too many YAML aliases (more than {MAX_ALIASES}); refusing a possibly exponential document",
                    _loc(self._file, mark),
                )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise SpecError(
                    f"the document is nested more than {MAX_DEPTH} levels deep",
                    _loc(self._file, self.peek_event().start_mark),
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# YAML 1.1 (PyYAML) reads `1e-5` as a string; spec authors mean the number, as in YAML 1.2 and JSON.
_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_scalar(text: str, where: str = "<value>") -> object:
    """A command-line value read with the spec's YAML rules (`2`, `1e-5`, `true`, `[1, 2]`)."""
    value = load_text(text, where)
    return plain(value)


def plain(value):
    """PosDict / PosList -> dict / list, recursively (the positions dropped)."""
    if isinstance(value, PosDict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, PosList):
        return [plain(v) for v in value]
    return value


def _loc(file: str, mark) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def load_text(text: str, file: str) -> object:
    """Parse one YAML or JSON document into PosDict/PosList/scalars."""
    if len(text) > MAX_BYTES:
        raise SpecError(f"spec is {len(text)} bytes, more than the {MAX_BYTES} allowed", Location(file, 1, 1))
    if file.endswith(".json"):
        # JSON strings cannot hold raw tabs, so tabs are only whitespace; PyYAML rejects some of them.
        text = text.replace("\t", " ")
    loader = None
    try:
        loader = _BoundedLoader(text, file)  # the reader already refuses control characters here
        node = loader.get_single_node()
    except SpecError:
        raise
    except yaml.MarkedYAMLError as e:
        raise _yaml_error(e, file) from None
    except yaml.reader.ReaderError as e:
        ch = f"U+{e.character:04X}" if isinstance(e.character, int) else repr(e.character)
        raise SpecError(
            f"invalid YAML: character {ch} is not allowed ({e.reason})", _offset_loc(text, e.position, file)
        ) from None
    except yaml.YAMLError as e:
        raise SpecError(f"invalid YAML: {e}", Location(file, 1, 1)) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise SpecError("empty document", Location(file, 1, 1))
    _check_expansion(node, file)
    budget = [MAX_NODES]
    return _convert(node, file, loader, budget)


def _yaml_error(e: yaml.MarkedYAMLError, file: str) -> SpecError:
    mark = e.problem_mark or e.context_mark
    where = _loc(file, mark) if mark else Location(file, 1, 1)
    message = f"invalid YAML: {e.problem or e.context}"
    if e.problem and e.context and e.context_mark and e.context_mark is not mark:
        message += f" ({e.context} at {_loc(file, e.context_mark)})"  # e.g. where an unclosed `{` opened
    return SpecError(message, where)


def _offset_loc(text: str, offset: int, file: str) -> Location:
    before = text[:offset]
    return Location(file, before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


def _check_expansion(root, file: str) -> None:
    """Refuse a document whose aliases expand to more than MAX_NODES nodes or MAX_DEPTH levels, or to an infinite
    document, counting on the composed node graph (where an alias is shared) without expanding anything."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, depth) once expanded
    counting: set[int] = set()

    def children(node) -> list:
        if isinstance(node, yaml.MappingNode):
            return [c for kv in node.value for c in kv]
        return node.value if isinstance(node, yaml.SequenceNode) else []

    def measure(node) -> tuple[int, int]:
        key = id(node)
        if key in counting:  # `&a [*a]`: PyYAML composes it, but it has no finite expansion
            raise SpecError(
                "a YAML alias is used inside its own anchor (a recursive document)", _loc(file, node.start_mark)
            )
        if key not in sizes:
            counting.add(key)
            inner = [measure(c) for c in children(node)]
            total = 1 + sum(n for n, _ in inner)
            depth = 1 + max((d for _, d in inner), default=0)
            if depth > MAX_DEPTH:  # nested aliases can nest deeper than the text does
                raise SpecError(
                    f"the document is nested more than {MAX_DEPTH} levels deep (through aliases)",
                    _loc(file, node.start_mark),
                )
            sizes[key] = (min(total, MAX_NODES + 1), depth)
            counting.discard(key)
        return sizes[key]

    if measure(root)[0] <= MAX_NODES:
        return
    node = root  # point at the innermost node that alone is too big: where the expansion happens
    while True:
        big = next((c for c in children(node) if measure(c)[0] > MAX_NODES), None)
        if big is None:
            break
        node = big
    raise SpecError(
        f"document expands to more than {MAX_NODES:,} nodes (aliases?); refusing it", _loc(file, node.start_mark)
    )


def load_file(path: str | Path) -> object:
    path = Path(path)
    file = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"no such spec file: {file}") from None
    except OSError as e:
        raise SpecError(f"cannot read spec file {file}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"spec is not UTF-8 text (byte {e.start})", Location(file, 1, 1)) from None
    return load_text(text, file)


def _convert(node, file: str, loader, budget: list) -> object:
    budget[0] -= 1
    if budget[0] < 0:
        raise SpecError(
            f"document expands to more than {MAX_NODES} nodes (aliases?); refusing it", _loc(file, node.start_mark)
        )
    where = _loc(file, node.start_mark)
    if node.tag not in _CORE_TAGS:
        raise SpecError(f"YAML tag {node.tag!r} is not allowed in a spec (only plain data)", where)
    if isinstance(node, yaml.MappingNode):
        out = PosDict()
        out.pos, out.key_pos, out.value_pos = where, {}, {}
        try:
            loader.flatten_mapping(node)  # resolves `<<` merge keys
        except yaml.MarkedYAMLError as e:
            raise _yaml_error(e, file) from None
        for key_node, value_node in node.value:
            key = _convert(key_node, file, loader, budget)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise SpecError("mapping keys must be plain scalars", _loc(file, key_node.start_mark))
            if key in out:
                raise SpecError(f"duplicate key {key!r}", _loc(file, key_node.start_mark))
            out[key] = _convert(value_node, file, loader, budget)
            out.key_pos[key] = _loc(file, key_node.start_mark)
            out.value_pos[key] = _loc(file, value_node.start_mark)
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = PosList()
        seq.pos, seq.item_pos = where, []
        for item in node.value:
            seq.append(_convert(item, file, loader, budget))
            seq.item_pos.append(_loc(file, item.start_mark))
        return seq
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as e:
        raise SpecError(f"bad scalar: {e}", where) from None
