"""Validation metrics: accuracy, macro precision / recall / F1 (scikit-learn) and the confusion matrix; for a
segmenter, from the pixels' confusion matrix, pixel accuracy and per-class and mean IoU and Dice."""

from __future__ import annotations

import numpy as np

# The metric that picks best.pt: higher is better, except for the loss.
LOWER_IS_BETTER = {"val_loss"}


def classification_metrics(labels, predictions, classes: list[str]) -> dict:
    """Per-class and macro precision / recall / F1 (a class never predicted has precision 0), accuracy, and the
    confusion matrix (rows: true class, columns: predicted)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # 1 s of imports: only rank 0

    ks = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predictions, labels=ks, zero_division=0)
    return {
        "accuracy": float(np.mean(np.asarray(labels) == np.asarray(predictions))),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(labels, predictions, labels=ks).tolist(),
    }


def pixel_confusion(masks, predictions, classes: int) -> np.ndarray:
    """[K, K] pixel counts (rows: the mask's class, columns: the predicted one) of a batch of [H, W] masks."""
    masks, predictions = np.asarray(masks).ravel(), np.asarray(predictions).ravel()
    return np.bincount(masks * classes + predictions, minlength=classes * classes).reshape(classes, classes)


def segmentation_metrics(confusion: np.ndarray, classes: list[str]) -> dict:
    """Pixel accuracy; per class IoU = TP / (TP + FP + FN) and Dice = 2 TP / (2 TP + FP + FN) over all validation
    pixels; their means over the classes present in the masks or the predictions (a class absent from both has
    nothing to score and is left out, as torchmetrics' and MONAI's means do); the confusion matrix."""
    confusion = np.asarray(confusion, np.int64)
    tp = np.diag(confusion).astype(np.float64)
    fp, fn = confusion.sum(0) - tp, confusion.sum(1) - tp
    present = (tp + fp + fn) > 0
    iou = np.divide(tp, tp + fp + fn, out=np.zeros_like(tp), where=present)
    dice = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=present)
    return {
        "pixel_accuracy": float(tp.sum() / max(1, confusion.sum())),
        "mean_iou": float(iou[present].mean()) if present.any() else 0.0,
        "mean_dice": float(dice[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {"iou": float(i), "dice": float(d), "pixels": int(n), "present": bool(p)}
            for name, i, d, n, p in zip(classes, iou, dice, confusion.sum(1), present)
        },
        "confusion_matrix": confusion.tolist(),
    }


def improves(metric: str, value: float, best: float | None) -> bool:
    """Strictly better than the best so far (the first epoch reaching a value keeps it)."""
    if best is None:
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best
