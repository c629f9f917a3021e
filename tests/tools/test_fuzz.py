"""tools/fuzz.py, the seeded mutation fuzzer (docs/notes/fuzzing.md has its 1,000-case runs): a few cases of every
kind pass (no traceback, no hang, exit code 0 or 2), a seed gives the same cases every time, and the fuzzer does
fail: on an escaped exception, a printed traceback, a hang, a crash, a wrong exit code, and on a real bug it found
(a corrupt TIFF's zero TileLength) when the fix is taken out again."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, load_tool

FUZZ = load_tool("fuzz")  # it puts tools/ on sys.path for its package, tools/fuzzing
RUNNER = importlib.import_module("fuzzing.runner")
CASES = {"image": 5, "tiff": 6, "train": 2, "golden": 4, "bundle": 3}


# The fuzzer forks a child per case, which must not inherit a started OpenMP pool (GNU OpenMP waits for it forever:
# tools/fuzzing/runner.py): a test worker that ran PyTorch before has one, so the real cases run in a fresh process.
def _fresh_python(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=900)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_few_cases_of_each_kind_pass(kind):
    done = _fresh_python(str(REPO / "tools" / "fuzz.py"), kind, str(CASES[kind]), "0", "-q")
    code, out = done.returncode, done.stdout + done.stderr
    assert code == 0, out
    assert f"{kind}: {CASES[kind]} cases (seed 0)" in out and "tracebacks 0, hangs 0, crashes 0" in out


def test_a_seed_gives_the_same_cases(tmp_path):
    kind = FUZZ.KINDS["image"]
    base = kind.make_base(tmp_path / "base", None)

    def cases(seed):
        out = []
        for index in range(20):
            folder = Path(tempfile.mkdtemp(dir=tmp_path))
            case = kind.make_case(base, np.random.default_rng([seed, index]), folder)
            out.append(
                (case.mutation, case.argv, sorted((p.name, p.read_bytes()) for p in folder.rglob("*") if p.is_file()))
            )
        return out

    assert cases(3) == cases(3)
    assert cases(3) != cases(4)


def _fake_tcc(behaviour):
    """A `tcc` that misbehaves as asked, whatever its arguments."""

    def fake(argv):
        if behaviour == "raise":
            raise KeyError("escaped")
        if behaviour == "print a traceback":
            print("Traceback (most recent call last):\n  ...\nValueError: in a thread", file=sys.stderr)
            return 0
        if behaviour == "hang":
            time.sleep(60)
        if behaviour == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        if behaviour == "exit 2 silently":
            return 2
        return 3

    return fake


@pytest.mark.parametrize(
    "behaviour, verdict, detail",
    [
        ("raise", "traceback", "KeyError: 'escaped'"),
        ("print a traceback", "traceback", "ValueError: in a thread"),
        ("hang", "hang", "in fake"),  # where it hung, from faulthandler's stack
        ("crash", "crash", "killed by SIGSEGV"),
        ("exit 2 silently", "exit", "exit code 2 without a message"),
        ("exit 3", "exit", "exit code 3"),
    ],
)
def test_every_kind_of_failure_is_caught(monkeypatch, tmp_path, capsys, behaviour, verdict, detail):
    monkeypatch.setattr(RUNNER, "tcc_main", _fake_tcc(behaviour))
    timeout = ["--timeout", "1.5"] if behaviour == "hang" else []
    assert FUZZ.main(["image", "1", "5", "--case", "0", "--out", str(tmp_path / "kept"), "-q", *timeout]) == 1
    out = capsys.readouterr().out
    assert f"FAIL case 0 ({verdict})" in out and detail in out
    assert "replay: .venv/bin/python tools/fuzz.py image 1 5 --case 0" in out
    kept = tmp_path / "kept" / "image-5-0"
    assert (kept / "README.txt").is_file() and any((kept / "case").iterdir())


def test_a_bug_it_found_is_found_again_without_its_fix():
    """tiff case 90 of seed 0 zeroes a TileLength: tcc.slide.reader's page check now refuses it (exit 2); without the
    check tifffile divides by zero in read_region, as it did before the fix (in a fresh process: _fresh_python)."""
    script = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("fuzz", {str(REPO / "tools" / "fuzz.py")!r})
fuzz = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fuzz)
import tcc.slide.reader as reader
kind = fuzz.KINDS["tiff"]
fixed = fuzz.run_kind(kind, 1, 0, only=90, log=lambda _: None)
print(fixed.outcomes[0].case.mutation)
print(fixed.outcomes[0].ended.code, len(fixed.failures))
reader._check_tiff_page = lambda path, level, page: None
(failure,) = fuzz.run_kind(kind, 1, 0, only=90, log=lambda _: None).failures
print(failure.verdict, "ZeroDivisionError" in failure.detail)
"""
    done = _fresh_python("-c", script)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "slide: deflate.tif: tiff: IFD 0 TileLength[0]: 16 -> 0",
        "2 0",
        "traceback True",
    ]
