"""`tcc build`'s start-up and exit: libraries imported without optional dependencies tcc does not use
(tcc.process.import_order), TVM's compile in a worker process forked before PyTorch loads
(backends/tvm/worker.py), and the command's exit without module teardown (tcc.cli.main.run). What each saves is
measured by `tcc bench` (README, issue 15); these tests check that none of it changes what is built or what the
user sees."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tcc.process.import_order import hidden
from tests.helpers import REPO
from tests.helpers.tvm_util import TINY, needs_tvm, require_runtime


def test_hidden_module_fails_to_import_inside_and_imports_after(tmp_path, monkeypatch):
    (tmp_path / "tcc_probe_optional.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with hidden("tcc_probe_optional"), pytest.raises(ImportError):
        import tcc_probe_optional
    import tcc_probe_optional

    assert tcc_probe_optional.VALUE == 7
    with hidden("tcc_probe_optional"):  # already imported: left alone
        import tcc_probe_optional as again
    assert again is tcc_probe_optional
    del sys.modules["tcc_probe_optional"]


_CLI_BUILD = """
import json, sys
from tcc.cli.main import main
code = main(["build", {spec!r}, "--target", "arm-a7", "-o", {out!r}])
print(json.dumps({{"code": code, "tvm": "tvm" in sys.modules, "torch": "torch" in sys.modules,
                  "sympy": "sympy" in sys.modules}}))
"""


@needs_tvm
def test_cli_build_compiles_in_a_worker_and_builds_the_same_bundle(write, tmp_path):
    """`tcc build` for an ARM target: its own process never imports TVM (the worker compiles), the worker's phases
    are reported under emit, and the module is byte-identical to the one the Python API compiles in-process."""
    from tcc.build import build, build_settings

    require_runtime("arm-a7")
    spec = write("tiny.yaml", TINY)
    proc = subprocess.run(
        [sys.executable, "-c", _CLI_BUILD.format(spec=str(spec), out=str(tmp_path / "cli"))],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {"code": 0, "tvm": False, "torch": True, "sympy": False}, seen
    phases = next(line for line in proc.stdout.splitlines() if line.startswith("time by phase"))
    assert "emit" in phases and "compile" in phases and "codegen" in phases and "preload" in phases

    api = build(spec, build_settings("arm-a7"), tmp_path / "api")
    assert (tmp_path / "cli" / "model.so").read_bytes() == (api.out / "model.so").read_bytes()
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["runtime"] == api.manifest["runtime"]


@needs_tvm
def test_cli_build_error_before_emit_ends_the_worker(write, tmp_path):
    """A user mistake found after the worker started (an unknown weights file) is the usual one-line error with exit
    code 2, and the command does not wait for the worker's TVM import."""
    require_runtime("arm-a7")
    spec = write("tiny.yaml", TINY)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tcc",
            "build",
            str(spec),
            "--target",
            "arm-a7",
            "--weights",
            str(tmp_path / "missing.pth"),
            "-o",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "missing.pth" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "b").exists()


_DYING_WORKER = """
import dataclasses, os, signal
from tcc.backends.tvm.worker import Worker
from tcc.errors import WorkerDied

@dataclasses.dataclass
class Options:
    data: object = None

def no_ops():
    return frozenset()

def killed(model, options, out_dir):
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer, or LLVM's abort on a fatal error

worker = Worker(no_ops, killed)
assert worker.converted_ops() == frozenset()
try:
    worker.emit(None, Options(), ".")
except WorkerDied as e:
    print("died:", e, e.exit_code)
"""


@needs_tvm
def test_worker_that_dies_is_an_error_not_a_wait():
    """The compile worker killed mid-emit (LLVM's fatal errors abort it) ends the build with WorkerDied (exit code 1),
    where multiprocessing.Pool waited for its lost task forever."""
    proc = subprocess.run([sys.executable, "-c", _DYING_WORKER], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "died: TVM's compile process died while compiling the model" in proc.stdout and proc.stdout.endswith(" 1\n")


def test_command_exit_keeps_output_and_exit_code(tmp_path):
    """tcc.cli.main.run ends the process without teardown: the output is complete when piped, the exit code is
    main's."""
    ok = subprocess.run(
        [sys.executable, "-m", "tcc", "check", str(REPO / "spec/ddsnet.yaml"), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["params"] == 189870
    bad = subprocess.run(
        [sys.executable, "-m", "tcc", "check", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert bad.returncode == 2 and "nope.yaml" in bad.stderr and "Traceback" not in bad.stderr


def test_phases_timed_elsewhere_are_added_under_the_current_phase():
    """A worker's own recording (forked inside the build's "preload" phase) names its phases from its own root, and
    the build adds them under the phase it waits in."""
    from tcc.process.phases import add, phase, recording

    with recording() as outer:
        # as in the forked worker, which inherits the "preload/" prefix
        with phase("preload"), recording() as worker, phase("compile"):
            pass
        with phase("emit"):
            add(worker)
            add({"link": 0.5})
    assert set(worker) == {"compile"}
    assert set(outer) == {"preload", "emit", "emit/compile", "emit/link"} and outer["emit/link"] == 0.5
