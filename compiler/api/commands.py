"""The commands that are not one model's methods: tensor-by-tensor diffs, the benchmark, ONNX import, training,
golden sets and reports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import SimpleNamespace
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from ..benchmark.report import report as table_one
from ..errors import BuildError, DataError, suggest
from ..files import atomic_write, check_output, check_replaceable, is_onnx_file
from ..spec.train_options import BY_NAME as TRAIN_OPTIONS
from ..spec.zoo import resolve_spec
from ..tensor_diff import Context
from ..tensor_diff import diff as diff_endpoints
from .bundle import Bundle, Inputs, Log, as_batch
from .model import Model

if TYPE_CHECKING:
    from ..golden import Row
    from ..onnx_import import Imported
    from ..train.session import Trained


def diff(
    a: str | Path | Bundle,
    b: str | Path | Bundle,
    x: Inputs,
    *,
    model: Model | None = None,
    calib: str | Path | None = None,
    min_cosine: float = 0.9999,
    max_lsb: float = 1.0,
    max_rel: float = 1e-3,
) -> dict[str, Any]:
    """`tcc diff A B`: both sides on one input, every tensor both expose compared in graph order. A side is a bundle
    (or its folder), "pytorch" or "reference[:RULES]" (those two need `model`); `x` an image file, a .npy file or an
    array. Returns the comparison (`tcc.tensor_diff.format_diff` prints it as the CLI does)."""
    ctx = Context(calib=str(calib) if calib else None)
    if model is not None:
        ctx.spec, ctx.by_order = model.spec, model.by_order
        ctx.weights, ctx.key_map = _text(model.weights), _text(model.key_map)
    ends = [str(e.path) if isinstance(e, Bundle) else str(e) for e in (a, b)]
    if not isinstance(x, (str, Path)):
        x = as_batch(x, model.spec.preprocess, model.input_shape) if model is not None else np.asarray(x, np.float32)
    return diff_endpoints(ends[0], ends[1], x, ctx, min_cosine, max_lsb, max_rel)


def bench(
    models: list[str | Path] | None = None,
    *,
    weights: str | Path | None = None,
    by_order: bool = False,
    overrides: dict[str, Any] | None = None,
    quick: bool = False,
    out: str | Path = "out/bench",
    progress: bool | None = False,
    **settings: Any,
) -> dict[str, Any]:
    """`tcc bench`: every engine on the same model(s), side by side; returns bench.json's document (the CLI also
    writes bench.json / bench.md). `models`: spec paths or zoo names (default: DDSNet with the GC checkpoint and
    FastNet; `weights` / `by_order` / `overrides` for one model); `settings`: BenchConfig's fields (rounds, runs,
    calib_images, held_out, method, matrix, memory, placement, tvm_variants, peers)."""
    # deferred for start-up: tcc.benchmark loads TVM, which a `tcc build` leaves to its compile worker
    from ..benchmark import BenchConfig, BenchModel, default_models, quick_config, run_bench

    work = Path(out) / "work"
    if models and len(models) > 1 and (weights or overrides):
        raise DataError("weights / overrides apply to one model; benchmark several models one at a time")
    if quick:
        config = quick_config(work)
    elif models:
        config = BenchConfig(
            [
                BenchModel(
                    Path(str(m)).stem,
                    resolve_spec(m),
                    Path(weights) if weights else None,
                    by_order,
                    dict(overrides or {}),
                )
                for m in models
            ],
            work,
        )
    else:
        config = BenchConfig(default_models(), work)
    for name, value in settings.items():
        if not hasattr(config, name):
            raise DataError(f"bench: unknown setting {name!r}")
        if value is not None:
            setattr(config, name, value)
    return run_bench(config, progress=progress)


def import_onnx(
    path: str | Path,
    out: str | Path,
    *,
    weights_out: str | Path | None = None,
    size: tuple[int, int] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    force: bool = False,
) -> Imported:
    """`tcc import`: the ONNX image classifier at `path` as a spec at `out` (.yaml) and its weights at `weights_out`
    (default: beside the spec, .pt), both written whole only after the spec loaded and its PyTorch lowering matched
    ONNX Runtime on the original (the FP32 rule). Returns the import (tcc.onnx_import.Imported);
    `Model.load(out, weights=weights_out)` takes them."""
    import torch  # deferred for start-up: a build imports torch only after forking its TVM compile worker

    from ..onnx_import import import_onnx as convert  # deferred for start-up: loads onnxruntime, onnxsim, torch

    out = check_output(out, (".yaml", ".yml"), "a spec is written as .yaml")
    weights_out = check_output(weights_out or out.with_suffix(".pt"), (".pt", ".pth"), "weights are written as .pt")
    for target in (out, weights_out):
        check_replaceable(target, force)
    imported = convert(path, size=size, mean=mean, std=std)
    atomic_write(weights_out, lambda f: torch.save(imported.state_dict, f))
    atomic_write(out, lambda f: _write(f, imported.spec_text.encode("utf-8")))
    return imported


@dataclass(frozen=True)
class TrainRun:
    """`tcc train`'s flags besides the training options: where the run goes and how it starts."""

    output: str | Path | None = None  # RUN: best.pt, last.pt, log.json, curves.png, config.yaml
    resume: str | Path | None = None  # a run to continue (the spec may then be left out)
    config: str | Path | None = None  # a YAML file of training options (the keys of a spec's train: section)
    force: bool = False  # replace an existing run in RUN
    stop_after: int | None = None  # stop after this epoch (for job time limits; `resume` continues)
    overrides: dict[str, Any] | None = None  # the model parameters (--set); an ONNX file's import options
    progress: bool = False  # progress bars


def train_model(
    spec: str | Path | None = None,
    *,
    log: Callable[[str], None] = lambda s: None,
    epoch_log: Callable[[str], None] | None = None,
    **options: Any,
) -> Trained:
    """`tcc train`: `spec` (a spec file, a zoo name or an ONNX file, imported with its weights) trained on
    `data=DIR` into `output` (RUN: best.pt, last.pt, log.json, curves.png, config.yaml), or the run `resume`
    continued (`spec` may then be left out). `options`: TrainRun's fields (output, resume, config, force,
    stop_after, overrides: the model parameters (--set; an ONNX file's import options), progress) and the training
    options by their names, as values (`tcc train --help`; a spec's train: section: epochs, lr, batch_size, augment,
    weights, nproc, ...). `log` hears the notes, `epoch_log` (default `log`) a line per epoch. Returns
    tcc.train.session.Trained (.run; .history: the epochs and the best one, None where torchrun's processes
    trained: RUN/log.json has them)."""
    from ..train.session import train  # deferred for start-up: loads torch

    run_fields = {f.name for f in fields(TrainRun)}
    run = TrainRun(**{k: v for k, v in options.items() if k in run_fields})
    unknown = sorted(k for k in options if k not in run_fields and (k not in TRAIN_OPTIONS or k == "set"))
    if unknown:
        raise DataError(f"train: unknown option {unknown[0]!r}{suggest(unknown[0], list(TRAIN_OPTIONS))}")
    args = SimpleNamespace(
        spec=str(spec) if spec is not None else None,
        **vars(run),
        **{name: options.get(name) for name in TRAIN_OPTIONS if name != "set"},
    )
    return train(args, log, run.progress, epoch_log)


def golden_check(
    folder: str | Path = "tests/golden",
    *,
    models: list[str] | None = None,
    entries: list[str] | None = None,
    everything: bool = False,
    log: Log = lambda s: None,
) -> list[Row]:
    """`tcc golden check FOLDER`: every entry of a golden set against its stored outputs (`everything`: also the
    ones its plan marks slow). Returns a tcc.golden.Row per entry (.failed, .status, .to_json())."""
    from ..golden import check  # deferred for start-up: loads torch

    return check(folder, models, entries, everything=everything, log=log)


def golden_update(
    folder: str | Path = "tests/golden",
    *,
    models: list[str] | None = None,
    entries: list[str] | None = None,
    recalibrate: bool = False,
    log: Log = lambda s: None,
) -> list[Row]:
    """`tcc golden update FOLDER`: the entries' outputs stored again on purpose (`recalibrate`: the tables too),
    after checking that they agree by the rules `check` applies; nothing of a model one of whose entries fails its
    rule is written. Returns a tcc.golden.Row per entry saying whether and by how much it changed."""
    from ..golden import update  # deferred for start-up: loads torch

    return update(folder, models, entries, recalibrate=recalibrate, log=log)


def report(
    specs: Sequence[str | Path] = (),
    bundles: Sequence[str | Path] = (),
    out: str | Path = "out/report",
    *,
    overrides: dict[str, Any] | None = None,
    rounds: int = 5,
    runs: int = 10,
) -> dict[str, Any]:
    """`tcc report`: the paper's Table 1 for `specs` (spec files, zoo names or ONNX files) and, for built `bundles`,
    latency (`rounds` interleaved rounds of `runs` inferences), fidelity and instruction counts; writes
    OUT/report.md, report.json and the plots, returns report.json's document."""
    if not specs and not bundles:
        raise DataError("give at least one spec or bundle", cli="give at least one spec or --bundles DIR")
    if rounds < 1 or runs < 1:
        raise DataError(f"--rounds and --runs must be at least 1, not {rounds} and {runs}")
    for b in bundles:
        if not (Path(b) / "manifest.json").is_file():
            raise DataError(f"{b}: not a tcc bundle (no manifest.json)")
    overrides = dict(overrides or {})
    # an ONNX file: its imported spec (Table 1 reads the structure; the file's weights do not change it)
    imported = [Model.load(s, **overrides) if is_onnx_file(s) else None for s in specs]
    paths = [str(m.loaded.path) if m else str(s) for s, m in zip(specs, imported)]
    return table_one(
        paths, [str(b) for b in bundles], Path(out), {} if any(imported) else overrides, rounds=rounds, runs=runs
    )


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _write(f: IO[bytes], data: bytes) -> None:
    f.write(data)


def setup(
    targets: Sequence[str] | None = None, *, apt: bool = True, rebuild: bool = False, log: Log = print
) -> dict[str, Path]:
    """`tcc setup`: prepare this machine for `targets` (default: host, arm-a7, aarch64): for the TVM targets their
    Debian packages (`apt`: apt-get as root or with sudo; else the error names them), the pinned TVM wheels and
    cmake / ninja in this environment, and their runtimes in the cache (`rebuild`: again). ONNX Runtime, TFLite and
    the AX kits need nothing (`log` says so). Returns {TVM target: its runtime's cache folder}."""
    from ..backends.tvm.setup import DEFAULT_TARGETS, SetupSettings  # deferred for start-up
    from ..backends.tvm.setup import setup as setup_tvm
    from ..targets import PLATFORMS, TARGETS

    names = list(targets or DEFAULT_TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise BuildError(f"unknown target '{unknown[0]}'{suggest(unknown[0], TARGETS)}; `tcc build --help` lists them")
    for name in names:
        if name not in PLATFORMS:
            log(f"setup: {name} needs no set-up (its runtime is a Python package tcc depends on, or a kit)")
    tvm = [n for n in names if n in PLATFORMS]
    return setup_tvm(tvm, SetupSettings(apt=apt, rebuild=rebuild), log) if tvm else {}
