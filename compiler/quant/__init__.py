"""Post-training INT8 quantization: calibration data, statistics, calibration methods (minmax, percentile, KL,
KL + cosine fine search), the calibration table, QDQ lowering and the integer reference.

The entry points a CLI needs are `tcc.quant.calibrate.calibrate` (spec + weights + data -> table) and
`tcc.quant.calibrate.calibrate_onnx` (FP32 ONNX + array -> table); everything else is reusable pieces.
"""
from .quantizer import fake_quant, quantize, dequantize, scale_for_threshold, qrange

__all__ = ["fake_quant", "quantize", "dequantize", "scale_for_threshold", "qrange"]
