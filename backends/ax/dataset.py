"""The calibration archive of an AX kit: exactly the samples tcc's calibration used, in the toolchain's format.

Images (a calibration folder): each chosen image decoded, converted to the spec's colour and resized to the model's
input size with the spec's interpolation, then stored as a lossless PNG at the archive root. The toolchains' own
resize is not documented; an image already at the input size leaves it nothing to do, and the remaining step, the
per-channel (x - mean) / std that the config gives in pixel units, reproduces tcc's calibration tensors (checked:
`read_back`). Arrays (a .npy/.npz calibration set, already preprocessed): one float32 [1, C, H, W] sample per file,
`.npy` for Pulsar2 (`calibration_format: Numpy`), raw `.bin` in one folder for Pulsar v1 (its non-image form).

The tar is deterministic (sorted names, zero times and owners, fixed modes), so a kit built twice is identical.
Sources: [pulsar-docs] advanced_guides.rst (tar of images; .bin samples via ndarray.tofile in one folder),
[pulsar2-docs-en] advanced_build_guides.md (tar of JPEG/PNG, or .npy / .bin samples loaded as they are).
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import numpy as np

from tcc.data import load_pixels, normalize_pixels
from tcc.errors import BuildError

ARCHIVE = "calibration.tar"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _png(path: Path, pre) -> bytes:
    """The pixels tcc's preprocessing starts from (BGR models too are stored RGB: the toolchain reorders them,
    tensor_format), as a PNG."""
    from PIL import Image  # deferred for start-up: loads PIL

    pixels = load_pixels(path, pre)
    buf = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def samples(cd, pre, toolchain: str) -> tuple[str, list[tuple[str, bytes]]]:
    """(format, [(name in the archive, bytes)]) for the calibration data `cd`
    (tcc.quant.collect.data.CalibrationData)."""
    if cd.files:
        root = Path(cd.source)
        return "Image", [
            (f"{i:04d}_{_safe(Path(f).name.rsplit('.', 1)[0])}.png", _png(root / f, pre))
            for i, f in enumerate(cd.files)
        ]
    if toolchain == "pulsar":  # raw little-endian float32 in one folder, as Pulsar v1's example packs them
        return "Binary", [
            (f"calibration/{i:04d}.bin", np.ascontiguousarray(a[None], "<f4").tobytes()) for i, a in enumerate(cd.array)
        ]
    out = []
    for i, a in enumerate(cd.array):
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(a[None], np.float32), allow_pickle=False)
        out.append((f"{i:04d}.npy", buf.getvalue()))
    return "Numpy", out


def write_archive(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        folders = sorted({m.rsplit("/", 1)[0] for m, _ in members if "/" in m})
        for d in folders:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, data in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))


def read_back(path: Path, fmt: str, pre, shape: tuple) -> np.ndarray:
    """The archive as the toolchain's preprocessing sees it: [N, C, H, W] float32 after (x - mean) / std in pixel
    units (images) or as stored (arrays). Used to check that the archive reproduces tcc's calibration tensors."""
    from PIL import Image  # deferred for start-up: loads PIL

    out = []
    with tarfile.open(path) as tar:
        for m in sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name):
            member = tar.extractfile(m)
            assert member is not None  # a regular file (isfile above)
            data = member.read()
            if fmt == "Image":
                with Image.open(io.BytesIO(data)) as im:
                    out.append(normalize_pixels(np.asarray(im), pre))
            elif fmt == "Numpy":
                out.append(np.load(io.BytesIO(data), allow_pickle=False)[0])
            else:
                out.append(np.frombuffer(data, "<f4").reshape(shape))
    if not out:
        raise BuildError(f"{path.name}: the calibration archive is empty")
    return np.stack(out).astype(np.float32)


def pixel_normalization(pre) -> tuple[list[float], list[float]]:
    """The spec's (x * scale - mean) / std as (x - mean') / std' on 0..255 pixel values: the form both toolchains
    take (Pulsar2's calibration_mean / std; Pulsar v1's input_normalization on the uint8 input)."""
    s = float(pre.scale)
    return [round(m / s, 6) for m in pre.mean], [round(d / s, 6) for d in pre.std]
