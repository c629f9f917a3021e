"""EasyQuant-style fine search of the scales (the DDSNet paper's second step, equation 10).

For each conv/linear layer in topological order: starting from the coarse scales (KL for the input activation,
max |w| per output channel for the weights), search the per-output-channel weight scales, then the input
activation scale, each over [0.5 s0, 2 s0] (`steps` candidates, plus the current value), maximising the cosine
similarity between the layer's FP32 output and its quantized output (equation 8 on both operands); alternate the
two searches for `rounds` rounds. When the best input scale is the window's top, the window goes on, in steps of
the same size, up to the scale of the tensor's largest value on the data (`Inputs.limits`): KL's threshold can
lie far below the clip the layer wants (measured: docs/notes/quantizer-measurements.md). Every step keeps the
current value unless a candidate is strictly better, so the search never lowers the cosine.

The layer is evaluated on sampled output positions: `LayerSamples` holds, per layer, the im2col rows of its FP32
input at up to `rows` output positions drawn from the calibration batch, so one evaluation is a small matmul and the
conv itself never runs again. With the activation fixed, the weight search is exact and cheap through the Gram
matrix A^T A of the quantized input: for output channel o with quantized weights w and bias b,
    y_fp . y_q = w . (A^T y_fp) + b sum(y_fp),      |y_q|^2 = w^T (A^T A) w + 2 b (1^T A) w + R b^2,
so all candidates of all channels cost O(C_out K^2) each, and channels are then chosen by coordinate ascent on the
global cosine. Cosines here are pre-activation (the conv/linear output before any fused ReLU).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..intgraph.layers import Layer, grouped_weight, layer_output
from ..table.quantizer import fake_quant, scale_for_threshold


def _cos(a: np.ndarray, b: np.ndarray, aa: float | None = None) -> float:
    """Cosine of two float32 arrays (numpy's pairwise summation keeps float32 sums accurate to ~1e-7); `aa`:
    (a * a).sum() when the caller has it."""
    ab, bb = float((a * b).sum()), float((b * b).sum())
    aa = float((a * a).sum()) if aa is None else aa
    return ab / np.sqrt(aa * bb) if aa > 0 and bb > 0 else float(aa == bb)


class _Quant:
    """fake_quant of one fixed array at many scales, into a reused buffer (equation 8, as quantizer.fake_quant)."""

    def __init__(self, x: np.ndarray, signed: bool):
        self.x = x
        self.buf = np.empty_like(x)
        self.lo, self.hi = (-128.0, 127.0) if signed else (0.0, 255.0)

    def __call__(self, scale: float, x: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """`x` quantized at `scale` into `out` (default: the whole array, into the reused buffer)."""
        if x is None:
            x, out = self.x, self.buf
        b = out if out is not None else np.empty_like(x)
        np.divide(x, np.float32(scale), out=b)
        np.rint(b, out=b)
        np.clip(b, self.lo, self.hi, out=b)
        b *= np.float32(scale)
        return b


class _LayerEval:
    """One layer's cosine (FP32 output vs the output of quantized input and weights) at many scales: the FP32
    output and its squared norm computed once; a grouped conv's quantized input made a few groups at a time and
    multiplied at once, while the slice is in cache (the same floats as whole-array quantization: every group is
    its own product). CHUNK: input elements per slice."""

    CHUNK = 1 << 18

    def __init__(self, a: np.ndarray, wg: np.ndarray, bias: np.ndarray | None, signed: bool):
        self.a, self.wg, self.bias = a, wg, bias
        self.y_fp = layer_output(a, wg, bias)
        self.yy = float((self.y_fp * self.y_fp).sum())
        self.q = _Quant(a, signed)
        g, r, k = a.shape
        self.step = max(1, self.CHUNK // (r * k)) if g > 1 else g
        if self.step < g:
            self.slice_buf = np.empty((self.step, r, k), np.float32)
            self.out = np.empty((g, r, wg.shape[1]), np.float32)

    def cos(self, s_act: float, wq: np.ndarray, a_q: np.ndarray | None = None) -> float:
        """The cosine with the input at scale `s_act` (`a_q`: the input already quantized at it) and weights `wq`."""
        if a_q is not None or self.step >= len(self.a):
            return _cos(self.y_fp, layer_output(self.q(s_act) if a_q is None else a_q, wq, self.bias), self.yy)
        wt = wq.transpose(0, 2, 1)
        for g0 in range(0, len(self.a), self.step):
            g1 = min(g0 + self.step, len(self.a))
            part = self.q(s_act, self.a[g0:g1], self.slice_buf[: g1 - g0])
            np.matmul(part, wt[g0:g1], out=self.out[g0:g1])
        if self.bias is not None:
            self.out += self.bias.reshape(self.wg.shape[0], 1, self.wg.shape[1])
        return _cos(self.y_fp, self.out, self.yy)


# ---------------------------------------------------------------------------------------------------- search
@dataclass
class LayerResult:
    name: str
    input: str
    weight: str
    cos_before: float
    cos_after: float
    w_scale: np.ndarray  # per output channel
    history: list[float] = field(default_factory=list)  # cosine after each search step


@dataclass
class SearchResult:
    act_scales: dict[str, float]  # tensor -> scale (only the searched inputs)
    act_cos: dict[str, tuple[float, float]]  # tensor -> (mean cosine of its consumers before, after)
    layers: dict[str, LayerResult]


# multiply-adds of one weight step's scan of every factor beyond which it scans coarse to fine (every 4th
# factor, then each channel's neighbours of its choice): FCN-ResNet50's head, a 3 x 3 conv on 2,048 channels, costs
# 101 x 512 x 18,432^2 = 1.8e13 through its Gram matrix (docs/notes/calibration-time.md); DDSNet's largest layer
# 7e8, FastNet's 3.4e9
WEIGHT_SCAN_BUDGET = 2e11
COARSE_STRIDE = 4  # as the activation grid's (SearchSettings.stride)


class _WeightCosines:
    """Each output channel's terms of the layer's cosine, y_fp . y_q and |y_q|^2, for candidate weight scales, the
    input quantized: through the Gram matrix A^T A (K^2 a channel), or `by_rows`, through the sampled rows
    themselves (R K a channel: cheaper where the reduction K is longer than the rows R)."""

    def __init__(self, a_q, wg, bias, y_fp, by_rows: bool):
        g, o, k = wg.shape
        self.wg, self.r = wg, a_q.shape[1]
        self.a64 = a_q.astype(np.float64)  # [G, R, K]
        y64 = y_fp.astype(np.float64)  # [G, R, O]
        self.bfp = np.matmul(y64.transpose(0, 2, 1), self.a64)  # [G, O, K]
        self.b = np.zeros((g, o)) if bias is None else bias.reshape(g, o).astype(np.float64)
        self.ysum = y64.sum(axis=1)  # [G, O]
        self.by_rows = by_rows
        if not self.by_rows:
            self.gram = np.matmul(self.a64.transpose(0, 2, 1), self.a64)  # [G, K, K]
            self.colsum = self.a64.sum(axis=1)  # [G, K]

    def __call__(self, cands: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
        """(dots, norms), each [F, G * O], of candidate scales [F, G, O]."""
        g, o, _ = self.wg.shape
        b = self.b
        dots, nrms = np.empty(cands.shape), np.empty(cands.shape)
        for f in range(len(cands)):
            wq = fake_quant(self.wg, cands[f].reshape(g, o, 1), bits=bits).astype(np.float64)
            dots[f] = np.einsum("gok,gok->go", wq, self.bfp) + b * self.ysum
            if self.by_rows:
                yq = np.matmul(self.a64, wq.transpose(0, 2, 1))  # [G, R, O]
                nrms[f] = np.einsum("gro,gro->go", yq, yq) + 2 * b * yq.sum(axis=1) + self.r * b * b
            else:
                gw = np.matmul(wq, self.gram)  # gram is symmetric
                nrms[f] = (
                    np.einsum("gok,gok->go", wq, gw) + 2 * b * np.einsum("gk,gok->go", self.colsum, wq) + self.r * b * b
                )
        return dots.reshape(len(cands), -1), np.maximum(nrms.reshape(len(cands), -1), 0.0)


def _ascent(dots: np.ndarray, nrms: np.ndarray) -> np.ndarray:
    """Each channel's candidate (index into dots / nrms [F, channels]; 0: the current one) by coordinate ascent on
    the global cosine sum(dots) / sqrt(sum(norms))."""
    channels = dots.shape[1]
    choice = np.zeros(channels, np.int64)
    d, n = dots[0].sum(), nrms[0].sum()
    for _sweep in range(2):
        changed = False
        for ch in range(channels):
            d_rest = d - dots[choice[ch], ch]
            n_rest = n - nrms[choice[ch], ch]
            dd = d_rest + dots[:, ch]
            nn = np.maximum(n_rest + nrms[:, ch], 1e-300)
            score = dd / np.sqrt(nn)
            best = int(np.argmax(score))
            if score[best] > score[choice[ch]] * (1 + 1e-12) + 1e-300:
                choice[ch] = best
                changed = True
            d, n = d_rest + dots[choice[ch], ch], n_rest + nrms[choice[ch], ch]
        if not changed:
            break
    return choice


def _weight_step(a_q, wg, bias, y_fp, s_w, s0_w, factors, bits=8):
    """Choose per-channel weight scales among s0_w * factors (and the current s_w): exact coordinate ascent. Where
    scanning every factor through the Gram matrix would cost more than WEIGHT_SCAN_BUDGET multiply-adds, through
    the rows where they are fewer than the reduction, and every COARSE_STRIDE-th factor first, then each channel's
    factors within COARSE_STRIDE of its choice, the ascent over both."""
    g, o, k = wg.shape
    r = a_q.shape[1]
    s0 = s0_w.reshape(g, o)
    full = np.concatenate([s_w.reshape(g, o)[None], s0[None] * factors[:, None, None]])  # [F+1, G, O]
    if len(full) * g * o * k * k <= WEIGHT_SCAN_BUDGET:
        cands = full
        dots, nrms = _WeightCosines(a_q, wg, bias, y_fp, by_rows=False)(cands, bits)
    else:  # a large layer: its rows where they are fewer than its reduction, coarse to fine
        cosines = _WeightCosines(a_q, wg, bias, y_fp, by_rows=k > r)
        stride = COARSE_STRIDE
        coarse = np.concatenate([full[:1], full[1::stride]])
        dots, nrms = cosines(coarse, bits)
        chosen = coarse.reshape(len(coarse), -1)[_ascent(dots, nrms), np.arange(g * o)]  # [G * O]
        at = np.abs(np.log(full[1:].reshape(len(factors), -1) / chosen)).argmin(axis=0)  # each channel's factor
        near = [d for d in range(1 - stride, stride) if d]
        index = np.clip(at[None] + np.array(near)[:, None], 0, len(factors) - 1)  # [len(near), G * O]
        fine = (s0.reshape(-1)[None] * factors[index]).reshape(len(near), g, o)
        fine_dots, fine_nrms = cosines(fine, bits)
        cands = np.concatenate([coarse, fine])
        dots, nrms = np.concatenate([dots, fine_dots]), np.concatenate([nrms, fine_nrms])
    choice = _ascent(dots, nrms)
    return cands.reshape(len(cands), -1)[choice, np.arange(g * o)].reshape(s_w.shape).astype(np.float32)


@dataclass(frozen=True)
class SearchSettings:
    """How the fine search scans: `steps` factors over [lo, hi] times the coarse scale, weights and activation
    alternated for `rounds` rounds; the activation grid coarse to fine, every `stride`-th factor then all within
    `stride` of the best (stride=1: the full grid); on `threads` threads."""

    steps: int = 100
    rounds: int = 2
    lo: float = 0.5
    hi: float = 2.0
    stride: int = 4
    threads: int = 1


@dataclass(frozen=True)
class Inputs:
    """The layers' input tensors as the search starts from them: their coarse (KL) scales, whether signed, and the
    scale of each one's largest value on the data (`limits`: how far the grid may go past the window)."""

    scales: dict[str, float]
    signed: dict[str, bool]
    limits: dict[str, float] = field(default_factory=dict)


def cos_search(
    layers: list[Layer],
    weights: dict[str, np.ndarray],
    samples: dict[str, np.ndarray],
    inputs: Inputs,
    settings: SearchSettings = SearchSettings(),
    weight_bits: dict[str, int] | None = None,
) -> SearchResult:
    """Fine-search weight and input-activation scales of every layer in `samples` (layer name -> im2col rows).

    `weights` maps initializer names to arrays (weights and biases); `inputs` holds the coarse (KL) scales of the
    layers' input tensors. Layers sharing an input tensor share its scale: its search maximises their mean
    cosine. The activation grid is scanned coarse to fine (`settings`); later rounds, after the weights moved, scan
    only the factors within 2 `stride` of the scale chosen. `weight_bits`: weight name -> bit width of its codes
    (default 8). Returns the new input scales, per-channel weight scales and before/after cosines.

    Each input tensor's search reads only FP32 samples, never another search's result, so the searches run on
    `settings.threads` threads (numpy releases the GIL in its loops) and the result does not depend on their
    number.
    """
    factors = np.linspace(settings.lo, settings.hi, settings.steps)
    by_input: dict[str, list[Layer]] = {}
    for l in layers:
        if l.name in samples:
            by_input.setdefault(l.input, []).append(l)

    def search(item):
        tensor, group = item
        consumers = [
            _Consumer.of(l, weights, samples, (weight_bits or {}).get(l.weight, 8), inputs.signed.get(tensor, True))
            for l in group
        ]
        return _InputSearch.of(
            consumers, inputs.scales[tensor], factors, settings.stride, inputs.limits.get(tensor)
        ).run(settings.rounds)

    if settings.threads > 1 and len(by_input) > 1:
        # the costliest searches first (their rows' size), so that no thread is left with a long one at the end
        order = sorted(by_input, key=lambda t: -sum(samples[l.name].size for l in by_input[t]))
        with ThreadPoolExecutor(max_workers=settings.threads) as pool:
            done = dict(zip(order, pool.map(search, ((t, by_input[t]) for t in order))))
        found = [done[t] for t in by_input]
    else:
        found = [search(item) for item in by_input.items()]
    out_scales: dict[str, float] = {}
    out_cos: dict[str, tuple[float, float]] = {}
    results: dict[str, LayerResult] = {}
    for tensor, (s_a, cos_pair, layer_results) in zip(by_input, found):
        out_scales[tensor] = s_a
        out_cos[tensor] = cos_pair
        results.update(layer_results)
    return SearchResult(out_scales, out_cos, results)


def scan_grid(score, grid: np.ndarray, stride: int, scored: dict) -> int:
    """Coarse to fine over `grid` (every `stride`-th, then all within `stride` of the best): the best index; fills
    `scored` (index -> score)."""
    for k in range(0, len(grid), stride):
        if k not in scored:
            scored[k] = score(grid[k])
    kb = max((k for k in scored if k >= 0), key=lambda k: scored[k])
    for k in range(max(kb - stride + 1, 0), min(kb + stride, len(grid))):
        if k not in scored:
            scored[k] = score(grid[k])
    return max((k for k in scored if k >= 0), key=lambda k: scored[k])


@dataclass
class _Consumer:
    """A layer reading the searched tensor: its evaluation, its coarse (minmax) and current weight scales [G, O]."""

    layer: Layer
    ev: _LayerEval
    s0_w: np.ndarray
    s_w: np.ndarray
    bits: int

    @classmethod
    def of(cls, l: Layer, weights: dict, samples: dict, bits: int, signed: bool) -> _Consumer:
        a = np.ascontiguousarray(samples[l.name].transpose(1, 0, 2))  # [G, R, K]
        wg = grouped_weight(l, weights[l.weight])
        bias = weights[l.bias].astype(np.float32) if l.bias else None
        s0_w = scale_for_threshold(np.abs(wg).max(axis=2), bits)  # [G, O], minmax
        return cls(l, _LayerEval(a, wg, bias, signed), s0_w, s0_w.copy(), bits)

    def wq(self, s_w: np.ndarray) -> np.ndarray:
        return fake_quant(self.ev.wg, s_w[..., None], bits=self.bits)


@dataclass
class _InputSearch:
    """The search of one input tensor's scale and its consumers' weight scales, round by round. Each consumer's
    cosine at the current scales (s_a, its s_w) is kept in `current`: every step starts from it."""

    consumers: list[_Consumer]
    factors: np.ndarray
    stride: int
    limit: float | None  # how far the activation grid may go past the window
    s_a: float
    grid: np.ndarray  # the activation candidates (the first round may extend it past the window)
    current: list[float]
    hist: list[list[float]]  # each consumer's cosine after each step
    at: int | None = None  # the grid index of the activation scale once a round has searched it

    @classmethod
    def of(cls, consumers, s0_a: float, factors, stride: int, limit: float | None) -> _InputSearch:
        current = [c.ev.cos(s0_a, c.wq(c.s_w)) for c in consumers]
        return cls(consumers, factors, stride, limit, s0_a, s0_a * factors, current, [[v] for v in current])

    def run(self, rounds: int) -> tuple[float, tuple[float, float], dict[str, LayerResult]]:
        """(scale, (mean cosine before, after), {layer name: LayerResult})."""
        before = list(self.current)
        for _ in range(rounds):
            self.weights_step()
            self.activation_step()
        after = [h[-1] for h in self.hist]
        results = {}
        for c, b, a, h in zip(self.consumers, before, after, self.hist):
            l = c.layer
            results[l.name] = LayerResult(l.name, l.input, l.weight, b, a, c.s_w.reshape(-1), h)
        return self.s_a, (float(np.mean(before)), float(np.mean(after))), results

    def weights_step(self) -> None:
        """Each consumer's weight scales, the activation fixed."""
        for i, c in enumerate(self.consumers):
            ev = c.ev
            a_q = ev.q(self.s_a)
            new = _weight_step(a_q, ev.wg, ev.bias, ev.y_fp, c.s_w, c.s0_w, self.factors, c.bits)
            c_new, c_old = ev.cos(self.s_a, c.wq(new), a_q), self.current[i]
            if c_new >= c_old:  # exact by construction; guard against float summation order
                c.s_w = new
            self.current[i] = max(c_new, c_old)
            self.hist[i].append(self.current[i])

    def activation_step(self) -> None:
        """The activation scale, the weights fixed: the mean cosine over the consumers; a coarse grid (every
        `stride`-th factor), then every factor around the best coarse one."""
        wqs = [c.wq(c.s_w) for c in self.consumers]
        per_layer: dict[float, list[float]] = {}  # scale -> each consumer's cosine

        def score(s):
            if float(s) not in per_layer:
                per_layer[float(s)] = [c.ev.cos(s, wq) for c, wq in zip(self.consumers, wqs)]
            return sum(per_layer[float(s)])

        scored = {-1: score(self.s_a)}  # -1: the current scale
        stride, grid = self.stride, self.grid
        if self.at is None:  # the first round scans the whole grid coarsely, then finely around its best; when
            # that is the window's top, the grid goes on up to the limit (and stays so for the later rounds)
            kb = scan_grid(score, grid, stride, scored)
            if kb == len(grid) - 1 and self.limit is not None and self.limit > grid[-1]:
                step = grid[1] - grid[0]
                more = grid[-1] + step * np.arange(1, int(np.ceil((self.limit - grid[-1]) / step)) + 1)
                grid = self.grid = np.concatenate([grid, more])
                scan_grid(score, grid, stride, scored)
        else:  # later rounds, whose weights moved only a little, scan every factor within two coarse steps of the
            # scale the first one chose
            for k in range(max(self.at - 2 * stride + 1, 0), min(self.at + 2 * stride, len(grid))):
                if k not in scored:
                    scored[k] = score(grid[k])
        best = max(scored, key=lambda k: (scored[k], k == -1))
        if best != -1 and scored[best] > scored[-1]:
            self.s_a = float(grid[best])
            self.at = best
        elif self.at is None:
            self.at = int(np.argmin(np.abs(grid - self.s_a)))  # the coarse scale stayed: refine around it
        self.current = list(per_layer[float(self.s_a)])
        for i in range(len(self.consumers)):
            self.hist[i].append(self.current[i])
