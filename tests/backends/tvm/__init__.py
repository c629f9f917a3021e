"""Tests of the TVM backend (tcc.backends.tvm): compile, schedules, runtimes, INT8 lowering and kernels."""
