"""The test suite, one folder per package of tcc (tests/quant for tcc.quant, tests/backends/tvm for
tcc.backends.tvm, ...); shared helpers in tests/helpers."""
