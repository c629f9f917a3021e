"""The model zoo shipped with tcc: every model spec (spec/*.yaml, spec/baselines/*.yaml) by its file name, so that a
command takes `ddsnet` where it takes `spec/ddsnet.yaml` (`tcc build ddsnet --target arm-a7`), in the checkout and
from an installed wheel alike (tcc.resources finds the files)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpecError, suggest
from ..resources import specs_dir

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class ZooModel:
    name: str  # the spec's file stem: what a command takes
    path: Path
    group: str  # "paper" (the seed papers' models) | "baseline" (torchvision's and timm's families)
    summary: str  # the spec's first comment line


def _summary(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("# ").strip()
        if line.startswith("#") and text and not text.startswith("yaml-language-server"):
            return text
    return ""


def _spec_files() -> list[tuple[str, Path]]:
    """(group, file) of every shipped spec: the papers' models first, then the baselines, then the segmenters
    (spec/segmentation), each group by name."""
    root = specs_dir()
    return (
        [("paper", p) for p in sorted(root.glob("*.yaml"))]
        + [("baseline", p) for p in sorted((root / "baselines").glob("*.yaml"))]
        + [("segmentation", p) for p in sorted((root / "segmentation").glob("*.yaml"))]
    )


def zoo_models() -> dict[str, ZooModel]:
    """Name -> model, in `_spec_files` order, each with its summary line."""
    return {p.stem: ZooModel(p.stem, p, group, _summary(p)) for group, p in _spec_files()}


def resolve_spec(spec: str | Path) -> Path:
    """A spec argument as a file: an existing path (or anything that reads as one: a folder or a suffix) is
    itself; a bare name is the zoo model of that name. A name that is neither is refused with the closest name."""
    path = Path(spec)
    if path.exists() or path.suffix or len(path.parts) > 1 or not _NAME.match(str(spec)):
        return path
    models = {p.stem: p for _, p in _spec_files()}  # names only: no file is read to resolve one
    if str(spec) in models:
        return models[str(spec)]
    raise SpecError(
        f"no such spec file, and no zoo model named '{spec}'{suggest(spec, models)}; `tcc zoo` lists the models"
    )
