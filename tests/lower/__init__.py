"""Tests of the lowerings (tcc.lower): IR to PyTorch and ONNX, weight import."""
