"""Tests of tcc explain (tcc.explain)."""
