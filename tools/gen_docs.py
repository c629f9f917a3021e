"""Write the docs' sections that are read off the code, between their markers, so that they cannot drift:

- docs/int8.md, `kinds`: the integer op table (tcc.intops.INT_OPS: each kind, its role, the ONNX ops it takes, the
  lowerings that implement it) and the interpreters of a quantized graph (every subclass of tcc.intops.Interpreter
  that names a lowering, found in the source);
- docs/architecture.md, `modules`: every package and module of tcc with the first sentence of its docstring.

    .venv/bin/python tools/gen_docs.py          # rewrite the sections
    .venv/bin/python tools/gen_docs.py --check  # exit 1, naming the sections, if a page is out of date

A section is the text between `<!-- generated: NAME (tools/gen_docs.py) -->` and `<!-- end: NAME -->`;
tests/docs/test_generated.py keeps the committed pages equal to what this writes.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from collections.abc import Callable
from pathlib import Path

from tcc.intops import ALL_LOWERINGS, INT_OPS, Role

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"compiler": "tcc", "backends": "tcc.backends"}  # folder -> package (pyproject.toml's package-dir)
ABBREVIATIONS = ("e.g.", "i.e.", "et al.", "vs.", "etc.", "approx.")


# ---------------------------------------------------------------------------------------------------- kinds
def _interpreters() -> list[tuple[str, str]]:
    """(module.Class, its lowering) of every Interpreter subclass that names a lowering, in module order: read from
    the source (importing TVM's lowering would load TVM)."""
    names = vars(sys.modules["tcc.intops"])
    lowerings = {n: v for n, v in names.items() if n.isupper() and isinstance(v, str) and v in ALL_LOWERINGS}
    out = []
    for path, module in _modules():
        for node in _tree(path).body:
            if not isinstance(node, ast.ClassDef) or "Interpreter" not in {ast.unparse(b) for b in node.bases}:
                continue
            for s in node.body:
                if isinstance(s, ast.Assign) and ast.unparse(s.targets[0]) == "lowering":
                    out.append((f"{module}.{node.name}", lowerings.get(ast.unparse(s.value), ast.unparse(s.value))))
    return out


def _kinds_of(lowering: str) -> str:
    """Which kinds a lowering takes, said against the integer ones."""
    integer = {k for k, op in INT_OPS.items() if op.role is not Role.FLOAT}
    taken = {k for k, op in INT_OPS.items() if lowering in op.lowerings}
    lacks = ", ".join(sorted(integer - taken))
    parts = [f"every integer kind but {lacks}" if lacks else "every integer kind"]
    if taken - integer:
        parts.append(f"and the float-only {', '.join(k for k in INT_OPS if k in taken - integer)}")
    return " ".join(parts)


def kinds() -> str:
    """The integer op table and its interpreters, as Markdown."""
    integer = [k for k, op in INT_OPS.items() if op.role is not Role.FLOAT]
    floats = [k for k, op in INT_OPS.items() if op.role is Role.FLOAT]
    lines = [
        f"{len(INT_OPS)} kinds: {len(integer)} with an integer form, {len(floats)} float only ({', '.join(floats)}: "
        "in an INT8 graph a float island where the target allows float ops). A kind with an integer form is an "
        "island too where a target's rules keep it in float (`TargetRules.float_kinds`: softmax on ONNX Runtime, "
        "TFLite and the NPUs).",
        "",
        "Placement (`tcc calibrate --min-cos`, `--speed`) weighs keeping a node of a kind that computes in float; a "
        "node of the other kinds stays float only between float nodes (`IntOp.placeable`, from the role).",
        "",
        "| kind | role | ONNX ops | placement | lowerings |",
        "|---|---|---|---|---|",
    ]
    for kind, op in INT_OPS.items():
        onnx = ", ".join(op.onnx) if op.onnx else "(an AveragePool and the 1 x 1 Conv that alone reads it)"
        placed = "float" if op.role is Role.FLOAT else "weighed" if op.placeable else "between floats"
        lines.append(f"| `{kind}` | {op.role.value} | {onnx} | {placed} | {', '.join(sorted(op.lowerings))} |")
    found = _interpreters()
    lines += [
        "",
        f"{len(found)} interpreters walk a quantized graph, each with one method per kind whose `lowerings` name its "
        "lowering (checked when the class is created):",
        "",
        "| interpreter | lowering | kinds |",
        "|---|---|---|",
        *(f"| `{name}` | {lowering} | {_kinds_of(lowering)} |" for name, lowering in found),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- modules
@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _modules() -> list[tuple[Path, str]]:
    """(file, dotted name) of every module of the package, packages before their modules, in path order."""
    out = []
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py"), key=lambda p: p.relative_to(ROOT).parts):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            out.append((path, ".".join((package, *parts))))
    return out


def first_sentence(doc: str, most: int = 200) -> str:
    """The first sentence of a docstring's first paragraph, on one line; past `most` characters, cut after its last
    clause that ends before them (a table cell: `|` escaped)."""
    text = " ".join(doc.split("\n\n")[0].split())
    for m in re.finditer(r"[.!?](?=\s+[A-Z`(\[])", text):
        if not text[: m.end()].endswith(ABBREVIATIONS):
            text = text[: m.end()]
            break
    if len(text) > most:
        cut = max(text.rfind(mark, 0, most) for mark in ("; ", ": ", " (", ", ", " -- "))
        text = text[:cut] + " ..." if cut > most // 3 else text
    return text.replace("|", "\\|")


def modules() -> str:
    """Every package and module of tcc with what its docstring says first, as a Markdown table."""
    lines = ["| module | file | what it is |", "|---|---|---|"]
    for path, name in _modules():
        doc = ast.get_docstring(_tree(path)) or ""
        where = path.relative_to(ROOT).as_posix()
        where = where[: -len("__init__.py")] if where.endswith("/__init__.py") else where
        lines.append(f"| `{name}` | `{where}` | {first_sentence(doc)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- pages
SECTIONS: dict[str, tuple[str, Callable[[], str]]] = {
    "kinds": ("docs/int8.md", kinds),
    "modules": ("docs/architecture.md", modules),
}


def _marks(name: str) -> tuple[str, str]:
    return f"<!-- generated: {name} (tools/gen_docs.py) -->", f"<!-- end: {name} -->"


def rewritten(text: str, name: str, body: str) -> str:
    """`text` with section `name`'s body replaced."""
    start, end = _marks(name)
    if text.count(start) != 1 or text.count(end) != 1:
        raise SystemExit(f"section {name}: the page needs one {start!r} and one {end!r}")
    head, rest = text.split(start)
    return f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


def pages() -> dict[str, str]:
    """Each page with a generated section, as it should read."""
    out: dict[str, str] = {}
    for name, (page, make) in SECTIONS.items():
        out[page] = rewritten(out.get(page) or (ROOT / page).read_text(encoding="utf-8"), name, make())
    return out


def main(argv: list[str]) -> int:
    stale = [page for page, text in pages().items() if (ROOT / page).read_text(encoding="utf-8") != text]
    if "--check" in argv:
        for page in stale:
            print(f"{page} is out of date: run tools/gen_docs.py", file=sys.stderr)
        return 1 if stale else 0
    for page, text in pages().items():
        (ROOT / page).write_text(text, encoding="utf-8")
    print("rewrote " + (", ".join(stale) if stale else "nothing: every page is up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
