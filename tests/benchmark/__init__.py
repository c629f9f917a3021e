"""Tests of tcc bench (tcc.benchmark) and what it measures with."""
