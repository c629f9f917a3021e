"""The machine's failures and hostile images end in one line, exit 2, nothing half-written and earlier output intact:
a full disk (injected at the writer, and a real 600 kB tmpfs where this machine lets tests mount one), a read-only
folder, memory, and a decompression bomb given to every command that reads images."""

from __future__ import annotations

import contextlib
import errno
import io
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tcc.cli.main import main
from tcc.errors import environment_failure
from tests.helpers import REPO
from tests.helpers.train_data import texture_patches

TINY = REPO / "tests" / "specs" / "train_tiny.yaml"


def tcc(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


def _one_clean_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("WARNING: no --weights")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def built(tmp_path) -> Path:
    out = tmp_path / "bundle"
    assert tcc("build", TINY, "--target", "ort", "-o", out)[0] == 0
    return out


def test_a_full_disk_while_writing_a_bundle(built, monkeypatch):
    before = (built / "manifest.json").read_bytes()

    def full(tmp, manifest):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "manifest.json"))

    monkeypatch.setattr("tcc.build.finish_bundle", full)
    rc, err = tcc("build", TINY, "--target", "ort", "-o", built, "--force")
    line = _one_clean_line(err)
    assert rc == 2 and line.startswith("error: ") and "manifest.json: no space left on the device" in line
    assert "earlier outputs are as they were" in line
    assert (built / "manifest.json").read_bytes() == before  # the previous bundle, whole
    assert sorted(p.name for p in built.parent.iterdir()) == ["bundle"]  # no half-written sibling left


def test_a_read_only_folder_and_memory_while_calibrating(tmp_path, monkeypatch):
    data = tmp_path / "x.npy"
    import numpy as np

    np.save(data, np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32))

    def read_only(self, path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("tcc.quant.table.file.CalibrationTable.save", read_only)
    rc, err = tcc("calibrate", TINY, "--data", data, "-o", tmp_path / "t.json", "--method", "kl", "--no-compare")
    assert rc == 2 and "t.json: the file system is read-only" in _one_clean_line(err)
    monkeypatch.undo()

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("tcc.quant.calibrate.calibrate_onnx", no_memory)
    rc, err = tcc("calibrate", TINY, "--data", data, "-o", tmp_path / "t.json", "--method", "kl")
    assert rc == 2 and _one_clean_line(err).startswith("error: out of memory;")
    assert not (tmp_path / "t.json").exists()


def test_other_os_errors_are_not_dressed_up():
    """Only what the machine does is mapped; anything else keeps its traceback for the maintainer."""
    assert environment_failure(OSError(errno.ECONNRESET, "reset")) is None
    assert environment_failure(ValueError("x")) is None
    assert str(environment_failure(PermissionError(errno.EACCES, "denied", "/x/y"))).startswith("/x/y: permission")


@pytest.mark.skipif(shutil.which("mount") is None, reason="no mount command")
def test_a_real_full_disk(tmp_path):
    """`tcc build` onto a 600 kB tmpfs (the issue's case), where this machine lets tests mount one."""
    small = tmp_path / "small"
    small.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(small)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
    try:
        rc, err = tcc("build", REPO / "spec" / "ddsnet.yaml", "--target", "ort", "-o", small / "b")
        line = _one_clean_line(err)
        assert rc == 2 and "no space left on the device" in line
        assert list(small.iterdir()) == []  # nothing left behind
    finally:
        subprocess.run(["umount", str(small)], check=False)


def bomb_png(path: Path, width: int = 60_000, height: int = 60_000) -> Path:
    """A 35-byte-scale PNG that declares width x height RGB pixels: a valid header, a token of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def test_a_decompression_bomb_is_refused_by_every_command_before_decoding(tmp_path):
    bomb = bomb_png(tmp_path / "bomb.png")
    size = "declares 60,000 x 60,000 = 3,600,000,000 pixels, above --max-pixels 400,000,000; refused before decoding"
    rc, err = tcc("predict", TINY, "--image", bomb)
    assert rc == 2 and f"bomb.png: {size}" in _one_clean_line(err)
    rc, err = tcc("predict", TINY, "--image", bomb, "--max-pixels", 5_000_000_000)  # allowed: then it is truncated
    assert rc == 2 and "bomb.png: cannot read image" in _one_clean_line(err)
    folder = texture_patches(tmp_path / "data", per_class=4, size=32)
    shutil.copy(bomb, folder / "brick" / "zz_bomb.png")
    rc, err = tcc("calibrate", TINY, "--data", folder / "brick", "-o", tmp_path / "t.json")
    assert rc == 2 and f"zz_bomb.png: {size}" in _one_clean_line(err) and not (tmp_path / "t.json").exists()
    rc, err = tcc("train", TINY, "--data", folder, "-o", tmp_path / "run", "--epochs", "1", "--batch-size", "2")
    assert rc == 2 and f"zz_bomb.png: {size}" in _one_clean_line(err) and not (tmp_path / "run").exists()
    rc, err = tcc("explain", TINY, "--image", bomb, "-o", tmp_path / "cam.png")
    assert rc == 2 and f"bomb.png: {size}" in _one_clean_line(err)
    rc, err = tcc("slide", TINY, "--image", bomb, "-o", tmp_path / "slide")
    assert rc == 2 and "bomb.png: declares 60,000 x 60,000" in _one_clean_line(err)
