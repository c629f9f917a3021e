"""Tests of the Python API (tcc.api)."""
