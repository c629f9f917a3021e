"""The QDQ form of a quantized graph: the ONNX model that ONNX Runtime and the Axera kits run."""
