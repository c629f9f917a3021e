"""`tiff`: tiled, stripped and pyramidal TIFFs (classic and BigTIFF, SubIFD and page pyramids, uncompressed, deflate
and JPEG), written small with tifffile and Pillow, mutated in their IFDs (declared sizes, tile and strip offsets and
byte counts, entry types and counts, next-IFD loops), their header and their bytes, and given to `tcc slide` (OpenSlide,
then tifffile) and `tcc predict` (Pillow)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from ..mutate import mutate_bytes, pick, pick_weighted
from .common import Case, Kind, tissue_pixels, write_spec
from .tiff_layout import mutate_tiff

WIDTH, HEIGHT, TILE = 64, 48, 16


@dataclass(frozen=True)
class TiffBase:
    spec: Path
    tiffs: dict[str, Path]


def _levels(seed: int, count: int, channels: int = 3) -> list[np.ndarray]:
    """Level 0 and its halvings."""
    level = tissue_pixels(WIDTH, HEIGHT, seed, channels)
    out = [level]
    for _ in range(count - 1):
        level = np.asarray(Image.fromarray(level.squeeze()).reduce(2)).reshape(
            level.shape[0] // 2, level.shape[1] // 2, -1
        )
        out.append(level)
    return out


def _subifd_pyramid(path: Path, bigtiff: bool = False, compression=None) -> None:
    levels = _levels(3, 3)
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        tif.write(levels[0], subifds=len(levels) - 1, tile=(TILE, TILE), photometric="rgb", compression=compression)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, tile=(TILE, TILE), photometric="rgb", compression=compression)


def _page_pyramid(path: Path) -> None:
    """Each level its own page (OpenSlide's generic tiled TIFF)."""
    with tifffile.TiffWriter(path) as tif:
        for i, level in enumerate(_levels(4, 3)):
            tif.write(level, tile=(TILE, TILE), photometric="rgb", subfiletype=1 if i else 0)


def make_base(folder: Path, setup) -> TiffBase:
    spec = write_spec(folder)
    tiffs = folder / "tiffs"
    tiffs.mkdir(parents=True)
    rgb, grey, rgba = (tissue_pixels(WIDTH, HEIGHT, s, c) for s, c in ((1, 3), (2, 1), (5, 4)))
    writers = {
        "tiled.tif": lambda p: tifffile.imwrite(p, rgb, tile=(TILE, TILE), photometric="rgb"),
        "deflate.tif": lambda p: tifffile.imwrite(p, rgb, tile=(TILE, TILE), photometric="rgb", compression="zlib"),
        "stripped.tif": lambda p: tifffile.imwrite(p, rgb, rowsperstrip=8, photometric="rgb"),
        "grey.tif": lambda p: tifffile.imwrite(p, grey[:, :, 0], tile=(TILE, TILE), photometric="minisblack"),
        "rgba.tif": lambda p: tifffile.imwrite(p, rgba, tile=(TILE, TILE), photometric="rgb", extrasamples=[2]),
        "subifds.tif": _subifd_pyramid,
        "subifds-big.tif": lambda p: _subifd_pyramid(p, bigtiff=True, compression="zlib"),
        "pages.tif": _page_pyramid,
        "planar.tif": lambda p: tifffile.imwrite(
            p, np.moveaxis(rgb, 2, 0), tile=(TILE, TILE), photometric="rgb", planarconfig="separate"
        ),
        "uint16.tif": lambda p: tifffile.imwrite(p, grey[:, :, 0].astype(np.uint16) * 257, tile=(TILE, TILE)),
        "jpeg-strips.tif": lambda p: Image.fromarray(rgb).save(p, compression="jpeg"),
        "lzw-strips.tif": lambda p: Image.fromarray(rgb).save(p, compression="tiff_lzw"),
    }
    for name, write in writers.items():
        write(tiffs / name)
    return TiffBase(spec, {name: tiffs / name for name in writers})


def _slide(base: TiffBase, image: str, rng) -> list[str]:
    argv = [
        "slide",
        str(base.spec),
        "--image",
        image,
        "-o",
        "slide",
        "--patch-size",
        "16",
        "--batch-size",
        "8",
        "--no-progress",
    ]
    if rng.random() < 0.2:
        argv += ["--mask-level", str(pick(rng, [0, 1, 2, 5]))]
    return argv


def _predict(base: TiffBase, image: str, rng) -> list[str]:
    return ["predict", str(base.spec), "--image", image, "--json"]


COMMANDS = {"slide": (_slide, 7), "predict": (_predict, 3)}


def make_case(base: TiffBase, rng: np.random.Generator, case: Path) -> Case:
    name = pick(rng, sorted(base.tiffs))
    data, said = base.tiffs[name].read_bytes(), []
    for _ in range(int(rng.integers(1, 3))):
        data, what = (mutate_tiff if rng.random() < 0.8 else mutate_bytes)(data, rng)
        said.append(what)
    (case / "input.tif").write_bytes(data)
    command = pick_weighted(rng, {name: weight for name, (_, weight) in COMMANDS.items()})
    return Case(f"{command}: {name}: {'; '.join(said)}", COMMANDS[command][0](base, "input.tif", rng))


KIND = Kind(
    "tiff",
    "tiled / stripped / pyramidal TIFFs to slide (OpenSlide, tifffile) and predict (Pillow)",
    make_base,
    make_case,
    timeout_s=60.0,
    preload=("torch", "onnxruntime", "onnx", "tcc.api", "tcc.slide.pipeline", "openslide", "tifffile"),
)
