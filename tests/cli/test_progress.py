"""The live status line of `tcc calibrate` and `tcc build`: each phase as it starts (tcc.process.phases.watching),
log lines above it, nothing drawn when stderr is not a terminal."""

from __future__ import annotations

import contextlib
import io

from tcc.cli.progress import PhaseStatus
from tcc.process.phases import announce, phase, recording, watching


def test_the_listener_sees_each_phase_start_and_its_parent_again_at_its_end():
    seen: list[str] = []
    with recording() as seconds, watching(seen.append):
        with phase("calibration"), phase("statistics"):
            announce("batch")
        with phase("emit"):
            pass
    assert seen == [
        "calibration",
        "calibration/statistics",
        "calibration/statistics/batch",
        "calibration",
        "",
        "emit",
        "",
    ]
    assert set(seconds) == {"calibration", "calibration/statistics", "emit"}  # an announcement is not timed


def test_the_status_line_shows_the_phase_and_keeps_log_lines_whole():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), PhaseStatus("build", enabled=True) as status, phase("emit"):
        status.log("note: a line of its own")
    text = err.getvalue()
    assert "build: emit" in text and "\nnote: a line of its own\n" in text.replace("\r", "\n")


def test_nothing_is_drawn_off_a_terminal():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), PhaseStatus("build") as status, phase("emit"):  # StringIO: no terminal
        status.log("note: kept")
    assert err.getvalue() == "note: kept\n"
