"""One case: a `tcc` command line run in a forked child of the fuzzer, judged by how it ended.

Forked rather than started afresh: the fuzzer imports tcc, PyTorch and ONNX Runtime once, so a case costs only its
own work, and the child is still its own process, so a crash in C code (a codec, OpenSlide) or a hang is that case's
outcome, not the fuzzer's end. The child runs `tcc.cli.main.main(argv)` as the `tcc` script does, its stdout and
stderr in files; an exception escaping it is printed as the traceback it is. At the timeout faulthandler writes every
thread's stack to stderr (where it hung) and ends the child; the parent kills the child's process group shortly
after should even that fail.

The fuzzer itself must not compute with PyTorch or ONNX Runtime: a thread pool started before fork() is missing in
the child, and GNU OpenMP waits for it forever. Base inputs that need a tcc command (a bundle, a golden set) are made
by children too (`setup_command`).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import select
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from tcc.cli.main import main as tcc_main

ESCAPED = 70  # the child's exit code when an exception escaped tcc's main (its traceback is in stderr)
KILL_GRACE_S = 5.0  # after the timeout, how long faulthandler gets to end the child before it is killed
TRACEBACK = "Traceback (most recent call last)"
KEPT_TEXT = 20_000  # the end of stdout / stderr kept for the report


@dataclass(frozen=True)
class Ended:
    """How a command ended: its exit code (None when a signal ended it), the signal, whether it ran into the
    timeout, its wall time and the end of what it printed."""

    code: int | None
    signal: int | None
    timed_out: bool
    seconds: float
    stdout: str
    stderr: str


def run_tcc(argv: list[str], cwd: Path, timeout: float, logs: Path) -> Ended:
    """`tcc ARGV` in `cwd`, in a forked child; its stdout and stderr go to `logs`/stdout and `logs`/stderr."""
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / "stdout", logs / "stderr"
    for stream in (sys.stdout, sys.stderr):  # or the child writes what the parent had buffered
        stream.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(argv, cwd, out, err, timeout)
    ended_in_time = _wait(pid, timeout + KILL_GRACE_S)
    if not ended_in_time:
        _kill_group(pid)
    _, status = os.waitpid(pid, 0)
    seconds = time.monotonic() - start
    _kill_group(pid)  # what the command started and left behind (DataLoader workers, a compile worker)
    code = os.waitstatus_to_exitcode(status)
    return Ended(
        code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        timed_out=not ended_in_time or seconds >= timeout,
        seconds=seconds,
        stdout=_tail(out),
        stderr=_tail(err),
    )


def setup_command(argv: list[str], cwd: Path, logs: Path, timeout: float = 600.0) -> None:
    """A command that makes a base input (`tcc build`, `tcc golden update`): it must succeed."""
    ended = run_tcc(argv, cwd, timeout, logs)
    if ended.code != 0 or ended.timed_out:
        raise RuntimeError(
            f"setting up the base inputs failed: tcc {' '.join(argv)} (exit {ended.code}):\n{ended.stderr[-3000:]}"
        )


def verdict(ended: Ended, ok_codes: frozenset[int]) -> tuple[str, str]:
    """("pass", "") or (failure, what to read): hang, crash, traceback, or exit (an exit code not allowed, or a
    user error without its message)."""
    last = last_line(ended.stderr)
    if ended.timed_out:
        return "hang", f"no end after {ended.seconds:.0f} s; stacks at the timeout: {_hang_site(ended.stderr)}"
    if ended.signal is not None:
        return "crash", f"killed by {signal.Signals(ended.signal).name}; last line: {last}"
    if TRACEBACK in ended.stderr:
        return "traceback", last
    if ended.code not in ok_codes:
        return "exit", f"exit code {ended.code}; last line: {last}"
    if ended.code == 2 and not last:
        return "exit", "exit code 2 without a message"
    return "pass", ""


def _child(argv: list[str], cwd: Path, out: Path, err: Path, timeout: float):
    """The forked child: never returns."""
    code = ESCAPED
    try:
        os.setpgid(0, 0)  # its own process group, so the parent can end what it starts too
        _redirect(0, os.devnull, os.O_RDONLY)
        _redirect(1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        _redirect(2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        # streams on the new descriptors: the parent's sys.stdout may be no file at all (pytest's capture)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 (the process's own streams)
        sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(cwd)
        faulthandler.enable(file=sys.stderr)  # a crash's stack goes with the case's output
        faulthandler.dump_traceback_later(timeout, exit=True)
        code = _main(argv)
    except BaseException:  # what escaped tcc's main is this case's finding: print it, as Python would
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _main(argv: list[str]) -> int:
    try:
        return tcc_main(argv)
    except SystemExit as e:  # argparse's usage errors (2) and --help (0), as the `tcc` script would exit
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1


def _redirect(fd: int, path, flags: int) -> None:
    new = os.open(path, flags, 0o644)
    os.dup2(new, fd)
    os.close(new)


def _wait(pid: int, seconds: float) -> bool:
    """Whether the child ended within `seconds`."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], seconds)
        return bool(ready)
    finally:
        os.close(fd)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - KEPT_TEXT))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _hang_site(stderr: str) -> str:
    """The innermost frames of the main thread in faulthandler's dump (it lists the most recent call first)."""
    lines = stderr.splitlines()
    heads = [i for i, line in enumerate(lines) if "most recent call first" in line]
    start = next((i for i in heads if lines[i].startswith("Current thread")), heads[0] if heads else None)
    if start is None:
        return last_line(stderr)
    return " <- ".join(line.strip() for line in lines[start + 1 : start + 4])
