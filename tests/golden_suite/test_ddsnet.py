"""The golden set's DDSNet (the authors' GC checkpoint, real histology): every backend x precision that runs here
against its stored output (tests/golden; rules in tests/golden/README.md)."""

from __future__ import annotations

from tcc.golden import ENTRIES, check, format_rows, load_plan
from tests.helpers import GOLDEN
from tests.helpers.marks import needs_fixtures

pytestmark = needs_fixtures


def test_ddsnet_golden_outputs():
    rows = check(GOLDEN, models=["ddsnet"])
    assert not [r for r in rows if r.failed], format_rows(rows)
    mp = load_plan(GOLDEN).models["ddsnet"]
    checked = {r.entry for r in rows}
    assert {e for e in mp.entries if e not in mp.slow} <= checked
    assert {"graph", "inputs"} <= checked
    # every backend x precision of the registry that runs here, and every rules' reference and table
    assert set(ENTRIES) == set(mp.entries)
