"""The training loop: epochs of (train, validate, keep the best), in one process or as one of N under torchrun.

Deterministic: the initial weights come from the seed (or a checkpoint), the sample order, augmentation, dropout
and stochastic depth from (seed, epoch, sample or step), and on GPUs PyTorch runs its deterministic algorithms, so
the same data and seed give byte-identical checkpoints, and a resumed run continues exactly as an uninterrupted
one would have.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim import SGD, Adam
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, StepLR

from . import rundir
from .config import render
from .curves import write_curves
from .data import ImageFolderSet
from .distributed import Processes, gather, wrap
from .losses import Loss, class_weights
from .masks import MaskPairSet
from .metrics import classification_metrics, improves, pixel_confusion, segmentation_metrics
from .modules import global_batchnorm, key_dropout, key_stochastic_depth
from .precise_bn import BatchNorm, recompute_statistics
from .preflight import model_fingerprint
from .sample_rng import BatchKeys
from .sampling import batches, train_loader, train_sampler, val_loader

OPTIMIZERS = {
    "sgd": lambda params, c: SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
    "adam": lambda params, c: Adam(params, lr=c.lr, weight_decay=c.weight_decay),
}


CURVES_EVERY_S = 60.0  # curves.png during a run at most this often (drawing takes about a second)


def _constant(epoch: int) -> float:
    return 1.0


SCHEDULES = {  # stepped once per epoch
    "constant": lambda opt, c: LambdaLR(opt, _constant),
    "step": lambda opt, c: StepLR(opt, step_size=c.step_every, gamma=c.step_factor),
    "cosine": lambda opt, c: CosineAnnealingLR(opt, T_max=c.epochs),
}


@dataclass
class History:
    """The epochs so far and the best one (what last.pt carries besides the tensors)."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None

    def add(self, record: dict, metric: str) -> bool:
        """Append an epoch's record; True when it is the best so far."""
        self.epochs.append(record)
        if not improves(metric, record[metric], self.best_value):
            return False
        self.best_epoch, self.best_value = record["epoch"], record[metric]
        return True


@contextlib.contextmanager
def deterministic(device: torch.device):
    """On GPUs PyTorch's deterministic algorithms (a warning where an op has none), the previous mode after the run.
    PyTorch's CPU kernels of these models are deterministic already (for a given thread count; the byte-identical
    test checks it), and turning the mode on costs 3 s of imports."""
    if device.type != "cuda":
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


class Trainer:
    def __init__(self, plan, procs: Processes, progress: bool):
        self.plan, self.procs, self.config = plan, procs, plan.config
        c, split = self.config, plan.split
        self.progress = progress and procs.main
        self.keys = BatchKeys(c.seed)
        module = plan.module
        dropouts = key_dropout(module, self.keys)
        key_stochastic_depth(module, self.keys, first_stream=1 + dropouts)
        if procs.world > 1:
            global_batchnorm(module, procs.device)
        for name in plan.frozen:
            module.get_submodule(name).requires_grad_(False)
        self.frozen_batchnorms = [
            m for name in plan.frozen for m in module.get_submodule(name).modules() if isinstance(m, BatchNorm)
        ]
        self.module = module.to(procs.device)  # unwrapped: validation and checkpoints
        self.model = wrap(self.module, procs)
        self.optimizer = OPTIMIZERS[c.optimizer]([p for p in self.module.parameters() if p.requires_grad], c)
        self.scheduler = SCHEDULES[c.schedule](self.optimizer, c)
        weights = class_weights(c, split.train_counts())
        self.loss = Loss(c.loss, weights, c.gamma, c.dice_weight if split.segment else 0.0)
        pre, dataset = plan.model.preprocess, MaskPairSet if split.segment else ImageFolderSet
        self.train_set = dataset(split.train, pre, c.augment, c.seed)
        self.sampler = train_sampler(self.train_set, procs, c.seed)
        self.train_loader = train_loader(self.train_set, self.sampler, c.batch_size, procs, c.num_workers)
        self.val_loader = val_loader(dataset(split.val, pre), c.batch_size, procs, c.num_workers)
        self.history = History()
        self.first_epoch = 0
        self.curves_drawn = time.monotonic()
        if plan.resumed is not None:
            self._restore(plan.resumed)

    def _restore(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = History(json.loads(state["history"]), state["best_epoch"], state["best_value"])
        self.first_epoch = state["epoch"]

    # ------------------------------------------------------------------------------------------------ epochs
    def fit(self, stop_after: int | None = None, log=print) -> History:
        """Train from the first unfinished epoch to the last (or to `stop_after`); the main process keeps the
        history, logs and writes RUN."""
        c = self.config
        last = min(c.epochs, stop_after or c.epochs)
        for epoch in range(self.first_epoch, last):
            start = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss = self.train_epoch(epoch)
            self.precise_batchnorm(epoch)
            scores = self.evaluate()
            if not self.procs.main:
                continue
            record = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": train_loss,
                **scores,
                "seconds": round(time.perf_counter() - start, 3),
            }
            best = self.history.add(record, c.metric)
            self._save(epoch + 1, best, draw=epoch + 1 == last)
            log(_epoch_line(record, c, best))
        return self.history

    def train_epoch(self, epoch: int) -> float:
        """One pass over the training set; the mean loss over all processes' samples."""
        self.model.train()
        for bn in self.frozen_batchnorms:  # frozen: normalize by, and keep, the checkpoint's statistics
            bn.eval()
        self.sampler.set_epoch(epoch)
        self.train_set.epoch = epoch
        total, count = 0.0, 0
        for step, (x, y, index) in enumerate(self._bar(self.train_loader, epoch)):
            self.keys.set(epoch, index, step)
            loss = self._objective(self.model(x.to(self.procs.device)), y.to(self.procs.device))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total, count = total + loss.item() * len(y), count + len(y)
        self.scheduler.step()
        sums = gather((total, count), self.procs)
        return sum(t for t, _ in sums) / sum(n for _, n in sums)

    def precise_batchnorm(self, epoch: int) -> None:
        """BN statistics recomputed (tcc.train.precise_bn) over up to `precise_bn` batches of the epoch just
        trained, in the same order and augmentation, so that validation and the checkpoint see current ones."""
        if not self.config.precise_bn:
            return
        self.train_set.epoch = epoch
        images = (x.to(self.procs.device) for x, _, _ in batches(self.train_loader))
        recompute_statistics(self.module, images, self.config.precise_bn, self.procs, skip=self.plan.frozen)

    def _objective(self, out, target: torch.Tensor) -> torch.Tensor:
        """The main head's loss plus aux_weight times each auxiliary head's (training-mode outputs of specs with
        `output:` side heads: (main, {name: aux})), as torchvision trains GoogLeNet (0.3 each)."""
        main, aux = out if isinstance(out, tuple) else (out, {})
        return self.loss(main, target) + self.config.aux_weight * sum(self.loss(a, target) for a in aux.values())

    @torch.no_grad()
    def evaluate(self) -> dict | None:
        """Validation loss and metrics over the whole validation set (every process's share, gathered); the main
        process computes them, the others return None. A segmenter's sample contributes its pixels' confusion
        matrix (summed in sample order, so one process and many agree)."""
        self.module.eval()
        split = self.plan.split
        rows: list[Any] = []
        for x, y, index in batches(self.val_loader):
            logits = self.module(x.to(self.procs.device))
            losses = self.loss.per_sample(logits, y.to(self.procs.device))
            predicted = logits.argmax(1).cpu().numpy()
            if split.segment:
                k = len(split.classes)
                scores: list[Any] = [pixel_confusion(m, p, k) for m, p in zip(y.numpy(), predicted)]
                labels: list[Any] = [None] * len(scores)
            else:
                scores, labels = predicted.tolist(), y.tolist()
            rows += zip(index.tolist(), labels, scores, losses.tolist())
        rows = sorted((r for part in gather(rows, self.procs) for r in part), key=lambda r: r[0])
        if not self.procs.main:
            return None
        _, truths, predictions, losses = zip(*rows)
        if split.segment:
            return {"val_loss": sum(losses) / len(losses), **segmentation_metrics(sum(predictions), split.classes)}
        return {
            "val_loss": sum(losses) / len(losses),
            **classification_metrics(truths, predictions, split.classes),
        }

    def _bar(self, loader, epoch: int):
        if not self.progress:
            return batches(loader)
        from tqdm import tqdm  # deferred for start-up: loads tqdm

        return tqdm(
            batches(loader),
            total=len(loader),
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            unit="batch",
            leave=False,
            file=sys.stderr,
        )

    # ------------------------------------------------------------------------------------------------ RUN
    def _save(self, epochs_done: int, best: bool, draw: bool) -> None:
        """The epoch's files; curves.png after the run's last epoch, and during it at most every CURVES_EVERY_S."""
        c, plan, h = self.config, self.plan, self.history
        draw = draw or time.monotonic() - self.curves_drawn >= CURVES_EVERY_S
        if draw:
            self.curves_drawn = time.monotonic()

        def curves(path):
            write_curves(path, h.epochs, c.metric, h.best_epoch)

        weights = rundir.plain_state_dict(self.module)
        state = {
            "epoch": epochs_done,
            "model": weights,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_epoch": h.best_epoch,
            "best_value": h.best_value,
            "history": json.dumps(h.epochs),
            "model_sha256": model_fingerprint(plan.model),
            "classes": plan.split.classes,
        }
        spec_file = plan.kept_spec if plan.imported else plan.model.path
        log = {
            "spec": str(plan.kept_spec),
            "spec_file": str(spec_file.resolve()),  # --resume RUN reads it
            **({"imported": plan.imported.describe()} if plan.imported else {}),
            "model": plan.model.name,
            "classes": plan.split.classes,
            "data": plan.split.describe(),
            "processes": self.procs.world,
            "metric": c.metric,
            "best": {"epoch": h.best_epoch, c.metric: h.best_value},
            "epochs": h.epochs,
        }
        rundir.save_epoch(
            plan.run,
            config_text=render(plan.run_config(), plan.run),
            state=state,
            kept=plan.imported.run_files() if plan.imported else {},
            best_weights=weights if best else None,
            log=log,
            curves=curves if draw else None,
        )


def _epoch_line(r: dict, c, best: bool) -> str:
    if "mean_iou" in r:
        return (
            f"epoch {r['epoch']}/{c.epochs}: train loss {r['train_loss']:.4f}, val loss {r['val_loss']:.4f}, "
            f"pixel accuracy {r['pixel_accuracy']:.4f}, mean IoU {r['mean_iou']:.4f}, mean Dice {r['mean_dice']:.4f}, "
            f"lr {r['lr']:.3g}" + ("  [best]" if best else "")
        )
    return (
        f"epoch {r['epoch']}/{c.epochs}: train loss {r['train_loss']:.4f}, val loss {r['val_loss']:.4f}, "
        f"accuracy {r['accuracy']:.4f}, macro P/R/F1 {r['macro_precision']:.4f}/{r['macro_recall']:.4f}/"
        f"{r['macro_f1']:.4f}, lr {r['lr']:.3g}" + ("  [best]" if best else "")
    )
