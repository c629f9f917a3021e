"""The pass pipeline, in order. `run_pipeline(model)` returns the clean FP32 model and a report of what each pass
changed (node counts by op type before -> after, and each pass's own counts), as data and as a table.

Promise of the pipeline: no standalone BatchNormalization survives (folded into a Conv/Gemm, or a depthwise 1x1
Conv); it raises PassError otherwise, naming the nodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import onnx

from .base import Pass, PassError, Stats, op_counts
from .batchnorm import batchnorm_to_affine, fold_batchnorm
from .cleanup import eliminate_dead, remove_identity
from .concat import flatten_concat
from .constants import fold_constants
from .fusion import mark_fused_activations
from .pool import pool_before_conv
from .simplify import simplify as onnxsim_pass

PIPELINE: tuple[Pass, ...] = (
    remove_identity,
    fold_constants,
    fold_batchnorm,
    batchnorm_to_affine,
    flatten_concat,
    pool_before_conv,
    eliminate_dead,
    onnxsim_pass,  # optional: run_pipeline(simplify=False) skips it
    mark_fused_activations,  # last: it names nodes, later rewrites could invalidate the marks
)


@dataclass
class PassResult:
    name: str
    before: dict[str, int]  # node count by op type
    after: dict[str, int]
    stats: Stats
    seconds: float

    @property
    def changes(self) -> dict[str, tuple[int, int]]:
        ops = sorted(set(self.before) | set(self.after))
        return {
            op: (self.before.get(op, 0), self.after.get(op, 0))
            for op in ops
            if self.before.get(op, 0) != self.after.get(op, 0)
        }

    def to_json(self) -> dict:
        return {
            "pass": self.name,
            "nodes_before": sum(self.before.values()),
            "nodes_after": sum(self.after.values()),
            "changes": {op: list(v) for op, v in self.changes.items()},
            "stats": dict(self.stats),
            "seconds": round(self.seconds, 4),
        }


@dataclass
class PipelineReport:
    passes: list[PassResult] = field(default_factory=list)

    @property
    def before(self) -> dict[str, int]:
        return self.passes[0].before if self.passes else {}

    @property
    def after(self) -> dict[str, int]:
        return self.passes[-1].after if self.passes else {}

    def to_json(self) -> dict:
        return {
            "nodes_before": sum(self.before.values()),
            "nodes_after": sum(self.after.values()),
            "passes": [p.to_json() for p in self.passes],
        }

    def table(self) -> str:
        rows = [("pass", "op", "before", "after", "notes")]
        for p in self.passes:
            rows.extend(_rows(p))
        total = ("total", "nodes", str(sum(self.before.values())), str(sum(self.after.values())), "")
        widths = [max(len(r[i]) for r in [*rows, total]) for i in range(5)]
        fmt = lambda r: "  ".join(  # noqa: E731
            c.rjust(w) if i in (2, 3) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))
        ).rstrip()
        rule = "  ".join("-" * w for w in widths)
        return "\n".join([fmt(rows[0]), rule, *map(fmt, rows[1:]), rule, fmt(total)])

    def __str__(self) -> str:
        return self.table()


def _rows(p: PassResult) -> list[tuple[str, str, str, str, str]]:
    notes = ", ".join(f"{k} {v}" for k, v in p.stats.items() if v) or ""
    changes = list(p.changes.items())
    if not changes:
        return [(p.name, "(no change)", "", "", notes)]
    return [
        (p.name if i == 0 else "", op, str(b), str(a), notes if i == 0 else "")
        for i, (op, (b, a)) in enumerate(changes)
    ]


def run_pipeline(
    model: onnx.ModelProto, simplify: bool = True, verbose: bool = False
) -> tuple[onnx.ModelProto, PipelineReport]:
    """Run every pass of PIPELINE in order (onnxsim unless `simplify=False`). `verbose` prints each pass's rows
    as it finishes."""
    report = PipelineReport()
    for p in PIPELINE:
        if p is onnxsim_pass and not simplify:
            continue
        before = dict(sorted(op_counts(model).items()))
        start = time.perf_counter()
        model, stats = p.run(model)
        result = PassResult(p.name, before, dict(sorted(op_counts(model).items())), stats, time.perf_counter() - start)
        report.passes.append(result)
        if verbose:
            for row in _rows(result):
                print("  ".join(c for c in row if c))
    left = [n.name for n in model.graph.node if n.op_type == "BatchNormalization"]
    if left:
        raise PassError(f"{len(left)} BatchNormalization node(s) survived the pipeline: {', '.join(left[:5])}")
    return model, report
