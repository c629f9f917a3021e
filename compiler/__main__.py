"""`python -m tcc ...`: the command line (what the `tcc` script runs)."""
import sys

from .cli import main

sys.exit(main())
