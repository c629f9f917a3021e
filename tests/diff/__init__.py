"""Tests of tcc diff (tcc.diff)."""
