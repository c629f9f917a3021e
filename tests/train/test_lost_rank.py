"""A training process killed mid-run (`tcc train --nproc 2`): the launcher says which rank died and how to resume,
in one line and without stacks; `tcc train --resume RUN` (no SPEC: the run's own) then ends where an uninterrupted
run ends, weight for weight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.helpers import REPO
from tests.helpers.train_data import texture_patches

SPEC = REPO / "tests" / "specs" / "train_tiny.yaml"
OPTIONS = ["--epochs", "4", "--batch-size", "8", "--no-progress", "--nproc", "2"]


def _tcc(*argv, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tcc", *map(str, argv)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rank_process(rank: int) -> int | None:
    """The pid of the training process with RANK=rank (torchrun's worker), if one runs."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ and b"TCC_LOST_RANK_TEST=1" in environ:
                return int(entry.name)
    return None


def test_a_killed_rank_is_one_line_and_the_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    data = texture_patches(tmp_path / "data", per_class=40, size=32)
    monkeypatch.setenv("TCC_LOST_RANK_TEST", "1")  # marks this test's processes (inherited by the workers)
    run = tmp_path / "run"
    proc = _tcc("train", SPEC, "--data", data, "-o", run, *OPTIONS, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not (run / "log.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = _rank_process(1)
    assert pid is not None and proc.poll() is None, "the run ended before a rank could be killed"
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "ChildFailedError" not in err, err
    # torchrun records the killed rank, and the line names it; under load it may record only the survivor it
    # stopped, and the line says a process died (the survivor's own line says it lost a peer)
    resume = f"Continue from the last finished epoch with: tcc train --resume {run}"
    assert (
        f"error: training process rank 1 died (killed by SIGKILL); the other processes stopped. {resume}" in err
        or f"error: a training process died; the others were stopped. {resume}" in err
    ), err
    assert "rank 0 died" not in err, err
    resumed = _tcc("train", "--resume", run, "--no-progress", cwd=tmp_path)  # no SPEC: read from the run
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    whole = _tcc("train", SPEC, "--data", data, "-o", tmp_path / "whole", *OPTIONS, cwd=tmp_path)
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err
    a = torch.load(run / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert (run / "best.pt").read_bytes() == (tmp_path / "whole" / "best.pt").read_bytes()
