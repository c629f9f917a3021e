"""The data tcc ships beside its code, found with importlib.resources so that an installed wheel works like the
checkout: the block library (package `tcc.zoo`: the repo's zoo/), the model specs and the JSON schemas (package
`tcc.specs`: the repo's spec/, with baselines/ and schema/). pyproject.toml maps both folders into the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _folder(package: str) -> Path:
    # installed wheels and editable installs both unpack to real folders, so a Traversable is a Path here
    return Path(str(resources.files(package)))


def blocks_dir() -> Path:
    """The zoo's block library (zoo/blocks/*.yaml)."""
    return _folder("tcc.zoo") / "blocks"


def specs_dir() -> Path:
    """The shipped model specs (spec/*.yaml, spec/baselines/*.yaml)."""
    return _folder("tcc.specs")


def schema_path(name: str) -> Path:
    """A JSON schema shipped in spec/schema, e.g. schema_path("calibration") -> .../calibration.schema.json."""
    return specs_dir() / "schema" / f"{name}.schema.json"
