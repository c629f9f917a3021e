"""tcc.backends.tflite"""
