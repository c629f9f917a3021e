"""Tests of tcc bench (tcc.bench) and what it measures with."""
