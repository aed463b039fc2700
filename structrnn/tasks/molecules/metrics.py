"""Figures and losses of the molecule and TU tasks: regression errors, classification (per task,
binary or multi-class, missing labels masked) with ROC-AUC and PR-AUC, and what a target column
is when the user did not say.

A classification output is one block of logits per task, side by side: task ``t`` with
``classes[t]`` classes owns ``classes[t]`` columns (two for a binary task, so every task is a
softmax and a binary task's probability of the positive class is its second column). Labels are
a float (M, T) tensor with NaN where a molecule has no label for a task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.utils.class_weight import compute_class_weight
from torch import Tensor
from torch.nn import functional

__all__ = ["regression_metrics", "classification_metrics", "classification_loss", "roc_auc",
           "average_precision", "split_logits", "class_weights"]


def regression_metrics(pred: Tensor, true: Tensor, names: list[str]) -> dict[str, Any]:
    """RMSE, MAE and R^2 per target (NaN targets ignored); pred/true (M, T) in target units."""
    out: dict[str, Any] = {"rmse": {}, "mae": {}, "r2": {}}
    for t, name in enumerate(names):
        mask = ~torch.isnan(true[:, t])
        p, y = pred[mask, t].double(), true[mask, t].double()
        err = p - y
        out["rmse"][name] = float(err.pow(2).mean().sqrt())
        out["mae"][name] = float(err.abs().mean())
        ss = float((y - y.mean()).pow(2).sum())
        out["r2"][name] = 1.0 - float(err.pow(2).sum()) / ss if ss > 0 else float("nan")
    return out


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """The area under the ROC curve (scikit-learn's ``roc_auc_score``: a tie between a positive
    and a negative counts one half); NaN when ``labels`` (0/1) hold one class only."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    if labels.size == 0 or labels.min() == labels.max():
        return float("nan")  # scikit-learn would warn and answer NaN too, or raise (older)
    return float(roc_auc_score(labels, scores))


def average_precision(scores: Sequence[float] | np.ndarray,
                      labels: Sequence[int] | np.ndarray) -> float:
    """The area under the precision-recall curve as average precision (scikit-learn's
    ``average_precision_score``: the sum over thresholds of the recall gained times the
    precision there); NaN without a positive."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    if not labels.any():
        return float("nan")  # scikit-learn answers 0 with a warning: no recall to gain
    return float(average_precision_score(labels, scores))


def split_logits(logits: Tensor, classes: Sequence[int]) -> list[Tensor]:
    """(M, sum(classes)) -> one (M, classes[t]) block per task."""
    return list(logits.split(list(classes), dim=1))


def _task_labels(true: Tensor, t: int) -> tuple[Tensor, Tensor]:
    """The labelled rows of task ``t`` and their labels as class indices."""
    column = true[:, t] if true.dim() == 2 else true
    column = column.float()
    mask = ~torch.isnan(column)
    return mask, column[mask].long()


def classification_loss(logits: Tensor, true: Tensor, classes: Sequence[int],
                        weights: Sequence[Tensor | None] | None = None) -> tuple[Tensor, Tensor]:
    """The summed cross-entropy over every labelled (molecule, task) pair and their count.

    Args:
        logits: (B, sum(classes)).
        true: (B, T) float labels with NaN where missing, or (B,) class indices (one task).
        classes: the number of classes of each task.
        weights: per task None or (classes[t],) class weights (rare positives weigh more).

    Returns:
        ``(loss_sum, count)``: scalar tensors; the mean loss is their ratio.
    """
    total = logits.new_zeros(())
    count = torch.zeros((), dtype=torch.long, device=logits.device)
    for t, block in enumerate(split_logits(logits, classes)):
        mask, y = _task_labels(true, t)
        w = None if weights is None or weights[t] is None else weights[t].to(logits.device)
        total = total + functional.cross_entropy(block[mask], y, weight=w, reduction="sum")
        count = count + mask.sum()
    return total, count


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _ovr(fn, probs: np.ndarray, labels: np.ndarray) -> float:
    """A binary figure of a (M, C) task: of the positive class for C = 2, else the mean over
    the classes of one-vs-rest (classes absent from the labels left out)."""
    if probs.shape[1] == 2:
        return fn(probs[:, 1], labels)
    return _nanmean([fn(probs[:, c], (labels == c).astype(int)) for c in range(probs.shape[1])])


def classification_metrics(logits: Tensor, true: Tensor, names: list[str],
                           classes: Sequence[int]) -> dict[str, Any]:
    """Accuracy, ROC-AUC and PR-AUC (average precision) per task over its labelled molecules,
    their means over the tasks (``mean_*``, NaN tasks left out: a split whose labels of a task
    are all one class has no AUC for it) and the mean cross-entropy (``loss``).

    ``logits`` (M, sum(classes)); ``true`` (M, T) with NaN where missing, or (M,) indices.
    """
    out: dict[str, Any] = {"accuracy": {}, "roc_auc": {}, "pr_auc": {}}
    loss_sum, count = classification_loss(logits.float(), true, classes)
    out["loss"] = float(loss_sum) / max(int(count), 1)
    for t, (name, block) in enumerate(zip(names, split_logits(logits.float(), classes),
                                          strict=True)):
        mask, y = _task_labels(true, t)
        probs = torch.softmax(block[mask], 1).double().numpy()
        labels = y.numpy()
        out["accuracy"][name] = (float((probs.argmax(1) == labels).mean()) if labels.size
                                 else float("nan"))
        out["roc_auc"][name] = _ovr(roc_auc, probs, labels)
        out["pr_auc"][name] = _ovr(average_precision, probs, labels)
    for key in ("accuracy", "roc_auc", "pr_auc"):
        out[f"mean_{key}"] = _nanmean(list(out[key].values()))
    return out


def class_weights(true: Tensor, classes: Sequence[int]) -> list[Tensor]:
    """Per task, scikit-learn's "balanced" class weights (``compute_class_weight``) from the
    labelled rows of ``true``: ``n / (C * n_c)`` over the ``C`` classes present in the labels;
    a class absent from the training labels (or every class of a task without a label) gets
    weight 1."""
    out = []
    for t, c in enumerate(classes):
        _, y = _task_labels(true, t)
        y = y.numpy()
        w = np.ones(c)
        present = np.unique(y)
        if present.size:
            w[present] = compute_class_weight("balanced", classes=present, y=y)
        out.append(torch.tensor(w, dtype=torch.float))
    return out
