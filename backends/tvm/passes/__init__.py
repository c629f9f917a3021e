"""tcc's own passes on the TVM module, before the schedules: Relax rewrites for x86 host FP32 (output channels to whole
vectors, the first conv reading the NCHW input, softmax row by row, vectorizable exponentials; `relax_rewrite` is
their shared call-rewriting pass) and the dense-block concats in place on the fused TIR."""
