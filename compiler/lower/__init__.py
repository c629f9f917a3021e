"""The lowerings of the IR: to a torch.fx module and to ONNX, weight import, and the PyTorch lowering run as the
checks' reference."""
