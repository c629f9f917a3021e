"""The installable package: a wheel built from the checkout holds every module, the block library, the model specs
and the JSON schemas; installed (--no-deps) into a fresh virtual environment that borrows this one's dependencies,
it resolves zoo blocks and models by name and builds an ONNX Runtime bundle from outside the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.helpers.tvm_util import needs_tvm, skip_unless_runtime


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # no build isolation: setuptools is in the test environment (the isolated build would fetch it)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("tcc-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; this environment's site-packages appended to its path (by a .pth
    line, which adds the folder without running its .pth files, so the editable checkout stays out of sight)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # the venv's own pip (borrowed): it installs into the venv and leaves this environment's editable tcc alone
    # (pip run from here with --prefix would uninstall it first)
    subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "-q", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    return py


def _source_modules() -> set[str]:
    mods = set()
    for folder, package in (("compiler", "tcc"), ("backends", "tcc/backends")):
        for f in (REPO / folder).rglob("*.py"):
            mods.add(f"{package}/{f.relative_to(REPO / folder).as_posix()}")
    return mods


def test_wheel_holds_code_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_source_modules() - names)
    assert not missing, f"modules missing from the wheel: {missing[:5]}"
    for folder, package, pattern in (
        ("zoo/blocks", "tcc/zoo/blocks", "*.yaml"),
        ("spec", "tcc/specs", "*.yaml"),
        ("spec/baselines", "tcc/specs/baselines", "*.yaml"),
        ("spec/schema", "tcc/specs/schema", "*.json"),
        ("backends/tvm/runtime_recipe", "tcc/backends/tvm/runtime_recipe", "**/*.*"),
    ):
        files = {f"{package}/{p.relative_to(REPO / folder).as_posix()}" for p in (REPO / folder).glob(pattern)}
        assert files and files <= names, f"{folder}/{pattern} not shipped: {sorted(files - names)[:3]}"


def _run(py: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TCC_BLOCK_PATH")}
    # the borrowed environment's commands (cmake, ninja: pip put them beside its interpreter) on PATH, as a user
    # who installed them has them: `tcc setup` in the fresh venv then finds them and installs nothing
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([str(py), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _tcc(py: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(py, cwd, "-m", "tcc", *args)


def test_installed_package_runs_outside_the_checkout(installed, tmp_path):
    where = _run(installed, tmp_path, "-c", "import tcc; print(tcc.__file__)").stdout.strip()
    assert Path(where).is_relative_to(installed.parent.parent), f"imported {where}, not the installed wheel"

    r = _tcc(installed, tmp_path, "check", "ddsnet", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["params"] == 189_870  # the paper's count: zoo blocks resolved from the wheel

    r = _tcc(installed, tmp_path, "zoo", "--json")
    assert r.returncode == 0, r.stderr
    zoo = json.loads(r.stdout)
    assert {"ddsnet", "fastnet", "resnet18"} <= set(zoo)
    assert all(Path(m["path"]).is_relative_to(installed.parent.parent) for m in zoo.values())

    r = _tcc(installed, tmp_path, "build", "fastnet", "--set", "image_size=64", "--target", "ort", "-o", "bundle")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["target"] == "ort"


@needs_tvm
def test_tvm_targets_set_up_and_build_from_the_wheel(installed, tmp_path):
    """`tcc setup` from the installed package finds everything done (the recipe it hashes is the wheel's own copy,
    equal to the checkout's, so the cached runtimes are reused); host and arm-a7 bundles are built and self-checked
    (arm-a7 under qemu) from outside the checkout."""
    for target in ("host", "arm-a7"):
        skip_unless_runtime(target)
    r = _tcc(installed, tmp_path, "setup", "host", "arm-a7", "ort", "--no-apt")
    assert r.returncode == 0, r.stderr
    assert "ort needs no set-up" in r.stderr and "arm-a7: runtime and tcc-run in" in r.stderr
    assert "installing" not in r.stderr and "preparing" not in r.stderr, r.stderr  # nothing installed or built
    spec = REPO / "tests" / "specs" / "train_tiny.yaml"  # seconds to compile
    for target in ("host", "arm-a7"):
        r = _tcc(installed, tmp_path, "build", str(spec), "--target", target, "-o", target)
        assert r.returncode == 0, r.stderr
        manifest = json.loads((tmp_path / target / "manifest.json").read_text())
        assert manifest["target"] == target and manifest["self_check"]["result"]["passed"]


def test_unknown_model_name_is_refused(installed, tmp_path):
    r = _tcc(installed, tmp_path, "check", "ddsnett")
    assert r.returncode == 2
    assert "no zoo model named 'ddsnett' (did you mean 'ddsnet'?)" in r.stderr
    assert "Traceback" not in r.stderr
