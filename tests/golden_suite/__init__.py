"""Tests of the golden suite (tcc.golden) on the golden set in tests/golden."""
