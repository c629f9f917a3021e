"""How far a segmenter's output at a pixel reaches into its input (the receptive field's radius), measured on the
model itself, and its stride, so that tiles with that much context stitch into the whole-image result
(tcc.slide.tiles). A build records both in the bundle's manifest (`tiling`, measured on its FP32 lowering), since
the integer model computes the same function of the same pixels.

- Float models: the input is the normalised mean colour (zeros) but for a STRIDE x STRIDE block of NaN at the
  tile's centre (every phase of the stride). NaN spreads to every output that depends on it (0 x NaN is NaN, max
  and ReLU keep it), so the NaN outputs are exactly the block's field, or a superset where a kernel mixes inputs
  it gives no weight (a bilinear tap of weight 0). Each is taken to depend on the block's farthest pixel, so the
  radius is never too small (and at most STRIDE - 1 too large).
- A bundle without that record whose integer model turns NaN into some integer: the block (at most PROBE_BLOCK
  pixels a side) is changed from one random input to another (three draws) and the outputs that change mark the
  field. A change can be rounded away at the field's far edge, so one stride more is added to what changed: an
  estimate, said so in segmentation.json.
An output that depends on the whole tile (a global pooling: DeepLabV3's image pool, LRASPP's gate) has no finite
radius: tiles then cannot reproduce a whole-image run, and `--margin` must be given to stitch them anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PERTURBATION_DRAWS = 3
PROBE_BLOCK = 8  # the perturbed block's side at most (a bundle's assumed stride may be larger than its true one)
MAX_ASSUMED_STRIDE = (
    32  # a bundle's stride, where no graph says it: the largest power of 2 dividing its input, up to this
)


@dataclass(frozen=True)
class Field:
    radius: int | None  # None: the output depends on the whole tile
    method: str  # "nan" (exact or larger), "perturbation" (an estimate), "given" (--margin)

    @classmethod
    def from_json(cls, record: dict) -> Field:
        return cls(record["radius"], record["method"])

    def to_json(self) -> dict:
        return {"radius": self.radius, "method": self.method}


def measure_field(run: Callable[[np.ndarray], np.ndarray], input_shape: tuple, stride: int) -> Field:
    """The receptive field's radius in input pixels of `run` (float32 [1, C, H, W] -> [1, K, H, W])."""
    channels, height, width = input_shape
    side = stride
    top, left = (height // 2) // stride * stride, (width // 2) // stride * stride
    block = (slice(None), slice(None), slice(top, top + side), slice(left, left + side))
    x = np.zeros((1, channels, height, width), np.float32)
    x[block] = np.nan
    reached = np.isnan(np.asarray(run(x))).any(axis=(0, 1))
    method, slack = "nan", 0
    if not reached.any():  # an integer model: NaN became a number
        method, slack, side = "perturbation", stride, min(stride, PROBE_BLOCK)
        block = (slice(None), slice(None), slice(top, top + side), slice(left, left + side))
        rng = np.random.default_rng(0)
        for _ in range(PERTURBATION_DRAWS):
            before = np.asarray(rng.standard_normal(x.shape), np.float32)
            after = before.copy()
            after[block] = np.asarray(rng.standard_normal(after[block].shape), np.float32) * 4
            reached |= (np.asarray(run(before)) != np.asarray(run(after))).any(axis=(0, 1))
    rows, cols = np.flatnonzero(reached.any(axis=1)), np.flatnonzero(reached.any(axis=0))
    if rows.size == 0:  # nothing the block changed reached the output
        return Field(slack, method)
    if rows[0] == 0 or cols[0] == 0 or rows[-1] == height - 1 or cols[-1] == width - 1:
        return Field(None, method)
    # an output reached depends on some pixel of the block, not known which: measured to the block's far side
    bottom, right = top + side - 1, left + side - 1
    radius = max(bottom - rows[0], rows[-1] - top, right - cols[0], cols[-1] - left)
    return Field(int(radius) + slack, method)


def tiling_record(graph, input_shape: tuple, run: Callable[[np.ndarray], np.ndarray]) -> dict | None:
    """What a bundle's manifest records for tiling (`tiling`): the stride and the field measured on `run`, the FP32
    lowering; None for a model whose output is not dense at its input's resolution."""
    output = graph.shape(graph.output)
    if len(output) != 3 or tuple(output[1:]) != tuple(input_shape[1:]):
        return None
    stride = graph_stride(graph, input_shape)
    return {"stride": stride, "field": measure_field(run, input_shape, stride).to_json()}


def graph_stride(graph, input_shape: tuple) -> int:
    """The model's stride: the largest ratio of its input's height and width to a spatial tensor's in the graph
    (the least common multiple where they differ, e.g. 2 and 3); a global pooling's 1 x 1 does not count."""
    _, height, width = input_shape
    stride = 1
    for node in graph.nodes.values():
        for shape in node.shapes:
            spatial = tuple(shape[1:]) if len(shape) == 3 else ()
            if not all(isinstance(d, int) and d > 0 for d in spatial) or spatial in ((), (1, 1)):
                continue  # not spatial, or a global pooling's 1 x 1 (the field's business, not the stride's)
            for full, size in ((height, shape[1]), (width, shape[2])):
                if size < full and full % size == 0:
                    stride = int(np.lcm(stride, full // size))
    return stride


def assumed_stride(input_shape: tuple) -> int:
    """A bundle's stride where its graph is not at hand: the largest power of two dividing its input's height and
    width, at most MAX_ASSUMED_STRIDE (a multiple of the true stride for the usual nets)."""
    _, height, width = input_shape
    common = int(np.gcd(height, width))
    return min(common & -common, MAX_ASSUMED_STRIDE)
