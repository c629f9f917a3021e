"""What the kinds share: the Kind record, the tiny model every case runs, and small valid images that look like
stained tissue (so that `tcc slide`'s mask finds some and its patches reach the model)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

Setup = Callable[[list[str], Path], None]  # runs a tcc command that makes a base input (runner.setup_command)


@dataclass(frozen=True)
class Case:
    mutation: str  # what was mutated, in words
    argv: list[str]  # the tcc command line, run in the case's folder


@dataclass(frozen=True)
class Kind:
    name: str
    what: str  # one line for --help
    make_base: Callable[[Path, Setup], object]  # writes the valid inputs once; returns what make_case needs
    make_case: Callable[[object, np.random.Generator, Path], Case]  # writes one mutated case into its folder
    ok_codes: frozenset[int] = frozenset({0, 2})  # 0 done, 2 a clean one-line user error
    timeout_s: float = 60.0
    preload: tuple[str, ...] = field(default=())  # modules the parent imports once before forking cases


# A tiny classifier of 16 x 16 RGB patches (any input image is resized to it): conv-bn-relu twice, a head.
# image_size has a maximum, so a mutated `set: {image_size: ...}` cannot ask for a model too large to train.
TINY_SPEC = """\
kind: model
name: fuzz_tiny
params:
  image_size: {type: int, default: 16, min: 8, max: 32}
  num_classes: 2
input:
  shape: [3, "${image_size}", "${image_size}"]
  preprocess: {color: RGB, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
labels: [normal, tumour]
layers:
  - id: stem
    body:
      - {id: conv, op: conv2d, out: 4, kernel: 3, stride: 2, padding: 1, bias: false}
      - {id: bn, op: batchnorm}
      - {id: act, op: relu}
  - {id: block, op: conv2d, out: 8, kernel: 3, stride: 2, padding: 1}
  - {op: relu}
  - {id: pool, op: global_avgpool}
  - {id: flat, op: flatten}
  - {id: fc, op: linear, out: "${num_classes}"}
"""


def write_spec(folder: Path, text: str = TINY_SPEC, name: str = "tiny.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def tissue_pixels(width: int, height: int, seed: int, channels: int = 3) -> np.ndarray:
    """uint8 [H, W, C]: white glass with a pink, saturated blob of noisy 'tissue' (what Otsu and the RGB band keep)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    blob = ((xx - width * 0.45) / (width * 0.35)) ** 2 + ((yy - height * 0.55) / (height * 0.35)) ** 2 < 1
    pixels = np.full((height, width, 3), 245, np.int16)
    stain = np.array([200, 90, 160]) + rng.integers(-40, 40, size=(height, width, 3))
    pixels[blob] = stain[blob]
    pixels = np.clip(pixels + rng.integers(-6, 6, size=pixels.shape), 0, 255).astype(np.uint8)
    if channels == 1:
        return pixels.mean(axis=2).astype(np.uint8)[:, :, None]
    if channels == 4:
        alpha = np.where(blob, 255, rng.integers(0, 256, size=blob.shape)).astype(np.uint8)
        return np.concatenate([pixels, alpha[:, :, None]], axis=2)
    return pixels


def tissue_image(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    channels = {"L": 1, "RGBA": 4}.get(mode, 3)
    pixels = tissue_pixels(width, height, seed, channels)
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, {1: "L", 4: "RGBA"}.get(channels, "RGB"))
    return image if mode in ("RGB", "L", "RGBA") else image.convert(mode)


def image_folder(root: Path, classes=("normal", "tumour"), per_class: int = 3, size: int = 16, seed: int = 0) -> Path:
    """root/<class>/<i>.png: a tiny ImageFolder to train or calibrate on."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            tissue_image(size, size, seed * 1000 + c * 100 + i).save(root / name / f"{i}.png")
    return root
