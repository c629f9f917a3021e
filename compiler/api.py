"""The Python API: what the command line does, as objects. The CLI's commands parse their arguments, call these and
print; a notebook calls them directly.

    import tcc
    model = tcc.Model.load("ddsnet", weights="GC_DDS_0.0064.pth", by_order=True)   # a zoo name or a spec path
    logits = model.predict("GC.png")                          # PyTorch, the spec's preprocessing; or an array
    table = model.calibrate("crops/", target="ort")           # kl+cos by default -> tcc.quant.table.CalibrationTable
    bundle = model.build("arm-a7", precision="int8", calib=table, out="out/a7-int8")
    bundle.run(x)                                             # float32 [N, C, H, W] -> logits
    tcc.Bundle.open("out/a7-int8").check()                    # every file against the manifest's hashes
    tcc.diff("reference", "out/a7-int8", x, model=model)      # tensor by tensor, first divergence first

Errors are the typed exceptions the CLI maps to exit code 2 (tcc.errors: SpecError, DataError, WeightsError,
BuildError, CalibrationError, ...), raised before any long work where the inputs allow.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .artifact import manifest_preprocess, open_artifact
from .build import build as build_bundle
from .bundle import read_manifest, sha256_file
from .data import load_array, load_image
from .errors import DataError
from .files import atomic_write, check_output
from .frontend import lower_spec, reference_module
from .quant.calibrate import calibrate as calibrate_spec
from .quant.collect.data import load_calibration_data
from .quant.table.file import CalibrationTable, load_table
from .spec.loader import Model as Spec, load_model
from .spec.zoo import resolve_spec
from .tensor_diff import Context, diff as diff_endpoints


def _as_batch(x, preprocess, input_shape) -> np.ndarray:
    """An image file (through the preprocessing), a .npy file, or an array [C, H, W] / [N, C, H, W]."""
    if isinstance(x, (str, Path)):
        return load_array(x, input_shape) if Path(x).suffix.lower() == ".npy" else load_image(x, preprocess)[None]
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == len(input_shape):
        x = x[None]
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(f"input of shape {list(x.shape)}: the model takes [N, {', '.join(map(str, input_shape))}]")
    return np.ascontiguousarray(x)


@dataclass
class Model:
    """A model to compile: a spec with its parameter values, and the weights to build it with (None: seeded random
    weights, said loudly in every bundle)."""

    loaded: Spec  # the spec as loaded, before the weights are looked at
    weights: Path | None = None
    by_order: bool = False
    key_map: Path | None = None
    seed: int = 0
    source: dict | None = None  # an ONNX file imported in memory: its name and sha256 (every manifest records it)
    _fitted: Spec | None = None
    _module: object = None  # the PyTorch lowering predict() runs, made once
    _workdir: object = None  # the imported spec and weights live here as long as the model does

    @classmethod
    def load(cls, spec: str | Path, weights: str | Path | None = None, *, by_order: bool = False,
             key_map: str | Path | None = None, seed: int = 0, **overrides) -> Model:
        """`spec`: a spec file, a zoo model's name (`tcc zoo`) or an ONNX file (imported in memory, `tcc import`'s
        way: it carries its weights); `overrides`: model parameters (`--set`), e.g. num_classes=2. A checkpoint whose
        classifier has another width than the spec's default sets num_classes itself where the spec declares its
        layout (`notes` says so)."""
        if Path(str(spec)).suffix.lower() == ".onnx":
            if weights or by_order or key_map or overrides:
                raise DataError(f"{spec}: an ONNX file carries its weights and fixed values: drop --weights / "
                                "--by-order / --key-map / --set (or `tcc import` it and edit the spec)")
            return cls._from_onnx(Path(spec), seed)
        return cls(load_model(spec, overrides), Path(weights) if weights else None, by_order,
                   Path(key_map) if key_map else None, seed)

    @classmethod
    def _from_onnx(cls, path: Path, seed: int) -> Model:
        # deferred for start-up: loads onnxruntime, onnxsim and torch (a build then compiles in its own process)
        from .onnx_import import import_to_files

        workdir = tempfile.TemporaryDirectory(prefix="tcc-onnx-")
        spec_file, weights_file = import_to_files(path, workdir.name)
        source = {"onnx": path.name, "sha256": sha256_file(path), "importer": "tcc import (in memory)"}
        return cls(load_model(spec_file), weights_file, False, None, seed, source, _workdir=workdir)

    @property
    def spec(self) -> Spec:
        """The spec fitted to the weights (graph, params, preprocessing, labels: tcc.spec.loader.Model)."""
        if self._fitted is None:
            # deferred for start-up: loads torch, which a build imports only after forking its TVM compile worker
            from .lower.weights import fit_to_checkpoint

            self._fitted = fit_to_checkpoint(self.loaded, self.weights, self.by_order, self.key_map)
        return self._fitted

    @property
    def notes(self) -> list[str]:
        """What the user should hear about the model: a class count read from the checkpoint, labels that do not
        fit."""
        return list(self.spec.notes)

    # ------------------------------------------------------------------------------------------------ the spec
    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def input_shape(self) -> tuple:
        return tuple(self.spec.input_shape)

    @property
    def labels(self) -> list[str] | None:
        return self.spec.labels

    # ------------------------------------------------------------------------------------------------ lowerings
    def torch(self, log=lambda s: None):
        """The inference-only PyTorch lowering with the weights, in eval mode (a torch.fx.GraphModule); `log`
        hears how the checkpoint's tensors were matched."""
        module, _ = reference_module(self.spec, self.weights, self.by_order, self.key_map, self.seed, log)
        return module

    def onnx(self, opset: int = 13, simplify: bool = True):
        """The ONNX graph every build starts from: the lowering at `opset` after tcc's fold / fuse passes."""
        return lower_spec(self.spec, weights=self.weights, by_order=self.by_order, key_map=self.key_map,
                          seed=self.seed, opset=opset, simplify=simplify).onnx

    def predict(self, x, log=lambda s: None) -> np.ndarray:
        """Logits of the PyTorch lowering (float32, [N, classes]): `x` an image file (through the spec's
        preprocessing), a .npy file or an array [C, H, W] / [N, C, H, W]."""
        import torch  # deferred for start-up: a build imports torch only after forking its TVM compile worker

        batch = _as_batch(x, self.spec.preprocess, self.input_shape)
        if self._module is None:  # a notebook's loop of predictions reads the checkpoint once
            self._module = self.torch(log)
        with torch.no_grad():
            return self._module(torch.from_numpy(batch)).numpy()

    # ------------------------------------------------------------------------------------------------ INT8, bundles
    def calibrate(self, data, *, target: str = "ort", method: str = "kl+cos", calib_size: int | None = 128,
                  skip_bad: bool = False, opset: int = 13, progress: bool | None = False, placement=None,
                  step_switches: dict | None = None, log=lambda s: None, **options) -> CalibrationTable:
        """The INT8 calibration table for `target`'s rules (`tcc calibrate`): `data` an image folder, a .npy/.npz
        file or an array [N, C, H, W]. `step_switches` (equalization=..., bias_correction=..., rounding=...)
        override the spec's `calibrate:` section; `options` go to tcc.quant.calibrate.calibrate (method settings,
        activation_bits, ...). `table.save(path)` writes it for `tcc build --calib`."""
        return calibrate_spec(self.spec, self.weights, data, target=target, method=method, calib_size=calib_size,
                              seed=self.seed, skip_bad=skip_bad, by_order=self.by_order, key_map=self.key_map,
                              opset=opset, progress=progress, placement=placement, step_switches=step_switches,
                              log=log, **options)

    def build(self, target: str, *, precision: str | None = None, out: str | Path | None = None,
              calib: CalibrationTable | str | Path | None = None, data=None, force: bool = False,
              log=lambda s: None, **options) -> Bundle:
        """A self-checked bundle for `target` at `out` (default out/NAME-TARGET[-PRECISION]), written atomically
        (`tcc build`). INT8 takes a table (`calib`: one from `calibrate` or a file) or calibrates now on `data`.
        `options` are tcc.build.build's (opset, calib_options, io, tune, count_instructions, ...)."""
        out = Path(out or f"out/{self.name}-{target}" + (f"-{precision}" if precision else ""))
        with tempfile.TemporaryDirectory(prefix="tcc-table-") as tmp:
            if isinstance(calib, CalibrationTable):  # as a file, named as `tcc calibrate` users name theirs
                calib = calib.save(Path(tmp) / "calibration.json")
            # the spec as loaded: the build fits it to the weights (and says so through `log`) after it has started
            # its compile worker
            result = build_bundle(self.loaded, target, out, precision=precision, weights=self.weights,
                                  by_order=self.by_order, key_map=self.key_map, seed=self.seed, force=force,
                                  calib=calib, data=data, source=self.source, log=log, **options)
        return Bundle(result.out, result.manifest, result.report, result.seconds)

    def qat(self, data, calib: CalibrationTable | str | Path, out: str | Path, *, epochs: int = 20, lr: float = 0.01,
            bias_lr: float = 0.01, scale_lr: float = 0.01, feature_weight: float = 3.0, label_weight: float = 0.0,
            batch_size: int = 16, augment: str = "dihedral", calib_size: int | None = None, opset: int = 13,
            skip_bad: bool = False, force: bool = False, check_only: bool = False, log=lambda s: None):
        """Quantization-aware fine-tuning (`tcc qat`): the model fake-quantized as the table's integer graph
        quantizes it, distilled from its own FP32 model (logits and every quantized tensor) on `data` (unlabelled:
        an image folder, a .npy/.npz file or an array; with `label_weight`, DATA/<class>/image folders whose labels
        add a cross-entropy term); the folded layers and the activation scales (LSQ) train.
        Writes OUT/weights.pt, OUT/calib.json (the table for those weights) and
        OUT/log.json; returns tcc.train.qat.run.Result (.weights, .table, .log). Then
        `Model.load(spec, weights=result.weights).build(target, precision="int8", calib=result.table)`.
        `check_only`: the options, the output folder and the table checked, nothing trained (returns None)."""
        from .train.qat.run import Options, quantization_aware  # deferred for start-up: loads torch

        if self.weights is None:
            raise DataError(f"{self.name}: quantization-aware training fine-tunes trained weights; pass --weights")
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
            raise DataError(f"{out} exists and is not an empty folder; --force writes into it")
        table = calib if isinstance(calib, CalibrationTable) else load_table(calib)
        options = Options(epochs=epochs, lr=lr, batch_size=batch_size, augment=augment, scale_lr=scale_lr,
                          feature_weight=feature_weight, bias_lr=bias_lr, label_weight=label_weight,
                          seed=self.seed)
        spec = self.spec
        options.check(None, tuple(spec.input_shape))
        if check_only:
            return None
        samples = load_calibration_data(data, spec.preprocess, spec.input_shape, calib_size, self.seed, skip_bad,
                                        what="training")
        labels = _folder_labels(samples, spec, data) if label_weight else None
        return quantization_aware(spec, self.weights, table, samples.array, options, out, by_order=self.by_order,
                                  key_map=self.key_map, opset=opset, data_fingerprint=samples.fingerprint,
                                  labels=labels, log=log)


def _folder_labels(samples, spec: Spec, data) -> np.ndarray:
    """A class index per sample from DATA/<class>/... (the class folders sorted by name: output i is the i-th)."""
    parts = [Path(f).parts for f in samples.files]
    if not parts or any(len(p) < 2 for p in parts):
        raise DataError(f"{data}: --label-weight needs labelled images, DIR/<class>/image (one folder per class)")
    classes = sorted({p[0] for p in parts})
    width = int(np.prod(spec.graph.shape(spec.graph.output)))
    if len(classes) != width:
        raise DataError(f"{data}: {len(classes)} class folders ({', '.join(classes)}) for a model of {width} outputs")
    return np.array([classes.index(p[0]) for p in parts], np.int64)


@dataclass
class Bundle:
    """A bundle made by `tcc build`: its manifest, and the model run here where its backend runs on this machine."""

    path: Path
    manifest: dict
    report: object = None  # the pass pipeline's report, for a bundle just built
    seconds: dict = field(default_factory=dict)  # wall time by phase, for a bundle just built
    _artifact: object = None

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        """An existing bundle; its files are checked against the manifest's hashes (a changed byte is refused)."""
        return cls(Path(path), read_manifest(path))

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    @property
    def labels(self) -> list[str] | None:
        return self.manifest.get("labels")

    @property
    def input_shape(self) -> tuple:
        return tuple(self.manifest["inputs"][0]["shape"][1:])

    @property
    def warning(self) -> str | None:
        """The loud warning of a bundle built with seeded random weights, else None."""
        weights = self.manifest["weights"]
        return weights.get("warning") if "random_seed" in weights else None

    def check(self) -> dict:
        """Every file against the manifest's sha256 (a BuildError names the first that differs); the self-check
        the build recorded."""
        self.manifest = read_manifest(self.path, verify=True)
        return self.manifest["self_check"]

    def run(self, x) -> np.ndarray:
        """The bundle's output for `x` (an image file through the bundle's own preprocessing, a .npy file or an
        array); a kit for an NPU, or a bundle for another machine, is refused with a clear error."""
        if self._artifact is None:
            self._artifact = open_artifact(self.path)
        return self._artifact.run(_as_batch(x, manifest_preprocess(self.manifest), self.input_shape))


def diff(a: str | Path | Bundle, b: str | Path | Bundle, x, *, model: Model | None = None,
         calib: str | Path | None = None, min_cosine: float = 0.9999, max_lsb: float = 1.0,
         max_rel: float = 1e-3) -> dict:
    """`tcc diff A B`: both sides on one input, every tensor both expose compared in graph order. A side is a bundle
    (or its folder), "pytorch" or "reference[:RULES]" (those two need `model`); `x` an image file, a .npy file or an
    array. Returns the comparison (`tcc.tensor_diff.format_diff` prints it as the CLI does)."""
    ctx = Context(calib=str(calib) if calib else None)
    if model is not None:
        ctx.spec, ctx.weights, ctx.by_order, ctx.key_map = model.spec, model.weights, model.by_order, model.key_map
    ends = [str(e.path) if isinstance(e, Bundle) else str(e) for e in (a, b)]
    if not isinstance(x, (str, Path)):
        x = _as_batch(x, model.spec.preprocess, model.input_shape) if model is not None else np.asarray(x, np.float32)
    return diff_endpoints(ends[0], ends[1], x, ctx, min_cosine, max_lsb, max_rel)


def bench(models: list[str | Path] | None = None, *, weights: str | Path | None = None, by_order: bool = False,
          overrides: dict | None = None, quick: bool = False, out: str | Path = "out/bench",
          progress: bool | None = False, **settings) -> dict:
    """`tcc bench`: every engine on the same model(s), side by side; returns bench.json's document (the CLI also
    writes bench.json / bench.md). `models`: spec paths or zoo names (default: DDSNet with the GC checkpoint and
    FastNet; `weights` / `by_order` / `overrides` for one model); `settings`: BenchConfig's fields (rounds, runs,
    calib_images, held_out, method, matrix, memory, placement, tvm_variants)."""
    # deferred for start-up: tcc.benchmark loads TVM, which a `tcc build` leaves to its compile worker
    from .benchmark import BenchConfig, BenchModel, default_models, quick_config, run_bench

    work = Path(out) / "work"
    if models and len(models) > 1 and (weights or overrides):
        raise DataError("weights / overrides apply to one model; benchmark several models one at a time")
    if quick:
        config = quick_config(work)
    elif models:
        config = BenchConfig([BenchModel(Path(str(m)).stem, resolve_spec(m), Path(weights) if weights else None,
                                         by_order, dict(overrides or {})) for m in models], work)
    else:
        config = BenchConfig(default_models(), work)
    for name, value in settings.items():
        if not hasattr(config, name):
            raise DataError(f"bench: unknown setting {name!r}")
        if value is not None:
            setattr(config, name, value)
    return run_bench(config, progress=progress)


def import_onnx(path: str | Path, out: str | Path, *, weights_out: str | Path | None = None,
                size: tuple[int, int] | None = None, mean=None, std=None, force: bool = False):
    """`tcc import`: the ONNX image classifier at `path` as a spec at `out` (.yaml) and its weights at `weights_out`
    (default: beside the spec, .pt), both written whole only after the spec loaded and its PyTorch lowering matched
    ONNX Runtime on the original (the FP32 rule). Returns the import (tcc.onnx_import.Imported);
    `Model.load(out, weights=weights_out)` takes them."""
    import torch  # deferred for start-up: a build imports torch only after forking its TVM compile worker

    from .onnx_import import import_onnx as convert  # deferred for start-up: loads onnxruntime, onnxsim, torch

    out = check_output(out, (".yaml", ".yml"), "a spec is written as .yaml")
    weights_out = check_output(weights_out or out.with_suffix(".pt"), (".pt", ".pth"), "weights are written as .pt")
    for target in (out, weights_out):
        if target.exists() and not force:
            raise DataError(f"{target}: exists; pass force=True (--force) to replace it")
    imported = convert(path, size=size, mean=mean, std=std)
    atomic_write(weights_out, lambda f: torch.save(imported.state_dict, f))
    atomic_write(out, lambda f: f.write(imported.spec_text.encode("utf-8")))
    return imported
