"""`tcc report`: the DDSNet paper's Table 1 for any set of specs (parameters, MACs, FP32 and INT8 size) and, given
built bundles, their latency here (1 thread, interleaved rounds), fidelity (the build's self-check) and ARM
instruction counts; markdown, JSON and plots (tcc.plots)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..bundle import MANIFEST, read_manifest
from ..errors import DataError, TccError
from ..frontend import lower_spec
from ..plots import layer_cosine_bars, model_size_chart, save
from ..quant.table.file import load_table
from . import timing
from .bench import runner_for

# INT8 storage: conv / linear weights one byte each, their biases int32 (the integer kernels' accumulators);
# everything else (scales, shapes) stays 4-byte float. Counted on the graph after fold/fuse, as it is deployed.
_WEIGHT_OPS = {"Conv": (1, 4), "Gemm": (1, 4), "MatMul": (1, None), "ConvTranspose": (1, 4)}


def model_row(spec: str | Path, overrides: dict | None = None) -> dict:
    """One Table 1 row: exact parameters and MACs from the spec; sizes from the lowered graph after the passes."""
    fe = lower_spec(spec, overrides or {})
    g = fe.model.graph
    inits = {t.name: int(np.prod(t.dims)) if t.dims else 1 for t in fe.onnx.graph.initializer}
    int8, seen = 0, set()
    for node in fe.onnx.graph.node:
        widths = _WEIGHT_OPS.get(node.op_type)
        if not widths:
            continue
        for name, width in zip(node.input[1:3], widths):
            if name in inits and width and name not in seen:
                int8 += inits[name] * width
                seen.add(name)
    int8 += 4 * sum(n for k, n in inits.items() if k not in seen)
    fp32 = 4 * sum(inits.values())
    return {
        "name": fe.model.name,
        "spec": str(spec),
        "overrides": overrides or {},
        "input": list(g.input.shape),
        "params": g.param_count,
        "params_m": round(g.param_count / 1e6, 2),
        "macs": g.macs,
        "gmacs": round(g.macs / 1e9, 2),
        "fp32_mib": round(g.size_bytes_fp32 / 2**20, 2),
        "deployed_fp32_mib": round(fp32 / 2**20, 2),
        "int8_mib": round(int8 / 2**20, 2),
    }


def bundle_row(bundle: Path, rounds: int = 5, runs: int = 10) -> tuple[dict, object]:
    """A bundle's manifest facts and a timing runner when it runs here (ARM modules do not: their cost is the
    instruction count, when the build counted it)."""
    path = Path(bundle) / MANIFEST
    m = read_manifest(bundle)  # every file against its sha256, the fields tcc reads checked
    try:
        sc = m["self_check"]
        fidelity = sc.get("vs_fp32") or sc["result"]
        row = {
            "bundle": str(bundle),
            "model": m["model"]["name"],
            "target": m["target"],
            "precision": m["precision"],
            "artifact_bytes": m["files"][m["artifact"]]["bytes"],
            "cosine_vs_fp32": fidelity.get("cosine"),
            "max_abs_vs_fp32": fidelity.get("max_abs"),
        }
        shape = m["inputs"][0]["shape"]
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a tcc bundle manifest (missing {e})") from None
    ins = m.get("target_checks", {}).get("instructions_per_inference")
    if ins:
        row["arm_instructions"] = ins["total"]
        row["arm_simd_fraction"] = ins["simd_fraction"]
    x = np.random.default_rng(0).standard_normal([1, *[int(d) for d in shape[1:]]]).astype(np.float32)
    try:
        runner = runner_for(m["target"], m["precision"], Path(bundle), x)
    except TccError as e:  # e.g. LiteRT missing: reported without latency, and why
        row["latency_error"] = str(e).splitlines()[0]
        runner = None
    return row, runner


def report(
    specs: list[str], bundles: list[str], out: Path, overrides: dict | None = None, rounds: int = 5, runs: int = 10
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    doc: dict = {"models": [model_row(s, overrides) for s in specs], "bundles": [], "plots": []}
    if doc["models"]:
        doc["plots"].append(str(save(model_size_chart(doc["models"]), out / "models.png")))
    runners = {}
    for b in bundles:
        row, runner = bundle_row(Path(b))
        key = f"{row['model']} {row['target']} {row['precision']} ({Path(b).name})"
        row["key"] = key
        doc["bundles"].append(row)
        if runner is not None:
            runners[key] = runner
        table = Path(b) / "calibration.json"
        if table.exists():
            tensors = load_table(table).tensors
            doc["plots"].append(
                str(
                    save(
                        layer_cosine_bars(tensors, f"{key}: per-tensor cosine of calibration"),
                        out / f"{Path(b).name}.cosine.png",
                    )
                )
            )
    if runners:
        per_round = timing.interleave(runners, rounds, runs)
        for row in doc["bundles"]:
            if row["key"] in per_round:
                row["latency_ms"] = timing.spread(per_round[row["key"]])
    (out / "report.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "report.md").write_text(to_markdown(doc) + "\n")
    return doc


def to_markdown(doc: dict) -> str:
    lines = []
    if doc["models"]:
        lines += [
            "| model | input | params | params (M) | MACs | GMACs | FP32 size (MiB) | INT8 size (MiB) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['name']} | {'x'.join(map(str, r['input']))} | {r['params']:,} | {r['params_m']:.2f} | "
            f"{r['macs']:,} | {r['gmacs']:.2f} | {r['fp32_mib']:.2f} | {r['int8_mib']:.2f} |"
            for r in doc["models"]
        ]
        lines.append("")
    if doc["bundles"]:
        lines += [
            "| bundle | target | precision | artifact bytes | latency ms (p10-p90) | cosine vs FP32 | "
            "max abs vs FP32 | ARM instructions |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in doc["bundles"]:
            lat = r.get("latency_ms")
            lines.append(
                f"| {r['key']} | {r['target']} | {r['precision']} | {r['artifact_bytes']:,} | "
                + (f"{lat['median']:.3f} ({lat['p10']:.3f}-{lat['p90']:.3f})" if lat else "not here")
                + f" | {r['cosine_vs_fp32']} | {r['max_abs_vs_fp32']} | "
                + (f"{r['arm_instructions']:,}" if "arm_instructions" in r else "")
                + " |"
            )
        lines.append("")
    return "\n".join(lines)
