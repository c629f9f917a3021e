"""Training from an ONNX file: `tcc train model.onnx --data DIR -o RUN` imports it in memory (`tcc import`'s way,
its own weights the starting point) and keeps what it imported in the run, RUN/spec.yaml and RUN/imported.pt, so
that `tcc train --resume RUN` and `tcc build RUN/spec.yaml --weights RUN/best.pt` read them there: the run is a plain
spec run from its first finished epoch on."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..bundle import sha256_file
from ..errors import DataError
from ..onnx_import import import_options, import_to_files, source_record
from ..spec.loader import as_overrides

SPEC_FILE = "spec.yaml"  # in RUN: the imported spec
WEIGHTS_FILE = "imported.pt"  # in RUN: the ONNX file's weights, the run's starting point (config.yaml's weights)


@dataclass
class ImportedOnnx:
    onnx: Path
    sha256: str
    options: dict  # the import's --set options (size, mean, std)
    spec_file: Path  # the imported spec and weights, in `workdir` for as long as the process lives
    weights_file: Path
    workdir: tempfile.TemporaryDirectory

    def argv(self) -> list[str]:
        """The ONNX file and its import options as `tcc train` takes them (what torchrun's processes import)."""
        sets = [a for k, v in self.options.items() for a in ("--set", f"{k}={json.dumps(list(v))}")]
        return [str(self.onnx), *sets]

    def run_files(self) -> dict[str, bytes]:
        """What the run keeps of the import: written once, with the first finished epoch."""
        return {SPEC_FILE: self.spec_file.read_bytes(), WEIGHTS_FILE: self.weights_file.read_bytes()}

    def describe(self) -> dict:
        return source_record(str(self.onnx), self.sha256, self.options)


def import_for_training(args) -> ImportedOnnx:
    """Import `args.spec` (an ONNX file) and point `args.spec` / `args.weights` at the imported spec and weights;
    `--set` gives the import's options. Everything a user can get wrong is refused first."""
    given = [
        flag
        for flag, on in (("--weights", args.weights), ("--by-order", args.by_order), ("--key-map", args.key_map))
        if on
    ]
    if given:
        raise DataError(
            f"{args.spec}: an ONNX file carries its weights, the run's starting point: drop "
            f"{', '.join(given)} (or `tcc import` it and train the spec it writes)"
        )
    path = Path(args.spec)
    options = import_options(as_overrides(args.overrides), path)
    workdir = tempfile.TemporaryDirectory(prefix="tcc-train-onnx-")
    spec_file, weights_file = import_to_files(path, workdir.name, **options)
    args.spec, args.weights, args.overrides = str(spec_file), str(weights_file), []
    return ImportedOnnx(path, sha256_file(path), options, spec_file, weights_file, workdir)
