"""`bundle`: every file of bundles `tcc build` wrote for the tiny model (ORT FP32 and INT8, TFLite INT8:
manifest.json, model.onnx, model.tflite, tflite.json, calibration.json, README.md), mutated, then read back by
`tcc predict --artifact`, `tcc diff`, `tcc slide --artifact`, `tcc report --bundles` and `tcc build --calib`.

A changed byte is refused by the manifest's sha256 before anything parses the file, so most mutations of a file
other than the manifest also write its new sha256 and size into the manifest: they reach the file's reader, as a
bundle edited on purpose, or produced by a faulty build, would."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..mutate import NASTY, mutate_bytes, mutate_text, mutate_tree_rounds, pick, pick_weighted
from .common import Case, Kind, image_folder, tissue_image, write_spec

BUILDS = {
    "ort": ["--target", "ort"],
    "ort-int8": ["--target", "ort", "--precision", "int8", "--data", "data"],
    "tflite-int8": ["--target", "tflite", "--precision", "int8", "--data", "data"],
}
MANIFEST_VALUES = (
    *NASTY,
    "ort",
    "tflite",
    "host",
    "ax620",
    "int8",
    "fp16",
    "model.onnx",
    "model.tflite",
    "../x",
    "tcc-bundle/0",
    ["N", 3, 16, 16],
    ["N", 2],
    [1, 3, 16, 16],
    {"sha256": "0" * 64, "bytes": 1},
    {"color": "RGB"},
    ["a", "b", "c"],
    "BGR",
    "L",
    "nearest",
    "lanczos",
)


@dataclass(frozen=True)
class BundleBase:
    folder: Path  # tiny.yaml, data/, x.npy, image.png and one folder per bundle


def make_base(folder: Path, setup) -> BundleBase:
    write_spec(folder)
    image_folder(folder / "data", per_class=2)
    tissue_image(40, 32, 1).save(folder / "image.png")
    np.save(folder / "x.npy", np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32))
    for name, options in BUILDS.items():
        setup(["build", "tiny.yaml", *options, "-o", name], folder)
    return BundleBase(folder)


# ---------------------------------------------------------------------------------------------------- mutations
def _mutate_onnx(data: bytes, rng) -> tuple[bytes, str]:
    """An edit of the ONNX graph that still parses as a protobuf: what a faulty writer (or a hand edit) leaves."""
    try:  # an earlier mutation of this case may have left it no ONNX model
        model = onnx.load_from_string(data)
    except Exception:  # protobuf's DecodeError, or whatever its parse of damaged bytes meets
        return mutate_bytes(data, rng)
    g = model.graph
    how = pick(
        rng,
        [
            "drop node",
            "rename input",
            "rename output",
            "op type",
            "initializer dims",
            "drop initializer",
            "initializer bytes",
            "opset",
            "input shape",
            "ir version",
        ],
    )
    if how == "drop node" and len(g.node):
        del g.node[int(rng.integers(len(g.node)))]
    elif how == "rename input" and len(g.input):
        g.input[0].name = pick(rng, ["x", "", "output"])
    elif how == "rename output" and len(g.output):
        g.output[0].name = pick(rng, ["y", "", "input"])
    elif how == "op type" and len(g.node):
        g.node[int(rng.integers(len(g.node)))].op_type = pick(rng, ["Nope", "Relu", "Conv", "QLinearConv", ""])
    elif how in ("initializer dims", "drop initializer", "initializer bytes") and len(g.initializer):
        i = int(rng.integers(len(g.initializer)))
        if how == "drop initializer":
            del g.initializer[i]
        elif how == "initializer dims":
            g.initializer[i].dims[:] = [int(d) for d in pick(rng, [[1], [0], [2**31], [3, 3, 3, 3, 3]])]
        else:
            g.initializer[i].raw_data = g.initializer[i].raw_data[
                : int(rng.integers(len(g.initializer[i].raw_data) + 1))
            ]
    elif how == "opset" and len(model.opset_import):
        model.opset_import[0].version = pick(rng, [1, 7, 99, 0])
    elif how == "input shape" and len(g.input):
        dims = g.input[0].type.tensor_type.shape.dim
        if len(dims) > 1:
            dims[int(rng.integers(1, len(dims)))].dim_value = pick(rng, [0, 1, 5, 2**31])
    else:
        model.ir_version = pick(rng, [0, 1, 99])
    return model.SerializeToString(), f"onnx: {how}"


def _mutate_json(data: bytes, rng, values=NASTY) -> tuple[bytes, str]:
    how = pick_weighted(rng, {"tree": 6, "text": 2, "bytes": 1})
    try:  # an earlier mutation of this case may have left it no JSON (or no UTF-8) at all
        doc = json.loads(data.decode("utf-8"))
    except ValueError:
        how = "bytes"
    if how == "bytes":
        return mutate_bytes(data, rng)
    if how == "text":
        text, said = mutate_text(data.decode("utf-8"), rng)
        return text.encode(), said
    doc, said = mutate_tree_rounds(doc, rng, values=values)
    return json.dumps(doc, indent=1).encode(), said


def _mutate_file(path: Path, rng) -> str:
    data = path.read_bytes()
    if path.name == "manifest.json":
        data, said = _mutate_json(data, rng, MANIFEST_VALUES)
    elif path.suffix == ".json":
        data, said = _mutate_json(data, rng)
    elif path.suffix == ".onnx" and rng.random() < 0.5:
        data, said = _mutate_onnx(data, rng)
    elif path.suffix == ".md":
        text, said = mutate_text(data.decode("utf-8"), rng)
        data = text.encode()
    else:
        data, said = mutate_bytes(data, rng)
    path.write_bytes(data)
    return said


def _rehash(bundle: Path, name: str) -> bool:
    """The manifest made to agree with the mutated (or removed) file; False when the manifest, itself mutated, has
    no files to agree with."""
    manifest_path = bundle / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError:
        return False
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return False
    if not (bundle / name).is_file():
        manifest["files"].pop(name, None)
    else:
        data = (bundle / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return True


def _mutate_bundle(bundle: Path, rng) -> str:
    files = sorted(p.name for p in bundle.iterdir() if p.is_file())
    how = pick_weighted(rng, {"manifest": 4, "file": 5, "remove": 1, "stray": 1})
    if how == "manifest" or not files:
        return "manifest.json: " + _mutate_file(bundle / "manifest.json", rng)
    if how == "stray":
        (bundle / "extra.onnx").write_bytes(b"\x08\x07")
        return "a stray extra.onnx"
    name = pick(rng, [f for f in files if f != "manifest.json"])
    if how == "remove":
        (bundle / name).unlink()
        said = f"remove {name}"
    else:
        said = f"{name}: {_mutate_file(bundle / name, rng)}"
    if rng.random() < 0.75 and _rehash(bundle, name):
        said += " (manifest rehashed)"
    return said


def _commands(bundle: str, int8: bool) -> dict:
    """name -> (argv, weight) of the commands that read a bundle."""
    commands = {
        "predict": (["predict", "--artifact", bundle, "--input", "x.npy", "--json"], 5),
        "predict-image": (["predict", "--artifact", bundle, "--image", "image.png"], 2),
        "diff": (["diff", bundle, "pytorch", "--spec", "tiny.yaml", "--input", "x.npy"], 2),
        "slide": (
            [
                "slide",
                "--artifact",
                bundle,
                "--image",
                "image.png",
                "-o",
                "slide",
                "--patch-size",
                "16",
                "--no-progress",
            ],
            1,
        ),
        "report": (["report", "--bundles", bundle, "--rounds", "1", "--runs", "1", "-o", "report"], 1),
    }
    if int8:
        commands["diff-reference"] = (["diff", bundle, "reference", "--spec", "tiny.yaml", "--input", "x.npy"], 2)
        commands["build-calib"] = (
            [
                "build",
                "tiny.yaml",
                "--target",
                "ort",
                "--precision",
                "int8",
                "--calib",
                f"{bundle}/calibration.json",
                "-o",
                "rebuilt",
            ],
            2,
        )
    return commands


def make_case(base: BundleBase, rng: np.random.Generator, case: Path) -> Case:
    shutil.copytree(base.folder, case, dirs_exist_ok=True)
    bundle = pick(rng, sorted(BUILDS))
    said = [_mutate_bundle(case / bundle, rng) for _ in range(int(rng.integers(1, 3)))]
    commands = _commands(bundle, bundle.endswith("int8"))
    command = pick_weighted(rng, {name: weight for name, (_, weight) in commands.items()})
    return Case(f"{command}: {bundle}: {'; '.join(said)}", commands[command][0])


KIND = Kind(
    "bundle",
    "every file of ORT / TFLite bundles, read by predict --artifact, diff, slide, report, build --calib",
    make_base,
    make_case,
    timeout_s=90.0,
    preload=(
        "torch",
        "onnxruntime",
        "onnx",
        "tcc.api",
        "tcc.backends.ort.backend",
        "tcc.backends.tflite.backend",
        "tcc.slide.pipeline",
        "tcc.benchmark.report",
        "matplotlib.pyplot",
    ),
)
