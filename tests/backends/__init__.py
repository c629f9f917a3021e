"""Tests of the backends (tcc.backends): registry, ONNX Runtime, TFLite, AX."""
