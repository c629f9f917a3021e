"""What the import tests share: the command line in-process, and an imported spec's logits against ONNX Runtime."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import onnx

from tcc.cli.main import main
from tests.helpers.onnx_util import run


def tcc_cli(*argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `tcc ARGV...`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def assert_builds_int8_bit_exact(work, target: str) -> None:
    """`tcc build WORK/m.yaml --weights WORK/m.pt --target TARGET --precision int8 --data WORK/x.npy --method kl`
    (an imported spec and its weights) exits 0, its self-check bit-exact with the integer reference."""
    rc, printed, err = tcc_cli(
        "build", work / "m.yaml", "--weights", work / "m.pt", "--target", target, "--precision", "int8",
        "--data", work / "x.npy", "--method", "kl", "-o", work / f"b-{target}",
    )  # fmt: skip
    assert rc == 0, err
    assert "self-check vs the integer reference: bit-exact" in printed


def assert_predicts_as_onnx_runtime(spec, weights, onnx_path, x_file) -> None:
    """`tcc predict SPEC --weights W` on the saved batch equals ONNX Runtime on the original file (the FP32 rule's
    scale-aware bound)."""
    rc, printed, err = tcc_cli("predict", spec, "--weights", weights, "--input", x_file, "--json", "--logits")
    assert rc == 0, err
    logits = np.array([row["logits"] for row in json.loads(printed)], np.float32)
    want = run(onnx.load(onnx_path), np.load(x_file))
    np.testing.assert_allclose(logits, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max())))
