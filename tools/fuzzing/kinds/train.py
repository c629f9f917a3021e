"""`train`: the options of `tcc train` where users write them: a spec's `train:` section, a `--config FILE`, a run's
own `config.yaml` under `--resume`, and the flags, mutated (values from each option's valid and invalid ranges, other
types, unknown keys, deleted keys, broken YAML), and the data folder's layout. Each case must fail fast or train the
tiny model: every command line ends in `--stop-after 1 --num-workers 0 --nproc 1` (flags outrank a file's values,
and a file's values are still checked), so a mutated `epochs: 1000000` trains one epoch, and the spec's image_size
has a maximum."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..mutate import NASTY, mutate_bytes, mutate_text, mutate_tree, pick, pick_weighted, show
from .common import TINY_SPEC, Case, Kind, image_folder, write_spec

SPEC_SECTION = {
    "data": "data",
    "epochs": 2,
    "batch_size": 2,
    "val_fraction": 0.34,
    "optimizer": "adam",
    "lr": 0.01,
    "schedule": "step",
    "step_every": 1,
    "loss": "focal",
    "alpha": 0.25,
    "augment": ["hflip", "rot90"],
    "metric": "accuracy",
    "precise_bn": 2,
}
CONFIG = {
    "data": "data",
    "val_fraction": 0.25,
    "epochs": 3,
    "batch_size": 2,
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 0.0001,
    "schedule": "cosine",
    "step_every": 1,
    "step_factor": 0.5,
    "loss": "ce",
    "alpha": None,
    "gamma": 2.0,
    "class_weights": [1.0, 2.0],
    "aux_weight": 0.3,
    "augment": ["hflip", "vflip"],
    "metric": "macro_f1",
    "seed": 3,
    "weights": None,
    "by_order": False,
    "head": None,
    "freeze": [],
    "precise_bn": 4,
    "key_map": None,
    "set": {"image_size": 16},
    "max_pixels": None,
    "num_workers": 0,
    "device": "cpu",
    "nproc": 1,
}
# Each option's values a user may write: valid ones (so that cases also train) and those just outside.
VALUES = {
    "data": ["data", "split", "missing", "tiny.yaml", ".", "data/normal", ""],
    "val_fraction": [0.5, 0.99, 0.01, 1, 0, -0.1, 2],
    "epochs": [1, 2, 10**6, 0, -3, 2.5],
    "batch_size": [1, 3, 4, 5, 100, 0],
    "optimizer": ["sgd", "adam", "Adam", "lbfgs"],
    "lr": [None, 1e-6, 10.0, 1e30, 0, -0.1],
    "momentum": [0, 0.5, 0.999, 1, -0.1],
    "weight_decay": [0, 1e-4, 1e6, -1],
    "schedule": ["constant", "step", "cosine", "linear"],
    "step_every": [1, 2, 10**9, 0],
    "step_factor": [0.5, 1, 1e-9, 0, 2],
    "loss": ["ce", "focal", "attloss", "mse"],
    "alpha": [None, 0.25, 0.5, 0.99, 1, 2, [1, 1], [0.5, 2], [1, 2, 3], [0, 1], "auto"],
    "gamma": [0, 0.5, 2, 1e3, -1],
    "class_weights": [None, "auto", [1, 1], [1, 3], [1], [0, 1], [1e-30, 1e30]],
    "aux_weight": [0, 0.5, 1e9],
    "augment": [[], ["hflip"], ["rot90"], ["vflip", "hflip"], ["hflip", "hflip"], ["spin"], "hflip"],
    "metric": ["macro_f1", "accuracy", "macro_precision", "macro_recall", "val_loss", "auc"],
    "seed": [0, 1, 2**31, 2**63, -1],
    "weights": [None, "start.pt", "tiny.yaml", "missing.pt", "data", "keymap.yaml"],
    "by_order": [True, False],
    "head": [None, ["fc"], ["block", "fc"], ["nope"], [], ["fc", "fc"]],
    "freeze": [[], ["stem"], ["backbone"], ["fc"], ["nope"], ["stem", "block", "fc"]],
    "precise_bn": [0, 1, 10**9, -1],
    "key_map": [None, "keymap.yaml", "tiny.yaml", "missing.yaml", "start.pt"],
    "set": [
        {},
        {"image_size": 8},
        {"image_size": 32},
        {"image_size": 33},
        {"num_classes": 3},
        {"nope": 1},
        {"image_size": "x"},
    ],
    "max_pixels": [None, 1, 255, 256, 10**12],
    "num_workers": [0, 1, -1],
    "device": ["auto", "cpu", "cuda", "tpu"],
    "nproc": [1, 2, 0],
}
BOUNDS = ["--stop-after", "1", "--num-workers", "0", "--nproc", "1", "--no-progress"]


@dataclass(frozen=True)
class TrainBase:
    folder: Path  # tiny.yaml (with a train: section), config.yaml, data/, split/, start.pt, keymap.yaml, run/


def make_base(folder: Path, setup) -> TrainBase:
    spec_text = TINY_SPEC + yaml.safe_dump({"train": SPEC_SECTION}, sort_keys=False)
    write_spec(folder, spec_text)
    (folder / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False), encoding="utf-8")
    image_folder(folder / "data")
    image_folder(folder / "split" / "train", seed=1)
    image_folder(folder / "split" / "val", per_class=1, seed=2)
    (folder / "keymap.yaml").write_text("fc.weight: fc.weight\nfc.bias: fc.bias\n", encoding="utf-8")
    # a run stopped after its first of two epochs: its best.pt starts other runs, the run itself is --resume'd
    setup(["train", "tiny.yaml", "-o", "run", "--epochs", "2", *BOUNDS], folder)
    shutil.copy(folder / "run" / "best.pt", folder / "start.pt")
    return TrainBase(folder)


# ---------------------------------------------------------------------------------------------------- mutations
def _option_value(doc: dict, rng) -> str:
    name = pick(rng, sorted(VALUES))
    value = pick(rng, VALUES[name]) if rng.random() < 0.75 else pick(rng, NASTY)
    doc[name] = value
    return f"{name}: {show(value)}"


def _mutate_mapping(doc, rng) -> tuple[object, str]:
    how = pick_weighted(rng, {"option": 6, "tree": 3, "retype": 1})
    if how == "option" and isinstance(doc, dict):
        return doc, _option_value(doc, rng)
    if how == "retype":
        new = pick(rng, [None, [], ["epochs", 1], 3, "epochs: 1", {"train": doc}])
        return new, f"the whole mapping -> {show(new)}"
    return mutate_tree(doc, rng, values=NASTY + tuple(v for vs in VALUES.values() for v in vs))


def _mutate_yaml_file(path: Path, rng, key: str | None = None) -> str:
    """One structural (or, one time in five, textual) mutation of a YAML file, or of its mapping under `key`."""
    text = path.read_text(encoding="utf-8")
    try:  # an earlier mutation of this case may have left it no YAML
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    if rng.random() < 0.2 or (key is None and doc is None) or (key is not None and not isinstance(doc, dict)):
        text, said = mutate_text(text, rng)
        path.write_text(text, encoding="utf-8")
        return f"{path.name}: {said}"
    said = []
    for _ in range(int(rng.integers(1, 3))):
        if key is None:
            doc, what = _mutate_mapping(doc, rng)
        else:
            doc[key], what = _mutate_mapping(doc[key], rng)
        said.append(what)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return f"{path.name}{' ' + key + ':' if key else ':'} {'; '.join(said)}"


def _flag(rng) -> tuple[list[str], str]:
    name = pick(rng, sorted(set(VALUES) - {"set", "num_workers", "nproc"}))
    value = pick(rng, VALUES[name] + [pick(rng, NASTY)])
    if isinstance(value, bool):
        flag = f"--{'' if value else 'no-'}{name.replace('_', '-')}"
        return [flag], flag
    text = ",".join(map(str, value)) if isinstance(value, list) else "" if value is None else str(value)
    flag = f"--{name.replace('_', '-')}"
    return [flag, text], f"{flag} {text!r}"


def _mutate_data(case: Path, rng) -> str:
    data = case / "data"
    how = pick(
        rng,
        [
            "one class",
            "empty class",
            "one image each",
            "train without val",
            "val classes differ",
            "a text file",
            "a nested folder",
            "no images",
        ],
    )
    if how == "one class":
        shutil.rmtree(data / "tumour")
    elif how == "empty class":
        shutil.rmtree(data / "tumour")
        (data / "tumour").mkdir()
    elif how == "one image each":
        for name in ("normal", "tumour"):
            for extra in sorted((data / name).iterdir())[1:]:
                extra.unlink()
    elif how == "train without val":
        shutil.copytree(case / "split" / "train", data / "train")
    elif how == "val classes differ":
        shutil.rmtree(case / "split" / "val" / "tumour")
        (case / "split" / "val" / "other").mkdir()
        shutil.copy(case / "split" / "val" / "normal" / "0.png", case / "split" / "val" / "other" / "0.png")
        return "split/val: class folders normal, other"
    elif how == "a text file":
        (data / "normal" / "notes.png").write_text("not an image", encoding="utf-8")
    elif how == "a nested folder":
        (data / "normal" / "deeper").mkdir()
        shutil.copy(data / "normal" / "0.png", data / "normal" / "deeper" / "x.png")
    else:
        for image in data.rglob("*.png"):
            image.unlink()
    return f"data: {how}"


def make_case(base: TrainBase, rng: np.random.Generator, case: Path) -> Case:
    shutil.copytree(base.folder, case, dirs_exist_ok=True)
    argv, said = ["train", "tiny.yaml", "-o", "new-run"], []
    target = pick_weighted(rng, {"spec": 3, "config": 3, "resume": 1, "flags": 1, "data": 1})
    if target == "spec":
        said.append(_mutate_yaml_file(case / "tiny.yaml", rng, key="train"))
    elif target == "config":
        said.append(_mutate_yaml_file(case / "config.yaml", rng))
        argv += ["--config", "config.yaml"]
    elif target == "resume":
        what = pick(rng, ["config.yaml", "log.json", "last.pt"])
        said.append(_mutate_run(case / "run", what, rng))
        argv = ["train", *(["tiny.yaml"] if rng.random() < 0.5 else []), "--resume", "run"]
    elif target == "data":
        said.append(_mutate_data(case, rng))
    for _ in range(int(target == "flags") + int(rng.random() < 0.2)):
        flag, what = _flag(rng)
        argv += flag
        said.append(what)
    stop_after = ["--stop-after", "2"] if "--resume" in argv else []  # the run finished epoch 1 of 2
    bounds = stop_after + BOUNDS[2:] if stop_after else BOUNDS
    return Case(f"{target}: {'; '.join(said)}", argv + bounds)


def _mutate_run(run: Path, what: str, rng) -> str:
    path = run / what
    if what == "config.yaml":
        return "run/" + _mutate_yaml_file(path, rng)
    if what == "log.json":
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc, said = mutate_tree(doc, rng)
        path.write_text(json.dumps(doc), encoding="utf-8")
        return f"run/log.json: {said}"
    data, said = mutate_bytes(path.read_bytes(), rng)
    path.write_bytes(data)
    return f"run/last.pt: {said}"


KIND = Kind(
    "train",
    "train: sections, --config files, a run's config.yaml (--resume), flags and data layouts",
    make_base,
    make_case,
    timeout_s=90.0,
    preload=("torch", "tcc.train.loop", "tcc.train.preflight", "tcc.lower.to_torch", "matplotlib.pyplot"),
)
