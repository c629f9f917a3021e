"""RUN/curves.png: the training and validation loss, the validation metrics and the learning rate per epoch."""

from __future__ import annotations

from pathlib import Path

from ..plots import pyplot, save

_METRICS = (
    ("accuracy", "accuracy"),
    ("macro_precision", "macro precision"),
    ("macro_recall", "macro recall"),
    ("macro_f1", "macro F1"),
    ("pixel_accuracy", "pixel accuracy"),
    ("mean_iou", "mean IoU"),
    ("mean_dice", "mean Dice"),
)  # a classifier's first four, a segmenter's last three: those the records hold are drawn


def training_curves(history: list[dict], metric: str, best_epoch: int | None):
    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (loss_ax, metric_ax, lr_ax) = plt.subplots(1, 3, figsize=(14, 4))
    loss_ax.plot(epochs, [r["train_loss"] for r in history], "o-", ms=3, label="train")
    loss_ax.plot(epochs, [r["val_loss"] for r in history], "o-", ms=3, label="validation")
    loss_ax.set_title("loss")
    for key, label in (m for m in _METRICS if m[0] in history[0]):
        metric_ax.plot(epochs, [r[key] for r in history], "o-", ms=3, label=label)
    metric_ax.set_ylim(-0.02, 1.02)
    metric_ax.set_title("validation")
    lr_ax.plot(epochs, [r["lr"] for r in history], "o-", ms=3)
    lr_ax.set_title("learning rate")
    for ax in (loss_ax, metric_ax, lr_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.5", ls="--", lw=1)
    loss_ax.legend()
    metric_ax.legend(loc="lower right", title=f"best.pt: epoch {best_epoch} by {metric}" if best_epoch else None)
    fig.tight_layout()
    return fig


def write_curves(path: Path, history: list[dict], metric: str, best_epoch: int | None) -> Path:
    return save(training_curves(history, metric, best_epoch), path)  # atomic, no timestamp in the PNG
