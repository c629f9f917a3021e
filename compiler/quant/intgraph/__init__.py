"""The integer graph: an FP32 ONNX graph matched onto the integer op table (tcc.intops), its integer constants, and
the interpreters and arithmetic that run it (the integer reference, fixed point, LiteRT's kernels)."""
