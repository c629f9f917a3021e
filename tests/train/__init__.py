"""Tests of tcc train (tcc.train)."""
