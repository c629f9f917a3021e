"""Calibration methods: each tensor's scale from its statistics (minmax, percentile, KL), and the KL + cosine search."""
