"""The `tcc` commands the tests run in this process, each command line spelled once: `tcc(...)` with every argument
str()-ed, and the two that calibration tests repeat (calibrate a spec to a table, build from that table)."""

from __future__ import annotations

from tcc.cli.main import main


def tcc(*argv) -> int:
    """`tcc ARGV...` in this process (each argument as str()); its exit code."""
    return main([str(a) for a in argv])


def calibrate(spec_argv, data, table, *options) -> int:
    """`tcc calibrate SPEC [--set ...] --data DATA -o TABLE --no-compare OPTIONS...` (no ORT comparison in the
    report: faster)."""
    return tcc("calibrate", *spec_argv, "--data", data, "-o", table, "--no-compare", *options)


def build_from_table(spec_argv, target: str, table, out, *options) -> int:
    """`tcc build SPEC [--set ...] --target TARGET --precision int8 --calib TABLE -o OUT OPTIONS...`."""
    return tcc("build", *spec_argv, "--target", target, "--precision", "int8", "--calib", table, "-o", out, *options)
