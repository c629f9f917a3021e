"""The docs' sections read off the code (tools/gen_docs.py) are what the code says now: the integer op table and its
interpreters in docs/int8.md, the module map in docs/architecture.md. A kind, an interpreter or a module added,
moved or renamed without running the generator fails here."""

from __future__ import annotations

import pytest

from tcc.intops import INT_OPS
from tests.helpers import REPO, load_tool

gen_docs = load_tool("gen_docs")


@pytest.mark.parametrize("name", sorted(gen_docs.SECTIONS))
def test_generated_section_is_current(name):
    page, make = gen_docs.SECTIONS[name]
    text = (REPO / page).read_text(encoding="utf-8")
    assert gen_docs.rewritten(text, name, make()) == text, f"{page}: section {name!r} is stale: run tools/gen_docs.py"


def test_the_sections_say_what_the_code_has():
    """The generated text names every kind, the seven interpreters and every module (so a generator that wrote
    nothing would fail too)."""
    kinds, modules = gen_docs.kinds(), gen_docs.modules()
    assert all(f"| `{k}` |" in kinds for k in INT_OPS)
    assert "7 interpreters" in kinds and "`tcc.backends.tvm.int8.lower.RelaxLowering` | tvm" in kinds
    assert (
        "| `tcc.onnx_import` | `compiler/onnx_import/` |" in modules and "| `tcc.train.qat.quant_points` |" in modules
    )
    assert modules.count("\n") + 1 == 2 + len(list((REPO / "compiler").rglob("*.py"))) + len(
        list((REPO / "backends").rglob("*.py"))
    )


def test_first_sentence_keeps_abbreviations_and_cuts_long_ones():
    assert gen_docs.first_sentence("Cross-layer equalization (Nagel et al. 2019). More.") == (
        "Cross-layer equalization (Nagel et al. 2019)."
    )
    assert gen_docs.first_sentence("A pipe | in it, e.g. This.\n\nSecond paragraph.") == "A pipe \\| in it, e.g. This."
    cut = gen_docs.first_sentence("x" * 150 + ": " + "y" * 100 + ".")
    assert cut == "x" * 150 + " ..."
