"""Tests of the ONNX passes (tcc.passes)."""
