"""The TFLite backend's own build options: EmitOptions.backend for a TFLite target (tcc.build.BuildSettings.tflite)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TfliteOptions:
    io: str = "float"  # INT8 models: "float" input/output (QUANTIZE / DEQUANTIZE in the model) or "int8" codes
