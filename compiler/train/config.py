"""The options of one run, resolved from (lowest first) the defaults, the spec's `train:` section, a `--config FILE`
and the command line; written back as `RUN/config.yaml`, from which the run is reproducible:

    tcc train SPEC --config RUN/config.yaml -o RUN2      # the same run again

Paths in a file are relative to that file's folder (as a spec's imports are), on the command line to the working
directory. `set` (model parameter overrides) merges key by key. `--resume RUN` takes RUN/config.yaml as it is:
only the options that do not change the result (workers, device, process count) may differ.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import Location, SpecError, suggest
from ..spec.loader import as_overrides, load_document
from ..spec.schema import validate_train
from ..spec.train_options import (
    BY_NAME,
    CLASSIFIER_METRICS,
    DEFAULT_ALPHA,
    DEFAULT_LR,
    OPTIONS,
    SEGMENTER_METRICS,
    Option,
)
from ..spec.yamlpos import PosDict, load_file, parse_scalar, plain
from .layout import is_mask_folder

CONFIG_FILE = "config.yaml"
_HEADER = (
    "# tcc train: every option of this run, resolved (paths relative to this file). The same run again:\n"
    "#   tcc train SPEC --config config.yaml -o NEW_RUN\n"
)


@dataclass(frozen=True)
class Origin:
    """Where an option's value came from, for errors: `spec.yaml:12:10: train.alpha: ...`, `--alpha: ...`."""

    label: str
    where: Location | None = None


@dataclass
class Config:
    values: dict
    origins: dict = field(default_factory=dict)

    def __getattr__(self, name):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def error(self, name: str, message: str) -> SpecError:
        origin = self.origins.get(name, Origin(f"{name} (default)"))
        return SpecError(f"{origin.label}: {message}", origin.where)

    def result_options(self) -> dict:
        """The options that decide what the run computes (everything but workers, device, process count)."""
        return {o.name: self.values[o.name] for o in OPTIONS if not o.run_only}


Layer = dict  # option name -> (value, Origin)


def resolve(spec: str | Path, args, run: Path | None = None) -> Config:
    """The run's options. `run`: the RUN folder of `--resume`, whose config.yaml is the base."""
    given = [_config_file_layer(args.config), _command_line_layer(args)]
    if run is None:
        return _merge([_spec_layer(Path(spec)), *given])
    base = _file_layer(_read(run / CONFIG_FILE, "run config"), run / CONFIG_FILE, "")
    recorded, resumed = _merge([base]), _merge([base, *given])
    for name, value in recorded.result_options().items():
        if resumed.values[name] != value:
            raise resumed.error(
                name,
                f"--resume continues {run} with the options it was started with ({name}: "
                f"{value!r}); to change them, start a new run (--config {run / CONFIG_FILE} "
                f"and -o NEW_RUN)",
            )
    return resumed


def _merge(layers: list[Layer]) -> Config:
    values: dict[str, Any] = {o.name: o.default for o in OPTIONS}
    origins = {}
    for layer in layers:
        for name, (value, origin) in layer.items():
            values[name] = {**values["set"], **value} if name == "set" else value
            origins[name] = origin
    # Defaults that depend on other options, made concrete so config.yaml holds the values used.
    if values["lr"] is None:
        values["lr"] = DEFAULT_LR[values["optimizer"]]
    if values["alpha"] is None:
        values["alpha"] = DEFAULT_ALPHA.get(values["loss"])
    if values["metric"] is None:  # the task's: told by the data folder's layout
        segmenter = values["data"] is not None and is_mask_folder(values["data"])
        values["metric"] = SEGMENTER_METRICS[0] if segmenter else CLASSIFIER_METRICS[0]
    return Config(values, origins)


def _spec_layer(spec: Path) -> Layer:
    section = load_document(spec).get("train")  # checked by the spec's schema (file:line:col errors)
    return _file_layer(section, spec, "train.") if section is not None else {}


def _config_file_layer(path: str | None) -> Layer:
    return _file_layer(_read(Path(path), "config file"), Path(path), "") if path else {}


def _read(path: Path, what: str) -> PosDict:
    if not path.is_file():
        raise SpecError(f"no such {what}: {path}")
    doc = load_file(path)
    if not isinstance(doc, PosDict):
        raise SpecError(f"a {what} is a mapping of tcc train options", Location(str(path), 1, 1))
    validate_train(doc)
    return doc


def _file_layer(doc: PosDict, file: Path, prefix: str) -> Layer:
    base = file.parent
    layer = {}
    for name, value in doc.items():
        if (bad := _non_finite(plain(value))) is not None:
            raise SpecError(f"{prefix}{name}: {bad} is not a finite number", doc.where(name))
        if BY_NAME[name].path and value is not None:
            value = _absolute(base, value)
        layer[name] = (plain(value), Origin(prefix + name, doc.where(name)))
    return layer


def _non_finite(value) -> float | None:
    """The first NaN or infinity in an option's value (YAML's .nan, .inf): no option takes one, and NaN passes every
    bound of the option schemas (each comparison with it is false): `val_fraction: .nan` reached the split."""
    if isinstance(value, float) and not math.isfinite(value):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next((bad for bad in map(_non_finite, items) if bad is not None), None)


def _command_line_layer(args) -> Layer:
    layer = {}
    for option in OPTIONS:
        text = getattr(args, option.name, None) if option.name != "set" else None
        if text is not None:
            layer[option.name] = (_flag_value(option, text), Origin(option.flag))
    if getattr(args, "overrides", None):
        layer["set"] = (as_overrides(args.overrides), Origin("--set"))
    return layer


def _flag_value(option: Option, text):
    """A flag's text read as its option's value (YAML rules, `--augment` a comma list), checked by its schema."""
    if isinstance(text, bool):  # --by-order / --no-by-order
        return text
    if isinstance(text, str):
        try:
            value = option.parse(text) if option.parse else parse_scalar(text, option.flag)
        except SpecError:
            raise SpecError(f"{option.flag}: cannot read {text!r}") from None
    else:  # the Python API's value (tcc.api.commands.train_model), checked as the flag's
        value = list(text) if isinstance(text, tuple) else str(text) if isinstance(text, Path) else text
    if (bad := _non_finite(value)) is not None:
        raise SpecError(f"{option.flag} {text}: {bad} is not a finite number")
    error = next(iter(jsonschema.Draft202012Validator(option.schema).iter_errors(value)), None)
    if error is not None:
        choices = option.schema.get("enum") or option.schema.get("items", {}).get("enum", [])
        hint = suggest(text, choices) if choices else ""
        raise SpecError(f"{option.flag} {text}: {error.message}{hint}")
    if option.path and value is not None:
        value = _absolute(Path.cwd(), value)
    return value


def _absolute(base: Path, value) -> str:
    return os.path.normpath(base.absolute() / str(value))


def render(config: Config, folder: Path) -> str:
    """config.yaml for a file in `folder`: every option in table order, paths relative to the folder."""
    values = {}
    for option in OPTIONS:
        value = config.values[option.name]
        if option.path and value is not None:
            value = os.path.relpath(value, folder.absolute())
        values[option.name] = value
    return _HEADER + yaml.safe_dump(values, sort_keys=False, default_flow_style=None, width=120)
