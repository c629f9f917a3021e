"""Golden outputs: what every backend computed for a model, stored, so that a change shows.

    rows = check("tests/golden")                  # every entry now against the stored data
    rows = update("tests/golden", models=["ddsnet"], entries=["host-int8"])   # store on purpose, report changes

A golden set is a folder (layout and format: tests/golden/README.md):
    golden.yaml                        the plan, hand-written (spec/schema/golden.schema.json)
    golden.json                        per model: identity (spec, weights, FP32 graph hashes), inputs, and per
                                       entry its rule, tolerance and recorded numbers
    MODEL/inputs.npz                   x: [N, C, H, W] float32, the stored inputs
    MODEL/outputs.npz                  one [N, ...] array per entry id (and pytorch-fp64)
    MODEL/calibration/RULES.json.gz    the calibration table each INT8 entry is built from (gzip JSON)
Entries and how each is judged: tcc.golden.entries; the tolerances: tcc.tolerance and tcc.golden.judge.
"""

from .entries import ENTRIES, Entry
from .golden_yaml import load_plan
from .suite import Row, check, format_rows, update

__all__ = ["ENTRIES", "Entry", "Row", "check", "format_rows", "load_plan", "update"]
