"""Grad-CAM (Selvaraju et al., ICCV 2017), the heat map of the DDSNet paper's section 4.5.

For the chosen layer's activations A (K channels of h x w) and the explained class's score y (its logit, before
any softmax):
    w_k = mean over (i, j) of dy / dA_k[i, j]      the channel's importance for the class
    CAM = ReLU(sum_k w_k A_k)                      only the evidence for the class
upsampled bilinearly to the input's H x W and min-max normalised to [0, 1]. A CAM without spread (zero everywhere
after the ReLU: nothing at that layer speaks for the class; or constant) comes back all zero with `flat` set,
never as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import load_pixels, normalize_pixels, open_image
from ..errors import DataError, suggest
from .capture import record
from .layers import Layer, LayerIndex


@dataclass
class GradCam:
    cam: np.ndarray  # [H, W] float32 in [0, 1], the input's size; all zero when flat
    coarse: np.ndarray  # [h, w] float32: ReLU(sum_k w_k A_k) at the layer's resolution, before normalising
    channel_weights: np.ndarray  # [K] float32: w_k
    probabilities: np.ndarray  # [classes] float64: softmax of the scores
    target: int  # the class explained
    flat: bool  # the CAM had no spread: `cam` is all zero

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def peak(self) -> tuple[int, int]:
        """(row, column) of the map's maximum in input pixels (the first in raster order)."""
        row, col = np.unravel_index(int(np.argmax(self.cam)), self.cam.shape)
        return int(row), int(col)


def grad_cam(gm, x: torch.Tensor, layer: str, target: int | None = None, scores: str | None = None) -> GradCam:
    """Grad-CAM of one input `x` [1, C, H, W] at fx node `layer` for class `target` (default: the predicted one).
    `scores`: the fx node holding the class scores when it is not the output (a final softmax's input)."""
    with torch.enable_grad():
        out, values = record(gm, x, {layer} | ({scores} if scores else set()), cut=layer)
        logits = (values[scores] if scores else out)[0]
        target = int(logits.argmax()) if target is None else target
        (grad,) = torch.autograd.grad(logits[target], values[layer], allow_unused=True)
    if grad is None:
        raise DataError(f"the class scores do not depend on layer {layer}: no gradient to weigh it by")
    activation = values[layer].detach()[0]
    weights = grad[0].mean(dim=(1, 2))
    coarse = torch.relu(torch.einsum("k,khw->hw", weights, activation))
    upsampled = F.interpolate(coarse[None, None], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    cam, flat = normalise(upsampled[0, 0].numpy())
    probabilities = torch.softmax(logits.detach().double(), 0).numpy()
    return GradCam(cam, coarse.numpy(), weights.numpy(), probabilities, target, flat)


def normalise(cam: np.ndarray) -> tuple[np.ndarray, bool]:
    """Min-max to [0, 1] (computed in float64, so the maximum is exactly 1); (all zero, True) without spread."""
    if not np.isfinite(cam).all():
        raise DataError(
            "the Grad-CAM holds NaN or infinite values (non-finite activations or gradients at the "
            "layer): check the weights"
        )
    cam = cam.astype(np.float64)
    lo, hi = cam.min(), cam.max()
    if not hi > lo:
        return np.zeros(cam.shape, np.float32), True
    return ((cam - lo) / (hi - lo)).astype(np.float32), False


def class_index(text: str, labels: list[str] | None, count: int) -> int:
    """`--class K|LABEL`: a class index (0-based) or one of the spec's labels."""
    if text.lstrip("-").isdigit():
        k = int(text)
        if not 0 <= k < count:
            raise DataError(f"--class {k}: the model has {count} classes (0 to {count - 1})")
        return k
    if labels and text in labels:
        return labels.index(text)
    known = f"labels: {', '.join(labels)}" if labels else "the spec names no labels: give an index"
    raise DataError(f"--class {text!r}: not a class index or label{suggest(text, labels or [])} ({known})")


@dataclass
class ImageExplanation:
    layer: Layer
    gradcam: GradCam
    pixels: np.ndarray  # [H, W, C] uint8 at the model's input size: what the map lies over
    image_size: tuple[int, int]  # (width, height) of the image file

    def peak_in_image(self) -> tuple[int, int]:
        """The map's peak as (x, y) pixels of the image file (the input is the file resized)."""
        row, col = self.gradcam.peak
        (w, h), (in_h, in_w) = self.image_size, self.pixels.shape[:2]
        return int((col + 0.5) * w / in_w), int((row + 0.5) * h / in_h)


def explain_image(
    model, gm, image: str | Path, layer: str | None = None, target: str | None = None
) -> ImageExplanation:
    """Grad-CAM of `model` (its PyTorch lowering `gm`, eval mode) on one image file, at `layer` (default: the last
    spatial conv, concat or add) for class `target` (an index or label; default: the predicted class)."""
    index = LayerIndex(model.graph, gm.meta["value_names"])
    chosen, scores = index.gradcam(layer), index.scores()
    count = model.graph.shape(model.graph.output)[0]
    k = None if target is None else class_index(target, model.labels, count)
    pixels = load_pixels(image, model.preprocess)
    x = torch.from_numpy(normalize_pixels(pixels, model.preprocess))[None]
    result = grad_cam(gm, x, chosen.fx_name, k, scores.fx_name if scores else None)
    with open_image(image) as im:
        size = im.size
    return ImageExplanation(chosen, result, pixels, size)
