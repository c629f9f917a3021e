"""INT8 quality on the DDSNet authors' checkpoints: tcc's calibration (each post-training step on / off) against
ONNX Runtime's quantize_static (MinMax, Entropy, Percentile) and NNCF (when installed), all calibrated on the same
crops and judged on other crops that no calibration saw, output cosine vs FP32 (mean / min) and top-1 agreement,
every INT8 model run on ONNX Runtime's integer kernels (tcc's QDQ lowering is bit-exact with its integer
reference, so the tcc rows hold for every backend exact with it).

    .venv/bin/python tools/quality_compare.py                      # four checkpoints, every config and rival
    .venv/bin/python tools/quality_compare.py --checkpoints GC --tcc equalization --rivals MinMax -o out/q.json
    .venv/bin/python tools/quality_compare.py --tcc equalization,equalization+place --rivals "" --latency

Configs: each set of post-training steps by name (`none` is tcc calibrate's default), and each with `+place`:
the same table with the placement step on the issue's targets as floors (`--min-cos 0.9999 --min-worst-cos 0.999`,
judged on 16 calibration crops, `--place-samples`), and with `+a16`: a what-if, the same table with every activation
on a 16-bit grid (`widen_activations`, run by ONNX Runtime as fake-quant); `--latency` times each tcc model against
FP32 on ONNX Runtime, interleaved. `X@w8a16`: W8A16 for real, calibrated under the `tvm` rules with
`--activation-bits 16` and judged on tcc's integer reference (the TVM builds' result, bit for bit);
`--tvm-latency` builds each such checkpoint for TVM host in FP32, W8A8 and W8A16 and times them interleaved.
`X@tflite16`: the same under the `tflite` rules (LiteRT's 16x8 mode; its reference kernels equal tcc's integer
reference bit for bit); `--tvm-latency` then builds and times `--target tflite` on LiteRT's default kernels.
`X@tflite16i32`: the same with int32 bias (`--target tflite16-i32`: LiteRT's optimized 16x8 CONV_2D and
FULLY_CONNECTED); `--tvm-latency` times it beside the int64-bias build of the same 16-bit calibration.
`X@ort-w8`: the config under the `ort-w8` rules (`--target ort-w8`: 8-bit dense weights), judged on ONNX Runtime's
integer kernels like the plain rows (exact on the CPUs that target is for: VNNI x86, ARM64).

The crops are random squares of the fixture images (../shared/fixtures/ddsnet, one test image per dataset, its
SOURCE.md): by default each checkpoint's own (GC.png, PCam.png, Sipak.bmp, and SC.jpg, HAM10000's image, for Skin),
the issue's protocol; `--crops mixed` draws every checkpoint's crops from all four. Calibration seed 0, judging seed
1: no crop is in both sets. Writes JSON (-o) and prints a Markdown table.

NNCF and AIMET are optional benchmark dependencies, never tcc's (tcc.benchmark.external_rivals): each is used when
importable, or run in another interpreter that has it (`--rivals-python .venv-rivals/bin/python`, made by `make
rivals`: they pin their own numpy / onnx / torch, so they live in their own virtual environment, and a worker runs
there on the FP32 model and the calibration array). `--nncf-python` is the same option's old name.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tcc.benchmark.external_rivals import EXTERNAL_RIVALS, RivalError, quantize

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = {"GC": 6, "PCam": 2, "Sipak": 5, "Skin": 7}  # name -> classes
IMAGES = ("GC.png", "PCam.png", "SC.jpg", "Sipak.bmp")
OWN_IMAGE = {"GC": "GC.png", "PCam": "PCam.png", "Sipak": "Sipak.bmp", "Skin": "SC.jpg"}  # SOURCE.md: SC = HAM10000
STEP_SETS = {  # config name -> the steps it runs (every other step off, whatever the defaults)
    "none": (),  # tcc's own default (tcc.quant.table.steps.Steps(); DDSNet's spec adds bias correction)
    "equalization": ("equalization",),
    "bias_correction": ("bias_correction",),
    "rounding": ("rounding",),
    "bias_correction+rounding": ("bias_correction", "rounding"),
    "equalization+bias_correction": ("equalization", "bias_correction"),
    "all": ("equalization", "bias_correction", "rounding"),
}
# name -> tcc.quant.table.steps.Steps arguments, and the placement's (tcc.quant.place.placer.PlaceOptions) if any
CONFIGS = {
    name: {"steps": {s: s in on for s in ("equalization", "bias_correction", "rounding")}}
    for name, on in STEP_SETS.items()
}
# the steps chosen per model on held-back calibration crops (tcc.quant.choose), as `tcc calibrate` chooses them
# (bias correction and asymmetric grids; equalization and rounding off unless asked); +rounding / +eq: those left
# to the choice too
CONFIGS["auto"] = {"steps": {"equalization": False, "bias_correction": None, "rounding": False, "asymmetric": None}}
CONFIGS["auto+rounding"] = {**CONFIGS["auto"], "steps": {**CONFIGS["auto"]["steps"], "rounding": None}}
CONFIGS["auto+eq"] = {"steps": {**CONFIGS["auto+rounding"]["steps"], "equalization": None}}
# what `tcc calibrate` / `tcc build --data` run on DDSNet by default: its spec's bias correction and asymmetric grids
# (ORT's rules), and the method chosen per model (`--method auto`: kl+cos, minmax or percentile judged on held-back
# calibration crops; DDSNet's spec names kl+cos, which auto keeps on all four checkpoints)
CONFIGS["default"] = {
    "steps": {"equalization": False, "bias_correction": True, "rounding": False, "asymmetric": True},
    "method": "auto",
}
# the same on symmetric grids (DDSNet's default before the asymmetric step)
CONFIGS["default-symmetric"] = {**CONFIGS["default"], "steps": {**CONFIGS["default"]["steps"], "asymmetric": False}}
PLACE = {"min_cos": 0.9999, "min_worst_cos": 0.999}  # the targets as the placement's floors (search samples)
CONFIGS.update({f"{name}+place": {**c, "place": PLACE} for name, c in list(CONFIGS.items())})
# what-if: the same table with every activation on a 16-bit grid (no tcc target runs these yet; ONNX Runtime runs
# int16 Q/DQ around float kernels: fake-quant). How much of the error the 8-bit activations carry
CONFIGS.update({f"{name}+a16": {"steps": CONFIGS[name]["steps"], "a16": True} for name in STEP_SETS})
# W8A16 for real: calibrated with 16-bit activations (`tcc calibrate --target tvm --activation-bits 16`), judged on
# tcc's integer reference (what the TVM builds compute bit for bit; ONNX Runtime has no int16 integer kernels)
CONFIGS.update(
    {
        f"{name}@w8a16": {"steps": CONFIGS[name]["steps"], "rules": "tvm", "activation_bits": 16}
        for name in ("none", "bias_correction", "equalization+bias_correction", "all")
    }
)
# the same under the `tflite` rules (LiteRT's 16x8 mode: the integer reference equals LiteRT's reference kernels)
CONFIGS.update(
    {
        f"{name}@tflite16": {**CONFIGS[f"{name}@w8a16"], "rules": "tflite"}
        for name in ("none", "bias_correction", "equalization+bias_correction", "all")
    }
)
# LiteRT's 16x8 mode with int32 bias (`--target tflite16-i32`): CONV_2D / FULLY_CONNECTED on LiteRT's optimized
# kernels, int32 accumulators (grids narrowed where one could overflow)
CONFIGS.update(
    {
        f"{name}@tflite16i32": {**CONFIGS[f"{name}@w8a16"], "rules": "tflite16-i32"}
        for name in ("none", "bias_correction", "equalization+bias_correction", "all")
    }
)
# W8A8 under the `tvm` rules, judged on tcc's integer reference (the TVM builds' result, bit for bit): a pooled conv
# there is integer on the exact window sums, where the `ort` rules keep it a float island
CONFIGS.update(
    {
        f"{name}@tvm": {"steps": CONFIGS[name]["steps"], "rules": "tvm", "activation_bits": 8}
        for name in ("none", "bias_correction")
    }
)
# the same under the `ort-w8` rules (`--target ort-w8`: 8-bit dense weights, as ORT's quantize_static writes them),
# judged on ONNX Runtime's integer kernels like the `ort` rows: exact on the CPUs the target is for (VNNI x86, ARM64)
CONFIGS.update({f"{name}@ort-w8": {**CONFIGS[name], "target": "ort-w8"} for name in ("none", "default", "auto")})
RIVALS = ("MinMax", "Entropy", "Percentile", *EXTERNAL_RIVALS)  # the last ones when installed (--rivals-python)


def widen_activations(qdq):
    """The QDQ model with every activation quantization (a QuantizeLinear of a non-constant) moved to int16 on a grid
    256x finer over the same range: scale / 256, zero point 256 zp - 32768 for u8 (256 zp for s8); weights untouched.
    Opset 21, the first with int16 Q/DQ."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(qdq)
    g = m.graph
    init = {i.name: i for i in g.initializer}
    readers = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    for n in list(g.node):
        if n.op_type != "QuantizeLinear" or n.input[0] in init:
            continue
        scale, zp = (numpy_helper.to_array(init[n.input[k]]) for k in (1, 2))
        zp16 = zp.astype(np.int32) * 256 - (32768 if zp.dtype == np.uint8 else 0)
        names = (f"{n.output[0]}/scale16", f"{n.output[0]}/zero_point16")
        g.initializer.extend(
            [
                numpy_helper.from_array((scale / 256).astype(np.float32), names[0]),
                numpy_helper.from_array(zp16.astype(np.int16), names[1]),
            ]
        )
        for node in [n] + [r for r in readers.get(n.output[0], []) if r.op_type == "DequantizeLinear"]:
            node.input[1], node.input[2] = names
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = max(o.version, 21)
    return m


def fail(message: str):
    """A user mistake (or a rival that failed): the message on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def crops(work: Path, fixtures: Path, calib: int, held: int, images=IMAGES):
    from tcc.quant.collect.crops import make_crops

    images = [fixtures / n for n in images]
    missing = [str(p) for p in images if not p.exists()]
    if missing:
        fail(f"fixture images missing: {', '.join(missing)}")
    return make_crops(work / "calib", calib, 0, images=images), make_crops(work / "held", held, 1, images=images)


def external(rival: str, fp32, array, python: str | None):
    """tcc.benchmark.external_rivals.quantize, its failure a user error (exit 2)."""
    try:
        return quantize(rival, fp32, array, python)
    except RivalError as e:
        fail(str(e))


def compare(  # noqa: PLR0913, PLR0915
    name: str,
    fixtures: Path,
    work: Path,
    configs: list[str],
    rivals: list[str],
    calib: int,
    held: int,
    cos_steps: int = 100,
    fakequant: bool = False,
    latency: bool = False,
    place_samples: int = 16,
    crop_images: str = "own",
    rivals_python: str | None = None,
    tvm_latency: bool = False,
) -> dict:
    from tcc.benchmark.quality import evaluate, ort_static
    from tcc.frontend import Weights, lower_spec
    from tcc.quant.calibrate import calibrate_onnx
    from tcc.quant.collect.data import load_calibration_data
    from tcc.quant.lower.qdq import to_qdq
    from tcc.quant.place.placer import PlaceOptions, place
    from tcc.quant.report.quality import integer_convs
    from tcc.quant.table.placement import float_nodes
    from tcc.quant.table.steps import Steps

    fe = lower_spec(
        ROOT / "spec" / "ddsnet.yaml",
        {"num_classes": CHECKPOINTS[name]},
        Weights(fixtures / f"{name}_DDS_0.0064.pth", by_order=True),
    )
    model, fp32 = fe.model, fe.onnx
    images = (OWN_IMAGE[name],) if crop_images == "own" else IMAGES
    calib_dir, held_dir = crops(work, fixtures, calib, held, images)
    cd = load_calibration_data(calib_dir, model.preprocess, model.input_shape, progress=False)
    hd = load_calibration_data(held_dir, model.preprocess, model.input_shape, progress=False, what="held-out")
    rows, models, tables, wide_tables = {}, {"fp32": fp32}, {}, {}
    for config in configs:
        c = CONFIGS[config]
        wide = {"target": c["rules"], "activation_bits": c["activation_bits"]} if "activation_bits" in c else {}
        method, target = c.get("method", "kl+cos"), {"target": c["target"]} if "target" in c else {}
        key = json.dumps([c["steps"], wide, method, target], sort_keys=True)
        if key not in tables:  # "X+place" places the table of "X" (calibration is deterministic)
            t = time.perf_counter()
            table = calibrate_onnx(
                fp32,
                cd.array,
                progress=False,
                cos_steps=cos_steps,
                steps=Steps(**c["steps"]),
                method=method,
                **wide,
                **target,
            )
            tables[key] = table, time.perf_counter() - t
        table, secs = tables[key]
        extra = {}
        if CONFIGS[config].get("place"):
            t = time.perf_counter()
            table = place(fp32, table, cd.array, PlaceOptions(**CONFIGS[config]["place"], samples=place_samples))
            extra = {"place_s": round(time.perf_counter() - t, 1), "float_nodes": sorted(float_nodes(table))}
        if wide:  # the integer reference (no ONNX Runtime integer kernel takes int16 activations; tvm's pooled conv)
            got = evaluate_reference(fp32, table, hd.array)
            if tvm_latency:
                wide_tables[config] = table
        else:
            models[config] = to_qdq(fp32, table, compact=True)
            if c.get("a16"):
                models[config] = widen_activations(models[config])
            got = evaluate(fp32, models[config], hd.array)["ort"] | {"integer_convs": integer_convs(models[config])}
        rows[f"tcc {config}"] = {
            **got,
            **({"method": table.method} if method == "auto" else {}),
            "calib_s": round(secs, 1),
            "timing_s": {k: round(v, 2) for k, v in table.timing.items()},
            **extra,
        }
    if latency and len(models) > 1:
        for config, r in ort_latency(models, hd.array[:1]).items():
            rows[f"tcc {config}"]["ort_latency_vs_fp32"] = r
    for config, table in wide_tables.items():
        key = "tvm_host_latency" if table.target == "tvm" else "tflite_latency"
        rows[f"tcc {config}"][key] = build_latency(
            name, fixtures, work, fp32, table, cd.array, hd.array[:1], Steps(**CONFIGS[config]["steps"])
        )
    for rival in rivals:
        t = time.perf_counter()
        outside = rival in EXTERNAL_RIVALS
        q = external(rival, fp32, cd.array, rivals_python) if outside else ort_static(fp32, cd.array, rival)[0]
        if q is None:
            print(f"{name}: {rival} not installed, skipped", file=sys.stderr)
            continue
        secs = round(time.perf_counter() - t, 1)
        label = EXTERNAL_RIVALS[rival].label if outside else f"onnxruntime {rival}"
        got = evaluate(fp32, q, hd.array, (("ort", True), ("fakequant", False)) if fakequant else (("ort", True),))
        rows[label] = {**got["ort"], "calib_s": secs, "integer_convs": integer_convs(q)}
        if fakequant:  # float Q/DQ arithmetic: free of the u8 x s8 saturation of ORT's kernels on CPUs without VNNI
            rows[f"{label} (fake-quant)"] = {**got["fakequant"], "calib_s": secs}
    return {
        "classes": CHECKPOINTS[name],
        "images": list(images),
        "calibration_crops": len(cd.array),
        "held_out_crops": len(hd.array),
        "results": rows,
    }


def evaluate_reference(fp32, table, x, batch: int = 8) -> dict:
    """As tcc.benchmark.quality.evaluate, for tcc's integer reference under `table` (what every backend exact with it
    computes: the TVM builds, bit for bit)."""
    import numpy as np

    from tcc.quant.intgraph.match import plan
    from tcc.quant.intgraph.qgraph import quantize_graph
    from tcc.quant.intgraph.reference import Reference
    from tcc.quant.lower.qdq import run
    from tcc.quant.table.quantizer import cosine

    qg = quantize_graph(plan(fp32, rules=table.rules), table)
    y = np.concatenate([Reference().run(qg, x[i : i + batch]) for i in range(0, len(x), batch)])
    ref = run(fp32, x)
    cos = [cosine(a, b) for a, b in zip(ref, y)]
    return {
        "cos_mean": round(float(np.mean(cos)), 7),
        "cos_min": round(float(np.min(cos)), 7),
        "top1": round(float(np.mean(ref.argmax(1) == y.argmax(1))), 4),
    }


def build_latency(  # noqa: PLR0913
    name: str, fixtures: Path, work: Path, fp32, wide_table, calib, x, steps, rounds: int = 9, runs: int = 20
) -> dict:
    """The builds of the checkpoint for the target of `wide_table`'s rules (`tvm`: `tcc build --target host`, timed
    by tcc bench's TvmRunner; `tflite`: `--target tflite`, timed on LiteRT's default kernels, XNNPACK where it takes
    the model) in FP32, INT8 with 8-bit activations (a table of the same rules and steps, kl+cos) and INT8 with
    `wide_table`'s 16-bit ones, each self-checked, timed interleaved (1 thread, batch 1): ms per round's median,
    and the ratios round by round."""
    from tcc.benchmark.timing import TvmRunner, interleave, litert_runner, ratio
    from tcc.build import build, build_settings
    from tcc.frontend import Weights
    from tcc.quant.calibrate import calibrate_onnx

    rules = wide_table.target
    target = {"tvm": "host", "tflite": "tflite", "tflite16-i32": "tflite16-i32"}[rules]
    weights = fixtures / f"{name}_DDS_0.0064.pth"
    narrow = "tflite" if rules == "tflite16-i32" else rules  # 8-bit activations: the rules' 8-bit sibling
    w8a8 = calibrate_onnx(fp32, calib, target=narrow, progress=False, steps=steps)
    base = "host" if rules == "tvm" else "tflite"  # FP32 and W8A8: the target's own (tflite16-i32: tflite's)
    builds = [("fp32", None, base), ("w8a8", w8a8, base), ("w8a16", wide_table, target)]
    if rules == "tflite16-i32":  # beside it, the same 16-bit calibration with int64 bias (`--target tflite`)
        builds.append(
            (
                "w8a16_int64",
                calibrate_onnx(fp32, calib, target="tflite", progress=False, steps=steps, activation_bits=16),
                "tflite",
            )
        )
    bundles = {}
    for label, table, tgt in builds:
        out = work / f"{tgt}-{label}"
        calib_file = None
        if table is not None:
            calib_file = table.save(work / f"{table.target}-{label}.json")
        settings = build_settings(
            tgt,
            precision="int8" if table else "fp32",
            weights=Weights(weights, by_order=True),
            overrides={"num_classes": CHECKPOINTS[name]},
            calib=calib_file,
        )
        build(ROOT / "spec" / "ddsnet.yaml", settings, out, force=True)
        bundles[label] = (
            TvmRunner(out / "model.so", "host", x, out / "kit" / "bin" / "tcc-run")
            if target == "host"
            else litert_runner(out, x)
        )
    per_round = interleave(bundles, rounds, runs)
    keep = ("median", "p10", "p90")
    pairs = [("w8a16", "fp32"), ("w8a16", "w8a8"), ("w8a8", "fp32")]
    if "w8a16_int64" in bundles:
        pairs += [("w8a16_int64", "fp32"), ("w8a16", "w8a16_int64")]
    return {
        "ms_median": {k: round(statistics.median(v), 3) for k, v in per_round.items()},
        **{f"{a}_vs_{b}": {q: v for q, v in ratio(per_round, a, b).items() if q in keep} for a, b in pairs},
    }


def ort_latency(models: dict, x, rounds: int = 9, runs: int = 20) -> dict:
    """Each INT8 model's ONNX Runtime latency over FP32's (`models["fp32"]`), and a placed model's ("X+place") over
    the same table's without placement ("X"): the median over interleaved rounds of the per-round ratio (1 thread,
    batch 1; tcc.benchmark.timing), with its p10-p90 spread."""
    import onnx

    from tcc.measure.timing import interleave, ort_runner, ratio

    with tempfile.TemporaryDirectory() as d:
        paths = {k: Path(d) / f"{k}.onnx" for k in models}
        for k, m in models.items():
            onnx.save(m, paths[k])
        per_round = interleave({k: ort_runner(p, x) for k, p in paths.items()}, rounds, runs)
    out = {}
    for k in models:
        if k != "fp32":
            out[k] = {
                "vs_fp32": {q: v for q, v in ratio(per_round, k, "fp32").items() if q in ("median", "p10", "p90")}
            }
            base = k.removesuffix("+place")
            if base != k and base in models:  # the placed model against the same table without its placement
                out[k]["vs_unplaced"] = {
                    q: v for q, v in ratio(per_round, k, base).items() if q in ("median", "p10", "p90")
                }
    return out


def markdown(results: dict) -> list[str]:
    names = list(results)
    labels = list(dict.fromkeys(k for r in results.values() for k in r["results"]))
    lines = ["| quantizer | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label in labels:
        cells = [_cell(results[n]["results"].get(label)) for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _cell(r: dict | None) -> str:
    """Mean / worst cosine / top-1, and the convs ONNX Runtime runs on integers where the row counts them."""
    if r is None:
        return "-"
    convs = f" ({r['integer_convs'][0]}/{r['integer_convs'][1]} convs on integers)" if "integer_convs" in r else ""
    return f"{r['cos_mean']:.5f} / {r['cos_min']:.5f} / {100 * r['top1']:.1f}%{convs}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default=",".join(CHECKPOINTS), help="comma-separated: " + ", ".join(CHECKPOINTS))
    p.add_argument("--tcc", default=",".join(CONFIGS), help="tcc step configs: " + ", ".join(CONFIGS))
    p.add_argument(
        "--rivals",
        default=",".join(RIVALS),
        help="comma-separated: " + ", ".join(RIVALS) + f" ({', '.join(EXTERNAL_RIVALS)} skipped when not installed); "
        "empty for none",
    )
    p.add_argument("--calib", type=int, default=64, help="calibration crops (default 64)")
    p.add_argument("--held-out", type=int, default=32, help="judging crops (default 32)")
    p.add_argument(
        "--cos-steps", type=int, default=100, help="tcc's cosine-search candidates (default 100, as tcc calibrate)"
    )
    p.add_argument(
        "--fakequant",
        action="store_true",
        help="also judge the rivals' models as float fake-quant (their 8-bit weights saturate ORT's u8 x s8 "
        "kernels on CPUs without VNNI; tcc's `ort` rules use 7-bit dense weights and are exact)",
    )
    p.add_argument(
        "--latency",
        action="store_true",
        help="also time each tcc config's INT8 model against FP32 on ONNX Runtime (interleaved rounds, "
        "1 thread, batch 1)",
    )
    p.add_argument(
        "--tvm-latency",
        action="store_true",
        help="for the @w8a16 configs: build the checkpoint for TVM host in FP32, W8A8 and W8A16 "
        "(`tcc build --target host`, self-checked) and time the three interleaved; for the "
        "@tflite16 configs the same with `--target tflite` on LiteRT's default kernels",
    )
    p.add_argument(
        "--place-samples",
        type=int,
        default=16,
        help="calibration crops the '+place' configs judge on (default 16, as tcc calibrate)",
    )
    p.add_argument(
        "--crops",
        choices=("own", "mixed"),
        default="own",
        help="crops of each checkpoint's own image (default, the issue's protocol) or of all four",
    )
    p.add_argument(
        "--rivals-python",
        "--nncf-python",
        help="an interpreter with NNCF and AIMET installed (their own virtual environment, `make rivals`: "
        ".venv-rivals/bin/python), for those rivals when this one has neither",
    )
    p.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared" / "fixtures" / "ddsnet")
    p.add_argument("-o", "--output", type=Path, help="write the results as JSON")
    args = p.parse_args(argv)
    names, configs = args.checkpoints.split(","), [c for c in args.tcc.split(",") if c]
    rivals = [r for r in args.rivals.split(",") if r]
    for what, got, known in (
        ("checkpoint", names, CHECKPOINTS),
        ("tcc config", configs, CONFIGS),
        ("rival", rivals, RIVALS),
    ):
        bad = [g for g in got if g not in known]
        if bad:
            print(f"error: unknown {what} {', '.join(bad)}; expected {', '.join(known)}", file=sys.stderr)
            return 2
    missing = [n for n in names if not (args.fixtures / f"{n}_DDS_0.0064.pth").exists()]
    if missing:
        print(f"error: no checkpoint {', '.join(missing)} in {args.fixtures}", file=sys.stderr)
        return 2
    if args.rivals_python and set(rivals) & set(EXTERNAL_RIVALS) and not shutil.which(args.rivals_python):
        print(f"error: --rivals-python {args.rivals_python}: no such executable", file=sys.stderr)  # before any work
        return 2
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for n in names:
            results[n] = compare(
                n,
                args.fixtures,
                Path(d) / n,
                configs,
                rivals,
                args.calib,
                args.held_out,
                args.cos_steps,
                args.fakequant,
                args.latency,
                args.place_samples,
                args.crops,
                args.rivals_python,
                args.tvm_latency,
            )
            print(
                f"{n}: "
                + json.dumps(
                    {
                        k: [v["cos_mean"], v["cos_min"], v["top1"], v["calib_s"]]
                        for k, v in results[n]["results"].items()
                    }
                ),
                file=sys.stderr,
                flush=True,
            )
    doc = {
        "crops": args.crops,
        "calibration_crops": args.calib,
        "cos_steps": args.cos_steps,
        "held_out_crops": args.held_out,
        "place_samples": args.place_samples,
        "place_floors": PLACE,
        "vs": "FP32 (ONNX Runtime)",
        "format": "cosine mean / min / top-1 agreement",
        "checkpoints": results,
    }
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(doc, indent=1) + "\n")
    print("\n".join(markdown(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
