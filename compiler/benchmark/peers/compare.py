"""`tcc bench --peers`: each model's ONNX Runtime and TFLite bundles run by the peers on each AArch64 class, beside
tcc's own `aarch64` and `aarch64-dotprod` bundles of the same model; and the ratios the speed targets judge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tcc.errors import TccError

from .measure import ENGINES, measure
from .sysroot import CORE_CLASSES

PEER_BUNDLES = {"ort": "ort", "litert-xnnpack": "tflite", "litert-builtin": "tflite"}  # engine -> bench bundle target
PRECISIONS = ("fp32", "int8")


def arm_peers(bundles: Path, x: np.ndarray, log: Callable[[str], None] = lambda s: None) -> dict:
    """{class: {"ENGINE-PRECISION": measure()'s record, or {"error"}}} for the bench's bundles in `bundles`, on
    input `x` (one held-out crop, NCHW)."""
    out: dict = {}
    for core in CORE_CLASSES:
        rows: dict = {}
        for precision in PRECISIONS:
            for engine, target in PEER_BUNDLES.items():
                key = f"{engine}-{precision}"
                path = bundles / f"{target}-{precision}" / ENGINES[engine][0]
                if not path.exists():
                    rows[key] = {"error": f"no {target}-{precision} bundle was built"}
                    continue
                try:
                    rows[key] = measure(engine, path, core, x)
                except TccError as e:  # a missing tool or a failed run is a result, not a crash
                    rows[key] = {"error": str(e).splitlines()[0]}
                log(f"ARM peer {key} on {core}: {rows[key].get('cycles', {}).get('total', rows[key].get('error'))}")
        out[core] = rows
    return out


def tcc_vs_best_peer(model: dict, core: str, precision: str) -> tuple[float, str] | None:
    """tcc's estimated cycles on the class over the fewest of its peers' at the same precision, and that peer."""
    tcc = model.get("builds", {}).get(f"{CORE_CLASSES[core].target}-{precision}", {}).get("cycles")
    peers = {
        k: r["cycles"]["total"]
        for k, r in model.get("arm_peers", {}).get(core, {}).items()
        if k.endswith(f"-{precision}") and "cycles" in r
    }
    if not tcc or not peers:
        return None
    best = min(peers, key=lambda k: peers[k])
    return tcc["total"] / peers[best], best
