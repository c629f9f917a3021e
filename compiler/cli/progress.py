"""The command line's live status while a long command runs: one line on stderr with the phase running now
(tcc.process.phases) and the time so far, drawn by tqdm only when stderr is a terminal (or --progress)."""

from __future__ import annotations

import sys
import threading
from contextlib import ExitStack
from typing import Any

from ..process.phases import watching

TICK_S = 1.0  # the elapsed time is redrawn this often between phase changes


class PhaseStatus:
    """`with PhaseStatus("calibrate", args.progress) as status:` shows "calibrate: statistics [00:12]" while the
    block runs; `status.log(line)` prints a line above it (a plain print would tear the status line)."""

    def __init__(self, command: str, enabled: bool | None = None):
        self.command = command
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._stack = ExitStack()
        self._bar: Any = None  # the tqdm bar while one is drawn
        self._stop = threading.Event()

    def __enter__(self) -> PhaseStatus:
        if not self.enabled:
            return self
        from tqdm import tqdm  # deferred for start-up: only a terminal draws the line

        self._bar = tqdm(total=None, desc=self.command, bar_format="{desc} [{elapsed}]", file=sys.stderr, leave=False)
        self._stack.callback(self._bar.close)
        self._stack.enter_context(watching(self._show))
        ticker = threading.Thread(target=self._tick, name="tcc-status", daemon=True)
        ticker.start()
        self._stack.callback(ticker.join)
        self._stack.callback(self._stop.set)
        self._show("starting")
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def log(self, line: str) -> None:
        if self._bar is None:
            print(line, file=sys.stderr)
        else:
            self._bar.write(line, file=sys.stderr)

    def _show(self, phase: str) -> None:
        if self._bar is not None and phase:  # back at the top level: the last phase stays shown until the next
            self._bar.set_description_str(f"{self.command}: {phase}", refresh=True)

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            if self._bar is not None:
                self._bar.refresh()
