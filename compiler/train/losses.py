"""The losses of `tcc train`: cross-entropy, focal loss and FastNet's AttLoss, for K >= 2 classes; for a segmenter
the same per pixel, plus the soft Dice loss.

Every loss is the mean over the batch of  -w[y] * f(p_t) * log p_t,  with p_t the softmax probability of the
sample's true class, w a weight per class and f a focusing factor:

    ce        f = 1                   w = class_weights (default 1)
    focal     f = (1 - p_t)^gamma     w = [1 - alpha, alpha, ..., alpha]   (FastNet eq. 6, Lin et al.)
    attloss   f = 1 - p_t^gamma       w = [1, alpha, ..., alpha]           (FastNet eq. 7: alpha^y)

The papers' equations are binary, with p the probability of the positive class (class 1): p_t = p for y = 1 and
1 - p for y = 0, so for K = 2 these are exactly eq. 6 and eq. 7 (tests/train/test_train.py checks it against numpy
evaluations of the printed formulas). For K > 2, class 0 (the first class folder, e.g. "normal") is the negative
class and every other class a positive one; `alpha` may also be a list, one weight per class.

The mean is the plain mean over the batch (the papers' 1/N), also with class weights (not PyTorch's weighted
mean, which divides by the sum of the weights): so the mean over a global batch is the mean of the per-process
means, and DistributedDataParallel's gradient averaging gives exactly the one-process gradient. A segmenter's
sample loss is the mean of its pixels' losses plus dice_weight (1- soft Dice), so the same holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_TINY = torch.finfo(torch.float32).tiny  # keeps (1 - p_t)^gamma differentiable at p_t = 1 for gamma < 1


def _no_focus(log_pt: torch.Tensor, gamma: float) -> torch.Tensor:
    return torch.ones_like(log_pt)


def _focal_focus(log_pt: torch.Tensor, gamma: float) -> torch.Tensor:
    return (-torch.expm1(log_pt)).clamp_min(_TINY) ** gamma  # (1 - p_t)^gamma


def _attloss_focus(log_pt: torch.Tensor, gamma: float) -> torch.Tensor:
    return -torch.expm1(gamma * log_pt)  # 1 - p_t^gamma, exact also where p_t^gamma is close to 1


def _positive_weights(negative: Callable[[float], float]):
    """alpha -> per-class weights: class 0 gets negative(alpha), the others alpha; a list is taken as it is."""

    def weights(alpha, num_classes: int) -> list[float]:
        if isinstance(alpha, list):
            return [float(a) for a in alpha]
        return [float(negative(alpha))] + [float(alpha)] * (num_classes - 1)

    return weights


@dataclass(frozen=True)
class LossDef:
    focus: Callable[[torch.Tensor, float], torch.Tensor]
    alpha_weights: Callable | None  # alpha -> class weights; None: the loss takes `class_weights` instead
    doc: str


LOSSES = {
    "ce": LossDef(_no_focus, None, "cross-entropy"),
    "focal": LossDef(_focal_focus, _positive_weights(lambda a: 1 - a), "focal loss (FastNet eq. 6)"),
    "attloss": LossDef(_attloss_focus, _positive_weights(lambda a: 1.0), "AttLoss (FastNet eq. 7)"),
}


class Loss:
    """loss(logits [N, K], target [N]) -> scalar; per_sample(...) -> [N]. A segmenter's logits [N, K, H, W] and
    masks [N, H, W]: each sample's loss is the mean over its pixels, plus `dice_weight` times the soft Dice loss."""

    def __init__(self, name: str, class_weights: list[float], gamma: float = 0.0, dice_weight: float = 0.0):
        self.name, self.gamma, self.dice_weight = name, gamma, dice_weight
        self.focus = LOSSES[name].focus
        self.weights = torch.tensor(class_weights, dtype=torch.float32)

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        w = self.weights.to(logits.device)[target]
        loss = -w * self.focus(log_pt, self.gamma) * log_pt
        if loss.ndim == 1:
            return loss
        loss = loss.reshape(len(loss), -1).mean(dim=1)  # the mean over each sample's pixels
        return loss + self.dice_weight * soft_dice_loss(log_p.exp(), target) if self.dice_weight else loss

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.per_sample(logits, target).mean()


def soft_dice_loss(probabilities: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Per sample, 1 - the mean over classes of the soft Dice 2 sum(p t) / (sum(p) + sum(t)) of the softmax
    probabilities p [N, K, H, W] and the one-hot mask t (Milletari et al. 2016, V-Net; `smooth` keeps a class absent
    from both at Dice 1 and the gradient finite)."""
    k = probabilities.shape[1]
    onehot = F.one_hot(target, k).movedim(-1, 1).to(probabilities.dtype)
    p, t = probabilities.flatten(2), onehot.flatten(2)
    dice = (2 * (p * t).sum(2) + smooth) / (p.sum(2) + t.sum(2) + smooth)
    return 1 - dice.mean(dim=1)


def class_weights(config, train_counts: list[int]) -> list[float]:
    """The per-class weights of the configured loss: alpha for focal / attloss, class_weights for ce (`auto`:
    n / (K * n_c), the inverse class frequency scaled to mean 1 on the training set)."""
    k = len(train_counts)
    spec = LOSSES[config.loss]
    if spec.alpha_weights is not None:
        return spec.alpha_weights(config.alpha, k)
    if config.class_weights == "auto":
        return [sum(train_counts) / (k * n) for n in train_counts]
    return [float(w) for w in config.class_weights] if config.class_weights else [1.0] * k
