"""`image`: PNG, JPEG and BMP files, valid and small, mutated (bytes, header fields such as the declared size,
chunks and segments), given to the commands that read a user's images: predict, explain, slide (plain images),
calibrate --data and train --data."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..mutate import mutate_bytes, pick, pick_weighted
from .common import Case, Kind, image_folder, tissue_image, tissue_pixels, write_spec
from .image_formats import MUTATORS, rle8_bmp

WIDTH, HEIGHT = 40, 32  # a 3 x 2 grid of 16-pixel patches for tcc slide


@dataclass(frozen=True)
class ImageBase:
    spec: Path
    images: dict[str, Path]  # name -> a valid image
    data: Path  # a tiny two-class ImageFolder that a mutated image joins (train, calibrate)


def make_base(folder: Path, setup) -> ImageBase:
    spec = write_spec(folder)
    images = folder / "images"
    images.mkdir(parents=True)
    saves = {
        "rgb.png": lambda p: tissue_image(WIDTH, HEIGHT, 1).save(p),
        "grey.png": lambda p: tissue_image(WIDTH, HEIGHT, 2, "L").save(p),
        "rgba.png": lambda p: tissue_image(WIDTH, HEIGHT, 3, "RGBA").save(p),
        "palette.png": lambda p: tissue_image(WIDTH, HEIGHT, 4).quantize(16).save(p, transparency=0),
        "grey16.png": lambda p: Image.fromarray(
            tissue_pixels(WIDTH, HEIGHT, 5, 1)[:, :, 0].astype(np.uint16) * 257
        ).save(p),
        "rgb.jpg": lambda p: tissue_image(WIDTH, HEIGHT, 6).save(p, quality=85),
        "progressive.jpg": lambda p: tissue_image(WIDTH, HEIGHT, 7).save(p, quality=85, progressive=True),
        "grey.jpg": lambda p: tissue_image(WIDTH, HEIGHT, 8, "L").save(p),
        "cmyk.jpg": lambda p: tissue_image(WIDTH, HEIGHT, 9, "CMYK").save(p),
        "rgb.bmp": lambda p: tissue_image(WIDTH, HEIGHT, 10).save(p),
        "palette.bmp": lambda p: tissue_image(WIDTH, HEIGHT, 11).quantize(16).save(p),
        "mono.bmp": lambda p: tissue_image(WIDTH, HEIGHT, 12, "1").save(p),
        "rgba.bmp": lambda p: tissue_image(WIDTH, HEIGHT, 13, "RGBA").save(p),
        "rle8.bmp": lambda p: p.write_bytes(rle8_bmp(tissue_pixels(WIDTH, HEIGHT, 14, 1)[:, :, 0])),
    }
    for name, save in saves.items():
        save(images / name)
    return ImageBase(spec, {name: images / name for name in saves}, image_folder(folder / "data"))


# ---------------------------------------------------------------------------------------------------- commands
def _predict(base: ImageBase, image: Path, case: Path, rng) -> list[str]:
    argv = ["predict", str(base.spec), "--image", image.name, "--json"]
    return argv + (["--max-pixels", str(pick(rng, [1, 100, 1280, 10**6]))] if rng.random() < 0.15 else [])


def _explain(base: ImageBase, image: Path, case: Path, rng) -> list[str]:
    return ["explain", str(base.spec), "--image", image.name, "-o", "cam.png"]


def _slide(base: ImageBase, image: Path, case: Path, rng) -> list[str]:
    argv = [
        "slide",
        str(base.spec),
        "--image",
        image.name,
        "-o",
        "slide",
        "--patch-size",
        "16",
        "--batch-size",
        "4",
        "--no-progress",
    ]
    return argv + (["--max-pixels", str(pick(rng, [1, 1280, 10**6]))] if rng.random() < 0.15 else [])


def _in_folder(base: ImageBase, image: Path, case: Path) -> Path:
    """The tiny ImageFolder with the mutated image in one of its classes."""
    data = case / "data"
    shutil.copytree(base.data, data)
    image.rename(data / "tumour" / image.name)
    return data


def _calibrate(base: ImageBase, image: Path, case: Path, rng) -> list[str]:
    _in_folder(base, image, case)
    argv = [
        "calibrate",
        str(base.spec),
        "--data",
        "data",
        "--method",
        "minmax",
        "--calib-size",
        "4",
        "--no-compare",
        "-o",
        "calib.json",
    ]
    return argv + (["--skip-bad"] if rng.random() < 0.3 else [])


def _train(base: ImageBase, image: Path, case: Path, rng) -> list[str]:
    _in_folder(base, image, case)
    return [
        "train",
        str(base.spec),
        "--data",
        "data",
        "-o",
        "run",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--precise-bn",
        "0",
        "--no-progress",
        "--num-workers",
        "0",
        "--nproc",
        "1",
    ]


COMMANDS = {
    "predict": (_predict, 5),
    "explain": (_explain, 2),
    "slide": (_slide, 2),
    "calibrate": (_calibrate, 1),
    "train": (_train, 1),
}


def make_case(base: ImageBase, rng: np.random.Generator, case: Path) -> Case:
    name = pick(rng, sorted(base.images))
    source = base.images[name]
    data, said = source.read_bytes(), []
    for _ in range(int(rng.integers(1, 3))):
        mutate = MUTATORS[source.suffix] if rng.random() < 0.75 else mutate_bytes
        data, what = mutate(data, rng)
        said.append(what)
    suffix = source.suffix if rng.random() < 0.9 else pick(rng, [".png", ".jpg", ".bmp", ".tif"])
    if suffix != source.suffix:
        said.append(f"named {suffix}")
    image = case / f"input{suffix}"
    image.write_bytes(data)
    command = pick_weighted(rng, {name: weight for name, (_, weight) in COMMANDS.items()})
    argv = COMMANDS[command][0](base, image, case, rng)
    return Case(f"{command}: {name}: {'; '.join(said)}", argv)


KIND = Kind(
    "image",
    "PNG / JPEG / BMP files to predict, explain, slide, calibrate --data, train --data",
    make_base,
    make_case,
    timeout_s=60.0,
    preload=(
        "torch",
        "onnxruntime",
        "onnx",
        "tcc.api",
        "tcc.explain",
        "tcc.slide.pipeline",
        "tcc.train.loop",
        "matplotlib.pyplot",
    ),
)
