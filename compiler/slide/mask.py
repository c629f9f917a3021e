"""FastNet's tissue mask (section III-B-1 of the paper): three masks ANDed.

- RGB_MASK: Otsu's threshold on each of R, G and B; tissue is the darker class in all three (stain absorbs light,
  the glass around the tissue is bright).
- HSV_MASK: Otsu's threshold on the HSV *saturation*; tissue is the more saturated class. The paper says only
  "the HSV color model"; saturation is the channel that separates stained tissue from the white-grey background
  (hue is undefined on grey pixels and wraps around, value is max(R, G, B) and so repeats RGB_MASK).
- THRESHOLD_MASK: every one of R, G, B within 50..240 (the paper's band; drops white glass and black ink or
  folds).

Otsu's split follows scikit-image (`threshold_otsu`: pixels above the threshold are the bright class), so a
channel value equal to the threshold counts as dark. Saturation is (max - min) / max of R, G, B as
`skimage.color.rgb2hsv` defines it, scaled to 0..255 and rounded, so all four thresholds are integers on one
256-bin histogram. The image is visited in strips of rows, so a large plain image needs no float copy of itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DataError

BAND = (50, 240)  # THRESHOLD_MASK: the paper's RGB range of tissue
STRIP_ROWS = 256
PATCH_PER_MASK_PIXELS = 8  # an automatic mask level has at least 8 x 8 mask pixels under each patch


@dataclass(frozen=True)
class Thresholds:
    """Otsu's thresholds (0..255): tissue has red, green, blue <= these and saturation > `saturation`."""

    red: int
    green: int
    blue: int
    saturation: int

    def to_json(self) -> dict:
        return asdict(self)


def tissue_mask(rgb: np.ndarray) -> tuple[np.ndarray, Thresholds]:
    """uint8 RGB [H, W, 3] -> the bool tissue mask [H, W] (RGB_MASK & HSV_MASK & THRESHOLD_MASK) and the
    thresholds found."""
    t = otsu_thresholds(rgb)
    mask = np.empty(rgb.shape[:2], bool)
    for rows in _strips(rgb):
        px = rgb[rows]
        rgb_mask = (px[..., 0] <= t.red) & (px[..., 1] <= t.green) & (px[..., 2] <= t.blue)
        hsv_mask = saturation(px) > t.saturation
        threshold_mask = ((px >= BAND[0]) & (px <= BAND[1])).all(axis=-1)
        mask[rows] = rgb_mask & hsv_mask & threshold_mask
    return mask, t


def otsu_thresholds(rgb: np.ndarray) -> Thresholds:
    """Otsu's threshold of R, G, B and saturation, from 256-bin histograms gathered strip by strip."""
    counts = np.zeros((4, 256), np.int64)
    for rows in _strips(rgb):
        px = rgb[rows]
        for c, channel in enumerate((px[..., 0], px[..., 1], px[..., 2], saturation(px))):
            counts[c] += np.histogram(channel, bins=256, range=(0, 256))[0]
    return Thresholds(*(_otsu(c) for c in counts))


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation of uint8 RGB as uint8 0..255: round(255 * (max - min) / max), 0 where max is 0."""
    hi = rgb.max(axis=-1).astype(np.float64)
    lo = rgb.min(axis=-1).astype(np.float64)
    s = np.divide(hi - lo, hi, out=np.zeros_like(hi), where=hi > 0)
    return np.rint(s * 255).astype(np.uint8)


def choose_level(reader, patch_size: int, requested: int | None, max_pixels: int) -> int:
    """The level the mask is computed on: `requested`, or the coarsest level whose downsample (per axis) is at
    most patch_size / 8, so that each patch still spans 8 x 8 mask pixels (256-pixel patches: downsample <= 32;
    a plain image has level 0 only). Its pixels must fit under `max_pixels`."""
    levels = reader.level_dimensions
    if requested is not None:
        if not 0 <= requested < len(levels):
            raise DataError(f"{reader.path}: --mask-level {requested}, but the image has levels 0..{len(levels) - 1}")
        level = requested
    else:
        limit = patch_size / PATCH_PER_MASK_PIXELS
        level = max(k for k in range(len(levels)) if max(reader.scale(k)) <= limit + 1e-9 or k == 0)
    w, h = levels[level]
    if w * h > max_pixels:
        raise DataError(
            f"{reader.path}: level {level} ({w} x {h}) is the one to compute the tissue mask on, but it "
            f"holds more than --max-pixels {max_pixels:,} pixels; the file has no smaller level: convert "
            "it to a tiled pyramidal TIFF (e.g. `vips tiffsave IN OUT.tiff --tile --pyramid`)"
        )
    return level


def _otsu(counts: np.ndarray) -> int:
    from skimage.filters import threshold_otsu  # deferred for start-up: loads scikit-image

    if np.count_nonzero(counts) < 2:  # one value only: no two classes; that value is the (dark) class
        return int(np.flatnonzero(counts)[0]) if counts.any() else 0
    return int(threshold_otsu(hist=(counts, np.arange(256))))


def _strips(image: np.ndarray):
    for top in range(0, image.shape[0], STRIP_ROWS):
        yield slice(top, top + STRIP_ROWS)
