"""Validation metrics: accuracy, macro precision / recall / F1 (scikit-learn) and the confusion matrix."""

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


def improves(metric: str, value: float, best: float | None) -> bool:
    """Strictly better than the best so far (the first epoch reaching a value keeps it)."""
    if best is None:
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best
