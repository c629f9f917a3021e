"""Tests of tcc slide (tcc.slide)."""
