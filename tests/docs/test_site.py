"""The documentation site (mkdocs.yml, docs/): it builds with `mkdocs build --strict` (every link, anchor and page
checked; mkdocs.yml's `validation` makes each of them a warning, and strict makes a warning an error), and the nav
lists every page under docs/. The pages' commands are test_readme.py's."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.helpers import REPO

DOCS = REPO / "docs"
needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not importable: pip install -e '.[test]' installs mkdocs-material",
)


def nav_pages(nav) -> list[str]:
    """Every page path a mkdocs nav names (items are a path, {title: path} or {title: [items]})."""
    pages = []
    for item in nav:
        if isinstance(item, str):
            pages.append(item)
        elif isinstance(item, dict):
            for value in item.values():
                pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def config() -> dict:
    # mkdocs.yml may hold python tags (none today); the nav is plain YAML either way
    return yaml.load((REPO / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)


def test_every_page_is_in_the_nav_or_on_the_notes_index():
    """The sidebar holds the pages; the notes (many, with sentence-long titles) are listed on notes/index.md."""
    cfg = config()
    assert cfg.get("docs_dir", "docs") == "docs"
    listed = nav_pages(cfg["nav"])
    notes = DOCS / "notes" / "index.md"
    on_index = {f"notes/{name}" for name in re.findall(r"\]\(([\w.-]+\.md)\)", notes.read_text(encoding="utf-8"))}
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    twice = sorted({p for p in listed if listed.count(p) > 1})
    assert twice == [], "pages listed twice in the nav"
    assert "notes/index.md" in listed and not any(p.startswith("notes/") and p != "notes/index.md" for p in listed)
    assert sorted(set(on_disk) - set(listed) - on_index) == [], (
        "pages neither in mkdocs.yml's nav nor on the notes index"
    )
    assert sorted((set(listed) | on_index) - set(on_disk)) == [], "entries without a page"


@needs_mkdocs
def test_site_builds_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [
        sys.executable,
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "--config-file",
        str(REPO / "mkdocs.yml"),
        "--site-dir",
        str(tmp_path / "site"),
    ]
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
    for page in nav_pages(config()["nav"]):
        built = tmp_path / "site" / (page[: -len("index.md")] if page.endswith("index.md") else page[:-3] + "/")
        assert (built / "index.html").is_file(), f"{page} was not built"
