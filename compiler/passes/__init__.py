"""Passes on the ONNX graph (onnx-graphsurgeon inside). Each pass is callable as `model -> model`; `pipeline.py`
lists them in order and `run_pipeline` runs them with a report of what each changed."""

from .base import Pass, PassError, Rule, op_counts
from .batchnorm import batchnorm_to_affine, fold_batchnorm
from .cleanup import eliminate_dead, remove_identity
from .concat import flatten_concat
from .constants import fold_constants
from .fusion import KEY as FUSED_ACTIVATIONS_KEY
from .fusion import fused_activations, mark_fused_activations
from .pipeline import PIPELINE, PassResult, PipelineReport, run_pipeline
from .pool import conv_before_pool, pool_before_conv
from .simplify import simplify

__all__ = [
    "FUSED_ACTIVATIONS_KEY",
    "PIPELINE",
    "Pass",
    "PassError",
    "PassResult",
    "PipelineReport",
    "Rule",
    "batchnorm_to_affine",
    "conv_before_pool",
    "eliminate_dead",
    "flatten_concat",
    "fold_batchnorm",
    "fold_constants",
    "fused_activations",
    "mark_fused_activations",
    "op_counts",
    "pool_before_conv",
    "remove_identity",
    "run_pipeline",
    "simplify",
]
