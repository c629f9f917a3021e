"""The layering of the package, written down as import-linter contracts in pyproject.toml ([tool.importlinter]):
from the CLI down to the IR and the op tables, backends independent of each other, quant's sub-packages in order.
`lint-imports` keeps them; a deliberate bad import in a copy of the package is caught; no import circles."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

LINT = Path(sys.executable).with_name("lint-imports")
CIRCLES = REPO.parent / "shared" / "tools" / "import_circles.py"


def _package(root: Path) -> Path:
    """The import package as one tree (tcc from compiler/, tcc.backends from backends/), as a wheel installs it:
    import-linter walks a package's folder, and pyproject.toml maps the two folders into one package."""
    pkg = root / "tcc"
    shutil.copytree(REPO / "compiler", pkg, ignore=shutil.ignore_patterns("__pycache__", "backends", "zoo", "specs"))
    shutil.copytree(REPO / "backends", pkg / "backends", ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    return pkg


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_contracts_kept(tmp_path):
    _package(tmp_path)
    r = _lint(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


@pytest.mark.parametrize(
    "module, bad_import, broken",
    [
        ("errors.py", "import tcc.cli  # noqa", "tcc.errors is not allowed to import tcc.cli"),
        (
            "backends/ort/backend.py",
            "import tcc.backends.tvm.runner  # noqa",
            "tcc.backends.ort is not allowed to import tcc.backends.tvm",
        ),
        (
            "quant/table/file.py",
            "import tcc.quant.steps.rounding  # noqa",
            "tcc.quant.table is not allowed to import tcc.quant.steps",
        ),
    ],
)
def test_a_bad_import_is_caught(tmp_path, module, bad_import, broken):
    """The package with one import that breaks a contract: lint-imports fails and names it."""
    target = _package(tmp_path) / module
    target.write_text(target.read_text() + f"\n{bad_import}\n")
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert broken in r.stdout, r.stdout[-3000:]


@pytest.mark.skipif(not CIRCLES.exists(), reason="../shared/tools/import_circles.py is not beside the checkout")
def test_no_import_circles():
    r = subprocess.run([sys.executable, str(CIRCLES)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout


def test_modules_named_by_scripts_and_docs_exist():
    """Every module a shell script, the Makefile or a docs page runs or imports (`python -m tcc...`, `from tcc...
    import`) exists: a move of a module must carry its callers outside Python along (make setup-arm, make demo)."""
    import importlib.util
    import re

    files = [*(REPO / "tools").glob("*.sh"), REPO / "Makefile", REPO / "README.md", *(REPO / "docs").rglob("*.md")]
    pattern = re.compile(r"(?:python3?\S* -m|from) (tcc(?:\.\w+)*)")
    named = {(f.relative_to(REPO).as_posix(), m) for f in files for m in pattern.findall(f.read_text())}
    assert any(f == "tools/setup_arm.sh" for f, _ in named), "the scan found none of setup_arm.sh's modules"
    missing = sorted((f, m) for f, m in named if importlib.util.find_spec(m) is None)
    assert not missing, f"modules named but not found: {missing}"
