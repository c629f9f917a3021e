"""A fuzzing session: the base inputs of one kind made once, then N cases, each drawn from its own Generator
seeded by (SEED, case number) so that any case replays alone (`--case K`), run and judged; the summary at the end."""

from __future__ import annotations

import collections
import importlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .kinds.common import Case, Kind
from .runner import Ended, last_line, run_tcc, setup_command, verdict


@dataclass(frozen=True)
class Outcome:
    index: int
    case: Case
    ended: Ended
    verdict: str  # pass | traceback | hang | crash | exit
    detail: str

    @property
    def failed(self) -> bool:
        return self.verdict != "pass"


@dataclass
class Report:
    kind: str
    seed: int
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    base_seconds: float = 0.0

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed]

    def count(self, what: str) -> int:
        return sum(o.verdict == what for o in self.outcomes)

    def exit_codes(self) -> dict:
        """exit code -> cases; a case ended by a signal or the timeout counts under that name."""
        codes = collections.Counter(
            "hang" if o.ended.timed_out else f"signal {o.ended.signal}" if o.ended.signal is not None else o.ended.code
            for o in self.outcomes
        )
        return dict(sorted(codes.items(), key=lambda kv: str(kv[0])))

    def summary(self) -> str:
        n = len(self.outcomes)
        lines = [
            f"{self.kind}: {n} cases (seed {self.seed}) in {self.seconds:.1f} s "
            f"({self.seconds / max(n, 1):.2f} s a case; base inputs {self.base_seconds:.1f} s)",
            "  exit codes: " + ", ".join(f"{code}: {count}" for code, count in self.exit_codes().items()),
            f"  tracebacks {self.count('traceback')}, hangs {self.count('hang')}, crashes "
            f"{self.count('crash')}, other exit codes {self.count('exit')}",
        ]
        for o in self.failures:
            lines.append(
                f"  FAIL case {o.index} ({o.verdict}): {o.case.mutation}\n"
                f"    tcc {' '.join(o.case.argv)}\n    -> {o.detail}\n"
                f"    replay: {replay_command(self.kind, self.seed, o.index)}"
            )
        return "\n".join(lines)


def replay_command(kind: str, seed: int, index: int) -> str:
    return f".venv/bin/python tools/fuzz.py {kind} 1 {seed} --case {index}"


def run_kind(
    kind: Kind,
    n: int,
    seed: int,
    *,
    timeout: float | None = None,
    keep: Path | None = None,
    only: int | None = None,
    log=print,
    verbose: bool = False,
) -> Report:
    """N cases of `kind` (or only case `only`), each in a fresh folder; failing cases copied under `keep`."""
    for module in kind.preload:  # once here, not once per forked case
        importlib.import_module(module)
    report = Report(kind.name, seed)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"tcc-fuzz-{kind.name}-") as tmp:
        work = Path(tmp)
        base = kind.make_base(work / "base", lambda argv, cwd: setup_command(argv, cwd, work / "logs" / "setup"))
        report.base_seconds = time.monotonic() - start
        for index in [only] if only is not None else range(n):
            outcome = run_case(kind, base, seed, index, work, timeout or kind.timeout_s)
            report.outcomes.append(outcome)
            if outcome.failed:
                log(f"FAIL {kind.name} case {index} ({outcome.verdict}): {outcome.case.mutation} -> {outcome.detail}")
                if keep is not None:
                    _keep(outcome, work, keep / f"{kind.name}-{seed}-{index}", report)
            elif verbose:
                log(
                    f"case {index}: exit {outcome.ended.code} in {outcome.ended.seconds:.2f} s: "
                    f"{outcome.case.mutation} -> {last_line(outcome.ended.stderr)}"
                )
            elif (index + 1) % 100 == 0:
                log(
                    f"{kind.name}: {index + 1} of {n} cases, {len(report.failures)} failed, "
                    f"{time.monotonic() - start:.0f} s"
                )
    report.seconds = time.monotonic() - start
    return report


def run_case(kind: Kind, base, seed: int, index: int, work: Path, timeout: float) -> Outcome:
    folder = work / f"case-{index}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    case = kind.make_case(base, np.random.default_rng([seed, index]), folder)
    ended = run_tcc(case.argv, folder, timeout, work / "logs" / f"case-{index}")
    judged, detail = verdict(ended, kind.ok_codes)
    outcome = Outcome(index, case, ended, judged, detail)
    if not outcome.failed:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(work / "logs" / f"case-{index}", ignore_errors=True)
    return outcome


def _keep(outcome: Outcome, work: Path, dest: Path, report: Report) -> None:
    """The failing case's folder, its stdout / stderr, and how to replay it."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(work / f"case-{outcome.index}", dest / "case", symlinks=True)
    shutil.copytree(work / "logs" / f"case-{outcome.index}", dest / "logs")
    (dest / "README.txt").write_text(
        f"{report.kind} case {outcome.index} (seed {report.seed}): {outcome.verdict}\n"
        f"mutation: {outcome.case.mutation}\ncommand (in case/): tcc {' '.join(outcome.case.argv)}\n"
        f"result: {outcome.detail}\nreplay (from the repository root): "
        f"{replay_command(report.kind, report.seed, outcome.index)}\n",
        encoding="utf-8",
    )
