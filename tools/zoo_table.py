"""Print the model zoo as a Markdown table of measured numbers (params, MACs, FP32 size), for the README."""

from __future__ import annotations

import sys
from pathlib import Path

import tcc

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    print("| spec | input | params | MACs | FP32 size |")
    print("|---|---|---|---|---|")
    for path in [
        ROOT / "spec/ddsnet.yaml",
        ROOT / "spec/fastnet.yaml",
        ROOT / "spec/unet.yaml",
        ROOT / "spec/dds_unet.yaml",
        *sorted((ROOT / "spec/baselines").glob("*.yaml")),
        *sorted((ROOT / "spec/segmentation").glob("*.yaml")),
    ]:
        g = tcc.load_spec(path).graph
        rel = path.relative_to(ROOT)
        size = g.size_bytes_fp32 / 2**20
        print(f"| `{rel}` | {'x'.join(map(str, g.input.shape))} | {g.param_count:,} | {g.macs:,} | {size:.2f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
