"""What the documentation names exists: every repository path and every `tcc.x.y` module or attribute cited by
README.md, the docs pages and the package's docstrings and comments.

- Paths: in README.md and docs/**/*.md, each word of a backticked span that is a path under one of the repository's
  folders (`compiler/`, `backends/`, `tools/`, `docs/`, `spec/`, `tests/`, `zoo/`), or any path ending in `.py`
  (`quant/table/rules.py`: a file whose path ends so); in the docstrings and comments of compiler/ and backends/,
  every such path written out (backticked or not) and every `name.py`. A glob (`tests/zoo/test_int8_*.py`) must
  match a file, an anchor of a docs page (`docs/int8.md#the-placement-step`) one of its headings.
- Modules: `tcc.a.b` resolves to a module of the package (tcc is compiler/, tcc.backends backends/, tcc.zoo and
  tcc.specs the data folders), and what follows the module to names it defines (`tcc.intops.IntOp.placeable`):
  read from the module's source, else imported. A quoted `"tcc.x"` is a key (ONNX metadata, a TVM attribute), not a
  module.

A failure lists each citation as `file:line: cites X, ...`, so a module moved in one part of the tree shows every
place still naming the old one.
"""

from __future__ import annotations

import ast
import functools
import importlib
import io
import os
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

from markdown.extensions.toc import slugify

from tests.helpers import REPO

FOLDERS = ("compiler", "backends", "tools", "docs", "spec", "tests", "zoo")
ROOTED = re.compile(rf"(?:{'|'.join(FOLDERS)})/[\w./*-]*")
PY_FILE = re.compile(r"(?<![\w./-])([\w./-]*\w\.py)\b")
DOTTED = re.compile(r"(?<![\w./\"'-])tcc(?:\.[A-Za-z_]\w*)+(?![\w\"'])")
FILE_SUFFIXES = (".json", ".yaml", ".onnx", ".py", ".md")  # tcc.schema.json: a file name, not a module
PACKAGES = {"tcc": "compiler", "tcc.backends": "backends", "tcc.zoo": "zoo", "tcc.specs": "spec"}
# files of other projects that docstrings cite by their own paths (the project is named beside them)
EXTERNAL = {
    "tvm/s_tir/pipeline.py": "apache/tvm",
    "utils/ax_quantizer.py": "AXERA-TECH/QAT.axera",
}


# ---------------------------------------------------------------------------------------------------- sources
def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def sources() -> list[Path]:
    return [p for folder in ("compiler", "backends") for p in sorted((REPO / folder).rglob("*.py"))]


def page_lines(path: Path) -> Iterator[tuple[int, str]]:
    yield from enumerate(path.read_text(encoding="utf-8").splitlines(), 1)


@functools.cache
def prose_lines(path: Path) -> tuple[tuple[int, str], ...]:
    """The comments and docstrings of a Python file, line by line (code and its other strings are not prose)."""
    text = path.read_text(encoding="utf-8")
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    comments = [(t.start[0], t.string) for t in tokens if t.type == tokenize.COMMENT]
    return tuple(comments + list(_docstring_lines(ast.parse(text).body)))


def _docstring_lines(statements) -> Iterator[tuple[int, str]]:
    """The lines of every string statement (docstrings) in a block and the blocks inside it."""
    for node in statements:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            yield from ((node.lineno + k, line) for k, line in enumerate(node.value.value.splitlines()))
        for block in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(node, block, None)
            if isinstance(inner, list):
                yield from _docstring_lines(inner)


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO).as_posix()}:{line}"


# ---------------------------------------------------------------------------------------------------- paths
@functools.cache
def repo_files() -> tuple[str, ...]:
    """Every file of the checkout (not the virtual environment, caches or build outputs)."""
    out = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "site", "__pycache__")]
        out += [(Path(root) / f).relative_to(REPO).as_posix() for f in files]
    return tuple(out)


@functools.cache
def anchors(page: str) -> frozenset[str]:
    """The anchors of a docs page's headings, as mkdocs' toc makes them (a repeated heading gets _1, _2, ...)."""
    seen: dict[str, int] = {}
    for line in (REPO / page).read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#{1,6}\s+(.+?)\s*#*$", line)
        if m:
            slug = slugify(re.sub(r"[`*_]", "", m.group(1)), "-")
            seen[slug] = seen.get(slug, -1) + 1
    return frozenset(s if n == 0 else f"{s}_{k}" for s, n in seen.items() for k in range(n + 1))


def missing_path(cited: str) -> str | None:
    """Why a cited path does not resolve, or None: a repository path (a glob, an anchor of a page), a `.py` path
    that some file's path ends with, or a file name some file has."""
    path, _, anchor = cited.partition("#")
    path = path.rstrip(".,:;")
    if path in EXTERNAL:
        return None
    if ROOTED.fullmatch(path):
        if "*" in path:
            return None if any(Path(f).match(path) for f in repo_files()) else "no file matches it"
        if not (REPO / path).exists():
            return "no such file or folder"
        if anchor and path.endswith(".md") and path.startswith("docs/") and anchor not in anchors(path):
            return f"{path} has no heading #{anchor}"
        return None
    if any(f == path or f.endswith("/" + path) for f in repo_files()):
        return None
    return "no file of the repository is named so"


def path_citations() -> Iterator[tuple[str, str]]:
    """(file:line, path) for every path the pages and the package's prose cite."""
    for page in pages():
        for n, line in page_lines(page):
            for span in re.findall(r"`([^`\n]+)`", line):
                for word in span.split():
                    word = word.split(":")[0]  # path:line
                    if word.startswith("../"):  # outside the repository: fixtures (test_readme.py checks them)
                        continue
                    if ROOTED.fullmatch(word.split("#")[0]) or (word.endswith(".py") and "/" in word):
                        yield where(page, n), word
    for source in sources():
        for n, line in prose_lines(source):
            rooted = set()
            for m in re.finditer(rf"(?<![\w./-])({ROOTED.pattern})(?:#[\w-]+)?", line):
                if Path(m.group(1)).suffix or m.group(1).endswith("/"):  # compiler/linker is not a path
                    rooted.add(m.group(1))
                    yield where(source, n), m.group(0)
            for m in PY_FILE.finditer(line):
                if m.group(1) not in rooted and not any(r.endswith(m.group(1)) for r in rooted):
                    yield where(source, n), m.group(1)


def test_every_cited_path_exists():
    """Every repository path named by README.md, the docs pages and the package's docstrings and comments."""
    wrong = [f"{at}: cites {p}: {why}" for at, p in path_citations() if (why := missing_path(p))]
    assert not wrong, "paths that do not exist:\n" + "\n".join(wrong)


# ---------------------------------------------------------------------------------------------------- modules
def module_source(parts: list[str]) -> Path | None:
    """The file (or data folder) of the module `parts` of tcc, None where there is none."""
    name = ".".join(parts)
    package = max((p for p in PACKAGES if name == p or name.startswith(p + ".")), key=len, default=None)
    if package is None:
        return None
    base = REPO / PACKAGES[package]
    rest = name[len(package) + 1 :].split(".") if name != package else []
    path = base.joinpath(*rest)
    if path.is_dir():
        return path / "__init__.py" if (path / "__init__.py").exists() else path
    return path.with_suffix(".py") if path.with_suffix(".py").exists() else None


def _names(statements) -> set[str]:
    """The names a block of statements binds (defs, classes, assignments, imports; inside if / try / with)."""
    out: set[str] = set()
    for node in statements:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out |= {e.id for t in node.targets for e in ast.walk(t) if isinstance(e, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            out |= _names([b for b in ast.iter_child_nodes(node) if isinstance(b, ast.stmt)])
    return out


@functools.cache
def defined(path: Path) -> tuple[frozenset, dict]:
    """A module's top-level names, and for each of its classes the names its body binds."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    classes = {c.name: frozenset(_names(c.body)) for c in body if isinstance(c, ast.ClassDef)}
    return frozenset(_names(body)), classes


@functools.cache
def missing_module(dotted: str) -> str | None:
    """Why `tcc.a.b.Name.attr` does not resolve, or None."""
    parts = dotted.split(".")
    k = next((k for k in range(len(parts), 0, -1) if module_source(parts[:k]) is not None), 0)
    if k == 0:
        return "no such module"
    module, attrs, source = ".".join(parts[:k]), parts[k:], module_source(parts[:k])
    if not attrs:
        return None
    if source is None or source.is_dir():
        return f"{module} is a data folder, without {attrs[0]}"
    top, classes = defined(source)
    if attrs[0] in top and (len(attrs) == 1 or (len(attrs) == 2 and attrs[1] in classes.get(attrs[0], ()))):
        return None
    try:  # what the source does not show (inherited attributes, names made at run time): the module itself
        obj = importlib.import_module(module)
        for a in attrs:
            obj = getattr(obj, a)
    except (ImportError, AttributeError):
        return f"{module} has no {'.'.join(attrs)}"
    return None


def module_citations() -> Iterator[tuple[str, str]]:
    """(file:line, tcc.x.y) for every module or attribute the pages and the package's prose name."""
    for path, lines in [(p, page_lines(p)) for p in pages()] + [(s, prose_lines(s)) for s in sources()]:
        for n, line in lines:
            for m in DOTTED.finditer(line):
                if not m.group(0).endswith(FILE_SUFFIXES):
                    yield where(path, n), m.group(0)


def test_every_cited_module_exists():
    """Every `tcc.x.y` module or attribute named by README.md, the docs pages and the package's prose."""
    wrong = [f"{at}: cites {name}: {why}" for at, name in module_citations() if (why := missing_module(name))]
    assert not wrong, "modules and attributes that do not exist:\n" + "\n".join(wrong)


def test_the_checks_catch_what_is_gone():
    """The resolvers themselves: a moved module, a missing attribute, a wrong anchor and a bare file name are
    caught; what exists passes."""
    assert missing_path("compiler/targets.py") is None and missing_path("backends/targets.py")
    assert missing_path("quant/table/rules.py") is None and missing_path("tflite_lower.py")
    assert missing_path("tests/zoo/test_int8_*.py") is None and missing_path("tests/test_int8_zoo_*.py")
    assert missing_path("docs/int8.md#the-placement-step") is None and missing_path("docs/int8.md#no-such-heading")
    assert missing_module("tcc.intops.IntOp.placeable") is None and missing_module("tcc.quant.reference")
    assert missing_module("tcc.quant.table.file.CalibrationTable") is None
    assert missing_module("tcc.intops.TFLITE_UNARY")


def test_the_zoo_counts_the_pages_state_are_the_zoos():
    """README and the docs home say how many baselines the zoo holds: the number `tcc zoo` lists."""
    from tcc.spec.zoo import zoo_models

    baselines = sum(1 for model in zoo_models().values() if model.group == "baseline")
    for page in (REPO / "README.md", REPO / "docs" / "index.md"):
        stated = re.findall(r"(\d+) baselines from torchvision and timm", page.read_text(encoding="utf-8"))
        assert stated == [str(baselines)], page
