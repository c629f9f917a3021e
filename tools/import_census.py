"""The census of models users bring (issue 70): timm classifiers and hybrids, torchvision's segmenters and MONAI's
2-D nets, never tuned on, each as a new user would take it through tcc.

Per model: seeded weights with BatchNorm statistics taken from natural-image crops (scikit-image's photographs;
random BN statistics give nearly the same output for every input, and a cosine then measures nothing), exported by
torch.onnx.export (opset 17); then
- `tcc import MODEL.onnx` (refused up front, or a spec), and the spec's PyTorch lowering on held-out crops against
  ONNX Runtime on the original file: max |difference| within 1e-4 x max(1, max |output|);
- `tcc build MODEL.onnx --target ort --precision int8 --data CALIB` (or `--target ort-w8`: 8-bit dense weights, as
  quantize_static's; 32 crops (`--calib`): the fewest that let the method and the steps be chosen per model),
  judged on 64 others (`--judged`) against the FP32 original: mean output cosine with its standard error, the
  worst, and argmax agreement (per pixel for a dense output). With seeded weights a 5-logit output's per-sample
  cosine spreads widely: on 8 crops two quantizations of LCNet within 0.005 of each other on 128 crops read 0.66
  and 0.83 (docs/notes/asymmetric-activations.md);
- ONNX Runtime's own quantize_static on the same crops (per-channel QDQ, the best of MinMax / Percentile / Entropy by
  mean cosine), judged the same way; for `--target ort`, whose dense weights have 7 bits (exact on every CPU), also
  with 7-bit weights (`reduce_range`, ONNX Runtime's advice for x86 CPUs without VNNI), like against like;
- with `--rivals-python` (an interpreter that has NNCF and AIMET: `make rivals`), NNCF's post-training quantization
  (preset mixed) and AIMET's (its per-channel QuantizationSimModel, the better of min-max and tf-enhanced ranges by
  mean cosine; tcc.benchmark.external_rivals) on the same crops too, judged and paired the same way. Each row counts
  the convs each INT8 model runs on integers on ONNX Runtime (`integer_convs`): NNCF leaves a conv whose output a
  float op reads (MONAI's instance norms) unquantized, which ORT then runs in float, slower than the FP32 model on
  DynUNet (docs/notes/dense-prediction.md);
- the two paired crop by crop (`paired`): tcc minus ORT in cosine and in agreement, each with its standard error,
  and in the tail (percentile LOW_PERCENTILE of the crops' cosines) with a bootstrap standard error. With seeded
  weights a crop's cosine spreads widely, so "at least ORT's" on 64 crops is often noise either way, and the worst
  crop more so (on DeepLabV3 each quantization has another worst crop: docs/notes/dense-prediction.md); a row is
  `lower` (or `higher`) only beyond 2 standard errors of a paired difference;
- the summary counts the rows at least the rival in mean cosine and agreement, and those within issue 74's bar
  (`meets_bar`: the mean at most MARGIN below, the worst crop and the agreement not lower), and again with the
  worst case read as percentile LOW_PERCENTILE of the crops' cosines (one crop decides the worst of 256).

    .venv/bin/python tools/import_census.py                  # every model (~50 min on 2 cores)
    .venv/bin/python tools/import_census.py monai_unet lraspp --size 64
    .venv/bin/python tools/import_census.py --json census.json

Prints a Markdown table and a summary line (imported / predicted equal / INT8 at least the rival). MONAI, timm and
torchvision are the test references `make venv` installs with --no-deps; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import sys
import tempfile
import time
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import torch

from tcc.benchmark.external_rivals import EXTERNAL_RIVALS
from tcc.benchmark.external_rivals import quantize as quantize_externally
from tcc.cli.main import main as tcc_main
from tcc.quant.report.quality import (
    integer_convs,
    ort_quantize_static,
    output_metrics,
    per_sample_agreement,
    per_sample_cosine,
    run_ort,
)

CALIB, JUDGED = 32, 64
# the worst case read as a low percentile of the crops' cosines (1: between the 3rd and 4th worst of 256), beside
# `cosine_min`, which one crop decides
LOW_PERCENTILE = 1
# seeded resamples of the judged crops for the standard error of the tail's difference (paired)
BOOTSTRAP = 1000
SIGNIFICANT = 2  # standard errors of a paired per-crop difference that make it lower or higher, not level
MARGIN = 0.002  # issue 74's bar on the census: mean cosine within this of the rival's or above
METHODS = ("MinMax", "Percentile", "Entropy")
# the rivals outside ONNX Runtime (tcc.benchmark.external_rivals), by the row they fill: each row is its library's best
EXTERNAL = {"nncf": ("nncf",), "aimet": ("aimet-minmax", "aimet-tfenhanced")}


class Entry(NamedTuple):  # (not a dataclass: tests load this script without registering it as a module)
    name: str
    source: str  # timm | torchvision | monai
    build: Callable[[], torch.nn.Module]
    size: int


def _timm(name: str, **kw) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
        import timm

        return timm.create_model(name, pretrained=False, num_classes=5, **kw)

    return build


def _torchvision(name: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
        from torchvision.models import segmentation

        net = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=3, aux_loss=None)

        class Out(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net(x)["out"]

        return Out()

    return build


def _monai(name: str, **kw) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from monai.networks import nets

        return getattr(nets, name)(spatial_dims=2, in_channels=3, out_channels=2, **kw)

    return build


MODELS = [
    Entry("lcnet_050", "timm", _timm("lcnet_050"), 96),
    Entry("rexnet_100", "timm", _timm("rexnet_100"), 96),
    Entry("semnasnet_075", "timm", _timm("semnasnet_075"), 96),
    Entry("ghostnet_100", "timm", _timm("ghostnet_100"), 96),
    Entry("mobileone_s0", "timm", _timm("mobileone_s0"), 96),
    Entry("fastvit_t8", "timm", _timm("fastvit_t8"), 96),
    Entry("edgenext_xx_small", "timm", _timm("edgenext_xx_small"), 96),
    Entry("deit_tiny", "timm", _timm("deit_tiny_patch16_224", img_size=96), 96),
    Entry("efficientvit_b0", "timm", _timm("efficientvit_b0"), 96),
    Entry("levit_128s", "timm", _timm("levit_128s", img_size=96), 96),
    Entry("tf_efficientnet_lite0", "timm", _timm("tf_efficientnet_lite0"), 96),
    Entry("hrnet_w18_small", "timm", _timm("hrnet_w18_small"), 96),
    Entry("lraspp", "torchvision", _torchvision("lraspp_mobilenet_v3_large"), 96),
    Entry("deeplabv3_mobilenet", "torchvision", _torchvision("deeplabv3_mobilenet_v3_large"), 96),
    Entry("fcn_resnet50", "torchvision", _torchvision("fcn_resnet50"), 96),
    Entry("monai_unet", "monai", _monai("UNet", channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2), 96),
    Entry("monai_basic_unet", "monai", _monai("BasicUNet", features=(16, 16, 32, 64, 128, 16)), 96),
    Entry("monai_segresnet", "monai", _monai("SegResNet", init_filters=8), 96),
    Entry("monai_attention_unet", "monai", _monai("AttentionUnet", channels=(16, 32, 64), strides=(2, 2)), 96),
    Entry(
        "monai_dynunet",
        "monai",
        _monai("DynUNet", kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2]),
        96,
    ),
    Entry("monai_flexible_unet", "monai", _monai("FlexibleUNet", backbone="efficientnet-b0", pretrained=False), 96),
]


def natural_crops(n: int, size: int, seed: int) -> np.ndarray:
    """n random crops of scikit-image's bundled photographs, resized to size x size, ImageNet-normalized NCHW."""
    from skimage import data, transform

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.hubble_deep_field()]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = photos[rng.integers(len(photos))]
        side = int(rng.integers(min(img.shape[:2]) // 4, min(img.shape[:2])))
        top, left = (int(rng.integers(d - side + 1)) for d in img.shape[:2])
        crop = transform.resize(img[top : top + side, left : left + side], (size, size), anti_aliasing=True)
        out.append((crop - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225])
    return np.stack(out).transpose(0, 3, 1, 2).astype(np.float32)


def seeded_with_natural_statistics(entry: Entry) -> torch.nn.Module:
    """The model with seeded weights and BatchNorm running statistics averaged over 32 natural crops."""
    from tcc.lower.to_torch import init_weights

    torch.manual_seed(0)
    model = init_weights(entry.build(), seed=1)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    model.train()
    with torch.no_grad():
        for batch in np.split(natural_crops(32, entry.size, seed=99), 4):
            model(torch.from_numpy(batch))
    for m in norms:
        m.momentum = 0.1  # PyTorch's default again: the exported graph's momentum is a user's
    return model.eval()


def export(model: torch.nn.Module, size: int, path: Path) -> Path:
    """The model exported as a user would (torch.onnx.export, opset 17, a dynamic batch) to `path`."""
    x = torch.from_numpy(natural_crops(1, size, seed=1))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        torch.onnx.export(
            model, x, path, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        )  # fmt: skip
    return path


def _tcc(*argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `tcc ARGV...` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = tcc_main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _first_error(text: str) -> str:
    """The refusal in one cell: the refused nodes counted by op and reason (`node 'N' (Op): reason` lines), else the
    error line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    refused = Counter(re.sub(r"\[[^]]*\]|'[^']*'|\d+", "#", line.split("): ", 1)[1])[:90] for line in lines
                      if line.startswith("node '") and "): " in line)  # fmt: skip
    ops = Counter(m.group(1) for line in lines if (m := re.match(r"node '[^']*' \((\w+)\)", line)))
    if refused:
        return (
            "; ".join(f"{op} x{k}" for op, k in ops.most_common())
            + ": "
            + "; ".join(r for r, _ in refused.most_common(3))
        )
    errors = [line for line in lines if line.startswith("error:")]
    return (errors[0] if errors else lines[-1] if lines else "")[:200]


def judged_metrics(fp32: np.ndarray, int8: np.ndarray) -> dict:
    """output_metrics with the standard error of the mean per-sample cosine and its LOW_PERCENTILE-th percentile."""
    cos = per_sample_cosine(fp32, int8)
    return output_metrics(fp32, int8) | {
        "cosine_se": round(float(cos.std(ddof=1) / np.sqrt(len(cos))), 5),
        "cosine_low": round(float(np.percentile(cos, LOW_PERCENTILE)), 7),
    }


def paired(fp32: np.ndarray, ours: np.ndarray, rival: np.ndarray) -> dict:
    """tcc's INT8 minus the rival's, crop by crop on the same judged crops: for the output cosine and the argmax
    agreement, the mean difference and its standard error; for the tail, the difference of the crops' cosines'
    LOW_PERCENTILE-th percentiles and its standard error over BOOTSTRAP seeded resamples of the crops (the same crops
    for both: a percentile has no per-crop difference). Each with its verdict (`lower` / `higher`: beyond SIGNIFICANT
    standard errors, else `level`). The rival is the best of its methods on these very crops, so `level` already
    gives it that choice."""
    a, b = (per_sample_cosine(fp32, y).astype(np.float64) for y in (ours, rival))
    agreement = per_sample_agreement(fp32, ours).astype(np.float64) - per_sample_agreement(fp32, rival)
    out: dict = {}
    for key, d in (("cosine", a - b), ("agreement", agreement)):
        out[key] = _difference(float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0)
    crops = np.random.default_rng(0).integers(0, len(a), (BOOTSTRAP, len(a)))
    resampled = np.percentile(a[crops], LOW_PERCENTILE, axis=1) - np.percentile(b[crops], LOW_PERCENTILE, axis=1)
    tail = float(np.percentile(a, LOW_PERCENTILE) - np.percentile(b, LOW_PERCENTILE))
    out["tail"] = _difference(tail, float(resampled.std(ddof=1)))
    return out


def _difference(mean: float, se: float) -> dict:
    verdict = "lower" if mean < -SIGNIFICANT * se else "higher" if mean > SIGNIFICANT * se else "level"
    return {"mean": round(mean, 6), "se": round(se, 6), "verdict": verdict}


def census(
    entry: Entry,
    work: Path,
    judged_n: int = JUDGED,
    target: str = "ort",
    calib_n: int = CALIB,
    rivals_python: str | None = None,
) -> dict:
    """One model's row: import, prediction, INT8 (`--target ort` or `ort-w8`, calibrated on `calib_n` crops, the
    rivals on the same) against the rivals: ONNX Runtime's, and NNCF's and AIMET's where this interpreter or
    `rivals_python` has them (tcc.benchmark.external_rivals)."""
    row: dict = {"name": entry.name, "source": entry.source, "size": entry.size}
    try:
        model = seeded_with_natural_statistics(entry)
    except Exception as e:  # a constructor this version of the library lacks: the census says so
        return row | {"stage": "build", "error": f"{type(e).__name__}: {e}"[:200]}
    path = export(model, entry.size, work / f"{entry.name}.onnx")
    original = onnx.load(path)
    calib, judged = natural_crops(calib_n, entry.size, seed=2), natural_crops(judged_n, entry.size, seed=3)
    np.save(work / "calib.npy", calib)
    np.save(work / "judged.npy", judged)
    start = time.perf_counter()
    rc, printed, err = _tcc("import", path, "-o", work / "m.yaml")
    row["import_s"] = round(time.perf_counter() - start, 1)
    if rc != 0:
        return row | {"stage": "import", "error": _first_error(err)}
    fp32 = run_ort(original, judged)
    rc, printed, err = _tcc(
        "predict", work / "m.yaml", "--weights", work / "m.pt", "--input", work / "judged.npy", "--json", "--logits"
    )
    if rc != 0:
        return row | {"stage": "predict", "error": _first_error(err)}
    rows = json.loads(printed)
    ours = np.array([r["logits"] for r in (rows if isinstance(rows, list) else [rows])], np.float32)
    bound = 1e-4 * max(1.0, float(np.abs(fp32).max()))
    row["predict_max_abs"] = float(np.abs(ours - fp32.reshape(len(fp32), -1)).max())
    row["predict_equal"] = row["predict_max_abs"] <= bound
    start = time.perf_counter()
    rc, printed, err = _tcc(
        "build",
        path,
        "--target",
        target,
        "--precision",
        "int8",
        "--data",
        work / "calib.npy",
        "-o",
        work / "b",
        "--force",
    )
    row["build_s"] = round(time.perf_counter() - start, 1)
    if rc != 0:
        return row | {"stage": "int8", "error": _first_error(err)}
    built = onnx.load(work / "b" / "model.onnx")
    int8 = run_ort(built, judged)
    row["tcc"] = judged_metrics(fp32, int8) | {"integer_convs": integer_convs(built)}
    table = work / "b" / "calibration.json"  # the method the build chose (`--method auto`)
    if table.exists():
        doc = json.loads(table.read_text())
        row["tcc"]["method"] = doc["method"]
        if doc["method"] == "percentile":  # auto tries it at two percentiles (tcc.quant.choose.method_candidates)
            row["tcc"]["percentile"] = doc["settings"]["percentile"]
        row["tcc"]["split"] = doc.get("split_patterns", [])  # x * g(x) patterns the choice split (tcc.quant.choose)
        row["tcc"]["steps"] = [s["name"] for s in doc.get("steps", []) if s.get("enabled")]
        row["choice"] = _choice(doc.get("steps_choice") or {})
    row |= _rivals(original, (calib, judged), fp32, int8, target, rivals_python)
    row["stage"] = "done"
    return row


def _rivals(original, crops: tuple[np.ndarray, np.ndarray], fp32, int8, target: str, rivals_python) -> dict:
    """The rivals' rows on the (calibration, judged) crops, each paired with tcc's INT8 output `int8`: ONNX
    Runtime's best; for `--target ort` (7-bit dense weights) also its best with 7-bit weights (reduce_range), like
    against like; NNCF's and AIMET's best where installed (here or in `rivals_python`)."""
    calib, judged = crops
    out: dict = {}
    out["rival"], rival_out = best_rival(original, calib, judged, fp32, reduce_range=False)
    out["paired"] = paired(fp32, int8, rival_out)
    if target == "ort":
        out["rival_w7"], rival_out = best_rival(original, calib, judged, fp32, reduce_range=True)
        out["paired_w7"] = paired(fp32, int8, rival_out)
    for library, rivals in EXTERNAL.items():
        found = {}
        for rival in rivals:
            try:
                quantized = quantize_externally(rival, original, calib, rivals_python)
                if quantized is None:  # installed nowhere: said in the cell where the user named an interpreter
                    if rivals_python:
                        out.setdefault("rival_errors", {})[rival] = f"not installed in {rivals_python}"
                    continue
                outputs = run_ort(quantized, judged)
            except Exception as e:  # RivalError, or ORT's on its model: the row says so and the census goes on
                last = (str(e).strip().splitlines() or [""])[-1]
                out.setdefault("rival_errors", {})[rival] = f"{type(e).__name__}: {last[:300]}"
                continue
            label = {"method": EXTERNAL_RIVALS[rival].label, "integer_convs": integer_convs(quantized)}
            found[rival] = judged_metrics(fp32, outputs) | label, outputs
        if found:
            metrics, outputs = max(found.values(), key=lambda f: f[0]["cosine_mean"])
            out[f"rival_{library}"], out[f"paired_{library}"] = metrics, paired(fp32, int8, outputs)
    return out


def _choice(choice: dict) -> dict:
    """The per-model choice in brief: its folds, and each trial's candidate and what the folds measured."""
    keys = ("method", "percentile", "steps", "split_patterns", "mean_cos", "guarded_cos", "agreement", "eligible")
    return {
        "judged_samples": choice.get("judged_samples"),
        "folds": choice.get("folds", 1),
        "trials": [{k: t[k] for k in keys if k in t} for t in choice.get("trials", [])],
    }


def best_rival(original, calib, judged, fp32, reduce_range: bool) -> tuple[dict, np.ndarray]:
    """ONNX Runtime's quantize_static, the best of METHODS by mean cosine on the judged crops: its metrics (with the
    method) and its outputs."""
    models = {m: ort_quantize_static(original, calib, m, reduce_range) for m in METHODS}
    outputs = {m: run_ort(q, judged) for m, q in models.items()}
    rivals = {m: judged_metrics(fp32, out) for m, out in outputs.items()}
    best = max(rivals, key=lambda m: rivals[m]["cosine_mean"])
    return rivals[best] | {"method": best, "integer_convs": integer_convs(models[best])}, outputs[best]


def markdown(rows: list[dict]) -> list[str]:
    lines = [
        "| model | from | import | predict max abs | tcc INT8 cos mean / worst | agree | ORT best cos mean / worst | "
        "agree | tcc >= ORT | tcc - ORT per crop: cos; agree; tail | ORT with 7-bit weights: cos mean; tcc - it | "
        "NNCF: cos mean / worst, agree; tcc - it | AIMET: cos mean / worst, agree; tcc - it | "
        "convs on integers: tcc, ORT, NNCF, AIMET |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["stage"] in ("build", "import", "predict"):
            refused = f"**{r['stage']} refused**: {r['error']}"
            lines.append(f"| {r['name']} | {r['source']} | {refused} | | | | | | | | | | | |")
            continue
        predicted = f"{r['predict_max_abs']:.2g}" + ("" if r["predict_equal"] else " **(over)**")
        if r["stage"] == "int8":
            lines.append(
                f"| {r['name']} | {r['source']} | yes | {predicted} | **INT8 refused**: {r['error']} |" + " |" * 9
            )
            continue
        t, o = r["tcc"], r["rival"]
        wins = at_least(t, o)
        lines.append(
            f"| {r['name']} | {r['source']} | yes | {predicted} | {_mean(t)} / {t['cosine_min']:.5f}"
            + (
                f" ({t['method']}{' ' + format(t['percentile'], 'g') if 'percentile' in t else ''}"
                f"{', split ' + ' and '.join(t['split']) if t.get('split') else ''})"
                if "method" in t
                else ""
            )
            + " | "
            + f"{t['top1_agreement']:.3f} | {_mean(o)} / {o['cosine_min']:.5f} ({o['method']}) | "
            f"{o['top1_agreement']:.3f} | {'yes' if wins else '**no**'} | {_paired(r.get('paired'))} | "
            + (
                f"{_mean(r['rival_w7'])} ({r['rival_w7']['method']}); {_paired(r['paired_w7'])}"
                if "rival_w7" in r
                else ""
            )
            + " | "
            + " | ".join(_external(r, library) for library in EXTERNAL)
            + f" | {_convs(r)} |"
        )
    return lines


def _external(r: dict, library: str) -> str:
    """The row's cell for an external rival: its metrics and the paired difference, its failure, or nothing."""
    failed = [f"{k}: {e}" for k, e in r.get("rival_errors", {}).items() if k in EXTERNAL[library]]
    if f"rival_{library}" not in r:
        return "; ".join(failed)
    n, p = r[f"rival_{library}"], r[f"paired_{library}"]
    return f"{_mean(n)} / {n['cosine_min']:.5f}, {n['top1_agreement']:.3f} ({n['method']}); {_paired(p)}"


def _convs(r: dict) -> str:
    """The convs on integers (integer_convs) of tcc's INT8 model and the rivals', as k/n each."""
    keys = ("tcc", "rival", *(f"rival_{library}" for library in EXTERNAL))
    found = [r[k]["integer_convs"] for k in keys if "integer_convs" in r.get(k, {})]
    return ", ".join(f"{k}/{n}" for k, n in found)


def verdict(p: dict) -> str:
    """A row's verdict from its paired differences: lower where either is lower, else higher where either is."""
    verdicts = {v["verdict"] for v in p.values()}
    return "lower" if "lower" in verdicts else "higher" if "higher" in verdicts else "level"


def _paired(p: dict | None) -> str:
    if not p:
        return ""
    c, a = p["cosine"], p["agreement"]
    tail = f"; {p['tail']['mean']:+.4f} ± {p['tail']['se']:.4f}" if "tail" in p else ""
    return f"{c['mean']:+.5f} ± {c['se']:.5f}; {a['mean']:+.3f} ± {a['se']:.3f}{tail} ({verdict(p)})"


def _mean(m: dict) -> str:
    return f"{m['cosine_mean']:.5f}" + (f" ± {m['cosine_se']:.4f}" if "cosine_se" in m else "")


def summary(rows: list[dict]) -> str:
    n = len(rows)
    imported = [r for r in rows if r["stage"] not in ("build", "import")]
    equal = [r for r in imported if r.get("predict_equal")]
    built = [r for r in rows if r["stage"] == "done"]
    wins = [r for r in built if at_least(r["tcc"], r["rival"])]
    bar = [r for r in built if meets_bar(r["tcc"], r["rival"])]
    lower = [r for r in built if r.get("paired") and verdict(r["paired"]) == "lower"]
    same_bits = [r for r in built if r.get("paired_w7")]
    lower_w7 = [r for r in same_bits if verdict(r["paired_w7"]) == "lower"]
    bar_w7 = [r for r in same_bits if meets_bar(r["tcc"], r["rival_w7"])]
    low = [r for r in built if meets_bar(r["tcc"], r["rival"], "cosine_low")]
    low_w7 = [r for r in same_bits if meets_bar(r["tcc"], r["rival_w7"], "cosine_low")]
    return (
        f"{n} models: {len(imported)} imported, {len(equal)} predict as ONNX Runtime, {len(built)} build INT8 for "
        f"ort, {len(wins)} of them at least ONNX Runtime's best quantize_static on cosine and agreement, "
        f"{len(bar)} within issue 74's bar (mean cosine at most {MARGIN} below, worst and agreement not lower); "
        f"{len(lower)} below it beyond {SIGNIFICANT} standard errors of the paired difference (mean cosine, "
        f"agreement, or the tail: percentile {LOW_PERCENTILE} of the crops' cosines, bootstrapped)"
        + (
            f"; against its best with 7-bit weights (reduce_range, as tcc's ort): {len(bar_w7)} of {len(same_bits)} "
            f"within the bar, {len(lower_w7)} below"
            if same_bits
            else ""
        )
        + f"; with the worst case read as percentile {LOW_PERCENTILE} of the crops' cosines instead of the one worst "
        f"crop: {len(low)} within the bar"
        + (f" ({len(low_w7)} against 7-bit weights)" if same_bits else "")
        + "".join(_external_summary(built, library) for library in EXTERNAL)
    )


def _external_summary(built: list[dict], library: str) -> str:
    """The summary's clause for an external rival (rows without it: none)."""
    rows = [r for r in built if r.get(f"paired_{library}")]
    if not rows:
        return ""
    rival = [r[f"rival_{library}"] for r in rows]
    bar = [r for r, o in zip(rows, rival) if meets_bar(r["tcc"], o)]
    lower = [r for r in rows if verdict(r[f"paired_{library}"]) == "lower"]
    fewer = [r for r, o in zip(rows, rival) if _share(o["integer_convs"]) < _share(r["tcc"]["integer_convs"])]
    name = {"nncf": "NNCF's (mixed preset)", "aimet": "AIMET's (per-channel, min-max or tf-enhanced)"}[library]
    return (
        f"; against {name}: {len(bar)} of {len(rows)} within the bar, {len(lower)} below, "
        f"{len(fewer)} where it runs a smaller share of its convs on integers than tcc"
    )


def _share(convs: tuple[int, int]) -> float:
    """The share of a model's convs that run on integers (each model counts its own graph's convs: tcc's lowering
    splits a transposed conv into its phases, so the counts differ and only the shares compare)."""
    done, total = convs
    return done / total if total else 1.0


def at_least(ours: dict, rival: dict) -> bool:
    """tcc's mean cosine and agreement both at least the rival's."""
    return ours["cosine_mean"] >= rival["cosine_mean"] and ours["top1_agreement"] >= rival["top1_agreement"]


def meets_bar(ours: dict, rival: dict, worst: str = "cosine_min") -> bool:
    """Issue 74's bar on the census, literally: mean cosine within MARGIN of the rival's or above, the worst crop's
    cosine and the agreement not lower. `worst="cosine_low"` reads the worst case as the LOW_PERCENTILE-th
    percentile of the crops' cosines instead of the single worst crop (rows without it: not met)."""
    return (
        ours["cosine_mean"] >= rival["cosine_mean"] - MARGIN
        and worst in ours
        and worst in rival
        and ours[worst] >= rival[worst]
        and ours["top1_agreement"] >= rival["top1_agreement"]
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="models of the census (default: all)")
    p.add_argument("--size", type=int, help="input height = width for every model (default: each model's)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--judged", type=int, default=JUDGED, help=f"crops each INT8 model is judged on (default {JUDGED})")
    p.add_argument("--calib", type=int, default=CALIB, help=f"crops tcc and the rival calibrate on (default {CALIB})")
    p.add_argument(
        "--rivals-python",
        "--nncf-python",
        help="an interpreter that has NNCF and AIMET (their own virtual environment, `make rivals`: "
        ".venv-rivals/bin/python): their post-training quantization joins the rivals (--nncf-python: the old name)",
    )
    p.add_argument(
        "--target",
        choices=("ort", "ort-w8"),
        default="ort",
        help="tcc's INT8 target: ort (7-bit dense weights), or ort-w8 (8-bit, as quantize_static's; needs a CPU "
        "with VNNI or ARM64)",
    )
    args = p.parse_args(argv)
    known = {e.name: e for e in MODELS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(f"error: unknown model(s) {', '.join(unknown)}; the census has {', '.join(known)}", file=sys.stderr)
        return 2
    if args.rivals_python and not shutil.which(args.rivals_python):  # before minutes of work
        print(f"error: --rivals-python {args.rivals_python}: no such executable", file=sys.stderr)
        return 2
    entries = [known[n] for n in args.names] if args.names else MODELS
    if args.size:
        entries = [Entry(e.name, e.source, e.build, args.size) for e in entries]
    rows = []
    for entry in entries:
        with tempfile.TemporaryDirectory(prefix=f"census-{entry.name}-") as tmp:
            start = time.perf_counter()
            row = census(entry, Path(tmp), args.judged, args.target, args.calib, args.rivals_python)
            row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(markdown([row])[-1], flush=True)
    print("\n".join(markdown(rows)))
    print(summary(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
