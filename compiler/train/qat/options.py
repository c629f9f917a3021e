"""`tcc qat`'s settings: the training options (recorded in OUT/log.json) and how its data and table are read.
Light (no PyTorch): the API checks them before it loads anything (tcc.train.qat.distill trains)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import DataError

# view: k quarter turns, then a flip if >= 4; "crops" also cuts a random square of 50-100% of the side out of each
# view and scales it back to the input size (bilinear): more distinct inputs from the same few images
AUGMENTS = {"none": (0,), "flip": (0, 4), "dihedral": tuple(range(8)), "crops": tuple(range(8))}


@dataclass(frozen=True)
class Options:
    """The training options (`tcc qat`'s flags; recorded whole in OUT/log.json)."""

    epochs: int = 20
    lr: float = 0.01  # Adam's step for the folded layers, in codes (of each weight's channel, of each bias's output)
    bias_lr: float = 0.01  # the same for the folded biases, in steps of the layer's output
    free_lr: float = 1e-5  # for parameters outside the folded layers
    scale_lr: float = 0.01  # Adam's step for the activation scales' log (LSQ); 0 keeps the table's scales
    # the weight of every quantized tensor's relative error against the FP32 model's value of it, beside the
    # logits' (averaged over the tensors): 3 held Skin's best held-out cosines of 0, 1, 3 and 10, by about the
    # run-to-run spread (docs/notes/qat.md, "What was tried")
    feature_weight: float = 3.0
    label_weight: float = 0.0  # with labels: the weight of the cross-entropy against them, beside the distillation
    batch_size: int = 16
    augment: str = "dihedral"
    seed: int = 0

    def check(self, samples: int | None, input_shape: tuple) -> None:
        """Each setting (and, given `samples`, the number of training samples): a DataError naming the option."""
        if self.epochs < 1:
            raise DataError(f"--epochs {self.epochs}: at least 1")
        if not (self.scale_lr >= 0 and np.isfinite(self.scale_lr)):
            raise DataError(f"--scale-lr {self.scale_lr}: 0 (keep the table's scales) or a positive learning rate")
        for name, lr in (("lr", self.lr), ("bias-lr", self.bias_lr), ("free-lr", self.free_lr)):
            if not (lr >= 0 and np.isfinite(lr)):
                raise DataError(f"--{name} {lr}: 0 (frozen) or a positive learning rate")
        if self.batch_size < 1:
            raise DataError(f"--batch-size {self.batch_size}: at least 1")
        if self.augment not in AUGMENTS:
            raise DataError(f"--augment {self.augment!r}: one of {', '.join(AUGMENTS)}")
        if self.augment in ("dihedral", "crops") and input_shape[-1] != input_shape[-2]:
            raise DataError(
                f"--augment dihedral turns images by quarter turns: the model's input is "
                f"{input_shape[-2]}x{input_shape[-1]}, not square (use --augment flip)"
            )
        if not (self.label_weight >= 0 and np.isfinite(self.label_weight)):
            raise DataError(f"--label-weight {self.label_weight}: 0 (distillation only) or a positive weight")
        if samples is not None and samples < 2:
            raise DataError(f"{samples} training sample(s): quantization-aware training needs at least 2")


@dataclass(frozen=True)
class QatSettings:
    """Everything `Model.qat` takes by keyword: the training options, and how the data and the table are read."""

    options: Options = field(default_factory=Options)
    calib_size: int | None = None  # samples picked (seeded) from the data (None: all)
    # held-out samples (a folder, a .npy/.npz file, an array) the result is judged on against the given FP32 model,
    # before and after training (`tcc qat --eval`; None: judged on the training samples only)
    held_out: Any = None
    skip_bad: bool = False  # warn about unreadable images instead of failing
    opset: int = 13  # the ONNX opset the table was calibrated at
