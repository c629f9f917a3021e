"""TVM's FP32 kernels written by hand: the AArch64 register tile of a dense conv in assembly (a64_tile)."""
