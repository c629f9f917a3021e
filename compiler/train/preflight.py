"""A run, planned: the options resolved, the spec loaded, the data found and everything a user can get wrong checked
(exit 2, a message naming the file, folder or option) before anything is trained or written."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import set_max_pixels
from ..errors import DataError, SpecError
from ..files import is_onnx_file
from ..lower.to_torch import to_torch
from ..lower.weights import fit_to_checkpoint, load_weights
from ..spec.loader import Spec, load_spec
from ..spec.train_options import AUGMENTATIONS, CLASSIFIER_METRICS, SEGMENTER_METRICS
from ..spec.zoo import resolve_spec
from .config import Config, resolve
from .data import Split, check_images, find_split, repeated_in_training
from .distributed import world_size
from .finetune import describe_reinitialised, frozen_nodes, head_nodes
from .imported import SPEC_FILE, WEIGHTS_FILE, ImportedOnnx, import_for_training
from .layout import is_mask_folder
from .masks import find_mask_split, segmenter_classes
from .precise_bn import momentum_lag
from .rundir import check_new_run, read_last


@dataclass
class Plan:
    spec: Path
    config: Config
    model: Spec
    split: Split
    run: Path
    world: int  # training processes
    module: torch.nn.Module  # the initial weights (seeded, a checkpoint's, or the resumed run's)
    resumed: dict | None  # last.pt of the run being resumed
    stop_after: int | None = None
    head: list[str] = field(default_factory=list)  # the classifier head's nodes (tcc.train.finetune)
    frozen: list[str] = field(default_factory=list)  # nodes --freeze keeps as they are
    imported: ImportedOnnx | None = None  # an ONNX file trained from (tcc.train.imported)

    @property
    def kept_spec(self) -> Path:
        """The spec the run keeps for --resume and `tcc build`: the given one, or the import's RUN/spec.yaml."""
        return self.run / SPEC_FILE if self.imported else self.spec

    def run_config(self, weights_in_run: bool = True) -> Config:
        """The options as the run records them: an imported model's weights are RUN/imported.pt (or, for torchrun's
        processes that import the ONNX file again, none)."""
        if not self.imported:
            return self.config
        weights = str(self.run / WEIGHTS_FILE) if weights_in_run else None
        return Config({**self.config.values, "weights": weights}, self.config.origins)


def prepare(args, log=lambda s: print(s, file=sys.stderr)) -> Plan:
    run, resuming = _run_folder(args)
    if resuming and is_onnx_file(args.spec):
        raise SpecError(f"--resume RUN continues with the spec the run keeps (RUN/{SPEC_FILE}); drop {args.spec}")
    resumed = read_last(run) if resuming else None
    if args.spec is None:
        if not resuming:
            raise SpecError("training needs a SPEC (or --resume RUN, which reads the spec from the run)")
        args.spec = _spec_of(run)
    imported = import_for_training(args) if is_onnx_file(args.spec) else None
    args.spec = str(resolve_spec(args.spec))  # a zoo model's name, as `tcc build` takes it: its spec file
    config = resolve(args.spec, args, run if resuming else None)
    model = fit_to_checkpoint(load_spec(args.spec, config.set), config.weights, config.by_order, config.key_map)
    if config.data is None:
        raise SpecError("no training data: pass --data DIR (or data: in the spec's train: section or --config)")
    segment = is_mask_folder(Path(config.data))
    split = (find_mask_split if segment else find_split)(Path(config.data), config.val_fraction, config.seed)
    _resolve_metric(config, split)
    if config.max_pixels is not None:
        set_max_pixels(config.max_pixels)  # the DataLoader's workers, forked later, inherit it
    check_images(split.train + split.val)
    _warn_repeats(split, log)
    if segment:
        model, split = segmenter_classes(model, split)
    model = _fit_classes(model, config, split.classes)
    for note in model.notes:
        log(f"note: {note}")
    world = world_size(config.nproc)
    config.values["nproc"] = world  # recorded as run (torchrun's count when it started us)
    _check_model(model, split, log, imported.onnx if imported else model.path)
    _check_options(config, model, split, world)
    head = head_nodes(model.graph, config.head, lambda message: config.error("head", message))
    frozen = frozen_nodes(model.graph, config.freeze, head, lambda message: config.error("freeze", message))
    stop_after = _stop_after(args.stop_after, config.epochs)
    if resumed is not None:
        _check_resumable(resumed, model, split.classes, run)
    module = _initial_module(model, config, resumed, head, log)
    _note_batchnorm_lag(module, config, len(split.train), log)
    if frozen:
        trainable = [n for n in model.graph.nodes.values() if n.params and n.name not in frozen]
        log(
            f"freeze: {len(frozen)} of {len(frozen) + len(trainable)} nodes with parameters kept as they are "
            f"({', '.join(config.freeze)}); training {len(trainable)}: "
            + ", ".join(n.name for n in trainable[:6])
            + (", ..." if len(trainable) > 6 else "")
        )
    return Plan(Path(args.spec), config, model, split, run, world, module, resumed, stop_after, head, frozen, imported)


def _warn_repeats(split: Split, log) -> None:
    """A validation image that is also a training image flatters the validation metric and best.pt's choice: said
    before training, with an example."""
    repeats = repeated_in_training(split)
    if repeats:
        val, train = repeats[0]
        log(
            f"warning: {len(repeats)} of the {len(split.val)} validation images are byte for byte training images "
            f"(e.g. {val} = {train}): the validation metric is partly a training metric; remove the copies, or give "
            "DIR/train and DIR/val"
        )


def _resolve_metric(c: Config, split: Split) -> None:
    """The metric that picks best.pt must score this task (the default, the data layout's, does)."""
    other = CLASSIFIER_METRICS if split.segment else SEGMENTER_METRICS
    if c.metric in other:
        what = "image / mask pairs (a segmenter)" if split.segment else "class folders (a classifier)"
        mine = (*(SEGMENTER_METRICS if split.segment else CLASSIFIER_METRICS), "val_loss")
        raise c.error("metric", f"{c.metric} does not score {what}; choose from {', '.join(mine)}")


def _fit_classes(model: Spec, c: Config, classes: list[str]) -> Spec:
    """Fine-tuning to another class count: with --weights, the data's classes decide num_classes (unless --set
    gives it); the checkpoint's head of another width is then re-initialised when the weights load."""
    k = len(classes)
    if not c.weights or "num_classes" not in model.params or "num_classes" in c.set or model.params["num_classes"] == k:
        return model
    fitted = load_spec(model.path, {**model.overrides, "num_classes": k})
    fitted.notes = (
        [n for n in model.notes if not n.startswith("num_classes=")]
        + fitted.notes
        + [
            f"num_classes={k}: the data's {k} classes ({', '.join(classes)}); the checkpoint's classifier is for "
            f"{model.params['num_classes']}"
        ]
    )
    return fitted


def _note_batchnorm_lag(module: torch.nn.Module, c: Config, train_images: int, log) -> None:
    """Say when BatchNorm's running averages cannot keep up with the weights (a slow momentum, few steps)."""
    steps = math.ceil(train_images / c.batch_size)
    lag = momentum_lag(module, steps)
    if lag is None:
        return
    momentum, window = lag
    said = (
        f"BatchNorm momentum {momentum:g} averages its running statistics over ~{window} steps, more than an "
        f"epoch's {steps}: they trail the weights"
    )
    if c.precise_bn:
        log(
            f"note: {said}; precise BN recomputes them over up to {c.precise_bn} training batches before each "
            "validation and checkpoint"
        )
    else:
        log(
            f"warning: {said}, and --precise-bn 0 keeps them: validation and best.pt see stale statistics "
            "(drop --precise-bn 0)"
        )


def _spec_of(run: Path) -> str:
    """The spec file a run was started from (RUN/log.json), for `tcc train --resume RUN` without SPEC."""
    try:
        logged = json.loads((run / "log.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DataError(
            f"{run}: no readable log.json to read the spec from; give it: tcc train SPEC --resume {run}"
        ) from None
    spec = logged.get("spec_file") or logged.get("spec")
    if not spec or not Path(spec).is_file():
        raise DataError(f"{run}: its spec {spec!r} is no longer there; give it: tcc train SPEC --resume {run}")
    return spec


def _run_folder(args) -> tuple[Path, bool]:
    if args.resume:
        if args.output and Path(args.output) != Path(args.resume):
            raise SpecError("--resume RUN continues RUN in place; drop -o")
        return Path(args.resume), True
    if not args.output:
        raise SpecError("no run folder: give -o RUN (the folder to write) or --resume RUN")
    check_new_run(Path(args.output), args.force)
    return Path(args.output), False


def _check_model(model: Spec, split: Split, log, source: Path) -> None:
    """The model takes images and gives one score per class folder (its auxiliary heads too); `source` names it in
    the errors (the spec, or the ONNX file it was imported from)."""
    g, k = model.graph, len(split.classes)
    if model.preprocess.color is None:
        raise DataError(f"{source}: the model's input is not an image (no color order); tcc train reads images")
    heads = {"output": g.main_output, **{f"auxiliary output '{n}'": r for n, r in g.aux_outputs.items()}}
    expected = [k, *model.input_shape[1:]] if split.segment else [k]  # a segmenter: a class score per pixel
    for what, ref in heads.items():
        shape = list(g.shape(ref))
        if shape != expected:
            hint = (
                f"; pass --set num_classes={k}"
                if "num_classes" in model.params
                else "; `tcc import` it and give its classifier the data's class count"
                if is_onnx_file(source)
                else ""
            )
            holds = (
                f"image / mask pairs of {k} classes for [{k}, H, W] at the input's size"
                if split.segment
                else f"{k} classes"
            )
            raise DataError(
                f"{source}: the model's {what} has shape {shape} but {split.root} holds {holds} "
                f"({', '.join(split.classes)}){hint}"
            )
    if g.nodes[g.main_output.node].op == "softmax":
        raise DataError(
            f"{source}: the model ends in a softmax; the losses take the scores before it (remove "
            "the final softmax layer: the predicted class stays the same)"
        )
    if model.labels and model.labels != split.classes:
        log(
            f"note: the spec's labels ({', '.join(model.labels)}) are not the class folders "
            f"({', '.join(split.classes)}); output i is trained on the i-th class folder"
        )


def _check_options(c: Config, model: Spec, split: Split, world: int) -> None:
    """What the option schema cannot know: the number of classes, the input shape, the process count."""
    k, names = len(split.classes), ", ".join(split.classes)
    if c.loss == "ce" and c.alpha is not None:
        raise c.error("alpha", "alpha weighs the classes of focal and attloss; ce takes class_weights")
    if c.loss != "ce" and c.class_weights is not None:
        raise c.error("class_weights", f"class_weights are for ce; {c.loss} weighs the classes by alpha")
    for name in ("alpha", "class_weights"):
        if isinstance(c.values[name], list) and len(c.values[name]) != k:
            raise c.error(name, f"{len(c.values[name])} weights for {k} classes ({names})")
    if c.loss == "focal" and not isinstance(c.alpha, list) and not 0 < c.alpha < 1:
        raise c.error(
            "alpha",
            f"focal alpha weighs the positive classes and 1 - alpha class 0, so it lies in "
            f"(0, 1); got {c.alpha} (a list gives each class its own weight)",
        )
    if c.loss == "attloss" and c.gamma == 0:
        raise c.error("gamma", "attloss needs gamma > 0 (its factor 1 - p^gamma is 0 at gamma = 0)")
    _, h, w = model.input_shape
    if "rot90" in c.augment and h != w:
        raise c.error(
            "augment", f"rot90 needs a square input, the model's is {h}x{w} (choose from {', '.join(AUGMENTATIONS)})"
        )
    if c.batch_size % world:
        raise c.error(
            "batch_size",
            f"{c.batch_size} does not split evenly over {world} processes (the batch size is the global batch)",
        )
    if c.batch_size > len(split.train):
        raise c.error("batch_size", f"{c.batch_size} is more than the {len(split.train)} training images")


def _stop_after(stop_after: int | None, epochs: int) -> int | None:
    if stop_after is not None and not 1 <= stop_after <= epochs:
        raise SpecError(f"--stop-after {stop_after}: an epoch from 1 to {epochs}")
    return stop_after


def model_fingerprint(model: Spec) -> str:
    """sha256 of what training depends on in a spec: the graph (nodes, ops, arguments, shapes, heads) and the
    preprocessing; not the text (a spec's train: section may change: --resume takes the run's own options)."""
    g = model.graph
    nodes = [(n.name, n.op, [str(r) for r in n.inputs], n.attrs, n.shapes) for n in g.nodes.values()]
    heads = [str(g.output), {k: str(r) for k, r in g.aux_outputs.items()}]
    text = json.dumps([nodes, heads, model.preprocess.to_json()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_resumable(state: dict, model: Spec, classes: list[str], run: Path) -> None:
    if state["model_sha256"] != model_fingerprint(model):
        raise DataError(
            f"{run}: trained from another model than {model.path} (its layers, parameters or "
            "preprocessing differ); resume with the spec and model parameters the run started with"
        )
    if list(state["classes"]) != classes:
        raise DataError(f"{run}: trained on the classes {list(state['classes'])}, the data now has {classes}")


def _initial_module(model: Spec, c: Config, resumed: dict | None, head: list[str], log) -> torch.nn.Module:
    """The lowered model (train-mode outputs: main and auxiliary heads) with PyTorch's default initialization
    drawn under the seed, then the resumed run's or the checkpoint's weights (a head of another width keeps the
    seeded initialization)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.seed)
        module = to_torch(model.graph)
    if resumed is not None:
        module.load_state_dict(resumed["model"])
    elif c.weights:
        match = load_weights(
            module, model.graph, c.weights, c.by_order, c.key_map, layouts=model.checkpoints, fresh=frozenset(head)
        )
        log(f"weights: {match.report()}")
        if match.reinitialised:
            log(
                f"head: re-initialised (seed {c.seed}) where the checkpoint's width differs: "
                + describe_reinitialised(match.reinitialised)
            )
    return module
