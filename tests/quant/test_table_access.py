"""The calibration table is read through its typed accessors only (tcc.quant.table.file.CalibrationTable): no module
outside tcc.quant.table reaches its JSON document. The table has no `doc` attribute (a reader of one fails at once,
and mypy names it), its document is the private `_doc`, and this scan finds any code that goes behind that: `_doc`
touched outside compiler/quant/table, or `.doc` read off anything named like a table."""

from __future__ import annotations

import ast

from tcc.quant.table.file import CalibrationTable
from tests.helpers import REPO

FOLDERS = ("compiler", "backends", "tools", "tests")
TABLE_PACKAGE = "compiler/quant/table/"


def _raw_reads(source: str) -> list[tuple[int, str]]:
    """(line, expression) of each read of a table's document in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        base = ast.unparse(node.value)
        if node.attr == "_doc" or (node.attr == "doc" and "table" in base.lower()):
            found.append((node.lineno, f"{base}.{node.attr}"))
    return sorted(found)


def test_nothing_outside_the_table_package_reads_its_document():
    bad = []
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith(TABLE_PACKAGE):
                continue
            bad += [f"{rel}:{line}: {expr}" for line, expr in _raw_reads(path.read_text())]
    assert not bad, "the calibration table's document read as a dict (use its accessors): " + "; ".join(bad)


def test_the_scan_finds_raw_reads():
    source = "a = table.doc['target']\nb = self.table._doc\nc = op.doc\nd = options.table.doc.get('x')\n"
    assert [line for line, _ in _raw_reads(source)] == [1, 2, 4]


def test_the_table_has_no_public_document():
    table = CalibrationTable({"target": "ort", "tensors": {}})
    assert not hasattr(table, "doc")
    assert table.target == "ort" and table.rules.name == "ort" and table.tensors == {}
