"""Every option of `tcc train`, in one table: the `train:` section of a spec, a `--config FILE`, the command-line
flags, `RUN/config.yaml` and the JSON Schema of all four are derived from it.

Plain data (no torch), so the spec schema (`tcc.spec.schema`) can include the `train:` section's schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

AUGMENTATIONS = ("hflip", "vflip", "rot90")  # the order they are applied in, whatever order they are listed in
CLASSIFIER_METRICS = ("macro_f1", "accuracy", "macro_precision", "macro_recall")
SEGMENTER_METRICS = ("mean_iou", "mean_dice", "pixel_accuracy")
METRICS = (*CLASSIFIER_METRICS, *SEGMENTER_METRICS, "val_loss")
LOSSES = ("ce", "focal", "attloss")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
DEFAULT_LR = {"sgd": 0.01, "adam": 0.001}  # `lr: null`
DEFAULT_ALPHA = {"focal": 0.25, "attloss": 1.0}  # `alpha: null` (Lin et al.'s focal alpha; attloss: no reweighting)


def _number(**limits) -> dict:
    return {"type": "number", **limits}


def _int(minimum: int) -> dict:
    return {"type": "integer", "minimum": minimum}


def _or_null(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def _enum(choices) -> dict:
    return {"enum": list(choices)}


_POSITIVE = _number(exclusiveMinimum=0)
_WEIGHTS = {"type": "array", "items": _POSITIVE, "minItems": 2}


def _comma_list(text: str) -> list[str]:
    """`hflip,rot90` -> [hflip, rot90]; `none` (or nothing) -> []."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    return [] if items in ([], ["none"]) else items


_MODEL_PARAMS = {
    "type": "object",
    "additionalProperties": {"type": ["integer", "number", "boolean", "string", "array"]},
}


@dataclass(frozen=True)
class Option:
    name: str
    schema: dict  # JSON Schema of the value
    default: object
    help: str
    path: bool = False  # a file or folder: relative to the file that names it (the spec, the config file)
    run_only: bool = False  # how the run executes, not what it computes: may change on --resume
    parse: Callable[[str], object] | None = None  # command-line text -> value (default: read as YAML)
    metavar: str | None = None  # default: the choices, N (integers), X (numbers), VALUE

    @property
    def flag_metavar(self) -> str:
        if self.metavar:
            return self.metavar
        if "enum" in self.schema:
            return "{" + ",".join(self.schema["enum"]) + "}"
        kind: str | None = self.schema.get("type")
        return {"integer": "N", "number": "X"}.get(kind or "", "VALUE")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option(
        "data",
        {"type": "string"},
        None,
        "image folder: one folder per class (sorted names are the labels), or train/ and val/ each holding the "
        "class folders; for a segmenter images/ and masks/ (class index per pixel; train/ and val/ may hold them)",
        path=True,
        metavar="DIR",
    ),
    Option(
        "val_fraction",
        _number(exclusiveMinimum=0, exclusiveMaximum=1),
        0.2,
        "share of each class held out for validation (seeded) when the data has no train/ and val/",
    ),
    Option("epochs", _int(1), 10, "epochs to train"),
    Option("batch_size", _int(1), 32, "global batch size: under torchrun it is split across the processes"),
    Option("optimizer", _enum(OPTIMIZERS), "sgd", "sgd (with momentum: DDSNet's) or adam (FastNet's)"),
    Option("lr", _or_null(_POSITIVE), None, "learning rate (default: 0.01 for sgd, 0.001 for adam)", metavar="X"),
    Option("momentum", _number(minimum=0, exclusiveMaximum=1), 0.9, "SGD momentum"),
    Option("weight_decay", _number(minimum=0), 0.0, "L2 weight decay"),
    Option("schedule", _enum(SCHEDULES), "cosine", "learning-rate schedule over the epochs (stepped once per epoch)"),
    Option("step_every", _int(1), 10, "step schedule: multiply the rate by step_factor every this many epochs"),
    Option("step_factor", _number(exclusiveMinimum=0, maximum=1), 0.1, "step schedule: the factor"),
    Option("loss", _enum(LOSSES), "ce", "ce (cross-entropy), focal (eq. 6 of FastNet) or attloss (FastNet's eq. 7)"),
    Option(
        "alpha",
        _or_null({"anyOf": [_POSITIVE, _WEIGHTS]}),
        None,
        "focal: weight of the positive classes (class 0 gets 1 - alpha; default 0.25); attloss: the alpha of "
        "alpha^y (default 1); or one weight per class",
        metavar="X|LIST",
    ),
    Option("gamma", _number(minimum=0), 2.0, "focal / attloss: the focusing exponent gamma"),
    Option(
        "class_weights",
        _or_null({"anyOf": [{"const": "auto"}, _WEIGHTS]}),
        None,
        "ce: one weight per class ([w0, w1, ...]), or auto (inverse class frequency of the training set)",
        metavar="auto|LIST",
    ),
    Option("aux_weight", _number(minimum=0), 0.3, "weight of each auxiliary head's loss (GoogLeNet-style heads)"),
    Option(
        "dice_weight",
        _number(minimum=0),
        1.0,
        "masks: weight of the soft Dice loss added to each sample's mean per-pixel loss (0: the per-pixel loss alone)",
    ),
    Option(
        "augment",
        {"type": "array", "items": _enum(AUGMENTATIONS), "uniqueItems": True},
        list(AUGMENTATIONS),
        "training augmentations: flips with probability 1/2, rot90 by 0, 90, 180 or 270 degrees (uniform); "
        "on the command line a comma-separated list or none",
        parse=_comma_list,
        metavar="LIST",
    ),
    Option(
        "metric",
        _or_null(_enum(METRICS)),
        None,
        "validation metric that picks best.pt (default: macro_f1 for a classifier, mean_iou for a segmenter)",
    ),
    Option("seed", _int(0), 0, "seed of the initial weights, the split, the sample order, augmentation and dropout"),
    Option(
        "weights",
        _or_null({"type": "string"}),
        None,
        "start from this checkpoint (a state_dict)",
        path=True,
        metavar="FILE",
    ),
    Option("by_order", {"type": "boolean"}, False, "match the checkpoint's tensors to the spec in order"),
    Option(
        "head",
        _or_null({"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True}),
        None,
        "the classifier head's nodes, re-initialised where --weights has another class count (default: "
        "found from the graph: the last weighted layers before the outputs)",
        parse=_comma_list,
        metavar="NODES",
    ),
    Option(
        "freeze",
        {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        [],
        "nodes to keep as they are (no gradient, BatchNorm statistics kept): node-name prefixes, or backbone "
        "(every node outside the head); on the command line a comma-separated list",
        parse=_comma_list,
        metavar="LIST",
    ),
    Option(
        "precise_bn",
        _int(0),
        200,
        "before each validation and checkpoint, recompute every BatchNorm layer's "
        "running statistics over up to N training batches (train mode, no gradients); 0: keep the running "
        "averages",
    ),
    Option(
        "key_map",
        _or_null({"type": "string"}),
        None,
        "YAML/JSON mapping of checkpoint keys to spec names",
        path=True,
        metavar="FILE",
    ),
    Option(
        "set", _MODEL_PARAMS, {}, "model parameter overrides (the command line's --set KEY=VALUE)", metavar="KEY=VALUE"
    ),
    Option(
        "max_pixels",
        _or_null(_int(1)),
        None,
        "refuse training images declaring more than N pixels, before "
        "decoding them (default: tcc's cap, 20,000 x 20,000)",
        run_only=True,
        metavar="N",
    ),
    Option(
        "num_workers",
        _int(0),
        0,
        "DataLoader worker processes per training process (0: load in the training process)",
        run_only=True,
    ),
    Option("device", _enum(("auto", "cpu", "cuda")), "auto", "auto: cuda when available, else cpu", run_only=True),
    Option(
        "nproc",
        _int(1),
        1,
        "processes to train with (tcc starts torchrun; the same result as one process)",
        run_only=True,
    ),
)
BY_NAME = {o.name: o for o in OPTIONS}


def train_schema() -> dict:
    """The JSON Schema of a `train:` section (and of a `--config` file): every option, nothing else."""
    return {
        "type": "object",
        "description": "options of `tcc train` (command-line flags override them)",
        "properties": {o.name: {**o.schema, "description": o.help} for o in OPTIONS},
        "additionalProperties": False,
    }
