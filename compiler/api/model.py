"""A model to compile, from a spec, a zoo name or an ONNX file: its lowerings, predictions, calibration, builds and
quantization-aware training."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from ..build import build as build_bundle
from ..build import build_settings
from ..bundle import sha256_file
from ..dense import class_masks
from ..errors import DataError
from ..files import check_replaceable_folder, is_onnx_file
from ..frontend import Weights, lower_spec, reference_module
from ..keywords import with_keywords
from ..quant.calibrate import calibrate as calibrate_spec
from ..quant.collect.data import load_calibration_data
from ..quant.settings import CalibrationRequest, CalibrationSettings
from ..quant.table.file import CalibrationTable, load_table
from ..slide.infer import ModelSource
from ..spec.loader import Spec, load_spec
from ..train.qat.options import Options, QatSettings
from .bundle import Bundle, Images, Inputs, Log, as_batch, score_slides

if TYPE_CHECKING:
    import onnx

    from ..explain.gradcam import ImageExplanation
    from ..explain.tsne import Embedding
    from ..quant.collect.data import CalibrationData
    from ..train.qat.distill import Result

Data = str | Path | np.ndarray  # calibration or training samples: an image folder, a .npy/.npz file or an array
Table = CalibrationTable | str | Path  # a calibration table, or its file


@dataclass
class Model:
    """A model to compile: a spec with its parameter values, and the weights to build it with (None: seeded random
    weights, said loudly in every bundle)."""

    loaded: Spec  # the spec as loaded, before the weights are looked at
    weights: Path | None = None
    by_order: bool = False
    key_map: Path | None = None
    seed: int = 0
    source: dict[str, Any] | None = (
        None  # an ONNX file imported in memory: its name and sha256 (every manifest records it)
    )
    _fitted: Spec | None = None
    _module: object = None  # the PyTorch lowering predict() runs, made once
    _workdir: object = None  # the imported spec and weights live here as long as the model does

    @classmethod
    def load(
        cls,
        spec: str | Path,
        weights: str | Path | None = None,
        *,
        by_order: bool = False,
        key_map: str | Path | None = None,
        seed: int = 0,
        **overrides: Any,
    ) -> Model:
        """`spec`: a spec file, a zoo model's name (`tcc zoo`) or an ONNX file (imported in memory, `tcc import`'s
        way: it carries its weights); `overrides`: model parameters (`--set`), e.g. num_classes=2; for an ONNX file,
        the import's options instead: size=[H, W] where its input is dynamic, mean=[...] and std=[...] of the
        preprocessing. A checkpoint whose classifier has another width than the spec's default sets num_classes
        itself where the spec declares its layout (`notes` says so)."""
        if is_onnx_file(spec):
            if weights or by_order or key_map:
                raise DataError(
                    f"{spec}: an ONNX file carries its weights: drop --weights / --by-order / "
                    "--key-map (or `tcc import` it and edit the spec)"
                )
            return cls._from_onnx(Path(spec), seed, overrides)
        return cls(
            load_spec(spec, overrides),
            Path(weights) if weights else None,
            by_order,
            Path(key_map) if key_map else None,
            seed,
        )

    @classmethod
    def _from_onnx(cls, path: Path, seed: int, overrides: dict[str, Any]) -> Model:
        # deferred for start-up: loads onnxruntime, onnxsim and torch (a build then compiles in its own process)
        from ..onnx_import import import_options, import_to_files, source_record

        options = import_options(overrides, path)  # checked before the folder is made
        workdir = tempfile.TemporaryDirectory(prefix="tcc-onnx-")
        spec_file, weights_file = import_to_files(path, workdir.name, **options)
        source = source_record(path.name, sha256_file(path), options)
        return cls(load_spec(spec_file), weights_file, False, None, seed, source, _workdir=workdir)

    @property
    def spec(self) -> Spec:
        """The spec fitted to the weights (graph, params, preprocessing, labels: tcc.spec.loader.Spec)."""
        if self._fitted is None and self.weights is None:
            self._fitted = self.loaded  # nothing to fit to (and torch stays unloaded for `tcc check`)
        if self._fitted is None:
            # deferred for start-up: loads torch, which a build imports only after forking its TVM compile worker
            from ..lower.weights import fit_to_checkpoint

            self._fitted = fit_to_checkpoint(self.loaded, self.weights, self.by_order, self.key_map)
        return self._fitted

    @property
    def notes(self) -> list[str]:
        """What the user should hear about the model: a class count read from the checkpoint, labels that do not
        fit."""
        return list(self.spec.notes)

    @property
    def weights_source(self) -> Weights:
        """The weights as the functions under the API take them (tcc.frontend.Weights)."""
        return Weights(self.weights, self.by_order, self.key_map, self.seed)

    # ------------------------------------------------------------------------------------------------ the spec
    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.spec.input_shape)

    @property
    def labels(self) -> list[str] | None:
        """The class names of the spec (or its checkpoint's), or None."""
        return self.spec.labels

    @property
    def classes(self) -> list[str] | None:
        """The class names (as `labels`; the name torchvision's and timm's users look for), or None."""
        return self.labels

    @property
    def num_classes(self) -> int:
        """The width of the model's output (its last axis), with the weights' class count where they set it."""
        graph = self.spec.graph
        return int(graph.shape(graph.main_output)[-1])

    def summary(self) -> dict[str, Any]:
        """Layers, parameters, MACs and sizes (`tcc check --json`): tcc.ir.Graph.summary of the fitted spec."""
        return self.spec.graph.summary()

    # ------------------------------------------------------------------------------------------------ lowerings
    def torch(self, log: Log = lambda s: None) -> Any:
        """The inference-only PyTorch lowering with the weights, in eval mode (a torch.fx.GraphModule); `log`
        hears how the checkpoint's tensors were matched."""
        w = self.weights_source
        module, _ = reference_module(self.spec, w.file, w.by_order, w.key_map, w.seed, log)
        return module

    def onnx(self, opset: int = 13, simplify: bool = True) -> onnx.ModelProto:
        """The ONNX graph every build starts from: the lowering at `opset` after tcc's fold / fuse passes."""
        return lower_spec(self.spec, weights=self.weights_source, opset=opset, simplify=simplify).onnx

    def predict(self, x: Inputs, log: Log = lambda s: None) -> np.ndarray:
        """Logits of the PyTorch lowering (float32, [N, classes]): `x` an image file, a PIL image or uint8 pixels
        [H, W, C] / [N, H, W, C] (through the spec's preprocessing), a .npy file, or a float array that is the
        model's input, [C, H, W] / [N, C, H, W]."""
        import torch  # deferred for start-up: a build imports torch only after forking its TVM compile worker

        batch = as_batch(x, self.spec.preprocess, self.input_shape)
        with torch.no_grad():
            logits: np.ndarray = self._reference(log)(torch.from_numpy(batch)).numpy()
        return logits

    def segment(self, x: Inputs, log: Log = lambda s: None) -> np.ndarray:
        """A segmentation model's masks: the class of every pixel of its dense output, int64 [N, H, W] at the
        output's resolution (tcc.dense.class_masks: the argmax over classes, or a single logit above 0;
        `tcc predict` writes them as PNGs at the image's size). A classifier's output is refused (DataError)."""
        return class_masks(self.predict(x, log))

    def _reference(self, log: Log) -> Any:
        if self._module is None:  # a notebook's loop of predictions or explanations reads the checkpoint once
            self._module = self.torch(log)
        return self._module

    # ------------------------------------------------------------------------------------------------ explanations
    def explain(
        self, image: str | Path, *, layer: str | None = None, target: int | str | None = None, log: Log = lambda s: None
    ) -> ImageExplanation:
        """Grad-CAM of one image file (`tcc explain --image`) at `layer` (a name as `tcc check` prints it; default:
        the last spatial conv, concat or add) for class `target` (an index or a label; default: the predicted one).
        Returns tcc.explain.gradcam.ImageExplanation (.gradcam.cam the map, .layer, .pixels, .peak_in_image());
        tcc.explain.plot.gradcam_figure draws it."""
        from ..explain.gradcam import explain_image  # deferred for start-up: loads torch

        chosen = None if target is None else str(target)  # an index or a label, as `tcc explain --class` reads it
        return explain_image(self.spec, self._reference(log), image, layer, chosen)

    def tsne(
        self,
        folder: str | Path,
        *,
        layer: str | None = None,
        perplexity: float | None = None,
        progress: bool = False,
        log: Log = lambda s: None,
    ) -> Embedding:
        """t-SNE of every image in `folder` (`tcc explain --tsne`; class subfolders give the colours) at `layer`
        (default: the classifier's input), seeded by the model's seed. Returns tcc.explain.tsne.Embedding
        (.points, .classes, .files; .to_json(labels)); tcc.explain.plot.tsne_figure draws it."""
        from ..explain.tsne import embed_folder  # deferred for start-up: loads torch

        return embed_folder(self.spec, self._reference(log), folder, layer, perplexity, self.seed, progress)

    # ------------------------------------------------------------------------------------------------ slides
    def slide(
        self, images: Images, out: str | Path = "out/slide", *, log: Log = lambda s: None, **options: Any
    ) -> list:
        """FastNet's tumour heat map of whole slides or large images (`tcc slide`): `images` files or folders;
        `options` tcc.slide.options.Options' fields (patch_size, batch_size, positive, mask_level, max_pixels,
        dask, scheduler, workers, threads, progress). Writes OUT/heatmap.png, mask.png, patches.json (OUT/NAME/...
        for several images); returns [(patches.json's document, its folder)] per image. With segment=True (and
        level, margin, every_tile) a segmenter's mask of every pixel instead (`tcc slide --segment`):
        OUT/segmentation.tiff, .png, overlay.png and segmentation.json, whose document is returned."""
        source = ModelSource.create(
            spec=self.loaded.path,
            overrides=self.loaded.overrides,
            weights=self.weights,
            by_order=self.by_order,
            key_map=self.key_map,
            seed=self.seed,
        )
        return score_slides(source, images, out, log, options)

    # ------------------------------------------------------------------------------------------------ INT8, bundles
    @overload
    def calibrate(
        self,
        data: Data,
        *,
        opset: int = ...,
        return_inputs: Literal[False] = ...,
        log: Callable[[str], None] = ...,
        **options: Any,
    ) -> CalibrationTable: ...

    @overload
    def calibrate(
        self,
        data: Data,
        *,
        opset: int = ...,
        return_inputs: Literal[True],
        log: Callable[[str], None] = ...,
        **options: Any,
    ) -> tuple[CalibrationTable, Any, np.ndarray]: ...

    def calibrate(
        self,
        data: Data,
        *,
        opset: int = 13,
        return_inputs: bool = False,
        log: Callable[[str], None] = lambda s: None,
        **options: Any,
    ) -> CalibrationTable | tuple[CalibrationTable, Any, np.ndarray]:
        """The INT8 calibration table for a target's rules (`tcc calibrate`): `data` an image folder, a .npy/.npz file
        or an array [N, C, H, W]. `options`: tcc.quant.settings.CalibrationRequest's fields and its settings'
        (target="ort", method (default: the spec's `calibrate:` method, else "auto"), calib_size=128, skip_bad,
        progress, percentile, cos_steps, cos_rounds, activation_bits, steps, placement, step_switches={"equalization":
        ..., "bias_correction": ..., "rounding": ..., "asymmetric": ...}: over the spec's `calibrate:` section, ...).
        `table.save(path)` writes it for `tcc build --calib`. `return_inputs`: (table, the FP32 graph, the samples)
        instead."""
        defaults = CalibrationRequest(CalibrationSettings(progress=False))
        request = with_keywords(defaults, options, "calibrate")
        made = calibrate_spec(self.spec, data, request, weights=self.weights_source, opset=opset, log=log)
        return (made.table, made.fp32, made.samples) if return_inputs else made.table

    def build(
        self,
        target: str,
        *,
        precision: str | None = None,
        out: str | Path | None = None,
        calib: CalibrationTable | str | Path | None = None,
        data: Data | None = None,
        force: bool = False,
        log: Callable[[str], None] = lambda s: None,
        **options: Any,
    ) -> Bundle:
        """A self-checked bundle for `target` at `out` (default out/NAME-TARGET[-PRECISION]), written atomically
        (`tcc build`). INT8 takes a table (`calib`: one from `calibrate` or a file) or calibrates now on `data`.
        `options`: tcc.build.BuildSettings' fields and those of the records it holds (opset, simplify, io, tune,
        tune_log, count_instructions, host_twin, allow_cpu_fallback, npu_mode, ...), and `calib_options`, the
        calibration's (CalibrationRequest's and its settings': method, calib_size, activation_bits, ...)."""
        out = Path(out or f"out/{self.name}-{target}" + (f"-{precision}" if precision else ""))
        if "calib_options" in options:  # the calibration's keywords, under the name this API has always taken
            options["calibration"] = options.pop("calib_options") or {}
        with tempfile.TemporaryDirectory(prefix="tcc-table-") as tmp:
            if isinstance(calib, CalibrationTable):  # as a file, named as `tcc calibrate` users name theirs
                calib = calib.save(Path(tmp) / "calibration.json")
            settings = build_settings(
                target,
                precision=precision,
                weights=self.weights_source,
                calib=calib,
                data=data,
                source=self.source,
                **options,
            )
            # the spec as loaded: the build fits it to the weights (and says so through `log`) after it has started
            # its compile worker
            result = build_bundle(self.loaded, settings, out, force=force, log=log)
        return Bundle(result.out, result.manifest, result.report, result.seconds)

    @overload  # (force, log and the options as below)
    def qat(
        self, data: Data, calib: Table, out: str | Path, *, check_only: Literal[False] = ..., **kw: Any
    ) -> Result: ...
    @overload  # check_only: nothing trained
    def qat(self, data: Data, calib: Table, out: str | Path, *, check_only: Literal[True], **kw: Any) -> None: ...

    def qat(
        self,
        data: Data,
        calib: CalibrationTable | str | Path,
        out: str | Path,
        *,
        force: bool = False,
        check_only: bool = False,
        log: Callable[[str], None] = lambda s: None,
        **options: Any,
    ) -> Result | None:
        """Quantization-aware fine-tuning (`tcc qat`): the model fake-quantized as the table's integer graph
        quantizes it, distilled from its own FP32 model (logits and every quantized tensor) on `data` (unlabelled:
        an image folder, a .npy/.npz file or an array; with `label_weight`, DATA/<class>/image folders whose labels
        add a cross-entropy term); the folded layers and the activation scales (LSQ) train. `options`:
        tcc.train.qat.options.QatSettings' fields and its training options' (epochs=20, lr=0.01, bias_lr,
        scale_lr, feature_weight, label_weight, batch_size, augment, calib_size, held_out, skip_bad, opset);
        `held_out` (samples neither calibration nor training saw) judges the INT8 model before and after against
        the given FP32 model, recorded in the table's and the log's `int8_cosine.held_out`.
        Writes OUT/weights.pt, OUT/calib.json (the table for those weights) and OUT/log.json (and, for a model
        imported from an ONNX file, OUT/NAME.yaml, the spec those weights are for); returns
        tcc.train.qat.distill.Result (.weights, .table, .log). Then
        `Model.load(spec, weights=result.weights).build(target, precision="int8", calib=result.table)`.
        `check_only`: the options, the output folder and the table checked, nothing trained (returns None)."""
        settings = with_keywords(QatSettings(Options(seed=self.seed)), options, "qat")
        if self.weights is None:
            what = f"{self.name}: quantization-aware training fine-tunes trained weights"
            raise DataError(f"{what}; load the model with weights=", cli=f"{what}; pass --weights")
        out = Path(out)
        check_replaceable_folder(out, force)
        table = calib if isinstance(calib, CalibrationTable) else load_table(calib)
        spec = self.spec
        settings.options.check(None, tuple(spec.input_shape))
        if check_only:
            return None
        return self._quantization_aware(data, table, out, settings, log)

    def _quantization_aware(
        self, data: Data, table: CalibrationTable, out: Path, settings: QatSettings, log: Log
    ) -> Result:
        from ..train.qat.distill import QatSamples, QatSource, quantization_aware  # deferred for start-up: loads torch

        spec = self.spec
        samples = load_calibration_data(
            data, spec.preprocess, spec.input_shape, settings.calib_size, self.seed, settings.skip_bad, what="training"
        )
        labels = _folder_labels(samples, spec, data) if settings.options.label_weight else None
        held_out = None
        if settings.held_out is not None:
            from ..quant.report.quality import HeldOut  # deferred for start-up: loads onnx

            judged = load_calibration_data(
                settings.held_out,
                spec.preprocess,
                spec.input_shape,
                None,
                self.seed,
                settings.skip_bad,
                what="held-out",
            )
            held_out = HeldOut(judged.array, str(judged.source), judged.fingerprint)
        # an ONNX file's weights come back by its imported spec's names: the spec goes beside them, by the name the
        # table's spec hash was made with (OUT/NAME.yaml)
        kept = {self.loaded.path.name: self.loaded.path.read_bytes()} if self.source else {}
        return quantization_aware(
            QatSource(spec, self.weights_source, settings.opset),
            table,
            QatSamples(samples.array, samples.fingerprint, labels, held_out),
            settings.options,
            out,
            kept=kept,
            log=log,
        )


def _folder_labels(samples: CalibrationData, spec: Spec, data: Data) -> np.ndarray:
    """A class index per sample from DATA/<class>/... (the class folders sorted by name: output i is the i-th)."""
    parts = [Path(f).parts for f in samples.files]
    if not parts or any(len(p) < 2 for p in parts):
        needs = "needs labelled images, DIR/<class>/image (one folder per class)"
        raise DataError(f"{data}: --label-weight {needs}")
    classes = sorted({p[0] for p in parts})
    assert spec.graph.output is not None  # a loaded spec has its output
    width = int(np.prod(spec.graph.shape(spec.graph.output)))
    if len(classes) != width:
        raise DataError(f"{data}: {len(classes)} class folders ({', '.join(classes)}) for a model of {width} outputs")
    return np.array([classes.index(p[0]) for p in parts], np.int64)
