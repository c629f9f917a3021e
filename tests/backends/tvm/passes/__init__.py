"""Tests of tcc.backends.tvm.passes."""
