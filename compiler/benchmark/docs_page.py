"""`tcc bench --docs PAGE`: a run's tables written into a docs page (docs/bench.md), stamped with the machine, its
CPU flags, the commit and the date.

One section per CPU class and vendor (and quick runs apart), between two HTML comments that mkdocs does not show, so
a run on an AVX2 machine replaces the AVX2 section and leaves the AVX-512 one, and everything written by hand around
them, as it was. The vendor keeps an AMD and an Intel machine of one class apart: their kernels differ (AMX is
Intel's) and so do their ratios. A page without the section gets it appended."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError
from ..files import atomic_write
from .markdown import to_markdown

_BEGIN = "<!-- tcc bench --docs: {key} -->"
_END = "<!-- /tcc bench --docs: {key} -->"


_VENDORS = {"amd": "AMD", "intel": "Intel"}


def machine_name(doc: dict) -> str:
    """The CPU class and, where the CPU's name gives it, the vendor: `avx512-vnni, AMD`."""
    mach = doc["machine"]
    vendor = next((name for key, name in _VENDORS.items() if key in mach["cpu"].lower()), None)
    return mach["isa_class"] + (f", {vendor}" if vendor else "")


def section_key(doc: dict) -> str:
    return machine_name(doc).replace(", ", "-").lower() + ("-quick" if doc.get("quick") else "")


def stamp(doc: dict) -> str:
    """The line the docs put above every measured table: machine, CPU flags, commit, date."""
    mach, run = doc["machine"], doc.get("stamp", {})
    commit = run.get("commit")
    commit = (
        f"`{commit[:7]}`" + (" with uncommitted changes" if run.get("dirty") else "")
        if commit
        else "an installed tcc (no commit)"
    )
    return (
        f"**Machine:** {mach['cpu']}, {mach['cores']} cores · **CPU flags:** {' '.join(mach['isa']) or 'none'} "
        f"(class {mach['isa_class']}) · **Commit:** {commit} · **Date:** {run.get('date', 'unknown')}"
    )


def section(doc: dict) -> str:
    """The run as a docs section: a heading, the stamp, and bench.md's tables with their headings two levels down."""
    body = to_markdown(doc).splitlines()[1:]  # bench.md's own title is replaced by the heading below
    body = [("##" + line) if line.startswith("#") else line for line in body]
    title = f"### Measured by `tcc bench{' --quick' if doc.get('quick') else ''}`: {machine_name(doc)}"
    return "\n".join([title, "", stamp(doc), *body]).rstrip() + "\n"


def update_page(text: str, doc: dict) -> str:
    """`text` with this run's section replaced (or appended when the page has none for its CPU class)."""
    key = section_key(doc)
    begin, end = _BEGIN.format(key=key), _END.format(key=key)
    block = f"{begin}\n{section(doc)}{end}\n"
    found = re.search(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", text, flags=re.DOTALL)
    if found:
        return text[: found.start()] + block + text[found.end() :]
    return text.rstrip("\n") + "\n\n" + block


def write_page(path: str | Path, doc: dict) -> Path:
    """Rewrite the docs page `path` in place (atomically) with this run's section."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--docs {path}: no such page (give an existing markdown page, e.g. docs/bench.md)")
    text = update_page(path.read_text(encoding="utf-8"), doc)
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
