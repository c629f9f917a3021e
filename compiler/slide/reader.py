"""Whole-slide and plain images read region by region, as uint8 RGB.

Three readers behind one interface (`level_dimensions`, `read_region`):
- OpenSlide for whole-slide formats (.svs, .ndpi, .mrxs, ...) and the pyramidal TIFFs it understands;
- tifffile for TIFFs OpenSlide cannot open, or sees with fewer levels than tifffile does (a pyramid kept in
  SubIFDs, a stripped TIFF): only the tiles or strips a region touches are read and decoded;
- Pillow for PNG / JPEG / BMP, decoded whole, so refused above a pixel cap.

Past the image's edge (the padding of the patch grid) and under transparent pixels every reader gives white, the
colour of the empty glass around the tissue, so padding reads as background to the mask and to the model alike.
"""

from __future__ import annotations

import abc
import functools
from pathlib import Path

import numpy as np

from ..data import DEFAULT_MAX_PIXELS
from ..data import open_image as open_plain_image
from ..errors import DataError

PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
SLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".dcm")
IMAGE_SUFFIXES = PLAIN_SUFFIXES + TIFF_SUFFIXES + SLIDE_SUFFIXES
WHITE = 255


class Reader(abc.ABC):
    """One image: its levels (level 0 = full resolution) and regions of them as uint8 RGB [H, W, 3]."""

    kind = ""

    def __init__(self, path: Path, level_dimensions: list[tuple[int, int]]):
        self.path = path
        self.level_dimensions = level_dimensions  # (width, height) per level, level 0 first

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    def scale(self, level: int) -> tuple[float, float]:
        """Level-0 pixels per pixel of `level`, per axis (x, y)."""
        (w0, h0), (w, h) = self.level_dimensions[0], self.level_dimensions[level]
        return w0 / w, h0 / h

    @abc.abstractmethod
    def read_region(self, x: int, y: int, width: int, height: int, level: int = 0) -> np.ndarray:
        """The region whose top-left corner is (x, y) in `level`'s own pixels; white past the edge."""

    def read_level(self, level: int) -> np.ndarray:
        return self.read_region(0, 0, *self.level_dimensions[level], level=level)

    def close(self) -> None:  # noqa: B027 (a reader of a plain image holds nothing to release)
        pass


class PlainImage(Reader):
    """A PNG / JPEG / BMP decoded whole with Pillow (hence the pixel cap)."""

    kind = "pillow"

    def __init__(self, path: Path, max_pixels: int):
        pixels = _decode_plain(path, max_pixels)
        super().__init__(path, [(pixels.shape[1], pixels.shape[0])])
        self.pixels = pixels

    def read_region(self, x, y, width, height, level=0):
        return _crop_padded(self.pixels, x, y, width, height)


class OpenSlideImage(Reader):
    kind = "openslide"

    def __init__(self, path: Path):
        import openslide  # deferred for start-up: loads OpenSlide

        try:
            self.slide = openslide.OpenSlide(str(path))
        except (openslide.OpenSlideError, OSError) as e:  # OpenSlideUnsupportedFormatError is an OpenSlideError
            raise DataError(f"{path}: OpenSlide cannot open it ({e})") from None
        super().__init__(path, [tuple(d) for d in self.slide.level_dimensions])

    def read_region(self, x, y, width, height, level=0):
        import openslide  # deferred for start-up: loads OpenSlide

        sx, sy = self.scale(level)  # OpenSlide places a region by its level-0 corner
        try:
            region = self.slide.read_region((round(x * sx), round(y * sy)), level, (width, height))
        except openslide.OpenSlideError as e:  # a corrupt tile; the handle is unusable afterwards
            raise DataError(f"{self.path}: OpenSlide cannot read region ({x}, {y}) of level {level} ({e})") from None
        return _on_white(region)

    def close(self):
        self.slide.close()


class TiffImage(Reader):
    """A (pyramidal) TIFF through tifffile: each level's tiles or strips are decoded only where a region needs
    them, so level 0 is never in memory whole."""

    kind = "tifffile"

    def __init__(self, path: Path):
        import tifffile  # deferred for start-up: loads tifffile

        # tifffile parses a corrupt file with whatever its code then meets, not only TiffFileError (fuzzed: a zero
        # TileLength divides by zero, a SamplesPerPixel of two values is a TypeError): any exception while it
        # parses is the file's fault, reported naming it
        try:
            self.tiff = tifffile.TiffFile(path)
        except Exception as e:
            raise DataError(f"{path}: tifffile cannot read it ({_reason(e)})") from None
        try:
            self.pages = [level.keyframe for level in self.tiff.series[0].levels]
            for level, page in enumerate(self.pages):
                _check_tiff_page(path, level, page)
        except Exception as e:
            self.tiff.close()
            raise DataError(
                str(e) if isinstance(e, DataError) else f"{path}: tifffile cannot read it ({_reason(e)})"
            ) from None
        super().__init__(path, [(p.imagewidth, p.imagelength) for p in self.pages])

    def read_region(self, x, y, width, height, level=0):
        page = self.pages[level]
        out = np.full((height, width, 3), WHITE, np.uint8)
        (chunk_h, chunk_w), (rows, cols) = page.chunks[:2], page.chunked[:2]
        for row in range(max(0, y // chunk_h), min(rows, -(-(y + height) // chunk_h))):
            for col in range(max(0, x // chunk_w), min(cols, -(-(x + width) // chunk_w))):
                chunk, top, left = self._decode(page, row * cols + col)
                # a full-size edge tile reaches past the image: that part stays white
                _paste(out, chunk[: page.imagelength - top, : page.imagewidth - left], top - y, left - x)
        return out

    def _decode(self, page, index: int) -> tuple[np.ndarray, int, int]:
        """Tile or strip `index` as RGB, with its top-left corner in the level's pixels."""
        fh = page.parent.filehandle
        with fh.lock:  # one file handle shared by every read (Dask threads included)
            fh.seek(page.dataoffsets[index])
            data = fh.read(page.databytecounts[index])
        try:
            chunk, position, _ = page.decode(
                data or None, index, jpegtables=page.jpegtables, jpegheader=page.jpegheader
            )
        except Exception as e:  # missing codec (JPEG needs imagecodecs), corrupt data
            raise DataError(f"{self.path}: tifffile cannot decode tile {index} ({e})") from None
        top, left = position[2], position[3]
        if chunk is None:  # an empty (never written) tile
            return np.full((page.chunks[0], page.chunks[1], 3), WHITE, np.uint8), top, left
        return _to_rgb(chunk[0]), top, left

    def close(self):
        self.tiff.close()


def open_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Reader:
    """The reader for `path` by its suffix; an unreadable file is a DataError naming it."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such image file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory")
    suffix = path.suffix.lower()
    if suffix in PLAIN_SUFFIXES:
        return PlainImage(path, max_pixels)
    if suffix in TIFF_SUFFIXES:
        return _open_tiff(path, max_pixels)
    if suffix in SLIDE_SUFFIXES:
        return OpenSlideImage(path)
    raise DataError(f"{path}: not an image tcc slide reads (suffixes: {', '.join(IMAGE_SUFFIXES)})")


@functools.lru_cache(maxsize=2)  # a plain image is held decoded: keep few
def _open_cached(path: str, stamp: tuple, max_pixels: int) -> Reader:
    return open_image(path, max_pixels)


def cached_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Reader:
    """open_image, kept open for the next batch of the same image in this process (a Dask worker reads many
    batches of one slide); a file changed since is opened again."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return open_image(p, max_pixels)  # the clean error
    return _open_cached(str(p), (st.st_mtime_ns, st.st_size), max_pixels)


def list_images(paths: list[str]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted by name); a missing file or a folder without
    images is an error now, before the model loads."""
    images = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{p}: no images in this folder (suffixes: {', '.join(IMAGE_SUFFIXES)})")
            images.extend(found)
        elif not p.exists():
            raise DataError(f"{p}: no such image file")
        else:
            images.append(p)
    return images


def _open_tiff(path: Path, max_pixels: int) -> Reader:
    """OpenSlide first (it knows the vendor TIFF variants); tifffile where OpenSlide fails or misses levels."""
    tile = _largest_tile(path)
    if tile is not None and tile[0] * tile[1] > max_pixels:  # OpenSlide holds a whole tile for each region it reads,
        # and GLib aborts the process when it cannot allocate it (fuzzed: a TileWidth of 2^31 - 1 asked for 137 GB)
        raise DataError(
            f"{path}: declares tiles of {tile[0]:,} x {tile[1]:,} pixels, above --max-pixels "
            f"{max_pixels:,}; a corrupt TIFF"
        )
    slide = tiff = None
    errors = []
    for opener in (OpenSlideImage, TiffImage):
        try:
            reader = opener(path)
        except DataError as e:
            errors.append(e.for_cli().removeprefix(f"{path}: "))  # worded once, where raised
            continue
        slide, tiff = (reader, tiff) if opener is OpenSlideImage else (slide, reader)
    if slide is None and tiff is None:
        raise DataError(f"{path}: not a readable TIFF ({'; '.join(errors)})")
    if slide is not None and (tiff is None or len(slide.level_dimensions) >= len(tiff.level_dimensions)):
        if tiff is not None:
            tiff.close()
        return slide
    if slide is not None:  # e.g. a pyramid in SubIFDs: OpenSlide sees level 0 only
        slide.close()
    assert tiff is not None  # one of the two opened
    return tiff


def _largest_tile(path: Path) -> tuple[int, int] | None:
    """(width, height) of the largest tile any page of the TIFF declares (SubIFDs too), from tifffile's reading of
    the headers; None for a stripped TIFF, or where tifffile cannot read them."""
    import tifffile  # deferred for start-up, as everywhere here: only a TIFF needs it

    try:
        with tifffile.TiffFile(path) as tif:
            pages = [*tif.pages, *(level.keyframe for series in tif.series for level in series.levels)]
            tiles = [(int(p.tilewidth), int(p.tilelength)) for p in pages if getattr(p, "is_tiled", False)]
    except Exception:  # a file tifffile cannot parse: OpenSlide's own checks, then tifffile's error, decide
        return None
    return max(tiles, key=lambda t: t[0] * t[1], default=None)


def _decode_plain(path: Path, max_pixels: int) -> np.ndarray:
    with open_plain_image(path, max_pixels, _TILE_HINT) as im:
        return _on_white(im)


_TILE_HINT = (
    "A plain image is decoded whole; convert it to a tiled pyramidal TIFF (e.g. `vips tiffsave IN OUT.tiff "
    "--tile --pyramid`), which is read region by region, or raise --max-pixels if the memory is there "
    "(3 bytes a pixel)."
)


def _on_white(im) -> np.ndarray:
    """A PIL image as RGB, transparent pixels composited onto white (OpenSlide's area outside the scanned
    region is transparent)."""
    from PIL import Image  # deferred for start-up: loads PIL

    if "A" not in im.getbands() and "transparency" not in im.info:
        return np.asarray(im.convert("RGB"))
    rgba = im.convert("RGBA")
    return np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, (WHITE,) * 4), rgba).convert("RGB"))


def _to_rgb(chunk: np.ndarray) -> np.ndarray:
    """A decoded TIFF chunk [h, w, samples] (grey, RGB or RGBA) as RGB."""
    if chunk.shape[-1] == 1:
        return np.repeat(chunk, 3, axis=-1)
    if chunk.shape[-1] == 4:
        from PIL import Image  # deferred for start-up: loads PIL

        return _on_white(Image.fromarray(np.ascontiguousarray(chunk), "RGBA"))
    return chunk


def _check_tiff_page(path: Path, level: int, page) -> None:
    """A level tcc slide reads: 8-bit samples, interleaved, and tiles or strips that cover its declared size (what
    read_region indexes with is checked here, once, rather than met as an IndexError mid-slide)."""
    if (
        page.dtype != np.uint8
        or page.samplesperpixel not in (1, 3, 4)
        or (page.samplesperpixel > 1 and page.planarconfig != 1)
        or page.imagedepth != 1
    ):
        raise DataError(
            f"{path}: level {level} is {page.dtype} with {page.samplesperpixel} samples per pixel "
            f"(planar configuration {page.planarconfig}); tcc slide reads 8-bit grey, RGB or RGBA, "
            "interleaved"
        )
    if page.imagewidth < 1 or page.imagelength < 1 or min(page.chunks[:2]) < 1:
        raise DataError(
            f"{path}: level {level} declares {page.imagewidth} x {page.imagelength} pixels in tiles or "
            f"strips of {page.chunks[1]} x {page.chunks[0]}; a corrupt TIFF"
        )
    chunks = page.chunked[0] * page.chunked[1]
    if min(len(page.dataoffsets), len(page.databytecounts)) < chunks:
        raise DataError(
            f"{path}: level {level} lists {len(page.dataoffsets)} offsets and {len(page.databytecounts)} "
            f"byte counts for its {chunks} tiles or strips; a corrupt TIFF"
        )
    if any(np.asarray(v).dtype.kind not in "iu" for v in (page.dataoffsets, page.databytecounts)):
        raise DataError(
            f"{path}: level {level}'s tile or strip offsets or byte counts are not integers (a tag of "
            "another type); a corrupt TIFF"
        )


def _reason(e: Exception) -> str:
    """What tifffile said; the exception's type where that is all it says (`division by zero`)."""
    import tifffile  # deferred for start-up, as everywhere here: only a TIFF needs it

    return str(e) if isinstance(e, (tifffile.TiffFileError, OSError, ValueError)) else f"{type(e).__name__}: {e}"


def _crop_padded(pixels: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    out = np.full((height, width, 3), WHITE, np.uint8)
    _paste(out, pixels, -y, -x)
    return out


def _paste(out: np.ndarray, chunk: np.ndarray, top: int, left: int) -> None:
    """Copy the part of `chunk` that falls inside `out` when its corner is placed at (top, left) of `out`
    (either may be negative)."""
    r0, c0 = max(0, -top), max(0, -left)
    r1, c1 = min(chunk.shape[0], out.shape[0] - top), min(chunk.shape[1], out.shape[1] - left)
    if r1 > r0 and c1 > c0:
        out[top + r0 : top + r1, left + c0 : left + c1] = chunk[r0:r1, c0:c1]
