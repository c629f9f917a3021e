"""Reports on a calibration: per-layer and end-to-end quality against FP32, and Axera's precision tables."""
