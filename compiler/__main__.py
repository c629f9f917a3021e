"""`python -m tcc ...`: the command line (what the `tcc` script runs)."""

from .cli.main import run

run()
