"""Damaged images that tools/fuzz.py (kinds `image` and `tiff`) found getting past tcc.data.open_image as Pillow's
own exceptions: a palette PNG without its palette (an AssertionError in Image.convert) and a TIFF tag whose value
overflows Pillow's C decoder (OverflowError). Each now ends in one line naming the file, exit 2."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from tcc.data import open_image
from tcc.errors import DataError
from tests.helpers import LOCAL_SPECS
from tests.helpers.damaged import tcc

SPEC = LOCAL_SPECS / "train_tiny.yaml"


def _png_without_its_palette(path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).quantize(8).save(path)
    data, out, pos = path.read_bytes(), bytearray(), 8
    out += data[:pos]
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] != b"PLTE":
            out += data[pos : pos + 12 + n]
        pos += 12 + n
    path.write_bytes(bytes(out))
    return path


def _tiff_with_a_long8_tile_width(path):
    tifffile.imwrite(path, np.full((48, 64), 120, np.uint8), tile=(16, 16), photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        at = tif.pages[0].tags["TileWidth"].offset + 2  # the entry's type: LONG8 reads 8 bytes of a 4-byte value
    data = bytearray(path.read_bytes())
    data[at : at + 2] = (16).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


DAMAGED = {
    "palette.png": (_png_without_its_palette, "a palette image without its palette"),
    "tiled.tif": (_tiff_with_a_long8_tile_width, "signed integer is greater than maximum"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_predict_names_the_file(tmp_path, name):
    make, reason = DAMAGED[name]
    path = make(tmp_path / name)
    code, err = tcc("predict", SPEC, "--image", path)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"error: {path}: cannot read image ({reason})"


def test_the_palette_is_checked_with_the_header(tmp_path):  # before any pixel is decoded, as the size is
    path = _png_without_its_palette(tmp_path / "p.png")
    with pytest.raises(DataError, match="a palette image without its palette"), open_image(path):
        pass
