"""Mutations every kind shares: of bytes, of a parsed YAML / JSON tree, of text. Each draws from the case's numpy
Generator and returns what it did in words, which becomes the case's description: a failure says what broke."""

from __future__ import annotations

import copy

import numpy as np

# Values a user's file may hold where another was expected: wrong types, edges, non-finite numbers, odd strings.
NASTY = (
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    3,
    7,
    2**31,
    2**63,
    10**30,
    -(10**30),
    0.5,
    -0.5,
    1e-30,
    1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "x",
    "none",
    "auto",
    "../nope",
    "\u00f8\u00e9",
    "1e9",
    "0x10",
    "-1",
    [],
    [1],
    [0.5, 0.5],
    ["a", "b", "c"],
    [[1]],
    {},
    {"a": 1},
    {"": None},
    "a" * 300,
)
UNKNOWN_KEYS = ("bogus", "", "Epochs", "data ", "__proto__", "0", "files", "sha256", "format", "models")
TEXT_CHARS = "{}[]:,&*!|>-#%@`'\"?\t\n \\$0123456789.eE+xyz\u00e9\x00"


def pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def pick_weighted(rng: np.random.Generator, weights: dict):
    """A key of `weights`, drawn with its weight."""
    keys = list(weights)
    p = np.asarray([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def show(value, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------------------------------------------- bytes
def _position(data: bytes, rng) -> int:
    return int(rng.integers(len(data) + 1))


def flip_bytes(data: bytes, rng) -> tuple[bytes, str]:
    if not data:
        return data, "flip: empty file"
    out = bytearray(data)
    at = sorted(int(i) for i in rng.integers(len(data), size=int(rng.integers(1, 9))))
    for i in at:
        out[i] ^= int(rng.integers(1, 256))
    return bytes(out), f"flip bytes at {at}"


def truncate(data: bytes, rng) -> tuple[bytes, str]:
    at = int(rng.integers(len(data))) if data else 0
    return data[:at], f"truncate to {at} of {len(data)} bytes"


def insert_bytes(data: bytes, rng) -> tuple[bytes, str]:
    at, n = _position(data, rng), int(rng.integers(1, 65))
    filler = pick(rng, ["random", "zeros", "ones"])
    chunk = {"random": rng.integers(256, size=n, dtype=np.uint8).tobytes(), "zeros": bytes(n), "ones": b"\xff" * n}[
        filler
    ]
    return data[:at] + chunk + data[at:], f"insert {n} {filler} bytes at {at}"


def delete_range(data: bytes, rng) -> tuple[bytes, str]:
    at, n = _position(data, rng), int(rng.integers(1, 65))
    return data[:at] + data[at + n :], f"delete bytes {at}..{at + n}"


def duplicate_range(data: bytes, rng) -> tuple[bytes, str]:
    at, n = _position(data, rng), int(rng.integers(1, 257))
    return data[: at + n] + data[at : at + n] + data[at + n :], f"duplicate bytes {at}..{at + n}"


EDGE_INTS = (0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def overwrite_int(data: bytes, rng) -> tuple[bytes, str]:
    if len(data) < 4:
        return flip_bytes(data, rng)
    at = int(rng.integers(len(data) - 3)) & ~3
    value, order = pick(rng, EDGE_INTS), pick(rng, ["little", "big"])
    return data[:at] + value.to_bytes(4, order) + data[at + 4 :], f"write {value:#x} ({order}-endian) at {at}"


BYTE_MUTATIONS = {
    "flip": flip_bytes,
    "truncate": truncate,
    "insert": insert_bytes,
    "delete": delete_range,
    "duplicate": duplicate_range,
    "int": overwrite_int,
}
BYTE_WEIGHTS = {"flip": 4, "truncate": 2, "insert": 1, "delete": 1, "duplicate": 1, "int": 2}


def mutate_bytes(data: bytes, rng, rounds: int | None = None) -> tuple[bytes, str]:
    """One to three byte-level mutations, anywhere in the file."""
    said = []
    for _ in range(rounds or int(rng.integers(1, 4))):
        data, what = BYTE_MUTATIONS[pick_weighted(rng, BYTE_WEIGHTS)](data, rng)
        said.append(what)
    return data, "; ".join(said)


# ---------------------------------------------------------------------------------------------------- trees
def _paths(node, prefix=()) -> list[tuple]:
    """Every (container path, key or index) in a parsed document."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append((prefix, k))
        out += _paths(v, prefix + (k,))
    return out


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def _edge_of(value, rng):
    """A value near `value` that a schema may still let through, or just past what it allows."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return pick(rng, [0, -value, value + 1, value - 1, value * 1000, 2**62, float(value), str(value)])
    if isinstance(value, float):
        return pick(rng, [0.0, -value, value * 1e6, value / 1e6, 1.0, 1.0 - 1e-12, float("nan"), str(value)])
    if isinstance(value, str):
        return pick(rng, ["", value.upper(), value + "x", value[:-1], f" {value}", [value], value * 50])
    if isinstance(value, list):
        return pick(rng, [value[::-1], value * 2, value[:1], [value], {"0": value}])
    return pick(rng, NASTY)


def mutate_tree(doc, rng, values=NASTY, keys=UNKNOWN_KEYS) -> tuple[object, str]:
    """One structural edit of a parsed document; returns the (possibly new) document and what was done."""
    paths = _paths(doc)
    if not paths:
        new = pick(rng, values)
        return new, f"document {show(doc)} -> {show(new)}"
    parent_path, key = paths[int(rng.integers(len(paths)))]
    parent = _get(doc, parent_path)
    where = ".".join(map(str, (*parent_path, key)))
    old = parent[key]
    what = pick_weighted(
        rng, {"delete": 2, "replace": 3, "edge": 3, "insert": 2, "duplicate": 1, "swap": 1, "clear": 1}
    )
    if what == "delete":
        del parent[key]
        return doc, f"delete {where}"
    if what == "replace":
        parent[key] = copy.deepcopy(pick(rng, values))
        return doc, f"{where}: {show(old)} -> {show(parent[key])}"
    if what == "edge":
        parent[key] = _edge_of(old, rng)
        return doc, f"{where}: {show(old)} -> {show(parent[key])}"
    if what == "insert":
        target = old if isinstance(old, (dict, list)) else parent
        name = where if target is old else ".".join(map(str, parent_path)) or "(top)"
        value = copy.deepcopy(pick(rng, values))
        if isinstance(target, dict):
            new_key = pick(rng, keys)
            target[new_key] = value
            return doc, f"{name}: add key {new_key!r}: {show(value)}"
        target.insert(int(rng.integers(len(target) + 1)), value)
        return doc, f"{name}: insert {show(value)}"
    if what == "duplicate" and isinstance(parent, list):
        parent.insert(int(rng.integers(len(parent) + 1)), copy.deepcopy(old))
        return doc, f"duplicate {where}"
    if what == "swap" and isinstance(parent, list) and len(parent) > 1:
        j = int(rng.integers(len(parent)))
        parent[key], parent[j] = parent[j], parent[key]
        return doc, f"swap {where} with [{j}]"
    parent[key] = type(old)() if isinstance(old, (dict, list, str)) else None
    return doc, f"{where}: {show(old)} -> {show(parent[key])}"


def mutate_tree_rounds(doc, rng, values=NASTY, keys=UNKNOWN_KEYS) -> tuple[object, str]:
    """One to three structural edits."""
    said = []
    for _ in range(int(rng.integers(1, 4))):
        doc, what = mutate_tree(doc, rng, values, keys)
        said.append(what)
    return doc, "; ".join(said)


# ---------------------------------------------------------------------------------------------------- text
def mutate_text(text: str, rng) -> tuple[str, str]:
    """One to four character edits (YAML's and JSON's special characters among them), or a cut."""
    said = []
    for _ in range(int(rng.integers(1, 5))):
        at = int(rng.integers(len(text) + 1))
        how = pick(rng, ["insert", "delete", "replace", "cut"])
        chars = "".join(pick(rng, TEXT_CHARS) for _ in range(int(rng.integers(1, 4))))
        if how == "insert":
            text = text[:at] + chars + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + len(chars) :]
        elif how == "replace":
            text = text[:at] + chars + text[at + len(chars) :]
        else:
            text = text[:at]
        said.append(f"{how} {chars!r} at {at}" if how != "cut" else f"cut at {at}")
    return text, "text: " + "; ".join(said)
