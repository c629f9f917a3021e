"""tcc.slide.reader on corrupt TIFFs that tools/fuzz.py (kind `tiff`) found ending in tifffile's or the reader's
tracebacks: each is now a DataError naming the file (exit 2 from `tcc slide`)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from tcc.cli.main import main
from tcc.errors import DataError
from tcc.slide.reader import TiffImage, open_image
from tests.helpers import LOCAL_SPECS


def _tiled_tiff_with(path, *edits: tuple[str, str, int]):
    """A 64 x 48 RGB TIFF in 16-pixel tiles, with fields of tag entries overwritten: (tag, field, value), the field
    its `value` (inline), its `type` or its `count`."""
    tifffile.imwrite(path, np.full((48, 64, 3), 200, np.uint8), tile=(16, 16), photometric="rgb")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        for tag, field, value in edits:
            entry = tif.pages[0].tags[tag]
            at, size = {"value": (entry.valueoffset, 4), "type": (entry.offset + 2, 2), "count": (entry.offset + 4, 4)}[
                field
            ]
            data[at : at + size] = value.to_bytes(size, "little")
    path.write_bytes(bytes(data))
    return path


CORRUPT = {  # was: ZeroDivisionError, TypeError (inside tifffile), IndexError and TypeError (in read_region)
    "zero tile length": ([("TileLength", "value", 0)], "declares 64 x 48 pixels in tiles or strips of 16 x 0"),
    "two samples-per-pixel values": ([("SamplesPerPixel", "count", 2)], "tifffile cannot read it (TypeError"),
    "one offset for twelve tiles": ([("TileOffsets", "count", 1)], "lists 1 offsets and 12 byte counts for its 12"),
    "tile offsets as text": (
        [("TileOffsets", "type", 2), ("ImageLength", "value", 16)],  # 4 tiles, 10 characters
        "offsets or byte counts are not integers",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_tiff_is_a_data_error_naming_the_file(tmp_path, case):
    edits, message = CORRUPT[case]
    path = _tiled_tiff_with(tmp_path / "slide.tif", *edits)
    with pytest.raises(DataError, match=f"^{path}: .*{message[:20]}") as tifffile_reader:
        TiffImage(path)
    assert message in str(tifffile_reader.value)
    with pytest.raises(DataError) as either_reader:  # OpenSlide refuses it too: both reasons, one line
        open_image(path)
    assert str(either_reader.value).startswith(f"{path}: not a readable TIFF") and message in str(either_reader.value)


def test_tcc_slide_exits_2_on_a_zero_tile_length(tmp_path, capsys):
    path = _tiled_tiff_with(tmp_path / "slide.tif", ("TileLength", "value", 0))
    code = main(
        [
            "slide",
            str(LOCAL_SPECS / "train_tiny.yaml"),
            "--image",
            str(path),
            "-o",
            str(tmp_path / "out"),
            "--patch-size",
            "16",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: {path}: not a readable TIFF")


def test_a_tile_larger_than_the_pixel_cap_is_refused_before_any_reader_holds_it(tmp_path):
    """A TileWidth of 2^31 - 1 (fuzzed): OpenSlide opened the file, and reading its first region asked GLib for a
    137 GB tile buffer, which aborts the process (SIGABRT, no Python traceback at all). Refused when the file opens."""
    path = _tiled_tiff_with(tmp_path / "slide.tif", ("TileWidth", "value", 2**31 - 1))
    with pytest.raises(DataError, match="declares tiles of 2,147,483,647 x 16 pixels, above max_pixels=400,000,000"):
        open_image(path)
