"""Segmentation: what a model with a dense output ([N, C, H, W] logits per pixel) gives its user (issue 71).

from tcc.segmentation.masks import class_masks, write_mask, overlay, pixel_counts
"""
