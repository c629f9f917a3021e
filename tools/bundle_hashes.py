#!/usr/bin/env python3
"""The sha256 of every file of DDSNet's bundles, FP32 and INT8, on every target family, to prove that a change
which should not alter what users get (a refactor) leaves each artifact byte-identical.

    .venv/bin/python tools/bundle_hashes.py -o out/hashes.json            # build and hash
    .venv/bin/python tools/bundle_hashes.py -o out/after.json --compare out/before.json   # exit 1 on a difference

The bundles: ort, host, arm-a7, aarch64, aarch64-dotprod and tflite at fp32 and int8, and the ax650 kit; the INT8
ones from the calibration tables `tcc calibrate` writes for the ort, tvm and tflite rules on 32 crops of the
fixtures' histology (tcc.quant.collect.crops.make_crops, seed 0), which are hashed too. With ../shared's GC
checkpoint where it is present, else the spec's seeded weights (the hashes then say so). The host bundles depend
on this machine's CPU (-mcpu=native): compare them only between runs on one machine.

A TVM module's DWARF line table holds the line numbers of tcc's own TVMScript functions (amx.py, compute.py,
intrinsics.py), which move whenever their source file is edited: each shared library is also hashed without its
debug sections and build id (`code`), and a module whose bytes differ only there is reported as such, not failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TCC = [sys.executable, "-m", "tcc"]
CHECKPOINT = ROOT.parent / "shared" / "fixtures" / "ddsnet" / "GC_DDS_0.0064.pth"
CALIBRATIONS = {"ort": "ort", "tvm": "arm-a7", "tflite": "tflite"}  # rules -> a target that calibrates for them
BUNDLES = [  # (name, target, precision, the rules of the table it is built from)
    *((f"{t}-fp32", t, "fp32", None) for t in ("ort", "host", "arm-a7", "aarch64", "aarch64-dotprod", "tflite")),
    ("ort-int8", "ort", "int8", "ort"),
    *((f"{t}-int8", t, "int8", "tvm") for t in ("host", "arm-a7", "aarch64", "aarch64-dotprod")),
    ("tflite-int8", "tflite", "int8", "tflite"),
    ("ax650", "ax650", None, None),
]


OBJCOPY = {0x3E: "objcopy", 0x28: "arm-linux-gnueabihf-objcopy", 0xB7: "aarch64-linux-gnu-objcopy"}  # ELF e_machine


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _code_sha(path: Path) -> str:
    """The sha256 of a shared library without its debug sections and build id (which hashes them)."""
    machine = int.from_bytes(path.read_bytes()[18:20], "little")
    with tempfile.TemporaryDirectory() as tmp:
        stripped = Path(tmp) / path.name
        subprocess.run(
            [OBJCOPY[machine], "--strip-debug", "--remove-section=.note.gnu.build-id", str(path), str(stripped)],
            check=True,
        )
        return _sha(stripped)


def _bundle_hashes(out: Path) -> tuple[dict, dict]:
    """(each file's sha256, the same with every shared library's code hash, the manifest's record of them too)."""
    files = {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*")) if p.is_file()}
    raw = {name: _sha(p) for name, p in files.items()}
    code = {name: _code_sha(p) for name, p in files.items() if name.endswith(".so")}
    manifest = json.loads((out / "manifest.json").read_text())
    for name, sha in code.items():
        if name in manifest.get("files", {}):
            manifest["files"][name]["sha256"] = sha
    normal = {**raw, **code, "manifest.json": hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()}
    return raw, normal


def _tcc(*args: str) -> None:
    t = time.perf_counter()
    proc = subprocess.run([*TCC, *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"tcc {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    print(f"  {time.perf_counter() - t:6.1f} s  tcc {' '.join(args[:3])} ...", file=sys.stderr)


def hash_bundles(work: Path, tables_from: Path | None = None) -> dict:
    """Calibrate and build into `work`; the bundles are built from the tables in `tables_from` where given (an
    earlier run's: a table records its own wall times, and a bundle the sha256 of the file it was built from)."""
    weights = ["--weights", str(CHECKPOINT), "--by-order"] if CHECKPOINT.exists() else []
    crops = work / "crops"
    if not crops.exists():
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from tcc.quant.collect.crops import make_crops; make_crops({str(crops)!r}, 32, seed=0)",
            ],
            check=True,
            cwd=ROOT,
        )
    result: dict = {
        "weights": CHECKPOINT.name if weights else "seeded",
        "work": str(work),
        "tables": {},
        "bundles": {},
        "code": {},
    }
    tables = tables_from or work
    result["tables_dir"] = str(tables)  # the tables these bundles were built from (a later --compare builds from them)
    for rules, target in CALIBRATIONS.items():
        table = work / f"calib-{rules}.json"
        table.unlink(missing_ok=True)
        _tcc(
            "calibrate",
            "spec/ddsnet.yaml",
            *weights,
            "--data",
            str(crops),
            "--target",
            target,
            "-o",
            str(table),
            "--no-compare",
        )
        doc = json.loads(table.read_text())
        doc.pop("timing_s", None)  # wall times: the only part of a table that moves from run to run
        result["tables"][rules] = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    for name, target, precision, rules in BUNDLES:
        out = work / name
        args = ["build", "spec/ddsnet.yaml", "--target", target, *weights, "-o", str(out), "--force"]
        if precision:
            args += ["--precision", precision]
        if rules:
            args += ["--calib", str(tables / f"calib-{rules}.json")]
        if target == "ax650":
            args += ["--data", str(crops)]
        _tcc(*args)
        result["bundles"][name], result["code"][name] = _bundle_hashes(out)
    return result


def differences(before: dict, after: dict) -> tuple[list[str], list[str]]:
    """(what differs, what differs only in the debug line tables of the TVM modules and the records of them)."""
    lines = [
        f"table {r}: {before['tables'].get(r)} -> {h}"
        for r, h in after["tables"].items()
        if before["tables"].get(r) != h
    ]
    debug_only = []
    for name, files in after["bundles"].items():
        old = before["bundles"].get(name, {})
        for f in sorted(set(files) | set(old)):
            if files.get(f) != old.get(f):
                same_code = after["code"][name].get(f) == before.get("code", {}).get(name, {}).get(f)
                (debug_only if same_code else lines).append(f"{name}/{f}: {old.get(f)} -> {files.get(f)}")
    return lines, debug_only


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", required=True, help="the hashes as JSON")
    p.add_argument("--work", default="out/bundle-hashes", help="where the crops, tables and bundles are written")
    p.add_argument(
        "--compare",
        metavar="JSON",
        help="an earlier run's output: list what differs, exit 1 if any (the "
        "bundles are built from that run's tables, which must still be in its --work folder)",
    )
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    before = json.loads(Path(args.compare).read_text()) if args.compare else None
    result = hash_bundles(work.resolve(), Path(before.get("tables_dir", before["work"])) if before else None)
    Path(args.output).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.compare:
        diff, debug_only = differences(before, result)
        for line in debug_only:
            print(f"{line} (the TVM module's debug line table only: its code is byte-identical)")
        print("\n".join(diff) if diff else f"every table and bundle file's content equals {args.compare}'s")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
