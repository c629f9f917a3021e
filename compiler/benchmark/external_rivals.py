"""The post-training quantizers tcc is judged against beside ONNX Runtime's own: NNCF and AIMET, one table.

Each pins its own numpy / onnx / torch, so they live in their own virtual environment (`make rivals`:
.venv-rivals), never in tcc's. A rival runs in this interpreter when it is importable here, else in the one the
caller names (`--rivals-python`), where this file runs as a worker on files and needs nothing of tcc:

    python compiler/benchmark/external_rivals.py RIVAL FP32.onnx CALIB.npy OUT.onnx

Every rival returns a QDQ ONNX model (per-channel 8-bit weights) that ONNX Runtime runs on its integer kernels, judged
like tcc's and quantize_static's. The configurations are each library's plain post-training quantization, as its
documentation's first example takes it, on the same calibration crops:
- `nncf`: `nncf.quantize`, preset mixed (asymmetric activations), its default fast bias correction;
- `aimet-minmax`, `aimet-tfenhanced`: AIMET's QuantizationSimModel with its per-channel configuration
  (`default_config_per_channel.json`) after its batch-norm fold, encodings from the min-max or the SQNR-searched
  ("tf-enhanced") ranges, exported as QDQ (`to_onnx_qdq`).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import onnx

NOT_INSTALLED = 3  # the worker's exit status when its interpreter lacks the rival's library


class RivalError(Exception):
    """A rival that could not run (no such interpreter, or its library failed): the caller's user error."""


@dataclass(frozen=True)
class Rival:
    """One external quantizer: the library it needs, its row's label, and how it quantizes (fp32, calibration
    array) -> QDQ model."""

    library: str
    label: str
    quantize: Callable[[onnx.ModelProto, np.ndarray], onnx.ModelProto]


def _nncf(fp32: onnx.ModelProto, array: np.ndarray) -> onnx.ModelProto:
    import nncf

    name = fp32.graph.input[0].name
    dataset = nncf.Dataset([array[i : i + 1] for i in range(len(array))], lambda x: {name: x})
    model: onnx.ModelProto = nncf.quantize(fp32, dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(array))
    return model


def _aimet(scheme: str) -> Callable[[onnx.ModelProto, np.ndarray], onnx.ModelProto]:
    def quantize(fp32: onnx.ModelProto, array: np.ndarray) -> onnx.ModelProto:
        import logging

        import aimet_onnx
        import onnx
        from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight
        from aimet_onnx.quantsim import QuantizationSimModel

        logging.getLogger("Quant").setLevel(logging.WARNING)  # one INFO line per layer otherwise
        model = onnx.ModelProto()
        model.CopyFrom(fp32)
        fold_all_batch_norms_to_weight(model)
        config = Path(aimet_onnx.__file__).parent / "common" / "quantsim_config" / "default_config_per_channel.json"
        sim = QuantizationSimModel(
            model, param_type="int8", activation_type="int8", quant_scheme=scheme, config_file=str(config)
        )
        name = model.graph.input[0].name
        sim.compute_encodings([{name: array[i : i + 1]} for i in range(len(array))])
        qdq: onnx.ModelProto = sim.to_onnx_qdq()
        return qdq

    return quantize


EXTERNAL_RIVALS = {
    "nncf": Rival("nncf", "NNCF mixed", _nncf),
    "aimet-minmax": Rival("aimet_onnx", "AIMET min-max", _aimet("min_max")),
    "aimet-tfenhanced": Rival("aimet_onnx", "AIMET tf-enhanced", _aimet("tf_enhanced")),
}


def installed_here(rival: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(EXTERNAL_RIVALS[rival].library) is not None


def quantize(rival: str, fp32: onnx.ModelProto, array: np.ndarray, python: str | None = None) -> onnx.ModelProto | None:
    """The rival's QDQ model of `fp32` calibrated on `array`: in this interpreter when its library is importable,
    else in the interpreter `python` (this file as a worker); None when neither has it."""
    if installed_here(rival):
        return EXTERNAL_RIVALS[rival].quantize(fp32, array)
    return quantize_elsewhere(rival, fp32, array, python) if python else None


def quantize_elsewhere(rival: str, fp32: onnx.ModelProto, array: np.ndarray, python: str) -> onnx.ModelProto | None:
    """`quantize` run by another interpreter through files; None when that one lacks the rival's library."""
    import numpy as np
    import onnx

    with tempfile.TemporaryDirectory() as d:
        src, data, out = Path(d) / "fp32.onnx", Path(d) / "calib.npy", Path(d) / "rival.onnx"
        onnx.save(fp32, src)
        np.save(data, array)
        try:
            done = subprocess.run(
                [python, __file__, rival, str(src), str(data), str(out)], capture_output=True, text=True
            )
        except OSError as e:  # no such interpreter, not executable
            raise RivalError(f"{python}: {e.strerror}") from None
        if done.returncode == NOT_INSTALLED:
            return None
        if done.returncode != 0:
            raise RivalError(f"{EXTERNAL_RIVALS[rival].label} under {python} failed:\n{done.stderr[-2000:]}")
        return onnx.load(out)


def worker(argv: list[str]) -> int:
    """The worker side of quantize_elsewhere: RIVAL FP32.onnx CALIB.npy OUT.onnx."""
    if len(argv) != 4 or argv[0] not in EXTERNAL_RIVALS:
        rivals = ",".join(EXTERNAL_RIVALS)
        print(f"usage: external_rivals.py {{{rivals}}} FP32.onnx CALIB.npy OUT.onnx", file=sys.stderr)
        return 2
    rival, src, data, out = argv
    if not installed_here(rival):
        print(f"{EXTERNAL_RIVALS[rival].library} is not installed in {sys.executable}", file=sys.stderr)
        return NOT_INSTALLED
    import numpy as np
    import onnx

    onnx.save(EXTERNAL_RIVALS[rival].quantize(onnx.load(src), np.load(data)), out)
    return 0


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1:]))
