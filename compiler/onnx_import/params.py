"""A local block's parameters, found while its body is written from all its instances side by side.

Every argument of the body comes as its values across the instances: one value is written as it is, the values of
the node's input channels as `${in_ch}`, and anything else becomes a parameter (one per distinct list of values).
Parameters are named once the body is written: by the argument (`stride`) where one list of values has that name,
else by the node and the argument (`expand_out`, `project_out`).
"""

from __future__ import annotations

import re

from ..spec.expand import COMMON_KEYS, NODE_KINDS

_RESERVED = {*COMMON_KEYS, *NODE_KINDS, "in_ch", "in_h", "in_w"}  # node keys and the shape names of expressions
_PLACEHOLDER = re.compile(r"\$\{\x00(\d+)\}")


def thawed(value):
    """An argument value as written (tuples back to lists)."""
    return [thawed(v) for v in value] if isinstance(value, tuple) else value


def _type_of(values) -> str:
    kinds = {type(v) for v in values}
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", tuple)):
        if kinds == {kind}:
            return name
    return "any"


class NotShared(Exception):
    """Copies that were to be written once differ in an argument."""


class Params:
    """The parameters of one block with `instances` instances (1: the model itself, which has none)."""

    def __init__(self, instances: int):
        self.instances = instances
        self.found: dict[tuple, tuple[int, str, str]] = {}  # values -> (placeholder number, argument, node id)
        self.names: list[str] = []  # by placeholder number, once named

    def value(self, key: str, values: tuple, in_ch: tuple, owner: str):
        """The written value of argument `key` of node `owner`: the value itself, `${in_ch}`, or a placeholder of
        a parameter, named by `finish`."""
        if len(set(values)) == 1:
            return thawed(values[0])
        if values == in_ch:
            return "${in_ch}"
        if values not in self.found:
            self.found[values] = (len(self.found), key, owner)
        return f"${{\x00{self.found[values][0]}}}"

    def finish(self, nodes: list[dict]) -> list[dict]:
        """Names the parameters and writes the names into the nodes."""
        by_key: dict[str, int] = {}
        for _, key, _ in self.found.values():
            by_key[key] = by_key.get(key, 0) + 1
        taken: set[str] = set()
        for _, key, owner in sorted(self.found.values()):
            name = key if by_key[key] == 1 else f"{owner}_{key}" if owner.isidentifier() else f"{key}_{owner}"
            if not name.isidentifier() or name in _RESERVED:
                name = f"p_{name}"
            base, k = name, 1
            while name in taken:
                k += 1
                name = f"{base}{k}"
            taken.add(name)
            self.names.append(name)
        return [self._named(n) for n in nodes]

    def _named(self, value):
        if isinstance(value, dict):
            return {k: self._named(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._named(v) for v in value]
        if isinstance(value, str):
            return _PLACEHOLDER.sub(lambda m: "${" + self.names[int(m.group(1))] + "}", value)
        return value

    def decls(self) -> dict[str, str]:
        """{name: type} in the order found."""
        return {self.names[k]: _type_of(values) for values, (k, _, _) in self.found.items()}

    def of_instance(self, j: int) -> dict:
        return {self.names[k]: thawed(values[j]) for values, (k, _, _) in self.found.items()}


class SharedParams:
    """The parameters of `copies` copies of one body in each instance of the enclosing block (parallel branches):
    written once, so each argument must be the same in every copy; it is then the enclosing block's argument."""

    def __init__(self, outer: Params, copies: int):
        self.outer, self.copies = outer, copies
        self.instances = outer.instances * copies

    def value(self, key: str, values: tuple, in_ch: tuple, owner: str):
        n = self.copies
        per_instance = [values[j * n : (j + 1) * n] for j in range(self.outer.instances)]
        if all(len(set(v)) == 1 for v in per_instance):
            return self.outer.value(key, tuple(v[0] for v in per_instance), in_ch[::n], owner)
        if values == in_ch:  # differs between copies as their inputs do (a dense layer's depthwise conv)
            return "${in_ch}"
        raise NotShared(f"{owner}.{key}")
