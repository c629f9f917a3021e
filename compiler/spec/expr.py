"""`${...}` expressions: parsed with Python's `ast`, interpreted here over a small whitelist (never `eval`).

A string that is exactly one `${...}` evaluates to a typed value; `${}` inside a longer string interpolates.
"""

from __future__ import annotations

import ast
import math
import operator
import re

from ..errors import Location, SpecError

_WHOLE = re.compile(r"^\$\{(.*)\}$", re.DOTALL)
_PART = re.compile(r"\$\{(.*?)\}", re.DOTALL)
MAX_EXPR_LEN = 500
MAX_INT = 2**63  # results beyond this are refused (no bignum blow-ups from `**`)
MAX_LEN = 100_000  # strings and lists longer than this are refused


def make_divisible(v, divisor, min_value=None):
    """torchvision's channel rounding (MobileNet, EfficientNet)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # never round down by more than 10%
        new_v += divisor
    return new_v


def _round(v, ndigits=None):
    """`round`, with the digits bounded: `round(1, -10**18)` would compute 10**(10**18)."""
    if ndigits is None:
        return round(v)
    if isinstance(ndigits, bool) or not isinstance(ndigits, int) or abs(ndigits) > 64:
        raise ValueError(f"round() digits must be an integer from -64 to 64, got {ndigits!r}")
    return round(v, ndigits)


def _sum(values):
    """`sum` of a list of numbers (a stage's first block index: `sum(depths[:s])`)."""
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"sum() takes a list of numbers, got {values!r}")
    return sum(values)


FUNCTIONS = {
    "sum": _sum,
    "min": min,
    "max": max,
    "abs": abs,
    "int": int,
    "float": float,
    "round": _round,
    "ceil": math.ceil,
    "floor": math.floor,
    "len": len,
    "make_divisible": make_divisible,
}

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_UNOPS = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}


def is_expr(value) -> bool:
    return isinstance(value, str) and "${" in value


def evaluate(value, env: dict, where: Location):
    """Evaluate a scalar that may hold `${...}`; other values are returned unchanged."""
    if not is_expr(value):
        return value
    whole = _WHOLE.match(value)
    if whole and "${" not in whole.group(1):
        return _eval_source(whole.group(1), env, where)
    return _PART.sub(lambda m: _to_text(_eval_source(m.group(1), env, where)), value)


def _to_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _eval_source(source: str, env: dict, where: Location):
    if len(source) > MAX_EXPR_LEN:
        raise SpecError(f"expression longer than {MAX_EXPR_LEN} characters", where)
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as e:
        raise SpecError(f"bad expression '${{{source}}}': {e.msg}", where) from None
    try:
        return _Interpreter(env, source, where).visit(tree.body)
    except SpecError:
        raise
    except ZeroDivisionError:
        raise SpecError(f"division by zero in '${{{source}}}'", where) from None
    except (TypeError, ValueError, IndexError, KeyError, OverflowError) as e:
        raise SpecError(f"cannot evaluate '${{{source}}}': {e}", where) from None
    except RecursionError:
        raise SpecError(f"expression '${{{source}}}' is nested too deeply", where) from None


class _Interpreter(ast.NodeVisitor):
    def __init__(self, env: dict, source: str, where: Location):
        self.env, self.source, self.where = env, source, where

    def fail(self, msg: str):
        raise SpecError(f"{msg} in '${{{self.source}}}'", self.where)

    def generic_visit(self, node):
        self.fail(f"'{type(node).__name__}' is not allowed in expressions")

    def checked(self, v):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
            self.fail("integer result too large")
        if isinstance(v, float) and not math.isfinite(v):
            self.fail("result is not a finite number")
        if isinstance(v, complex):  # (-8) ** 0.5
            self.fail("result is not a real number")
        if isinstance(v, (str, list)) and len(v) > MAX_LEN:
            self.fail(f"result longer than {MAX_LEN:,}")
        return v

    def visit_Constant(self, node):
        if isinstance(node.value, (int, float, str, bool)) or node.value is None:
            return node.value
        self.fail(f"constant {node.value!r} is not allowed")

    def visit_Name(self, node):
        if node.id in self.env:
            return self.env[node.id]
        if node.id in ("true", "True"):
            return True
        if node.id in ("false", "False"):
            return False
        known = ", ".join(sorted(k for k in self.env if not k.startswith("_"))) or "none"
        self.fail(f"unknown name '{node.id}' (known: {known})")

    def visit_BinOp(self, node):
        op = _BINOPS.get(type(node.op))
        if op is None:
            self.fail(f"operator '{type(node.op).__name__}' is not allowed")
        a, b = self.visit(node.left), self.visit(node.right)
        if op is operator.pow and isinstance(b, (int, float)) and abs(b) > 64:
            self.fail("exponent larger than 64")
        if op is operator.mul and (isinstance(a, (str, list)) or isinstance(b, (str, list))):
            self.fail("repeating strings or lists with '*' is not allowed")
        if op is operator.mod and isinstance(a, str):  # '%0999999999d' % 1 would build a huge string
            self.fail("string formatting with '%' is not allowed")
        return self.checked(op(a, b))

    def visit_UnaryOp(self, node):
        return self.checked(_UNOPS[type(node.op)](self.visit(node.operand)))

    def visit_BoolOp(self, node):
        if isinstance(node.op, ast.And):
            result = True
            for v in node.values:
                result = self.visit(v)
                if not result:
                    return result
            return result
        result = False
        for v in node.values:
            result = self.visit(v)
            if result:
                return result
        return result

    def visit_Compare(self, node):
        left = self.visit(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = self.visit(comp)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True

    def visit_IfExp(self, node):
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    def visit_List(self, node):
        if len(node.elts) > 4096:
            self.fail("list literal too long")
        return [self.visit(e) for e in node.elts]

    visit_Tuple = visit_List

    def visit_Subscript(self, node):
        seq = self.visit(node.value)
        if isinstance(node.slice, ast.Slice):  # a slice is never longer than what it slices
            bounds = [
                None if b is None else self.visit(b) for b in (node.slice.lower, node.slice.upper, node.slice.step)
            ]
            if any(b is not None and (isinstance(b, bool) or not isinstance(b, int)) for b in bounds):
                self.fail("slice bounds must be integers")
            return seq[slice(*bounds)]
        return seq[self.visit(node.slice)]

    def visit_Call(self, node):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else "this call"
            self.fail(f"unknown function '{name}' (known: {', '.join(sorted(FUNCTIONS))})")
        if node.keywords:
            self.fail("keyword arguments are not allowed")
        return self.checked(FUNCTIONS[node.func.id](*[self.visit(a) for a in node.args]))
