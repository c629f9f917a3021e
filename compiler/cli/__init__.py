"""The `tcc` command line: the parser and one module per command, thin layers over the library."""

from .main import main, run  # noqa: F401  (the console script is tcc.cli:run)
