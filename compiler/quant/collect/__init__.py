"""Calibration data and what calibration collects from it: images and arrays in, histology crops, activation
ranges and histograms."""
