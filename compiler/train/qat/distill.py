"""Quantization-aware fine-tuning from a calibration table, distilled from the FP32 model (`tcc qat`).

    source = QatSource("spec/ddsnet.yaml", Weights("GC.pth", by_order=True))
    result = quantization_aware(source, table, QatSamples(x), Options(epochs=20), Path("qat"))
    # qat/weights.pt: the spec's state_dict;  qat/calib.json: the table for it;  qat/log.json: the epochs

The student is the spec's PyTorch model fake-quantized exactly where, and at the parameters with which, the integer
graph of the table quantizes it (tcc.train.qat.quant_points, .model); the teacher is the same model in FP32. With no
labels, the loss is the student's squared logit error relative to the teacher's logits, per sample (the quantity whose
smallness makes the INT8 vs FP32 cosine high: 1 - cos <= error / 2), plus `feature_weight` times the same error of
every quantized tensor against the teacher's value of it (each layer is told where it went wrong, not only the
output). What trains: the folded conv / linear layers in code units (tcc.train.qat.model) and the activation scales
(LSQ: a factor per scale, a group of tensors that share one scale sharing it). The written table is the input table
with the learned scales, the steps that changed parameters switched off (bias correction: absorbed into the weights
before training; rounding: replaced by training) and the new weights' hashes. The epoch kept is the one whose
fake-quantized outputs are closest to the teacher's on the un-augmented data (epoch 0: the weights as given), so the
result is never worse there than the start.
"""

from __future__ import annotations

import copy
import io
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.distributed as dist

from ...bundle import sha256_file
from ...errors import DataError
from ...files import atomic_write
from ...frontend import Weights, lower_spec
from ...quant.intgraph.match import plan, quantized_form
from ...quant.intgraph.qgraph import quantize_graph
from ...quant.intgraph.reference import run_reference
from ...quant.report.fidelity import Fidelity, FidelityFloor, warning_text
from ...quant.report.quality import HeldOut
from ...quant.table.file import CalibrationTable, model_sha256
from ...quant.table.quantizer import cosine
from ..distributed import Processes, gather, processes
from .model import Features, QatModel, absorb_bias_correction
from .options import AUGMENTS, Options
from .quant_points import QatPlanner

WEIGHTS, TABLE, LOG = "weights.pt", "calib.json", "log.json"
JUDGED = 32  # samples the integer reference judges before and after (the integer reference is slow in numpy)


@dataclass
class Result:
    weights: Path
    table: CalibrationTable
    log: dict


def _view(x: torch.Tensor, view: int) -> torch.Tensor:
    x = torch.rot90(x, view % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if view >= 4 else x


def _crop(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random square of 50-100% of the side, scaled back to the full size."""
    h, w = x.shape[-2:]
    side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    part = x[None, :, top : top + side, left : left + side]
    return torch.nn.functional.interpolate(part, size=(h, w), mode="bilinear", align_corners=False)[0]


def relative_error(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per sample: |s - t|^2 / |t|^2 over the flattened tensor."""
    s, t = student.flatten(1), teacher.flatten(1)
    return ((s - t) ** 2).sum(1) / (t**2).sum(1).clamp_min(1e-12)


@dataclass(frozen=True)
class QatSource:
    """The model quantization-aware training fine-tunes: its spec, the trained weights, the table's opset."""

    spec: Any  # a spec's path, or a loaded Spec (tcc.spec.loader)
    weights: Weights  # the trained checkpoint and how its tensors match the spec's
    opset: int = 13  # the ONNX opset the table was calibrated at


@dataclass(frozen=True)
class QatSamples:
    """The samples it trains on."""

    array: np.ndarray = field(repr=False)  # [N, C, H, W] float32, through the spec's preprocessing
    fingerprint: str = ""  # the data's (tcc.quant.collect.data), recorded in the table
    labels: np.ndarray | None = field(default=None, repr=False)  # a class index per sample, for label_weight
    # samples neither calibration nor training saw (`tcc qat --eval`): the INT8 model before and after is judged
    # on them against the given FP32 model (masks too, for a dense output)
    held_out: HeldOut | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _Job:
    source: QatSource
    table: CalibrationTable
    samples: QatSamples
    options: Options
    out: Path
    kept: dict[str, bytes]
    log: Callable[[str], None]


def quantization_aware(
    source: QatSource,
    table: CalibrationTable,
    samples: QatSamples,
    options: Options,
    out: Path,
    *,
    kept: dict[str, bytes] | None = None,
    log: Callable[[str], None] = print,
) -> Result:
    """Fine-tune and write OUT/weights.pt, OUT/calib.json, OUT/log.json (all three, or none; `kept`, name -> bytes,
    beside them: an imported model's spec). Under torchrun every process trains on its share of each batch
    (gradients summed over the processes, as one process would compute them); the main process alone checks, logs
    and writes."""
    if options.label_weight and samples.labels is None:
        raise DataError("--label-weight needs labelled data: DIR/<class>/image files, the classes in output order")
    with processes("cpu") as procs:
        job = _Job(source, table, samples, options, out, kept or {}, log if procs.main else (lambda s: None))
        return _quantization_aware(job, procs)


@dataclass(frozen=True)
class _Setup:
    """What training starts from: the FP32 graph, teacher and student, the bias correction absorbed, the INT8 cosine
    before."""

    fp32: Any  # onnx.ModelProto after the passes
    teacher: Any  # the FP32 PyTorch lowering, frozen
    student: QatModel
    absorbed: list[str]
    judged: np.ndarray
    before: dict | None  # the integer reference's cosines before training (the main process's)
    world: int  # the training processes


def _quantization_aware(job: _Job, procs: Processes) -> Result:
    started = time.perf_counter()
    setup = _setup(job, procs)
    data, options = job.samples.array, job.options
    epochs, best = _train(setup.student, setup.teacher, data, job.samples.labels, options, procs, job.log)
    setup.student.load_state_dict(best["state"])
    setup.student.write_back()
    if not procs.main:
        return Result(job.out / WEIGHTS, job.table, {})
    return _write(job, setup, epochs, best, started)


def _setup(job: _Job, procs: Processes) -> _Setup:
    """The table checked against the model (its hashes, its tensors, no equalization), the student fake-quantized
    as the table's integer graph quantizes it, its bias correction absorbed."""
    table, source, log = job.table, job.source, job.log
    fe = lower_spec(source.spec, weights=source.weights, opset=source.opset)
    job.options.check(len(job.samples.array), tuple(fe.model.input_shape))
    assert source.weights.file is not None  # QAT fine-tunes trained weights (Model.qat refuses none)
    table.check(
        spec_hash=fe.model.spec_hash, weights_hash=sha256_file(source.weights.file), model_hash=model_sha256(fe.onnx)
    )
    table.check_model(quantized_form(fe.onnx, table.target))
    if table.step("equalization"):
        raise DataError(
            "the calibration table was made with cross-layer equalization; quantization-aware training "
            "starts from a table without it (calibrate with --no-equalization)"
        )
    graph = plan(fe.onnx, rules=table.rules)
    qgraph = quantize_graph(graph, table)
    teacher = fe.module.eval().requires_grad_(False)
    student = QatModel(copy.deepcopy(fe.module), QatPlanner.of(qgraph, graph, table))
    corrected = table.step("bias_correction")
    absorbed, dropped = (
        absorb_bias_correction(student, {k: v["shift"] for k, v in corrected["layers"].items()})
        if corrected and corrected.get("enabled")
        else ([], [])
    )
    if dropped:
        log(
            f"qat: the bias correction of {len(dropped)} layers is left to training (no bias of their own to hold "
            f"it): {', '.join(dropped[:4])}" + (", ..." if len(dropped) > 4 else "")
        )
    data, o = job.samples.array, job.options
    judged = data[:JUDGED]
    before = _int8_cosines(fe.onnx, table, judged, teacher) if procs.main else None
    log(
        f"qat: {len(student.layers)} layers, {len(student.activations)} tensors fake-quantized under the "
        f"{table.target} rules; {len(data)} samples, {o.epochs} epochs, lr {o.lr:g}, augment "
        f"{o.augment}, {procs.world} process{'es' if procs.world > 1 else ''}"
        + (f"; bias correction of {len(absorbed)} layers absorbed" if absorbed else "")
    )
    return _Setup(fe.onnx, teacher, student, absorbed, judged, before, procs.world)


def _write(job: _Job, setup: _Setup, epochs: list[dict], best: dict, started: float) -> Result:
    """The trained weights, the table for them and the log, checked in a temporary folder, then written to OUT."""
    state = {k: v.detach().clone().contiguous() for k, v in setup.student.module.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    blob = buffer.getvalue()
    source, out = job.source, job.out
    with tempfile.TemporaryDirectory(prefix="tcc-qat-") as tmp:  # checked before anything lands in OUT
        trained_file = Path(tmp) / WEIGHTS
        trained_file.write_bytes(blob)
        trained = lower_spec(source.spec, weights=trained_file, opset=source.opset)
        new_table = _trained_table(
            job,
            _Trained(trained.onnx, trained_file, setup.absorbed, best["epoch"], time.perf_counter() - started),
            setup.student.learned_scales(),
        )
        after = _int8_cosines(trained.onnx, new_table, setup.judged, setup.teacher)
    before = setup.before
    assert before is not None  # the main process's
    int8_cosine: dict[str, Any] = {"judged_samples": len(setup.judged), "before": before, "after": after}
    if job.samples.held_out is not None:
        int8_cosine["held_out"] = _held_out(job, setup, _Judged(trained.onnx, new_table))
    new_table.record_qat_cosine(int8_cosine)
    record = {
        "spec": str(source.spec),
        "weights": str(source.weights.file),
        "options": asdict(job.options),
        "processes": setup.world,
        "epochs": epochs,
        "kept_epoch": best["epoch"],
        "int8_cosine": int8_cosine,
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, data_bytes in job.kept.items():

        def write(f: BinaryIO, b: bytes = data_bytes) -> None:
            f.write(b)

        atomic_write(out / name, write)
    weights_out = atomic_write(out / WEIGHTS, lambda f: f.write(blob))
    new_table.save(out / TABLE)
    atomic_write(out / LOG, lambda f: f.write((json.dumps(record, indent=1) + "\n").encode()))
    job.log(
        f"qat: INT8 vs FP32 output cosine on {len(setup.judged)} of its samples (integer reference), mean / min: "
        f"{before['mean']:.6f} / {before['min']:.6f} -> {after['mean']:.6f} / {after['min']:.6f} (epoch "
        f"{best['epoch']} kept)"
    )
    return Result(weights_out, new_table, record)


@dataclass(frozen=True)
class _Judged:
    """An INT8 model as the integer reference runs it: its FP32 graph after the passes and its table."""

    fp32: Any  # onnx.ModelProto
    table: CalibrationTable


def _held_out(job: _Job, setup: _Setup, trained: _Judged) -> dict[str, Any]:
    """The integer reference of the given table on the given weights, and of the trained ones, judged on the held-out
    samples against the given FP32 model (the mask's agreement too, for a dense output); logged, and recorded."""
    held = job.samples.held_out
    assert held is not None  # called with --eval
    with torch.no_grad():
        fp32 = np.concatenate(
            [setup.teacher(torch.from_numpy(held.array[i : i + 16])).numpy() for i in range(0, len(held.array), 16)]
        )
    where = f"{len(held.array)} held-out samples from {held.source}"
    record = held.describe(job.samples.array)
    overlap = record.pop("also_calibration_samples")
    if overlap:
        job.log(
            f"WARNING: {overlap} of the {len(held.array)} held-out samples in {held.source} are also training "
            "samples: the held-out numbers are flattered"
        )
    record["also_training_samples"] = overlap
    floor = FidelityFloor()
    for when, judged in (("before", _Judged(setup.fp32, job.table)), ("after", trained)):
        fidelity = Fidelity.measure(fp32, run_reference(judged.fp32, judged.table, held.array), where)
        job.log(f"qat: {when}: {fidelity.line()} (integer reference)")
        record[when] = fidelity.to_json(floor)
    short = record["after"]["below_floor"]
    if short:  # never silently bad: the trained model's own judgement, where it is read
        job.log(f"WARNING: after training, {warning_text(short)}")
    return record


def _int8_cosines(fp32_onnx, table: CalibrationTable, x: np.ndarray, teacher) -> dict:
    """Per-sample cosine of the integer reference's output against the FP32 model's: mean and min."""
    with torch.no_grad():
        ref = teacher(torch.from_numpy(x)).numpy()
    y = run_reference(fp32_onnx, table, x)
    cos = [cosine(a, b) for a, b in zip(y, ref)]
    return {"mean": round(float(np.mean(cos)), 6), "min": round(float(np.min(cos)), 6)}


def _fake_quant_cosine(student, share: np.ndarray, fp32: list, batch: int, procs: Processes) -> tuple[float, float]:
    """Per-sample cosine of the fake-quantized output against the FP32 one (`fp32`: the teacher's outputs of this
    process's `share`, batch by batch, computed once) over every process's share: mean and min."""
    cos = []
    with torch.no_grad():
        for i, t in zip(range(0, len(share), batch), fp32):
            s = student(torch.from_numpy(share[i : i + batch])).flatten(1).double()
            cos += torch.nn.functional.cosine_similarity(s, t.flatten(1).double(), dim=1).tolist()
    cos = [c for part in gather(cos, procs) for c in part]
    # 6 decimals: the epoch kept must not hang on float rounding (the process count changes summation orders)
    return round(float(np.mean(cos)), 6), round(float(np.min(cos)), 6)


def _train(
    student: QatModel, teacher, data: np.ndarray, labels: np.ndarray | None, o: Options, procs: Processes, log
) -> tuple[list[dict], dict]:
    """Adam over the global batch: every process draws the same order and views, computes its share's summed loss
    over the global batch size, and the gradients are summed over the processes."""
    torch.manual_seed(o.seed)
    rng = np.random.default_rng(o.seed)
    views = AUGMENTS[o.augment]
    free = student.free_parameters()
    for p in [*student.folded_params, *free]:
        p.requires_grad_(True)
    weights = [layer.codes for layer in student.layers.values()]
    biases = [layer.bias_codes for layer in student.layers.values() if layer.bias_codes is not None]
    groups: list[dict[str, Any]] = [{"params": weights, "lr": o.lr}, {"params": biases, "lr": o.bias_lr}]
    groups += [{"params": free, "lr": o.free_lr}] if free else []
    if o.scale_lr:
        for p in student.log_scales:
            p.requires_grad_(True)
        groups.append({"params": list(student.log_scales), "lr": o.scale_lr})
    params = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.Adam(groups)
    steps = o.epochs * -(-len(data) // o.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    share = data[procs.rank :: procs.world]  # the epochs are judged on the un-augmented data, each process its share
    with torch.no_grad():
        fp32 = [teacher(torch.from_numpy(share[i : i + o.batch_size])) for i in range(0, len(share), o.batch_size)]
    mean, worst = _fake_quant_cosine(student, share, fp32, o.batch_size, procs)
    epochs = [{"epoch": 0, "cos_mean": mean, "cos_min": worst}]
    best = {"epoch": 0, "key": (mean, worst), "state": copy.deepcopy(student.state_dict())}
    log(f"qat: epoch 0: fake-quantized vs FP32 cosine {mean:.6f} / {worst:.6f}")
    for epoch in range(1, o.epochs + 1):
        start, total = time.perf_counter(), 0.0
        order = rng.permutation(len(data))
        turns = rng.choice(views, size=len(data))
        for i in range(0, len(data), o.batch_size):
            idx = order[i : i + o.batch_size]
            x = torch.stack([_view(torch.from_numpy(data[j]), int(turns[j])) for j in idx])
            if o.augment == "crops":
                x = torch.stack([_crop(v, rng) for v in x])
            mine = x[procs.rank :: procs.world]
            y = None if labels is None else torch.from_numpy(labels[idx][procs.rank :: procs.world])
            optimizer.zero_grad(set_to_none=True)
            loss = _loss(student, teacher, mine, y, o).sum() if len(mine) else torch.zeros((), dtype=torch.float32)
            if len(mine):
                (loss / len(idx)).backward()
            _sum_gradients(params, procs)
            optimizer.step()
            schedule.step()
            total += loss.item()
        total = sum(gather(total, procs))
        mean, worst = _fake_quant_cosine(student, share, fp32, o.batch_size, procs)
        kept = (mean, worst) > best["key"]
        if kept:
            best = {"epoch": epoch, "key": (mean, worst), "state": copy.deepcopy(student.state_dict())}
        epochs.append(
            {
                "epoch": epoch,
                "loss": total / len(data),
                "cos_mean": mean,
                "cos_min": worst,
                "seconds": round(time.perf_counter() - start, 3),
            }
        )
        log(
            f"qat: epoch {epoch}/{o.epochs}: loss {total / len(data):.3e}, fake-quantized vs FP32 cosine "
            f"{mean:.6f} / {worst:.6f}" + ("  [best]" if kept else "")
        )
    return epochs, best


def _loss(student: QatModel, teacher, x: torch.Tensor, y: torch.Tensor | None, o: Options) -> torch.Tensor:
    """Per sample: the logits' relative squared error, plus feature_weight times the quantized tensors' (their
    mean), plus label_weight times the cross-entropy against the label."""
    with torch.no_grad():
        if o.feature_weight:
            features = Features(teacher, student)
            target = features.run(x)
        else:
            target = teacher(x)
    got: dict | None = {} if o.feature_weight else None
    logits = student(x, got)
    loss = relative_error(logits, target)
    if o.label_weight:
        loss = loss + o.label_weight * torch.nn.functional.cross_entropy(logits, y, reduction="none")
    if o.feature_weight:
        assert got is not None  # collected with feature_weight
        terms = [relative_error(v, features.values[k]) for k, v in got.items() if k in features.values]
        loss = loss + o.feature_weight * torch.stack(terms).mean(0)
    return loss


def _sum_gradients(params: list, procs: Processes) -> None:
    """Every process's gradients summed (a parameter without one counts as zeros, in one process too, so that Adam
    sees the same steps whatever the process count)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        if procs.world > 1:
            dist.all_reduce(p.grad)


@dataclass(frozen=True)
class _Trained:
    """The weights training kept, as the table for them records them."""

    fp32: Any  # their FP32 graph after the passes
    weights: Path  # their file
    absorbed: list[str]  # layers whose bias correction went into the weights
    epoch: int  # the epoch kept
    seconds: float  # the whole run's wall time


def _trained_table(job: _Job, trained: _Trained, scales: dict[str, float]) -> CalibrationTable:
    """The input table with the learned scales, the steps training replaced switched off, the new hashes and the
    run's record (CalibrationTable.retrained)."""
    o = job.options
    record = {
        "absorbed_bias_correction": len(trained.absorbed),
        "epochs": o.epochs,
        "kept_epoch": trained.epoch,
        "lr": o.lr,
        "bias_lr": o.bias_lr,
        "free_lr": o.free_lr,
        "scale_lr": o.scale_lr,
        "scales_learned": len(scales),
        "feature_weight": o.feature_weight,
        "label_weight": o.label_weight,
        "batch_size": o.batch_size,
        "augment": o.augment,
        "seed": o.seed,
        "loss": "relative squared logit error (distilled)",
        "samples": len(job.samples.array),
        "data_fingerprint": job.samples.fingerprint,
    }
    return job.table.retrained(
        scales, sha256_file(trained.weights), model_sha256(trained.fp32), record, trained.seconds
    )
