"""`golden`: a golden set (tcc.golden) of the tiny model, made by `tcc golden update`, with one of its files mutated:
the plan (golden.yaml) and the record (golden.json) structurally and as text, the .npz outputs and inputs in their
bytes and in their arrays (shapes, dtypes, NaN, members missing or extra), the gzip'd calibration table in its bytes
and in its JSON; then `tcc golden check` (or update) on it. Exit 1 passes too: it is check's verdict that a stored
output differs, which a mutated output must give."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..mutate import mutate_bytes, mutate_text, mutate_tree_rounds, pick, pick_weighted
from .common import Case, Kind, tissue_image, write_spec

ENTRIES = ["pytorch-fp32", "ort-fp32", "ort-int8", "reference-ort", "calibration-ort", "tflite-fp32"]
PLAN = {
    "format": "tcc-golden/1",
    "defaults": {
        "inputs": {"seeded": 1, "images": ["a.png"]},
        "calibration": {"method": "minmax", "crops": 2, "seed": 0, "images": ["a.png", "b.png"]},
    },
    "models": {"tiny": {"spec": "tiny.yaml", "set": {"image_size": 16}, "entries": ENTRIES}},
}
PLAN_VALUES = (
    *ENTRIES,
    "host-int8",
    "nope",
    "tiny.yaml",
    "missing.png",
    "../a.png",
    "kl+cos",
    "kl",
    -1,
    0,
    2,
    10**9,
    None,
    [],
    {},
    {"cosine": 2},
    {"top1": -1},
    "tcc-golden/2",
    1.5,
    float("nan"),
    [None],
    ["a.png"],
)


@dataclass(frozen=True)
class GoldenBase:
    folder: Path  # golden.yaml, golden.json, tiny.yaml, a.png, b.png, tiny/{inputs,outputs}.npz, tiny/calibration/


def make_base(folder: Path, setup) -> GoldenBase:
    write_spec(folder)
    tissue_image(40, 32, 1).save(folder / "a.png")
    tissue_image(40, 32, 2).save(folder / "b.png")
    (folder / "golden.yaml").write_text(yaml.safe_dump(PLAN, sort_keys=False), encoding="utf-8")
    setup(["golden", "update", ".", "-q"], folder)
    return GoldenBase(folder)


# ---------------------------------------------------------------------------------------------------- mutations
def _mutate_arrays(path: Path, rng) -> str:
    try:  # an earlier mutation of this case may have left it no .npz
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception:  # numpy and zipfile meet damaged bytes with many types (zlib.error, NotImplementedError, ...)
        arrays = {}
    if not arrays:
        data, said = mutate_bytes(path.read_bytes(), rng)
        path.write_bytes(data)
        return f"{path.name}: {said}"
    name = pick(rng, sorted(arrays))
    old = arrays[name]
    how = pick(rng, ["shape", "dtype", "nan", "inf", "delete", "extra", "rename", "empty", "scalar", "huge"])
    if how == "shape":
        arrays[name] = old[:-1] if old.ndim and len(old) > 1 and rng.random() < 0.5 else old[..., None]
    elif how == "dtype":
        arrays[name] = old.astype(pick(rng, [np.float64, np.float16, np.int8, np.int64, np.bool_, np.complex64]))
    elif how in ("nan", "inf"):
        arrays[name] = old.astype(np.float32)
        arrays[name].flat[int(rng.integers(max(old.size, 1)))] = np.nan if how == "nan" else np.inf
    elif how == "delete":
        del arrays[name]
    elif how == "extra":
        arrays["bogus"] = np.zeros(3, np.float32)
    elif how == "rename":
        arrays[name + "x"] = arrays.pop(name)
    elif how == "empty":
        arrays[name] = np.zeros((0,) + old.shape[1:], old.dtype)
    elif how == "scalar":
        arrays[name] = np.float32(1.0)
    else:
        arrays[name] = old * np.float32(1e30)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    return f"{path.name}: member {name!r}: {how}"


def _mutate_json_file(path: Path, rng, compressed: bool) -> str:
    raw = path.read_bytes()
    how = pick_weighted(rng, {"tree": 5, "text": 2, "bytes": 2})
    try:  # an earlier mutation of this case may have left it no gzip, UTF-8 or JSON
        text = (gzip.decompress(raw) if compressed else raw).decode("utf-8")
        doc = json.loads(text)
    except (OSError, EOFError, zlib.error, ValueError):
        how = "bytes"
    if how == "bytes":
        data, said = mutate_bytes(raw, rng)
        path.write_bytes(data)
        return f"{path.name}: {said}"
    if how == "text":
        text, said = mutate_text(text, rng)
    else:
        doc, said = mutate_tree_rounds(doc, rng)
        text = json.dumps(doc)
    path.write_bytes(gzip.compress(text.encode(), mtime=0) if compressed else text.encode())
    return f"{path.name}: {said}"


def _mutate_plan(path: Path, rng) -> str:
    text = path.read_text(encoding="utf-8")
    try:  # an earlier mutation of this case may have left it no YAML
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    if doc is None or rng.random() < 0.25:
        text, said = mutate_text(text, rng)
    else:
        doc, said = mutate_tree_rounds(doc, rng, values=PLAN_VALUES)
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return f"golden.yaml: {said}"


def _mutate_file(case: Path, rng) -> str:
    target = pick_weighted(
        rng,
        {
            "golden.yaml": 3,
            "golden.json": 3,
            "tiny/outputs.npz": 3,
            "tiny/inputs.npz": 2,
            "tiny/calibration/ort.json.gz": 3,
            "delete": 1,
        },
    )
    if target == "delete":
        victim = pick(
            rng,
            [
                "golden.json",
                "tiny/outputs.npz",
                "tiny/inputs.npz",
                "tiny/calibration/ort.json.gz",
                "tiny/calibration",
                "tiny",
                "a.png",
                "tiny.yaml",
            ],
        )
        path = case / victim
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        return f"delete {victim}"
    path = case / target
    if not path.is_file():  # removed by an earlier mutation of this case
        return f"{target}: already removed"
    if target == "golden.yaml":
        return _mutate_plan(path, rng)
    if target.endswith(".npz"):
        if rng.random() < 0.5:
            return _mutate_arrays(path, rng)
        data, said = mutate_bytes(path.read_bytes(), rng)
        path.write_bytes(data)
        return f"{target}: {said}"
    return _mutate_json_file(path, rng, compressed=target.endswith(".gz"))


def make_case(base: GoldenBase, rng: np.random.Generator, case: Path) -> Case:
    shutil.copytree(base.folder, case, dirs_exist_ok=True)
    said = [_mutate_file(case, rng) for _ in range(int(rng.integers(1, 3)))]
    action = "update" if rng.random() < 0.15 else "check"
    chosen = [str(e) for e in rng.choice(ENTRIES, size=int(rng.integers(1, 4)), replace=False)]
    entries = [arg for e in chosen for arg in ("--entry", e)] if rng.random() < 0.8 else []
    extra = [flag for flag, p in (("--json", 0.2), ("--all", 0.1)) if rng.random() < p]
    argv = ["golden", action, ".", "-q", *entries, *(extra if action == "check" else [])]
    return Case("; ".join(said), argv)


KIND = Kind(
    "golden",
    "golden sets: golden.yaml, golden.json, the .npz outputs and inputs, calibration tables",
    make_base,
    make_case,
    ok_codes=frozenset({0, 1, 2}),
    timeout_s=120.0,
    preload=(
        "torch",
        "onnxruntime",
        "onnx",
        "tcc.golden",
        "tcc.api",
        "tcc.backends.ort.backend",
        "tcc.backends.tflite.backend",
    ),
)
