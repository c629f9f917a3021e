"""Tests of quantization (tcc.quant, tcc.intops): calibration, the table, QDQ, the integer reference, placement."""
