"""`make demo`'s bring-your-own-model step: a model as a user has it, exported by torch.onnx.export.

    python tools/demo_export.py OUT.onnx [--model mobilenet_v3_small] [--size 96] [--classes 6] [--dynamic-size]

torchvision's definition (installed beside the CPU torch with --no-deps, as the tests' reference) with tcc's seeded
random weights (BN statistics and scales non-trivial, unlike a fresh torchvision model's): nothing is downloaded.
Its operator registrations are stubbed as in tests/helpers/torchvision_reference.py (torchvision's compiled ops do
not load beside the CPU torch; the model definitions do not need them)."""

from __future__ import annotations

import argparse
import sys
import types

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--model", default="mobilenet_v3_small")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--dynamic-size", action="store_true", help="height and width dynamic too (as many exports are)")
    args = p.parse_args()
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision

    from tcc.lower.to_torch import init_weights

    model = init_weights(getattr(torchvision.models, args.model)(weights=None, num_classes=args.classes), seed=0)
    model.eval()
    torch.onnx.export(
        model,
        torch.randn(1, 3, args.size, args.size),
        args.out,
        dynamo=False,
        opset_version=13,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "n", 2: "h", 3: "w"} if args.dynamic_size else {0: "n"}},
    )
    print(f"exported torchvision {args.model} ({args.classes} classes, seeded weights) to {args.out}")


if __name__ == "__main__":
    main()
