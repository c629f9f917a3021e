"""The spec's YAML text: consecutive equal nodes folded into `repeat`, each node on one line where it has no body,
bodies indented below their node.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}
_NESTED = ("body", "branches", "residual")  # keys whose value may be a list of nodes
WIDTH = 120  # the repository's line length


def scalar(value) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return value if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS else json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {scalar(v)}" for k, v in value.items()) + "}"
    text = repr(value)
    if isinstance(value, float) and "e" in text and "." not in text:
        text = text.replace("e", ".0e")  # 1e-06 is a string to YAML 1.1 readers; 1.0e-06 a float to all
    return text


def flow(lead: str, mapping: dict, width: int = WIDTH) -> list[str]:
    """`lead` then the mapping in flow style, continued on lines aligned after its `{` beyond `width`."""
    parts = [f"{k}: {scalar(v)}" for k, v in mapping.items()]
    lines, line = [], lead + "{"
    for k, part in enumerate(parts):
        piece = part + ("}" if k == len(parts) - 1 else ",")
        if len(line) + 1 + len(piece) > width and not line.endswith("{"):
            lines.append(line)
            line = " " * (len(lead) + 1) + piece
        else:
            line += ("" if line.endswith("{") else " ") + piece
    return lines + [line if parts else lead + "{}"]


def _has_body(node: dict) -> bool:
    return any(isinstance(node.get(k), list) for k in _NESTED)


def _copies(nodes: list[dict], start: int) -> int:
    """How many nodes from `start` are copies of it: ids consecutive numbers, nothing else different, no `in`."""
    first = nodes[start]
    if _has_body(first) or "in" in first or not str(first.get("id", "")).isdigit():
        return 1
    rest = {k: v for k, v in first.items() if k != "id"}
    n = 1
    while (
        start + n < len(nodes)
        and nodes[start + n].get("id") == str(int(first["id"]) + n)
        and {k: v for k, v in nodes[start + n].items() if k != "id"} == rest
    ):
        n += 1
    return n


def fold_repeats(nodes: list[dict]) -> list[dict]:
    """Runs of copies as one `repeat` node named as they were (`name: "${i + 1}"`), in every nested body; a body
    that is one such run from 0 becomes `repeat` on its own node (copies nest under its id as id.0, id.1, ...)."""
    out: list[dict[str, Any]] = []
    k = 0
    while k < len(nodes):
        node: dict[str, Any] = {
            key: fold_repeats(v) if key in _NESTED and isinstance(v, list) else v for key, v in nodes[k].items()
        }
        n = _copies(nodes, k)
        if n > 1:
            first = int(node["id"])
            node = {
                "repeat": n,
                "name": "${i}" if first == 0 else f"${{i + {first}}}",
                **{key: v for key, v in node.items() if key != "id"},
            }
        out.append(node)
        k += n
    for k, node in enumerate(out):
        if (
            set(node) == {"id", "body"}
            and len(body := node["body"]) == 1
            and body[0].get("name") == "${i}"
            and "id" not in body[0]
        ):
            out[k] = {"id": node["id"], **{key: v for key, v in body[0].items() if key != "name"}}
    _name_repeats(out)
    return out


def _name_repeats(nodes: list[dict]) -> None:
    """A repeat node without an id is named by the loader from its block or op (then `_1`, `_2`); where that name
    is some other node's id, it gets an id of its own."""
    ids = {n["id"] for n in nodes if "id" in n}
    seen: dict[str, int] = {}
    for k, node in enumerate(nodes):
        if "id" in node:
            continue
        base = node.get("block") or node.get("op") or "body"
        k = seen.get(base, 0)
        seen[base] = k + 1
        name = base if k == 0 else f"{base}_{k}"
        if name in ids:
            new, j = f"{base}_copies", 1
            while new in ids:
                j += 1
                new = f"{base}_copies{j}"
            ids.add(new)
            nodes[k] = {"id": new, **node}


def render(nodes: list[dict], indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    for node in nodes:
        if not _has_body(node):
            lines += flow(f"{pad}- ", node)
            continue
        first = True
        for key, value in node.items():
            lead = f"{pad}- " if first else f"{pad}  "
            first = False
            if isinstance(value, list) and key in _NESTED:
                lines.append(f"{lead}{key}:")
                lines += render(value, indent + 4)
            else:
                lines.append(f"{lead}{key}: {scalar(value)}")
    return lines
