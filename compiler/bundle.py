"""Artifact bundles: atomic directory writes, hashing, the manifest and the deployer's README.

A bundle is a directory: the backend's artifact(s), `manifest.json` and `README.md`. It is written into a hidden
temp directory beside OUT (`.OUT.tcc-build-PID-XXXX`) and renamed to OUT only when everything, self-check
included, succeeded. An exception, Ctrl-C (SIGINT) or SIGTERM/SIGHUP removes the temp directory and leaves no OUT.
SIGKILL cannot be caught: its temp directory stays until the next build of the same OUT, which removes temp
directories whose process is gone (or that are over a day old: pids get reused). `force` replaces an existing OUT
(only a bundle: a directory with manifest.json, or an empty one) atomically: on Linux with
renameat2(RENAME_EXCHANGE), elsewhere by two renames.

Determinism: the manifest is JSON with sorted keys and fixed indentation, floats are rounded to 4 significant
digits, and nothing in the bundle holds a time, a host name or an absolute path.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import hashlib
import json
import math
import os
import secrets
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

from .errors import BuildError, Interrupted, OutputExists

FORMAT = "tcc-bundle/1"
MANIFEST = "manifest.json"
README = "README.md"
_TMP = ".tcc-build-"
_OLD = ".tcc-old-"
STALE_AFTER_S = 24 * 3600  # a temp dir this old is stale even if its pid is alive again (pids are reused)


# ---------------------------------------------------------------------------------------------------- atomic dir
@contextlib.contextmanager
def atomic_dir(out: str | Path, force: bool = False):
    """Yield a fresh temp directory beside `out`; on normal exit it becomes `out`, on any exit else it vanishes
    (with any parent directories this call created)."""
    out = Path(out)
    check_out(out, force)
    with _signals_raise():
        made = _make_parents(out.parent)
        tmp = None
        try:
            clean_stale(out)
            tmp = _fresh_dir(out.parent, f".{out.name}{_TMP}{os.getpid()}-")
            yield tmp
            with _signals_blocked():
                check_out(out, force)  # someone may have created OUT meanwhile
                _commit(tmp, out)
        except BaseException:
            with _signals_blocked():
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                for d in reversed(made):
                    with contextlib.suppress(OSError):
                        d.rmdir()
            raise


def _make_parents(parent: Path) -> list[Path]:
    """mkdir -p, returning the directories it created (outermost first)."""
    missing = []
    p = parent.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(exist_ok=True)
        except OSError as e:
            raise BuildError(f"cannot create directory {d}: {e.strerror or e}") from None
    return list(reversed(missing))


def _fresh_dir(parent: Path, prefix: str) -> Path:
    """A new directory with the umask's permissions (mkdtemp would make it 0700, and so the bundle)."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise BuildError(f"cannot write into {parent}: {e.strerror or e}") from None
    raise BuildError(f"cannot create a temp directory in {parent}")


def check_out(out: Path, force: bool) -> None:
    if not out.exists() and not out.is_symlink():
        return
    if not force:
        raise OutputExists(out)
    if out.is_symlink() or not out.is_dir():
        raise BuildError(f"{out} exists and is not a directory; not replacing it")
    if any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise BuildError(f"{out} is a non-empty directory without {MANIFEST} (not a tcc bundle); not replacing it")


def clean_stale(out: Path) -> list[Path]:
    """Remove temp directories of earlier builds of `out` whose process no longer exists (after SIGKILL)."""
    removed = []
    for p in out.parent.glob(f".{glob_escape(out.name)}.tcc-*"):
        pid = _pid_of(p.name[len(out.name) + 1 :])
        if pid is not None and (not _alive(pid) or _age(p) > STALE_AFTER_S):  # old: the pid was reused
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _age(p: Path) -> float:
    try:
        return time.time() - p.stat().st_mtime
    except OSError:
        return 0.0


def glob_escape(s: str) -> str:
    return glob.escape(s)


def _pid_of(suffix: str) -> int | None:
    for tag in (_TMP, _OLD):
        if suffix.startswith(tag):
            head = suffix[len(tag) :].split("-", 1)[0]
            return int(head) if head.isdigit() else None
    return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _commit(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)  # atomic; fails if OUT appeared in between (then the caller cleans tmp)
        return
    if _exchange(tmp, out):  # now tmp holds the old bundle
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = _fresh_dir(out.parent, f".{out.name}{_OLD}{os.getpid()}-")
    os.rename(out, old / "bundle")
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextlib.contextmanager
def _signals_blocked():
    """Hold SIGINT/SIGTERM/SIGHUP while renaming or cleaning up, so neither is left half done."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM and SIGHUP raise Interrupted (SIGINT already raises KeyboardInterrupt), so cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    sigs = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    old = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------------------------------- hashing, JSON
def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stable_float(v: float, digits: int = 4):
    """A measured float, rounded so repeated builds print the same bytes; non-finite values become strings."""
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    return float(f"{v:.{digits}g}")


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------------------------------- writing
def finish_bundle(tmp: Path, manifest: dict) -> dict:
    """Write README.md and manifest.json (with the sha256 of every other file) into the bundle being built."""
    (tmp / README).write_text(render_readme(manifest), encoding="utf-8")
    files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {
        **manifest,
        "files": {f: {"sha256": sha256_file(tmp / f), "bytes": (tmp / f).stat().st_size} for f in files},
    }
    (tmp / MANIFEST).write_text(dumps(manifest), encoding="utf-8")
    return manifest


def render_readme(m: dict) -> str:
    inp, out = m["inputs"][0], m["outputs"][0]
    pre = m["preprocess"]
    sc = m["self_check"]
    lines = [
        f"# {m['model']['name']}: {m['target']} bundle ({m['precision']})",
        "",
        f"Built by tcc {m['tool']['version']} from `{m['model']['spec']}` "
        f"(spec sha256 `{m['model']['spec_hash'][:16]}...`).",
        "",
    ]
    w = m["weights"]
    if "random_seed" in w:
        lines += [f"**WARNING: {w['warning']}**", ""]
    else:
        lines += [f"Weights: `{w['file']}` (sha256 `{w['sha256'][:16]}...`).", ""]
    lines += [
        "## Files",
        "",
        f"- `{m['artifact']}`: the model ({m['runtime'].get('runtime', m['backend'])}, opset {m['opset']})",
        "- `manifest.json`: versions, hashes of every file, preprocessing, labels, self-check result",
        *(
            [
                f"- `{m['runtime']['kit']}`: the deployment kit (runner + runtime libraries; its README.md says how to "
                "run it on the board)"
            ]
            if "kit" in m["runtime"]
            else []
        ),
        "",
        "## Input and output",
        "",
        f"- input `{inp['name']}`: {inp['dtype']} {_shape(inp['shape'])} (NCHW)",
        f"- output `{out['name']}`: {out['dtype']} {_shape(out['shape'])}"
        + (" (logits; argmax is the class)" if m.get("labels") else ""),
        "",
        "Preprocessing (apply before feeding the input):",
        "",
        f"1. decode the image, convert to {pre['color']}",
        f"2. resize to {pre['resize'][0]}x{pre['resize'][1]} (H x W), {pre['interpolation']}",
        f"3. multiply by {pre['scale']!r}, then subtract mean {pre['mean']} and divide by std {pre['std']} per channel",
        "4. HWC -> CHW, add the batch axis",
        "",
    ]
    if m.get("labels"):
        lines += ["Labels (class index order): " + ", ".join(f"{i} {l}" for i, l in enumerate(m["labels"])), ""]
    if "note" in m["runtime"]:
        lines += [f"Note: {m['runtime']['note']}", ""]
    run = m["runtime"].get("readme_run") or [  # a backend's own instructions (TVM: the deployment kit)
        "```sh",
        "tcc predict --artifact THIS_DIR --image picture.png --json",
        "```",
        "",
        "```python",
        "import numpy as np, onnxruntime as ort",
        f"sess = ort.InferenceSession('{m['artifact']}', providers=['CPUExecutionProvider'])",
        f"logits = sess.run(['{out['name']}'], {{'{inp['name']}': x.astype(np.float32)}})[0]",
        "```",
    ]
    lines += [
        "## Run",
        "",
        *run,
        "",
        "## Self-check",
        "",
        _self_check_text(sc),
        "",
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _self_check_text(sc: dict) -> str:
    res = sc["result"]
    verdict = "passed" if res["passed"] else "FAILED"
    if "bit_exact" in res:  # INT8: against the integer reference, plus the recorded FP32 comparison
        f = sc["vs_fp32"]
        exact = "bit-exact" if res["bit_exact"] else f"max {res['max_abs_lsb']} LSB of the output"
        return (
            f"Compared with {sc['reference']} on {sc['inputs']['description']}: {exact} (required: "
            f"{res['required']}) -> {verdict}. Against the FP32 model: cosine {f['cosine']}, max abs "
            f"{f['max_abs']} ({f['max_abs_over_scale']} of the output scale)."
        )
    return (
        f"Compared with {sc['reference']} on {sc['inputs']['description']}: max abs {res['max_abs']}, "
        f"max rel {res['max_rel']}, cosine {res['cosine']} -> {verdict} (tolerance: {sc['tolerance']['rule']})."
    )


def _shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


# ---------------------------------------------------------------------------------------------------- reading
def read_manifest(bundle: str | Path, verify: bool = True) -> dict:
    """A bundle's manifest; with `verify`, every listed file must exist and match its sha256."""
    bundle = Path(bundle)
    path = bundle / MANIFEST
    if not bundle.is_dir():
        raise BuildError(f"{bundle}: no such bundle directory")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildError(f"{bundle}: not a tcc bundle (no {MANIFEST})") from None
    except (OSError, ValueError) as e:
        raise BuildError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BuildError(f"{path}: not a {FORMAT} manifest")
    check_manifest(path, manifest)
    if verify:
        for name, entry in manifest["files"].items():
            f = bundle / name
            if not f.is_file():
                raise BuildError(f"{bundle}: file {name} listed in the manifest is missing")
            if sha256_file(f) != entry["sha256"]:
                raise BuildError(f"{f}: sha256 differs from the manifest (modified or corrupted bundle)")
    return manifest


_NAME = {"type": "string", "minLength": 1}
_TENSOR: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape"],
    "properties": {
        "name": {"type": "string"},
        "dtype": {"type": "string"},
        # the batch axis ("N" or a number), then each dimension
        "shape": {
            "type": "array",
            "minItems": 1,
            "prefixItems": [{"type": ["string", "integer"]}],
            "items": {"type": "integer", "minimum": 1},
        },
    },
}
MANIFEST_SCHEMA = {  # what tcc reads back from a manifest (a build writes more: passes, libraries, target checks)
    "type": "object",
    "required": [
        "format",
        "target",
        "backend",
        "precision",
        "artifact",
        "artifacts",
        "model",
        "inputs",
        "outputs",
        "preprocess",
        "weights",
        "runtime",
        "self_check",
        "files",
    ],
    "properties": {
        "target": _NAME,
        "backend": _NAME,
        "precision": _NAME,
        "artifact": _NAME,
        "artifacts": {"type": "array", "items": _NAME},
        "model": {
            "type": "object",
            "required": ["name", "spec_hash"],
            "properties": {"name": {"type": "string"}, "spec_hash": {"type": "string"}},
        },
        "labels": {"anyOf": [{"type": "null"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
        "inputs": {
            "type": "array",
            "items": {
                **_TENSOR,
                "properties": {
                    **_TENSOR["properties"],
                    "shape": {**_TENSOR["properties"]["shape"], "minItems": 4, "maxItems": 4},
                },
            },
            "minItems": 1,
        },
        "outputs": {"type": "array", "items": _TENSOR, "minItems": 1},
        "preprocess": {
            "type": "object",
            "required": ["resize", "interpolation", "color", "scale", "mean", "std"],
            "additionalProperties": False,
            "properties": {
                "resize": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2},
                "interpolation": {"enum": ["nearest", "bilinear", "bicubic", "lanczos"]},
                "color": {"enum": ["RGB", "BGR", "L", None]},
                "scale": {"type": "number"},
                "mean": {"type": "array", "items": {"type": "number"}, "minItems": 1},
                "std": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1},
            },
        },
        "weights": {"type": "object", "properties": {"warning": {"type": "string"}}},
        "tiling": {
            "type": "object",
            "required": ["stride", "field"],
            "properties": {
                "stride": {"type": "integer", "minimum": 1},
                "field": {
                    "type": "object",
                    "required": ["radius", "method"],
                    "properties": {
                        "radius": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 0}]},
                        "method": {"type": "string"},
                    },
                },
            },
        },
        "runtime": {"type": "object"},
        "quantization": {"type": "object"},
        "self_check": {"type": "object", "required": ["result"], "properties": {"result": {"type": "object"}}},
        "files": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["sha256", "bytes"],
                "properties": {"sha256": {"type": "string"}, "bytes": {"type": "integer", "minimum": 0}},
            },
        },
    },
}


def check_manifest(path: Path, manifest: dict) -> None:
    """The fields every reader of a bundle uses (MANIFEST_SCHEMA) and how they fit together, checked once here, so
    that a damaged or hand-edited manifest is refused naming the field (exit 2), never met as a KeyError or
    TypeError in whichever reader touches it first."""
    import jsonschema  # deferred for start-up: only reading a bundle needs it

    errors = jsonschema.Draft202012Validator(MANIFEST_SCHEMA).iter_errors(manifest)
    error = min(errors, key=lambda e: [str(p) for p in e.absolute_path], default=None)
    if error is not None:
        where = ".".join(map(str, error.absolute_path)) or "(top level)"
        message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
        raise BuildError(f"{path}: invalid manifest at {where}: {message}")
    for name in manifest["files"]:
        if "\0" in name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise BuildError(f"{path}: invalid manifest: file {name!r} is not inside the bundle")
    for name in dict.fromkeys([manifest["artifact"], *manifest["artifacts"]]):
        if name not in manifest["files"]:
            raise BuildError(f"{path}: invalid manifest: its artifact {name!r} is not among its files")
    channels, pre = manifest["inputs"][0]["shape"][1], manifest["preprocess"]
    for key in ("mean", "std"):
        if len(pre[key]) != channels:
            raise BuildError(
                f"{path}: invalid manifest: preprocess.{key} has {len(pre[key])} values for the "
                f"input's {channels} channels"
            )
    if pre["color"] is not None and (pre["color"] == "L") != (channels == 1):
        raise BuildError(
            f"{path}: invalid manifest: preprocess.color {pre['color']} for an input of {channels} channels"
        )
    labels, classes = manifest.get("labels"), manifest["outputs"][0]["shape"][1:]
    if labels is not None and classes != [len(labels)]:
        raise BuildError(f"{path}: invalid manifest: {len(labels)} label(s) for an output of shape {classes}")
