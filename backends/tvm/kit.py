"""The deployment kit of a TVM bundle: the names of the bundle's files (`ARTIFACT`, `KIT`, `KIT_INFO`) and
`write_kit`, which writes kit/ beside the compiled module -- the runner and the TVM runtime copied from the
target's runtime (backends/tvm/runtime.py), kit.json, a README for the board and run.sh (the layout: the module
docstring of backends/tvm/backend.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ...targets import Platform
from ..base import EmitOptions
from . import runtime as rt

ARTIFACT = "model.so"
KIT = "kit"
KIT_INFO = "kit/kit.json"


def write_kit(out_dir: Path, platform: Platform, runtime: Path, input_shape, options: EmitOptions) -> list[str]:
    kit = out_dir / KIT
    (kit / "bin").mkdir(parents=True)
    (kit / "lib").mkdir()
    files = []
    shutil.copy2(runtime / "bin" / "tcc-run", kit / "bin" / "tcc-run")
    files.append(f"{KIT}/bin/tcc-run")
    for lib in sorted((runtime / "lib").iterdir()):
        if lib.is_file():
            shutil.copy2(lib, kit / "lib" / lib.name)
            files.append(f"{KIT}/lib/{lib.name}")
    info = {
        "target": platform.name,
        "arch": platform.arch,
        "precision": options.precision,
        "tvm_version": rt.tvm_versions()[0],
        "module": f"../{ARTIFACT}",
        "input_shape": input_shape,
        "qemu": list(platform.qemu) if platform.qemu else None,
    }
    (out_dir / KIT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    (kit / "README.md").write_text(_kit_readme(platform, input_shape, options.precision))
    run_sh = kit / "run.sh"
    run_sh.write_text(_RUN_SH)
    run_sh.chmod(0o755)
    return [*files, KIT_INFO, f"{KIT}/README.md", f"{KIT}/run.sh"]


_RUN_SH = """#!/bin/sh
# Run the bundle's model on one input: ./run.sh input.bin output.bin [tcc-run options]
# (tensor files: see README.md in this folder). Works from any directory.
set -e
KIT="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 2 ] || { echo "usage: $0 input.bin output.bin [--repeat N] [--threads N]" >&2; exit 2; }
IN="$1"; OUT="$2"; shift 2
exec "$KIT/bin/tcc-run" "$@" "$KIT/../model.so" "$IN" "$OUT"
"""


def _kit_readme(platform: Platform, input_shape, precision: str) -> str:
    shape = "x".join(str(d) for d in input_shape)
    qemu = " ".join(platform.qemu) if platform.qemu else None
    lines = [
        f"# Deployment kit: {platform.name} ({platform.description}), {precision}",
        "",
        "This folder runs `../model.so` without Python: `bin/tcc-run` (the runner) and `lib/` (the TVM runtime"
        + (", libstdc++ and libgcc_s" if platform.is_cross else "")
        + "; found through the runner's RUNPATH "
        "`$ORIGIN/../lib`, no LD_LIBRARY_PATH needed).",
        "",
        "## On the board",
        "",
        "```sh",
        "scp -r BUNDLE_DIR board:/opt/model        # the whole bundle: model.so + kit/",
        "ssh board 'cd /opt/model/kit && ./bin/tcc-run ../model.so input.bin output.bin'",
        "# or, from anywhere:  /opt/model/kit/run.sh input.bin output.bin",
        "```",
        "",
        "Options: `--repeat N` (prints the median latency), `--threads N`, `--shape D0,D1,..` for a raw float32",
        "input without header, `--raw-output`. Exit status 0 ok, 1 runtime error, 2 bad command line or input.",
        "",
    ]
    if platform.is_cross:
        lines += [
            "Board requirements: Linux with glibc >= 2.34"
            + (", a VFPv4 + NEON core (Cortex-A7 and up)" if platform.arch == "armv7" else ", ARMv8-A (64-bit)")
            + ".",
            "",
            "On this x86_64 machine the same kit runs under qemu-user:",
            "",
            "```sh",
            f"cd kit && {qemu} bin/tcc-run ../model.so input.bin output.bin",
            "```",
            "",
        ]
    lines += [
        "## Tensor files (TCCT, little-endian)",
        "",
        f"The input is float32 NCHW `{shape}` (preprocessed as `../README.md` says). A file is a 24-byte header",
        "`TCCT`, u32 version 1, u32 dtype code (0 int, 1 uint, 2 float), u32 bits, u32 ndim, u32 0; then ndim int64",
        "dimensions; then the data in C order. The output file holds one such record per model output.",
        "",
        "```python",
        "import numpy as np",
        "hdr = b'TCCT' + np.array([1, 2, 32, x.ndim, 0], '<u4').tobytes() + np.array(x.shape, '<i8').tobytes()",
        "open('input.bin', 'wb').write(hdr + x.astype('<f4').tobytes())",
        "y = np.frombuffer(open('output.bin', 'rb').read()[24 + 8 * 2:], '<f4')   # a 2-D output",
        "```",
        "",
        "(`tcc.backends.tensor_file.write_tensor_file` / `read_tensor_file` do the same; the full description is in",
        "backends/tvm/runtime_recipe/README.md of the tcc repository, also in the installed package.)",
        "",
    ]
    return "\n".join(lines)
