"""An error message as a Python caller reads it: the command line's flags written as the API's keywords.

tcc's layers below the command line are shared by the CLI and the Python API (tcc.api), and their messages name
what a user gave as command-line flags ("--calib-size 0: ..."). A Python caller gave keywords, so `str()` of a
TccError says `calib_size=0: ...` while `TccError.for_cli()` keeps the flags: each message is written once, and
this table is the one place that knows how a flag is said in Python. A flag inside a command to run (`tcc calibrate
... --target ort`, in backticks or after "tcc COMMAND") stays as it is: a command line is quoted, not translated.

tests/test_python_wording.py holds the table to the parser (every flag a real one, every listed word one of its
choices), to the API (every keyword one it takes) and to the code (every flag a raised message names is here).
"""

from __future__ import annotations

import re

# flag -> its Python form: "{}" is where the value the message gives after the flag goes (none given: "name=" for a
# plain keyword, "..." in other forms); a form without "{}" takes no value ("force=True"); None: the command line's own,
# with no Python keyword (left as is)
FORMS: dict[str, str | None] = {
    # the model (Model.load, train_model, tcc.diff's model=)
    "--weights": "weights={}",
    "--by-order": "by_order=True",
    "--no-by-order": "by_order=False",
    "--key-map": "key_map={}",
    "--seed": "seed={}",
    "--set": "{}",  # KEY=VALUE: a model parameter is a keyword of Model.load (train_model: overrides=)
    "--spec": "model=Model.load({})",
    "--size": "size=({}, {})",
    # INT8 (Model.calibrate, Model.build and its calib_options, Model.qat)
    "--target": "target={}",
    "--precision": "precision={}",
    "--calib": "calib={}",
    "--data": "data={}",
    "--calib-size": "calib_size={}",
    "--method": "method={}",
    "--activation-bits": "activation_bits={}",
    "--skip-bad": "skip_bad=True",
    "--asymmetric": "asymmetric=True",
    "--no-asymmetric": "asymmetric=False",
    "--equalization": "equalization=True",
    "--no-equalization": "equalization=False",
    "--bias-correction": "bias_correction=True",
    "--no-bias-correction": "bias_correction=False",
    "--rounding": "rounding=True",
    "--no-rounding": "rounding=False",
    "--rounding-budget": "rounding_budget={}",
    "--choice-budget": "choice_budget={}",
    "--min-cos": "min_cos={}",  # tcc.quant.place.placer.PlaceOptions' fields, as placement=PlaceOptions(...)
    "--min-worst-cos": "min_worst_cos={}",
    "--speed": "speed={}",
    "--keep-float": "keep_float={}",
    "--place-samples": "samples={}",
    "--fidelity-floor": "floor=FidelityFloor(cosine={})",
    "--require-cos": "floor=FidelityFloor(cosine={}, required=True)",
    "--threads": "threads={}",
    "--batch-size": "batch_size={}",
    "--progress": "progress=True",
    "--no-progress": "progress=False",
    "--force": "force=True",
    # quantization-aware training (Model.qat)
    "--epochs": "epochs={}",
    "--lr": "lr={}",
    "--bias-lr": "bias_lr={}",
    "--scale-lr": "scale_lr={}",
    "--feature-weight": "feature_weight={}",
    "--label-weight": "label_weight={}",
    "--augment": "augment={}",
    # training (train_model; its options by their names)
    "-o": "output={}",
    "--output": "output={}",
    "--resume": "resume={}",
    "--config": "config={}",
    "--stop-after": "stop_after={}",
    "--device": "device={}",
    "--nproc": "nproc={}",
    "--precise-bn": "precise_bn={}",
    "--val-fraction": "val_fraction={}",
    "--optimizer": "optimizer={}",
    "--momentum": "momentum={}",
    "--weight-decay": "weight_decay={}",
    "--schedule": "schedule={}",
    "--step-every": "step_every={}",
    "--step-factor": "step_factor={}",
    "--loss": "loss={}",
    "--alpha": "alpha={}",
    "--gamma": "gamma={}",
    "--class-weights": "class_weights={}",
    "--aux-weight": "aux_weight={}",
    "--dice-weight": "dice_weight={}",
    "--metric": "metric={}",
    "--head": "head={}",
    "--freeze": "freeze={}",
    "--num-workers": "num_workers={}",
    # slides (Model.slide's options)
    "--max-pixels": "max_pixels={}",
    "--patch-size": "patch_size={}",
    "--positive-class": "positive={}",
    "--mask-level": "mask_level={}",
    "--dask": "dask=True",
    "--scheduler": "scheduler={}",
    "--workers": "workers={}",
    "--segment": "segment=True",
    "--level": "level={}",
    "--margin": "margin={}",
    "--every-tile": "every_tile=True",
    # explanations (Model.explain, Model.tsne)
    "--class": "target={}",
    "--layer": "layer={}",
    "--perplexity": "perplexity={}",
    # reports (tcc.report)
    "--bundles": "bundles={}",
    "--rounds": "rounds={}",
    "--runs": "runs={}",
    # the command line's own: what they ask for, a Python caller does with the return value
    "--docs": None,
    "--masks": None,
    "--help": None,
}

# bare words messages give as a flag's value (others are taken only when they look like values: numbers, quoted
# text, PLACEHOLDERS, paths, key=value); each is one of the flag's choices (the test checks)
WORDS: dict[str, tuple[str, ...]] = {
    "--target": (
        *("ort", "onnx", "host", "arm-a7", "arm-a53", "arm-a55", "aarch64", "aarch64-dotprod"),
        *("tflite", "tflite-int", "tflite16-i32", "ax620", "ax620e", "ax650", "tvm", "pulsar2"),
    ),
    "--precision": ("fp32", "fp16", "int8", "dynamic"),
    "--device": ("cpu", "cuda"),
    "--augment": ("flip", "dihedral"),
    "--speed": ("ort",),
}

_FLAG = re.compile(r"(?<![\w-])(--?[a-z][a-z0-9-]*)")
# a command quoted to run: in backticks, or "tcc COMMAND ..." up to the end of its clause
COMMAND = re.compile(r"`[^`]*`|\btcc [a-z][a-z-]*(?: [^;()`]*)?")
_VALUE = re.compile(
    r"""'[^']*'|"[^"]*"|\[[^\]]*\]"""  # quoted text, a list
    r"|-?\d(?:[\d.,_e+-]*\d)?"  # a number
    r"|[A-Z][A-Z0-9_]*(?:[.|][\w.]+)*(?![a-z])"  # a placeholder: DIR, NEW_RUN, DIR|FILE.npy
    r"|[\w.-]+=(?:\S*[^\s;,)])?"  # key=value
    r"|[\w-]+\.(?:json|npy|npz|pt|pth|yaml|yml|onnx|tflite|png|tiff?)\b"  # a file name
    r"|[\w.~:-]+/[^\s;,)]*|/[^\s;,)]+"  # a path, an address
)
_WORD = re.compile(r"[\w-]+(?:\|[\w-]+)*")


def python_wording(text: str) -> str:
    """`text` with each flag of FORMS written in its Python form, commands to run left as they are."""
    out, last = [], 0
    for command in COMMAND.finditer(text):
        out.append(_translate(text[last : command.start()]))
        out.append(command.group())
        last = command.end()
    out.append(_translate(text[last:]))
    return "".join(out)


def _translate(text: str) -> str:
    out: list[str] = []
    pos = 0
    for flag in _FLAG.finditer(text):
        form = FORMS.get(flag.group(1))
        if flag.start() < pos or form is None:
            continue
        values, end = _values(text, flag.end(), flag.group(1), form.count("{}"))
        gap = text[pos : flag.start()]
        if gap == " " and out:  # flags in a row: keywords in a row
            gap = ", "
        out += [gap, form.format(*values) if values else _unvalued(form)]
        pos = end
    return "".join(out) + text[pos:]


def _unvalued(form: str) -> str:
    """A form whose value the message does not give: "pass weights=", or the form with "..."."""
    return form[:-2] if re.fullmatch(r"\w+=\{\}", form) else form.replace("{}", "...")


def _values(text: str, at: int, flag: str, count: int) -> tuple[list[str], int]:
    """The `count` values the text gives after the flag ending at `at`, and where they end; none where it gives
    fewer (then "..." stands for them)."""
    values: list[str] = []
    end = at
    while len(values) < count and text.startswith(" ", end):
        value, length = _value(text, end + 1, flag)
        if value is None:
            break
        values.append(value)
        end += 1 + length
    return (values, end) if len(values) == count else ([], at)


def _value(text: str, at: int, flag: str) -> tuple[str | None, int]:
    if flag == "--set":  # KEY=VALUE as the keyword it is; "--set KEY:" names the keyword
        pair = re.compile(r"[\w.]+=(?:\S*[^\s;,)])?|[\w.]+(?=:)").match(text, at)
        return (pair.group(), len(pair.group())) if pair else (None, 0)
    word = _WORD.match(text, at)
    if word and set(word.group().split("|")) <= set(WORDS.get(flag, ())):  # a choice: a Python string
        return " or ".join(repr(w) for w in word.group().split("|")), len(word.group())
    value = _VALUE.match(text, at)
    return (value.group().replace("|", " or "), len(value.group())) if value else (None, 0)
