"""Tests of the spec language (tcc.spec)."""
