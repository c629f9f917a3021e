"""bench.json as markdown: the tables the README quotes."""

from __future__ import annotations

from .peers.compare import tcc_vs_best_peer
from .peers.sysroot import CORE_CLASSES


def _table(head: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join("" if c is None else str(c) for c in r) + " |" for r in rows]
    return out + [""]


def _ms(s: dict) -> str:
    return f"{s['median']:.3f} ({s['p10']:.3f}-{s['p90']:.3f})"


def _threads(settings: dict) -> str:
    counts = settings.get("threads", [1])  # bench.json before --threads: one thread, as a number
    counts = counts if isinstance(counts, list) else [counts]
    others = [t for t in counts if t != 1]
    return "1 thread" + (f" (and {', '.join(map(str, others))} for the bundles marked @Nt)" if others else "")


def to_markdown(doc: dict) -> str:
    mach = doc["machine"]
    lines = [
        f"# tcc bench{' (quick)' if doc.get('quick') else ''}",
        "",
        f"{mach['cpu']}, {mach['cores']} cores, ISA class **{mach['isa_class']}** ({' '.join(mach['isa'])}); "
        f"8-bit dot products: {'yes' if mach['int8_dot'] else 'no'}. {_threads(doc['settings'])}, batch 1, "
        f"{doc['settings']['rounds']} interleaved rounds of {doc['settings']['runs_per_round']} runs: median of "
        f"the per-round medians (p10-p90 of them). Load average at start {mach['load_average'][0]}.",
        "",
    ]
    for key, m in doc["models"].items():
        lines += _model_lines(key, m)
    rows = [[t["target"], t["model"], t["what"], t["bound"], t["measured"], t["status"]] for t in doc["targets"]]
    lines += ["## Targets", ""] + _table(["target", "model", "what", "bound", "measured", "status"], rows)
    notes = [f"- {t['target']} ({t['model']}): {t['context']}" for t in doc["targets"] if t.get("context")]
    lines += ["", *notes] if notes else []
    return "\n".join(lines)


def _model_lines(key: str, m: dict) -> list[str]:
    """One model's section: its latency, calibration, quality, placement and build tables."""
    return _latency_lines(key, m) + _calibration_lines(m) + _quality_and_placement_lines(m) + _build_lines(m)


def _latency_lines(key: str, m: dict) -> list[str]:
    lines = [
        f"## {key}",
        "",
        f"`{m['spec']}`, weights {m['weights']}, input {'x'.join(map(str, m['input']))}, "
        f"{m['params']:,} parameters, {m['macs']:,} MACs.",
        "",
    ]
    fp32 = m["latency_ms"].get("ort-fp32", {}).get("median")
    rows = [[k, _ms(v), f"{v['median'] / fp32:.2f}" if fp32 else ""] for k, v in m["latency_ms"].items()]
    lines += ["Latency (ms):", ""] + _table(["engine", "median (p10-p90)", "/ ORT FP32"], rows)
    rows = [[k, f"{v['median']:.3f}", f"{v['p10']:.3f}-{v['p90']:.3f}"] for k, v in m["latency_ratios"].items()]
    lines += ["Ratios, round by round:", ""] + _table(["ratio", "median", "p10-p90"], rows)
    return lines


def _calibration_lines(m: dict) -> list[str]:
    lines: list[str] = []
    cal = m["calibration"]
    rows = [
        [
            f"tcc {v['method'] if v.get('asked', v['method']) == v['method'] else v['asked'] + ': ' + v['method']}"
            f" ({r} rules)",
            v["samples"],
            f"{v['seconds']:.2f}",
            " / ".join(f"{n}: {b / 2**20:.0f} MiB" for n, b in v.get("peak_bytes", {}).items()),
        ]
        for r, v in cal["tcc"].items()
    ]
    rows += [
        [f"onnxruntime quantize_static {k}", v["samples"], f"{v['seconds']:.2f}", ""]
        for k, v in cal["onnxruntime"].items()
    ]
    lines += ["Calibration:", ""] + _table(["method", "samples", "seconds", "peak memory by samples"], rows)
    return lines


def _quality_and_placement_lines(m: dict) -> list[str]:
    lines: list[str] = []
    q = m["quality"]
    dense = any("dice_min" in v for v in q["results"].values())  # a segmenter: agreement per pixel, and Dice
    rows = [
        [k, f"{v['cos_mean']:.6f}", f"{v['cos_min']:.6f}", f"{100 * v['top1']:.1f}%"]
        + ([f"{v['dice_min']:.4f}" if v.get("dice_min") is not None else "-"] if dense else [])
        for k, v in q["results"].items()
    ]
    lines += [f"INT8 vs FP32 on {q['held_out']} held-out crops (ONNX Runtime's integer kernels):", ""]
    header = ["quantizer", "cosine mean", "cosine min"]
    header += ["pixels agreeing", "lowest class Dice"] if dense else ["top-1 agreement"]
    lines += _table(header, rows)
    p = m.get("placement")
    if p:
        prof = p.get("profile", {})
        lines += [
            f"Speed placement ({p['objective']}, {p['seconds']:.1f} s): {len(p['float_nodes'])} node(s) kept "
            f"in float of {prof.get('candidates', 0)} whose integer kernel profiled slower than float here"
            + (
                f"; placed / plain INT8 {prof['latency_ratio_vs_int8']:.3f} at placement time"
                if "latency_ratio_vs_int8" in prof
                else ""
            )
            + f"; search-sample cosine {p.get('cos_before')} -> {p.get('reference_cos_after')}: "
            + (", ".join(p["float_nodes"][:8]) + (" ..." if len(p["float_nodes"]) > 8 else "") or "none"),
            "",
        ]
    return lines


def _build_lines(m: dict) -> list[str]:
    lines: list[str] = []
    rows = []
    for k, b in m["builds"].items():
        if "error" in b:
            rows.append([k, "skipped: " + b["error"][:80], "", ""])
            continue
        s = b["seconds"]
        phases = ", ".join(f"{n} {v:.1f}" for n, v in s.items() if n != "total" and n.count("/") <= 1)
        rows.append([k, f"{s['total']:.1f}", phases, f"{b['bytes']:,}"])
    lines += ["`tcc build` (seconds by phase; bytes of the artifacts):", ""]
    lines += _table(["bundle", "total s", "phases (s)", "bytes"], rows)
    for k, b in m["builds"].items():
        c = b.get("command")
        if c and "seconds" in c:
            lines += [
                f"`{' '.join(c['argv'])}` as its own process (interpreter start and imports included, no "
                f"instruction count): {c['seconds']:.1f} s wall.",
                "",
            ]
    rows = [
        [
            k,
            f"{b['instructions']['total']:,}",
            f"{b['instructions']['simd']:,}",
            f"{b['instructions']['simd_fraction']:.2f}",
            f"{b['instructions']['int8_mac']:,}",
            f"{b['instructions']['float_mac']:,}",
        ]
        for k, b in m["builds"].items()
        if "instructions" in b
    ]
    if rows:
        lines += ["Executed instructions per inference (qemu plugin, exact):", ""]
        lines += _table(["bundle", "total", "SIMD", "SIMD share", "int8 MACs", "float MACs"], rows)
    rows = [
        [k, b["cycles"]["core"], f"{b['cycles']['total']:,}", f"{b['cycles']['cycles_per_instruction']:.2f}"]
        for k, b in m["builds"].items()
        if "cycles" in b
    ]
    if rows:
        lines += [
            "Estimated cycles per inference on the board's core (qemu's blocks priced by LLVM's scheduling model; "
            "no caches or memory stalls):",
            "",
        ]
        lines += _table(["bundle", "core", "cycles", "cycles / instruction"], rows)
    return lines + _peer_lines(m)


def _peer_lines(m: dict) -> list[str]:
    """The ARM peers beside tcc's bundles, per class: instructions and estimated cycles, and tcc's ratio."""
    lines: list[str] = []
    for core, rows in m.get("arm_peers", {}).items():
        table = []
        for precision in ("fp32", "int8"):
            tcc = m["builds"].get(f"{CORE_CLASSES[core].target}-{precision}", {})
            entries = [(f"tcc {CORE_CLASSES[core].target}-{precision}", tcc)]
            entries += [(k, r) for k, r in rows.items() if k.endswith(f"-{precision}")]
            for name, r in entries:
                if "cycles" not in r:
                    table.append([name, "skipped: " + r.get("error", "not built")[:70], "", ""])
                    continue
                ratio = tcc_vs_best_peer(m, core, precision)
                table.append(
                    [
                        name,
                        f"{r['instructions']['total']:,}",
                        f"{r['cycles']['total']:,}",
                        f"{ratio[0]:.3f} of {ratio[1]}" if ratio and name.startswith("tcc ") else "",
                    ]
                )
        lines += [f"ARM peers on the {core.upper()} class (one inference under qemu, estimated cycles):", ""]
        lines += _table(["engine", "instructions", "cycles", "tcc / best peer"], table)
    return lines
