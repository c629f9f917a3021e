#!/usr/bin/env python3
"""mypy on the package `tcc` as it installs (`make test` runs it; its settings are pyproject.toml's [tool.mypy]).

pyproject.toml maps two folders into one import package (tcc from compiler/, tcc.backends from backends/), which
mypy cannot follow: this lays the package out as a tree of links under build/typecheck/ (kept, with mypy's cache,
between runs) and reports mypy's findings under the files' real paths.

    .venv/bin/python tools/typecheck.py          # exit 0: no error; 1: errors, listed as compiler/x.py:12: ...
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"
FOLDERS = {"compiler": Path("tcc"), "backends": Path("tcc") / "backends"}  # as [tool.setuptools] package-dir


def link_tree() -> None:
    """build/typecheck/tcc/... -> the real modules, made afresh (a removed module must not linger)."""
    shutil.rmtree(TREE / "tcc", ignore_errors=True)
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            link = TREE / package / path.relative_to(ROOT / folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, link)
        typed = ROOT / folder / "py.typed"
        if typed.exists():
            os.symlink(typed, TREE / package / "py.typed")


def real_path(line: str) -> str:
    """mypy's "tcc/backends/x.py:3: ..." as "backends/x.py:3: ..."."""
    return re.sub(r"^tcc/(backends/)?", lambda m: "backends/" if m.group(1) else "compiler/", line)


def main() -> int:
    link_tree()
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "tcc"],
        cwd=TREE,
        capture_output=True,
        text=True,
    )
    out = "\n".join(real_path(line) for line in proc.stdout.splitlines())
    print(out, proc.stderr, sep="\n" if proc.stderr else "", end="\n")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
