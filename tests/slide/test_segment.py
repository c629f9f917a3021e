"""`tcc slide --segment`: tiles stitched into the mask of one run over the whole image (and not without their margin),
the tiling's geometry, the receptive field against the U-Net's arithmetic, the pyramidal TIFF through OpenSlide and
tifffile, tissue skipping, Dask against one process, a bundle's recorded tiling, and bad requests as clean errors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import openslide
import pytest
import skimage.data
import tifffile
import torch
from PIL import Image

import tcc
from tcc.cli.main import main
from tcc.data import normalize_pixels
from tcc.errors import DataError
from tcc.field import assumed_stride, graph_stride, measure_field
from tcc.segmentation.masks import palette
from tcc.slide.pyramid import SMALLEST_LEVEL, StitchedMask, pyramid_factors, write_pyramid
from tcc.slide.tiles import tile_image

ROOT = Path(__file__).resolve().parents[2]
UNET = str(ROOT / "spec/unet.yaml")
TINY = {"base": 4, "depth": 2, "image_size": 64}  # stride 4, receptive field radius 23 (counted below)
SETS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
GATED_SPEC = """\
kind: model
name: gated_segmenter
input:
  shape: [3, 32, 32]
  preprocess: {resize: [32, 32], color: RGB, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
layers:
  - {id: conv, op: conv2d, out: 4, kernel: 3, padding: 1}
  - {id: pool, op: global_avgpool}
  - {id: gate, op: sigmoid}
  - {id: gated, op: mul, in: [conv, gate]}
  - {id: head, op: conv2d, out: 2, kernel: 1}
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("segment")


@pytest.fixture(scope="module")
def image(work) -> Path:
    """A real IHC stain (scikit-image), 448 x 320: tissue and glass, not a multiple of the tile."""
    path = work / "ihc.png"
    Image.fromarray(skimage.data.immunohistochemistry()[:320, :448]).save(path)
    return path


@pytest.fixture(scope="module")
def model():
    return tcc.Model.load(UNET, **TINY)


def segment(model, image, out, **options) -> tuple[dict, np.ndarray]:
    ((doc, folder),) = model.slide([image], out, segment=True, threads=1, **options)
    return doc, tifffile.imread(folder / "segmentation.tiff")


def whole_image_logits(model, image: Path) -> np.ndarray:
    """The U-Net run once over the whole image: [classes, H, W]."""
    pixels = np.asarray(Image.open(image).convert("RGB"))
    x = normalize_pixels(pixels, model.spec.preprocess)[None]
    torch.set_num_threads(1)
    with torch.no_grad():
        return model.torch()(torch.from_numpy(x)).numpy()[0]


# ---------------------------------------------------------------------------------------------------- stitching
def test_tiles_stitch_into_the_whole_image_run_and_not_without_their_margin(model, image, work):
    logits = whole_image_logits(model, image)
    whole = logits.argmax(0)
    top2 = np.sort(logits, axis=0)[-2:]
    decided = top2[1] - top2[0] > 1e-4  # float32 sums in another order may flip an exact tie, nothing else
    assert decided.mean() > 0.99

    doc, mask = segment(model, image, work / "tiled", every_tile=True)
    assert mask.shape == whole.shape
    assert doc["tiles"]["margin"] == 28 and doc["tiles"]["field"] == {"radius": 25, "method": "nan"}
    assert doc["tiles"]["inferred"] == doc["tiles"]["rows"] * doc["tiles"]["cols"] > 100
    assert np.array_equal(mask[decided], whole[decided])
    assert sum(doc["pixels"].values()) == mask.size
    assert doc["pixels"] == {str(k): int((mask == k).sum()) for k in range(2)}

    _, seams = segment(model, image, work / "no-margin", every_tile=True, margin=0)
    assert (seams[decided] != whole[decided]).sum() > 1000  # what the margin is for


@pytest.mark.parametrize("length", [1, 63, 64, 65, 100, 317, 448, 1000])
@pytest.mark.parametrize(("tile", "margin", "stride"), [(64, 22, 4), (64, 0, 1), (256, 100, 16), (96, 20, 8)])
def test_cores_partition_the_axis_inside_their_tiles_margins(length, tile, margin, stride):
    tiling = tile_image((length, length), (tile, tile), margin, stride)
    spans, kept = tiling.cols, tiling.margin
    assert kept % stride == 0 and kept >= margin
    assert spans[0].start == 0 and spans[-1].stop == length
    for a, b in itertools.pairwise(spans):
        assert a.stop == b.start  # no gap, no overlap
    for k, s in enumerate(spans):
        assert s.origin % stride == 0 and s.origin >= 0 and s.start < s.stop
        assert s.start == 0 or s.start - s.origin >= kept  # context on the left unless the image starts there
        last = k == len(spans) - 1
        assert (s.origin + tile - s.stop >= kept) or (last and s.origin + tile >= length)


def test_a_tile_without_room_for_its_core_is_refused():
    with pytest.raises(DataError, match="keeps no core"):
        tile_image((500, 500), (64, 64), 30, 4)


# ---------------------------------------------------------------------------------------------------- the field
def test_field_and_stride_by_hand(model):
    """Depth 2, 'same' 3x3 convs. Counted from the output back to the input, the radius grows by 1 pixel of the
    level per 3x3 conv and 1 per 2x2 pool (the window's far pixel; the 2x2 / 2 up-conv adds none): two convs at
    scale 1 (2), a pool at 1 (1), two convs at 2 (4), a pool at 2 (2), two at 4, the bottom (8), then the decoder's
    two at 2 (4) and two at 1 (2): 23. The NaN block measures it to the block's far side: 23 to 23 + stride - 1."""
    shape = tuple(model.input_shape)
    assert graph_stride(model.spec.graph, shape) == 4
    assert graph_stride(tcc.Model.load(UNET, base=4, depth=4, image_size=64).spec.graph, shape) == 16
    assert (
        assumed_stride((3, 256, 256)) == 32 and assumed_stride((3, 96, 64)) == 32 and assumed_stride((3, 24, 24)) == 8
    )
    module = model.torch()

    def run(x):
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    field = measure_field(run, shape, 4)
    assert field.method == "nan" and 23 <= field.radius <= 23 + 3
    # a single changed pixel moves outputs exactly as far as the NaN said, no farther
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, *shape)).astype(np.float32)
    y = x.copy()
    y[..., 32, 32] += 5
    changed = np.abs(run(x) - run(y)).max(axis=(0, 1)) > 0
    rows = np.flatnonzero(changed.any(axis=1))
    assert 32 - rows[0] <= field.radius and rows[-1] - 32 <= field.radius


def test_a_global_pooling_needs_a_margin_given(work, image, capsys):
    spec = work / "gated.yaml"
    spec.write_text(GATED_SPEC)
    assert main(["slide", str(spec), "--image", str(image), "--segment", "-o", str(work / "gated")]) == 2
    assert "depends on the whole 32 x 32 tile" in capsys.readouterr().err
    assert not (work / "gated").exists()
    args = ["slide", str(spec), "--image", str(image), "--segment", "--margin", "4", "-o", str(work / "gated")]
    assert main(args) == 0
    doc = json.loads((work / "gated/segmentation.json").read_text())
    assert doc["tiles"]["field"] == {"radius": None, "method": "given"} and doc["tiles"]["margin"] == 4


# ---------------------------------------------------------------------------------------------------- outputs
def test_pyramid_tiff_png_and_overlay(model, image, work):
    doc, mask = segment(model, image, work / "outputs")
    out = work / "outputs"
    assert doc["files"] == ["segmentation.tiff", "segmentation.png", "overlay.png", "segmentation.json"]
    with tifffile.TiffFile(out / "segmentation.tiff") as tif:
        assert [p.shape for p in tif.pages] == [(320, 448)]  # one level: it fits SMALLEST_LEVEL
        assert tif.pages[0].is_tiled and tif.pages[0].photometric == tifffile.PHOTOMETRIC.PALETTE
    slide = openslide.OpenSlide(str(out / "segmentation.tiff"))
    rgb = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
    assert np.array_equal(rgb, palette(2)[mask])  # OpenSlide shows each class in its palette colour
    png = Image.open(out / "segmentation.png")
    assert png.mode == "P" and np.array_equal(np.asarray(png), mask)
    assert Image.open(out / "overlay.png").size == (448, 320)
    # tissue: tiles whose core holds none are class 0 and never run
    assert (
        doc["tissue"]["tissue_fraction"] > 0.1
        and doc["tiles"]["inferred"] < doc["tiles"]["rows"] * doc["tiles"]["cols"]
    )


def test_pyramid_levels_are_nearest_downsamples(tmp_path):
    size = (2 * SMALLEST_LEVEL + 77, 700)
    assert pyramid_factors(size) == [1, 2, 4]
    rng = np.random.default_rng(0)
    full = rng.integers(0, 3, (size[1], size[0]), dtype=np.uint8)
    with StitchedMask.create(tmp_path, size, 3) as mask:
        mask.write_rows(0, full[:300])
        mask.write_rows(300, full[300:])
        assert np.array_equal(mask.read_rows(0, size[1]), full)
        write_pyramid(tmp_path / "m.tiff", mask, palette(3))
    assert not list(tmp_path.glob(".segmentation.*"))  # the stitched mask's file went with it
    with tifffile.TiffFile(tmp_path / "m.tiff") as tif:
        for page, factor in zip(tif.pages, [1, 2, 4]):
            assert np.array_equal(page.asarray(), full[::factor, ::factor])
    assert openslide.OpenSlide(str(tmp_path / "m.tiff")).level_dimensions == ((2125, 700), (1063, 350), (532, 175))


def test_level_of_a_pyramid_and_same_bytes_twice(model, image, work):
    """Level 1 of a two-level TIFF is the image at half size: the same mask as that image segmented alone."""
    pixels = np.asarray(Image.open(image).convert("RGB"))
    half = pixels[::2, ::2]
    pyramid = work / "pyramid.tiff"
    with tifffile.TiffWriter(pyramid) as tif:
        for level in (np.repeat(np.repeat(half, 2, 0), 2, 1), half):
            tif.write(level, tile=(64, 64), photometric="rgb", subfiletype=1 if level is half else 0)
    Image.fromarray(half).save(work / "half.png")
    doc, level1 = segment(model, pyramid, work / "level1", level=1, every_tile=True)
    assert doc["level"] == 1 and doc["level_size"] == [224, 160] and doc["size"] == [448, 320]
    _, alone = segment(model, work / "half.png", work / "alone", every_tile=True)
    assert np.array_equal(level1, alone)
    segment(model, work / "half.png", work / "again", every_tile=True)
    for name in ("segmentation.tiff", "segmentation.png", "segmentation.json"):
        assert (work / "alone" / name).read_bytes() == (work / "again" / name).read_bytes()


def test_dask_equals_one_process(model, image, work):
    _, here = segment(model, image, work / "here", every_tile=True)
    _, there = segment(model, image, work / "dask", every_tile=True, workers=1)
    assert np.array_equal(here, there)


# ---------------------------------------------------------------------------------------------------- bundles
def test_int8_bundle_records_its_tiling_and_segments(model, image, work):
    crops = work / "crops"
    crops.mkdir()
    pixels = np.asarray(Image.open(image).convert("RGB"))
    for k, (y, x) in enumerate((y, x) for y in range(0, 256, 64) for x in range(0, 384, 96)):
        Image.fromarray(pixels[y : y + 64, x : x + 64]).save(crops / f"{k:02d}.png")
    bundle = work / "unet-int8"
    build = ["build", UNET, *SETS, "--target", "ort", "--precision", "int8", "--data", str(crops), "-o", str(bundle)]
    assert main(build) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["tiling"] == {"stride": 4, "field": {"radius": 25, "method": "nan"}}
    assert main(["slide", "--artifact", str(bundle), "--image", str(image), "--segment", "-o", str(work / "b")]) == 0
    _, fp32 = segment(model, image, work / "fp32")
    int8 = tifffile.imread(work / "b/segmentation.tiff")
    assert (int8 == fp32).mean() > 0.95  # seeded weights: a sanity bound; INT8 quality is judged elsewhere


# ---------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--level", "3"], "the image has levels 0..0"),
        (["--positive-class", "1"], "--positive-class picks the heat map's class"),
        (["--patch-size", "128"], "--patch-size sizes the heat map's patches"),
        (["--margin", "-1"], "--margin -1: must be at least 0"),
    ],
)
def test_bad_requests_exit_2(image, work, capsys, extra, message):
    out = work / "bad"
    assert main(["slide", UNET, *SETS, "--image", str(image), "--segment", "-o", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("flag", [["--level", "1"], ["--margin", "8"], ["--every-tile"]])
def test_segment_flags_without_segment_exit_2(image, work, capsys, flag):
    assert main(["slide", UNET, *SETS, "--image", str(image), "-o", str(work / "bad2"), *flag]) == 2
    assert "is for --segment" in capsys.readouterr().err


def test_a_classifier_is_refused_and_a_segmenter_has_no_heat_map(image, work, capsys):
    args = ["slide", "ddsnet", "--image", str(image), "--segment", "-o", str(work / "cls")]
    assert main(args) == 2
    assert "needs a dense output at the input's resolution" in capsys.readouterr().err
    assert main(["slide", UNET, *SETS, "--image", str(image), "-o", str(work / "heat")]) == 2
    assert "(a segmenter's [classes, H, W]: --segment)" in capsys.readouterr().err


def test_a_failure_mid_run_leaves_no_folder(model, image, work, monkeypatch):
    import tcc.slide.segment as segment_module

    def failing(*args):
        raise DataError("a tile that does not decode")

    monkeypatch.setattr(segment_module, "segment_batch", failing)
    with pytest.raises(DataError, match="does not decode"):
        segment(model, image, work / "failed", every_tile=True)
    assert not (work / "failed").exists()
