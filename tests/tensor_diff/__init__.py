"""Tests of tcc diff (tcc.tensor_diff)."""
