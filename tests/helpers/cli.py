"""The `tcc` commands the tests run in this process, each command line spelled once: `tcc(...)` with every argument
str()-ed, and the ones that calibration tests repeat (calibrate a spec to a table, an INT8 build from a table or from
data)."""

from __future__ import annotations

from tcc.cli.main import main


def tcc(*argv) -> int:
    """`tcc ARGV...` in this process (each argument as str()); its exit code."""
    return main([str(a) for a in argv])


def calibrate(spec_argv, data, table, *options) -> int:
    """`tcc calibrate SPEC [--set ...] --data DATA -o TABLE --no-compare OPTIONS...` (no ORT comparison in the
    report: faster)."""
    return tcc("calibrate", *spec_argv, "--data", data, "-o", table, "--no-compare", *options)


def int8_build_argv(spec_argv, target: str, out, *options) -> list[str]:
    """`build SPEC [--set ...] --target TARGET --precision int8 -o OUT OPTIONS...`, each argument as str (the
    calibration in `options`: --calib TABLE, or --data DATA and its options)."""
    return [str(a) for a in ("build", *spec_argv, "--target", target, "--precision", "int8", "-o", out, *options)]


def build_from_table(spec_argv, target: str, table, out, *options) -> int:
    """`tcc build SPEC [--set ...] --target TARGET --precision int8 --calib TABLE -o OUT OPTIONS...`."""
    return tcc(*int8_build_argv(spec_argv, target, out, "--calib", table, *options))
