"""Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", ICCV 2019, section 4.1), data-aware: a calibration step before the statistics.

A producer conv whose output reaches only weighted consumers, through a ReLU (or nothing) and ops that commute
with a positive per-channel factor (max / average / global pooling, a flatten of [N, C, 1, 1]), computes the
same function when its output channel i is multiplied by c_i > 0 (weight row and bias) and every consumer's
input channel i divided by c_i: ReLU(c x) = c ReLU(x). ReLU6 does not commute (its clamp at 6 would have to move
with c_i), so a Clip with an upper bound ends the search.

Why it matters on depthwise-separable nets: the tensor between a depthwise conv and its pointwise conv is
quantized per tensor, one step for all channels, while its channels' ranges differ by up to 36x (DDSNet's Sipak
checkpoint: 0.93 to 33 after the first depthwise conv); that one tensor cost the network's output more than all
its weights together. The producer's weights are quantized per output channel, so its rows scale for free; what
the factors trade is the activation's step against the consumers' weights, whose columns they spread (a 7-bit
linear layer after global pooling lost more than the pooled activation gained on the PCam checkpoint). So the
trade is measured, pair by pair: the factors are c_i = (r_max / r_i) ** strength, r_i the channel's largest value
on the calibration data (strength 1: every channel spans the widest one's range, 0: no change), and each pair
takes the strength among STRENGTHS whose consumers' output, with their inputs and weights quantized (inputs at
their largest value, weights per channel at max |w|), is closest to FP32 on sampled input rows.

    pairs = find_pairs(graph)                                  # tcc.quant.intgraph.match.IntGraph -> [Pair]
    measured = measure(model, data, pairs)                     # one ONNX Runtime pass
    records = choose(pairs, measured, inits, weight_bits)      # -> the table's records (tcc.quant.table.steps applies
    them)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ...intops import Role
from ..collect.stats import run_batches
from ..intgraph.layers import grouped_weight, initializers, layer_of, layer_output, layer_rows
from ..intgraph.match import INode, IntGraph
from ..table.quantizer import fake_quant, scale_for_threshold
from ..table.steps import per_input_channel

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
MAX_FACTOR = 1e3  # no channel is scaled up more than this: one that is (almost) dead on the data would otherwise
# be blown up to the full range


@dataclass(frozen=True)
class Pair:
    """A producer whose output channels can be rescaled, the weighted consumers that undo it, and the tensors
    between them (`tensor`: the producer's output after its folded activation)."""

    producer: INode
    consumers: tuple[INode, ...]
    tensor: str
    through: tuple[str, ...]  # tensors of the channel-wise ops between producer and consumers


def _uses(graph: IntGraph) -> dict[str, int]:
    """How many nodes read each initializer (a shared weight cannot be rescaled for one of its readers)."""
    count: dict[str, int] = {}
    for n in graph.model.graph.node:
        for i in n.input:
            count[i] = count.get(i, 0) + 1
    return count


def find_pairs(graph: IntGraph) -> list[Pair]:
    """Every producer -> consumers structure that equalization may rescale, in graph order."""
    readers: dict[str, list[INode]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    outputs = set(graph.outputs)
    uses = _uses(graph)
    pairs = []
    for p in graph.weighted:
        if p.op_type != "Conv":
            continue
        assert p.weight is not None  # a conv's weight
        if uses.get(p.weight, 0) != 1 or (p.bias and uses.get(p.bias, 0) != 1):
            continue
        act = p.activation
        if act is not None and not (act.min == 0.0 and act.max is None):  # ReLU6 and other clamps: no
            continue
        frontier, through, consumers, ok = [p.outputs[0]], [], [], True
        while frontier and ok:
            t = frontier.pop()
            if t in outputs or not readers.get(t):
                ok = False
                break
            for r in readers[t]:
                if (
                    r.op.role is Role.WEIGHTED
                    and r.inputs[0] == t
                    and r.weight is not None
                    and uses.get(r.weight, 0) == 1
                ):
                    consumers.append(r)
                elif r.op.commutes_per_channel(graph.view(r)):
                    through.append(r.outputs[0])
                    frontier.append(r.outputs[0])
                else:
                    ok = False
                    break
        if ok and consumers:
            pairs.append(Pair(p, tuple(consumers), p.outputs[0], tuple(through)))
    return pairs


def _input_axis(n: INode) -> int:
    """The axis of a consumer's weight along its input channels."""
    return 1 if n.op_type == "Conv" else 1 - n.w_axis


@dataclass
class Measured:
    """What one pass over the data found for a pair: its tensor's per-channel largest value, and per consumer the
    largest value of each input channel and im2col rows of its input (tcc.quant.intgraph.layers.layer_rows)."""

    ranges: np.ndarray
    consumer_ranges: dict[str, np.ndarray]
    rows: dict[str, np.ndarray]


def measure(
    model: onnx.ModelProto,
    data: np.ndarray,
    pairs: list[Pair],
    rows: int = 2048,
    batch_size: int = 8,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Measured]:
    """Per pair (by its tensor): channel ranges of the tensor and of its consumers' inputs (|x| where the producer
    has no ReLU), and up to `rows` input rows per consumer, drawn evenly from every batch (seeded)."""
    inits = initializers(model)
    tensors = list(dict.fromkeys([p.tensor for p in pairs] + [c.inputs[0] for p in pairs for c in p.consumers]))
    rng = np.random.default_rng(seed)
    maxima: dict[str, np.ndarray] = {}
    parts: dict[str, list] = {c.name: [] for p in pairs for c in p.consumers}
    per_batch = -(-rows * batch_size // max(len(data), 1))
    for outs in run_batches(model, data, tensors, batch_size, threads):
        for t in tensors:
            x = np.abs(outs[t])
            m = x.max(axis=tuple(a for a in range(x.ndim) if a != 1))
            maxima[t] = m if t not in maxima else np.maximum(maxima[t], m)
        for p in pairs:
            for c in p.consumers:
                assert c.weight is not None  # a consumer was taken for its weight
                layer = layer_of(c)
                parts[c.name].append(layer_rows(layer, outs[c.inputs[0]], inits[c.weight].shape, per_batch, rng))
    return {
        p.tensor: Measured(
            maxima[p.tensor],
            {c.name: maxima[c.inputs[0]] for c in p.consumers},
            {c.name: np.concatenate(parts[c.name]) for c in p.consumers},
        )
        for p in pairs
    }


def factors(ranges: np.ndarray, strength: float) -> np.ndarray:
    """c_i = (r_max / r_i) ** strength for the channels that are positive on the data (the others keep 1), at most
    MAX_FACTOR."""
    r = np.asarray(ranges, np.float64)
    c = np.ones_like(r)
    live = r > 0
    if live.any():
        c[live] = (r[live].max() / r[live]) ** strength
    return np.minimum(c, MAX_FACTOR).astype(np.float32)


def consumer_error(
    layer: INode, w: np.ndarray, rows: np.ndarray, in_range: np.ndarray, c: np.ndarray, bits: int, signed: bool
) -> tuple[float, float]:
    """(squared error, squared norm) of a consumer's output on its input rows [R, G, K] with its input channels
    times c and its weight's divided by c, both quantized: the input per tensor at its largest value, the weight
    per output channel at max |w| with `bits`."""
    groups = int(layer.attrs.get("group", 1)) if layer.op_type == "Conv" else 1
    wc = (w / per_input_channel(w, c, _input_axis(layer), groups)).astype(np.float32)
    lay = layer_of(layer)
    wg, wg_c = grouped_weight(lay, w), grouped_weight(lay, wc)
    per_k = _per_k(c, rows.shape, groups)  # [G, K]
    a = np.ascontiguousarray(rows.transpose(1, 0, 2))  # [G, R, K]
    a_c = a * per_k[:, None, :]
    top = float(np.max(in_range.astype(np.float64) * c))
    a_q = fake_quant(a_c, scale_for_threshold(top, 8, signed), 8, signed)
    s_w = scale_for_threshold(np.abs(wg_c).max(axis=2), bits)
    w_q = fake_quant(wg_c, s_w[..., None], bits)
    y = layer_output(a, wg, None).astype(np.float64)
    d = layer_output(a_q, w_q, None).astype(np.float64) - y
    return float((d * d).sum()), float((y * y).sum())


def _per_k(c: np.ndarray, shape: tuple, groups: int) -> np.ndarray:
    """The factor of each element of an im2col row [.., G, K]: K holds (channel, kernel offset) channel-major."""
    g, k = shape[1], shape[2]
    per_group = c.reshape(g, -1)  # [G, C/G]
    return np.repeat(per_group, k // per_group.shape[1], axis=1)


def choose(
    pairs: list[Pair], measured: dict[str, Measured], inits: dict[str, np.ndarray], weight_bits: dict[str, int]
) -> list[dict]:
    """Per pair, the strength whose consumers' relative output error is lowest (ties: the weaker); a pair whose
    best strength is 0 is left out. Returns the records the calibration table stores (tcc.quant.table.steps applies
    them). weight_bits: consumer weight -> its code width."""
    records = []
    for pair in pairs:
        m = measured[pair.tensor]
        signed = pair.producer.activation is None  # a ReLU's output is never negative
        scores = []
        for strength in STRENGTHS:
            c = factors(m.ranges, strength)
            err = norm = 0.0
            for n in pair.consumers:
                assert n.weight is not None  # a consumer was taken for its weight
                e, y = consumer_error(
                    n, inits[n.weight], m.rows[n.name], m.consumer_ranges[n.name], c, weight_bits[n.weight], signed
                )
                err, norm = err + e, norm + y
            scores.append(np.sqrt(err / norm) if norm > 0 else 0.0)
        best = int(np.argmin(scores))
        if STRENGTHS[best] == 0.0:
            continue
        p = pair.producer
        live = m.ranges[m.ranges > 0]
        records.append(
            {
                "tensor": pair.tensor,
                "producer": p.name,
                "weight": p.weight,
                "bias": p.bias,
                "consumers": [
                    {
                        "layer": n.name,
                        "weight": n.weight,
                        "axis": _input_axis(n),
                        "groups": int(n.attrs.get("group", 1)) if n.op_type == "Conv" else 1,
                    }
                    for n in pair.consumers
                ],
                "strength": STRENGTHS[best],
                "error": {str(s): float(v) for s, v in zip(STRENGTHS, scores)},
                "range_before": [float(live.min()), float(live.max())] if live.size else [0.0, 0.0],
                "scales": [float(v) for v in factors(m.ranges, STRENGTHS[best])],
            }
        )
    return records
