"""The ONNX Runtime backend: FP32, FP16, dynamic and INT8 (the QDQ form, tcc.quant.lower) ONNX files run here."""
