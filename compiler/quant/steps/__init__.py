"""The post-training steps around the method: cross-layer equalization, bias correction, weight rounding."""
