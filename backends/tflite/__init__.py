"""The TFLite backend: .tflite models written by tcc (FP32, FP16, dynamic, INT8), run by LiteRT."""
