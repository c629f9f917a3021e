"""The registry of kinds: what `tools/fuzz.py KIND` fuzzes, one module each (its base inputs, one mutated case)."""

from __future__ import annotations

from . import bundle, golden, image, tiff, train
from .common import Kind

KINDS: dict[str, Kind] = {k.name: k for k in (image.KIND, tiff.KIND, train.KIND, golden.KIND, bundle.KIND)}
