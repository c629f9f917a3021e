"""Every zoo spec against torchvision 0.28 at its full input size: a torchvision model with seeded random weights
(tcc.lower.to_torch.init_weights: BatchNorm statistics, norms' and layer scales' factors non-trivial too), its
state_dict imported the way the plain
`tcc predict SPEC --weights FILE` does (the spec's declared checkpoint layout, num_classes read from the checkpoint),
and the logits compared with torchvision's under the FP32 contract (tcc.tolerance: against the tcc lowering in
float64). CI runs the small ones at 32x32 (tests/zoo/test_numbers_c.py); this is the slow sweep.

    .venv/bin/python tools/zoo_torchvision.py                  # every spec of spec/baselines/ (~15 min on 2 cores)
    .venv/bin/python tools/zoo_torchvision.py convnext_tiny alexnet --classes 1000

Prints one Markdown row per spec; exit 1 if any fails. Test-only torchvision import: see
tests/helpers/torchvision_reference.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' helpers: tests/helpers

import tcc
from tcc.lower.to_torch import init_weights
from tcc.lower.weights import fit_to_checkpoint, load_weights
from tcc.tolerance import compare
from tests.helpers import torchvision_reference as tv

# torchvision's constructor arguments that the spec's defaults correspond to
TV_ARGS = {
    "inception_v3": {"aux_logits": False, "init_weights": False},
    "googlenet": {"aux_logits": False, "init_weights": False},
}


def check(name: str, classes: int, seed: int = 0) -> dict:
    """torchvision's and the spec's logits on one seeded input, judged by the FP32 contract."""
    t0 = time.perf_counter()
    reference = init_weights(tv.build(name, num_classes=classes, **TV_ARGS.get(name, {})), seed + 1)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / f"{name}.pth"
        torch.save(reference.state_dict(), weights)
        model = fit_to_checkpoint(tcc.load_spec(ROOT / "spec" / "baselines" / f"{name}.yaml"), weights)
        module = tcc.to_torch(model.graph).eval()
        match = load_weights(module, model.graph, weights, layouts=model.checkpoints)
    x = torch.randn(1, *model.input_shape, generator=torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        got, want = reference(x).numpy(), module(x).numpy()
        exact = module.double()(x.double()).numpy()
    result = compare(got, want, "fp32", exact=exact)
    return {
        "name": name,
        "input": "x".join(map(str, model.input_shape)),
        "classes": int(model.params["num_classes"]),
        "how": match.how.split(":")[0],
        "seconds": time.perf_counter() - t0,
        **result,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="zoo specs (default: every spec of spec/baselines/)")
    p.add_argument("--classes", type=int, default=6, help="torchvision's num_classes (1000: as its ImageNet weights)")
    args = p.parse_args(argv)
    names = args.names or sorted(p.stem for p in (ROOT / "spec" / "baselines").glob("*.yaml"))
    tv.torchvision_models()  # checks the version
    print(f"torch {torch.__version__}, torchvision {tv.VERSION}, {torch.get_num_threads()} threads\n")
    print(
        "| spec | input | classes | imported | max abs vs float64 | bound | torch float32 error | cosine | passed | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    failed = 0
    for name in names:
        r = check(name, args.classes)
        failed += not r["passed"]
        print(
            f"| {r['name']} | {r['input']} | {r['classes']} | {r['how']} | {r['max_abs_vs_float64']:.3g} | "
            f"{r['bound']:.3g} | {r['pytorch_float32_error']:.3g} | {r['cosine']} | {r['passed']} | "
            f"{r['seconds']:.0f} |",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
