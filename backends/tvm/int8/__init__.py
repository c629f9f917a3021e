"""TVM's INT8 lowering: a quantized graph as Relax integer ops and the kernels they call."""
