"""tools/test_durations.py: the seconds per test file that order the suite (tests/conftest.py)."""

from __future__ import annotations

import json

from tests.helpers import REPO, TESTS, load_tool


def test_seconds_per_file_from_the_durations_report(tmp_path):
    log = tmp_path / "durations.log"
    log.write_text(
        "============================= slowest durations =============================\n"
        "12.50s call     tests/a/test_x.py::test_one[p-1]\n"
        "0.70s setup    tests/a/test_x.py::test_one[p-1]\n"
        "3.00s call     tests/b/test_y.py::test_two\n"
        "0.40s call     tests/c/test_z.py::test_three\n"
        "(2 durations < 0.005s hidden.  Use -vv to show these durations.)\n"
    )
    out = tmp_path / "durations.json"
    tool = load_tool("test_durations")
    assert tool.main([str(log), "-o", str(out)]) == 0
    # under a second in all: left out (the order puts unrecorded files after the recorded ones)
    assert json.loads(out.read_text())["seconds"] == {"tests/a/test_x.py": 13.2, "tests/b/test_y.py": 3.0}
    log.write_text("1602 passed in 996.47s\n")
    assert tool.main([str(log), "-o", str(out)]) == 2  # no durations: refused, the record left as it was
    assert tool.main([str(tmp_path / "missing.log"), "-o", str(out)]) == 2
    assert json.loads(out.read_text())["seconds"] == {"tests/a/test_x.py": 13.2, "tests/b/test_y.py": 3.0}


def test_the_record_names_test_files_that_exist():
    """A file moved or removed since the record was written would lose its place in the order: rerun the tool."""
    recorded = json.loads((TESTS / "durations.json").read_text())["seconds"]
    assert [f for f in recorded if not (REPO / f).is_file()] == []
