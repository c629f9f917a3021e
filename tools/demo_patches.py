#!/usr/bin/env python3
"""`make demo`'s data for tcc train / slide / explain:
- OUT/patches/<class>/*.png: two classes of random crops, for training. With ../shared/fixtures/ddsnet present the
  classes are real histology (GC: the gastric-cancer image, PCam: the lymph-node image); without it, two texture
  photographs scikit-image ships (brick, grass). OUT/sources/<class>.png: the two source images.
- OUT/slide.png: scikit-image's immunohistochemistry image (512 x 512; tissue with background around it, as
  FastNet's tissue mask expects), a small stand-in for a slide."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "ddsnet"


def sources() -> dict[str, Image.Image]:
    if (FIXTURES / "GC.png").is_file() and (FIXTURES / "PCam.png").is_file():
        return {name: Image.open(FIXTURES / f"{name}.png").convert("RGB") for name in ("GC", "PCam")}
    import skimage.data

    return {name: Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in ("brick", "grass")}


def main(out: Path, per_class: int = 48) -> None:
    import skimage.data

    from tcc.quant.collect.crops import make_crops

    images = sources()
    for seed, (name, im) in enumerate(images.items(), start=1):
        src = out / "sources" / f"{name}.png"
        src.parent.mkdir(parents=True, exist_ok=True)
        im.save(src)
        make_crops(out / "patches" / name, per_class, seed=seed, min_side=min(96, *im.size), images=[src])
    Image.fromarray(skimage.data.immunohistochemistry()).save(out / "slide.png")
    print(f"{out}/patches: {', '.join(images)} ({per_class} crops each); {out}/slide.png: scikit-image's IHC image")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
