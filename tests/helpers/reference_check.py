"""Shared steps of the zoo tests that check a spec against a reference model (torchvision's or timm's): the
`--set` arguments of a configuration, MACs as FlopCounterMode counts them, the hyperparameters a parameter count
cannot see, a reference's state_dict through the plain `tcc predict --weights`, and the ONNX build's self-check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import tcc
from tcc.cli.main import main as cli
from tcc.lower.weights import fit_to_checkpoint, load_weights
from tcc.tolerance import compare


def set_args(values: dict) -> list[str]:
    """`--set key=value` for each entry; lists written as JSON without spaces (one argv word each)."""
    return [a for k, v in values.items() for a in ("--set", f"{k}={json.dumps(v).replace(' ', '')}")]


def flop_count_macs(model: torch.nn.Module, size: int) -> int:
    """MACs of one image as FlopCounterMode counts them, on the meta device (shapes only); train mode, so that
    attention takes the plain path of two matrix products that it sees."""
    with FlopCounterMode(display=False) as counter:
        model.train()(torch.zeros(1, 3, size, size, device="meta"))
    return counter.get_total_flops() // 2


def hyperparameters(module: torch.nn.Module, kind: str, acting_only: bool = False) -> list:
    """What a parameter count cannot see, sorted: BatchNorm (eps, momentum), LayerNorm eps, dropout p (with
    acting_only, the dropouts whose p > 0: a spec leaves the others out)."""
    if kind == "bn":
        return sorted((b.eps, b.momentum) for b in module.modules() if isinstance(b, torch.nn.BatchNorm2d))
    if kind == "ln":
        return sorted(n.eps for n in module.modules() if isinstance(n, torch.nn.LayerNorm))
    return sorted(d.p for d in module.modules() if isinstance(d, torch.nn.Dropout) and (d.p > 0 or not acting_only))


def predict_with_state_dict(
    spec: Path, reference: torch.nn.Module, x: torch.Tensor, tmp_path: Path, capsys, sets: list[str] = ()
) -> tuple[np.ndarray, str]:
    """The reference's state_dict saved and given to `tcc predict SPEC --weights FILE` with nothing else; the
    logits (one row per sample) and what the command said on stderr. The reference's own logits, and tcc's in
    float64 for the FP32 rule, are compared by `assert_logits_equal`."""
    weights = tmp_path / "reference.pth"
    torch.save(reference.state_dict(), weights)
    np.save(tmp_path / "x.npy", x.numpy())
    assert (
        cli(["predict", str(spec), *sets, "--weights", str(weights), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    )
    out, err = capsys.readouterr()
    results = json.loads(out)
    rows = [r["logits"] for r in results] if isinstance(results, list) else [results["logits"]]
    return np.array(rows, np.float32), err


def assert_logits_equal(reference: torch.nn.Module, model, x: torch.Tensor, logits: np.ndarray, weights: Path) -> None:
    """`logits` (tcc's, from the reference's state_dict in `weights`) equal the reference's within the FP32
    contract (tcc.tolerance), judged against tcc's own module run in float64."""
    model = fit_to_checkpoint(model, weights)
    module = tcc.to_torch(model.graph)
    load_weights(module, model.graph, weights, layouts=model.checkpoints)
    with torch.no_grad():
        want = reference(x).numpy()
        exact = module.eval().double()(x.double()).numpy()
    assert logits.shape == want.shape
    result = compare(want, logits, "fp32", exact=exact)
    assert result["passed"], result


def assert_ort_build_self_checks(spec: Path, sets: list[str], out: Path, capsys, *extra: str) -> None:
    """`tcc build SPEC --target ort` writes the ONNX form and its self-check against PyTorch passes."""
    assert cli(["build", str(spec), *sets, "--target", "ort", *extra, "-o", str(out)]) == 0
    said = "".join(capsys.readouterr())
    assert "self-check vs PyTorch" in said and "-> passed" in said
    assert (out / "model.onnx").is_file()
