"""Tests of tcc import (tcc.onnx_import)."""
