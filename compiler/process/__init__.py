"""How a tcc process runs: work on a background thread, the import order that keeps start-up fast, wall time by
build phase."""
