"""tools/slide_scale.py, the whole-slide scale benchmark: its slide generator writes, tile by tile, a tiled pyramid
that OpenSlide reads level by level, whose tissue `tcc slide` finds at every size in the same proportion, and its
meter sees a process tree's memory (the 100,000 x 80,000 measurement: docs/train-slide-explain.md)."""

from __future__ import annotations

import json
import sys

import numpy as np
import openslide

from tcc.cli.main import main
from tests.helpers import load_tool

SPEC = """\
kind: model
name: tiny_slide
params: {num_classes: 2}
input:
  shape: [3, 32, 32]
  preprocess: {resize: [32, 32], color: RGB, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
layers:
  - {op: conv2d, out: 4, kernel: 3, stride: 2, padding: 1}
  - {op: relu}
  - {op: global_avgpool}
  - {op: flatten}
  - {op: linear, out: "${num_classes}"}
"""


def test_generated_pyramid_reads_level_by_level_and_scales_its_tissue(tmp_path):
    tool = load_tool("slide_scale")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    fractions = []
    for width, height in ((3000, 2400), (6000, 4800)):
        path = tool.write_slide(tmp_path / f"s{width}.tiff", width, height)
        assert not path.with_name(path.name + ".partial").exists()
        with openslide.OpenSlide(str(path)) as slide:
            assert slide.level_dimensions[0] == (width, height)
            assert slide.level_dimensions[-1][0] < 1024 and len(slide.level_dimensions) >= 3
            # a level is drawn at its own resolution, not averaged from the one above: compare the tissue outline
            coarse = np.asarray(slide.read_region((0, 0), 2, slide.level_dimensions[2]).convert("RGB"))
        glass = (coarse == tool.GLASS).all(axis=-1)
        fractions.append(1 - glass.mean())
        out = tmp_path / f"run{width}"
        assert (
            main(
                [
                    "slide",
                    str(spec),
                    "--image",
                    str(path),
                    "--patch-size",
                    "128",
                    "-o",
                    str(out),
                    "--no-progress",
                    "--threads",
                    "1",
                ]
            )
            == 0
        )
        doc = json.loads((out / "patches.json").read_text())
        assert doc["kept"] > 0 and doc["reader"] == "openslide"
        assert abs(doc["mask"]["tissue_fraction"] - fractions[-1]) < 0.01  # the mask finds the stain, not the glass
    # the blobs are fractions of the slide: the same share of tissue at both sizes
    assert 0.01 < fractions[0] < 0.06 and abs(fractions[0] - fractions[1]) < 0.002


def test_meter_sums_the_process_tree():
    tool = load_tool("slide_scale")
    grandchild = "import numpy, time; b = numpy.ones(96 * 2 ** 20 // 8); b += 1; time.sleep(0.5)"
    child = (
        f"import numpy, subprocess, sys; a = numpy.ones(64 * 2 ** 20 // 8); "
        f"subprocess.run([sys.executable, '-c', {grandchild!r}])"
    )
    seconds, peak, done = tool.run_measured([sys.executable, "-c", child])
    assert done.returncode == 0 and seconds > 0
    assert peak > (64 + 96) * 2**20  # both interpreters' arrays at once: parent and child summed
