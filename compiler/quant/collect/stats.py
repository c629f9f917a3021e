"""Statistics over an FP32 ONNX graph: activation ranges and |x| histograms, per-channel weight ranges.

The graph is run by ONNX Runtime with every float intermediate tensor exposed as an extra graph output, batch by
batch; each batch updates, per tensor, min/max and a 2048-bin histogram of |x|. The histogram covers
[0, bins * width); when a later batch exceeds it, the width grows by a power of two and adjacent bins are merged
(exact: no count changes bin boundaries). Everything is vectorised numpy (one `bincount` per slice of 64 Ki values
of a tensor's batch: the passes over a slice stay in cache).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, shape_inference

from ...errors import DataError
from ...measure.ort import session
from ..intgraph.layers import Layer, find_layers, initializers

BINS = 2048
CHUNK = 1 << 16  # values per slice of a histogram update


# ---------------------------------------------------------------------------------------------------- histogram
class NonFinite(ValueError):
    """A batch holds NaN or inf (Histogram.update counts nothing of it)."""


class Histogram:
    """Counts of nonzero |x| in `bins` equal bins over [0, bins * width); grows by merging 2**k bins. Exact zeros
    are counted in `zeros` (`with_zeros` puts them back into bin 0)."""

    def __init__(self, bins: int = BINS):
        if bins & (bins - 1):
            raise ValueError("bins must be a power of two (growth merges 2**k bins)")
        self.bins = bins
        self.counts = np.zeros(bins, np.int64)
        self.width = 0.0  # 0 until a nonzero value arrives; zeros seen before that sit in bin 0
        self.min = math.inf
        self.max = -math.inf
        self.count = 0
        self.zeros = 0  # exact zeros are counted apart (ReLU outputs): KL ignores them, percentile does not

    @property
    def with_zeros(self) -> np.ndarray:
        c = self.counts.copy()
        c[0] += self.zeros
        return c

    @property
    def amax(self) -> float:
        return max(abs(self.min), abs(self.max)) if self.count else 0.0

    @property
    def range(self) -> float:
        return self.bins * self.width

    def update(self, x: np.ndarray) -> None:
        """Add the values of `x`; NonFinite (nothing counted) when it holds NaN or inf."""
        x = np.asarray(x, dtype=np.float32).ravel()
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())  # NaN propagates through min/max: no separate isfinite pass
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise NonFinite
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        self.count += x.size
        bmax = max(abs(lo), abs(hi))  # this batch's max |x|, without another pass over it
        if bmax > self.range:
            self._grow(bmax)
        if self.width == 0.0:  # still all zeros
            self.zeros += x.size - int(np.count_nonzero(x))
            return
        inv, top = np.float32(1.0 / self.width), np.float32(self.bins - 1)
        a = np.empty(min(x.size, CHUNK), np.float32)
        for i in range(0, x.size, CHUNK):  # a slice at a time: the passes over it run in cache
            part = x[i : i + CHUNK]
            b = a[: len(part)]
            if lo < 0:  # bin of |x|
                np.abs(part, out=b)
                b *= inv
            else:  # a ReLU's output is its own |x|: no abs pass
                np.multiply(part, inv, out=b)
            np.minimum(b, top, out=b)  # truncation is monotone: the same bins as clamping after
            self.counts += np.bincount(b.astype(np.intp), minlength=self.bins)
            z = len(part) - int(np.count_nonzero(part))
            self.zeros += z
            self.counts[0] -= z

    def _grow(self, bmax: float) -> None:
        if self.width == 0.0:
            self.width = bmax / self.bins
            return
        k = math.ceil(math.log2(bmax / self.range))
        while self.range * (1 << k) < bmax:  # float rounding of log2
            k += 1
        f = 1 << k
        if f >= self.bins:
            total = self.counts.sum()  # everything falls into the new bin 0
            self.counts[:] = 0
            self.counts[0] = total
        else:
            merged = self.counts.reshape(-1, f).sum(axis=1)
            self.counts[:] = 0
            self.counts[: len(merged)] = merged
        self.width *= f

    def to_json(self) -> dict:
        return {
            "bins": self.bins,
            "width": self.width,
            "min": self.min,
            "max": self.max,
            "count": self.count,
            "zeros": self.zeros,
        }


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """The graph input(s) and every node output of type float, in topological order (no initializers)."""
    inferred = shape_inference.infer_shapes(model)
    types = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        types[vi.name] = vi.type.tensor_type.elem_type
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    for n in model.graph.node:
        for o in n.output:
            if o and types.get(o) == onnx.TensorProto.FLOAT and o not in names:
                names.append(o)
    return names


def expose(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` whose graph outputs are exactly `names` (float tensors)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    m.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    return m


def input_name(model: onnx.ModelProto) -> str:
    inits = {t.name for t in model.graph.initializer}
    ins = [i.name for i in model.graph.input if i.name not in inits]
    if len(ins) != 1:
        raise DataError(f"calibration expects a graph with one input, this one has {len(ins)}: {ins}")
    return ins[0]


def run_batches(
    model: onnx.ModelProto,
    data: np.ndarray,
    names: list[str],
    batch_size: int = 8,
    threads: int | None = None,
    progress: bool = False,
):
    """Yield {name: array} for each batch of `data`, with the `names` tensors exposed. ORT's threads do not spin
    between batches: the caller's threads count the batch meanwhile (calibration: 1 CPU s less of 21, DDSNet)."""
    sess = session(expose(model, names), threads, spin=False)
    inp = input_name(model)
    batches = range(0, len(data), batch_size)
    if progress:
        from tqdm import tqdm  # deferred for start-up: a progress bar only on a terminal

        batches = tqdm(batches, desc="statistics", unit="batch", file=sys.stderr)
    for b in batches:
        outs = sess.run(names, {inp: data[b : b + batch_size]})
        yield dict(zip(names, outs))


def run_fp32(
    model: onnx.ModelProto, data: np.ndarray, names: list[str], batch_size: int = 8, threads: int | None = None
) -> dict[str, np.ndarray]:
    """The `names` tensors for all of `data`, concatenated over batches."""
    parts: dict[str, list] = {n: [] for n in names}
    for outs in run_batches(model, data, names, batch_size, threads):
        for n in names:
            parts[n].append(outs[n])
    return {n: np.concatenate(v) for n, v in parts.items()}


# ---------------------------------------------------------------------------------------------------- statistics
@dataclass
class WeightStats:
    name: str
    layer: str
    axis: int
    ch_min: np.ndarray
    ch_max: np.ndarray

    @property
    def ch_absmax(self) -> np.ndarray:
        return np.maximum(np.abs(self.ch_min), np.abs(self.ch_max))


@dataclass
class Stats:
    activations: dict[str, Histogram]  # tensor name -> histogram (topological order)
    weights: dict[str, WeightStats]  # initializer name -> per-channel ranges
    layers: list[Layer]
    samples: int = 0


def weight_stats(model: onnx.ModelProto, layers: list[Layer] | None = None) -> dict[str, WeightStats]:
    inits = initializers(model)
    out = {}
    for l in layers if layers is not None else find_layers(model):
        w = np.moveaxis(inits[l.weight].astype(np.float32), l.w_axis, 0).reshape(inits[l.weight].shape[l.w_axis], -1)
        out[l.weight] = WeightStats(l.weight, l.name, l.w_axis, w.min(axis=1), w.max(axis=1))
    return out


def update_histograms(hists: dict, outs: dict, pool=None) -> None:
    """Add one batch of exposed tensors to their histograms; NaN or inf is a data error naming the tensor. With a
    thread `pool`, the tensors are counted in parallel (each histogram is its own: the counts do not change)."""

    def one(n):
        try:
            hists[n].update(outs[n])
        except NonFinite:
            raise DataError(
                f"tensor {n!r} holds NaN or infinite values on the calibration data "
                f"(check the weights and the input preprocessing)"
            ) from None

    for _ in pool.map(one, hists) if pool is not None else map(one, hists):
        pass


def collect_stats(
    model: onnx.ModelProto,
    data: np.ndarray,
    batch_size: int = 8,
    bins: int = BINS,
    tensors: list[str] | None = None,
    threads: int | None = None,
    progress: bool | None = None,
) -> Stats:
    """Histograms of every float activation tensor over `data` [N, C, H, W], and the weights' channel ranges."""
    names = tensors if tensors is not None else float_tensors(model)
    hists = {n: Histogram(bins) for n in names}
    if progress is None:
        progress = sys.stderr.isatty() and len(data) > 64
    for outs in run_batches(model, data, names, batch_size, threads, progress):
        update_histograms(hists, outs)
    layers = find_layers(model)
    return Stats(hists, weight_stats(model, layers), layers, len(data))


def per_sample_cosine(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Cosine of each sample's flattened tensors (1 for two zero tensors, 0 when only one is zero)."""
    a = np.asarray(ref, np.float64).reshape(len(ref), -1)
    b = np.asarray(got, np.float64).reshape(len(got), -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.einsum("ij,ij->i", a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (na * nb)
    return np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))
