"""Pictures with matplotlib (the ``viz`` extra): learning curves, sentiment trees, confusion
matrices. Every function writes a file (PNG, SVG or PDF by the suffix) and returns its path.

:func:`pyplot` is the one place that imports matplotlib: every picture in structrnn (the tasks'
too) gets ``matplotlib.pyplot`` from it, on the file-only Agg backend, or an ImportError that
names the ``viz`` extra. Importing this module does not import matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["pyplot", "save_figure", "plot_learning_curves", "draw_tree", "plot_confusion"]

SENTIMENT_COLOURS = ["#b2182b", "#ef8a62", "#e0e0e0", "#67a9cf", "#2166ac"]  # 0 .. 4


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (files only: no display is needed, and a run on
    a server never opens a window).

    Raises:
        ImportError: matplotlib is not installed; the message says
            ``pip install 'structrnn[viz]'``.
    """
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("pictures need matplotlib, which is not installed: "
                          "pip install 'structrnn[viz]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Lay out ``fig``, write it to ``path`` (its folder is created; the format follows the
    suffix), close it so that figures do not pile up in memory, and return the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def plot_learning_curves(history: Sequence[dict], path: str | os.PathLike,
                         keys: Sequence[str] | None = None) -> Path:
    """One line per metric over epochs; ``history`` is a list of per-epoch dicts with ``epoch``."""
    plt = pyplot()
    keys = keys or sorted({k for h in history for k in h if k != "epoch"
                           and isinstance(h[k], (int, float))})
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] for h in history]
    for key in keys:
        ax = ax_loss if "loss" in key else ax_acc
        ax.plot(epochs, [h.get(key, float("nan")) for h in history], marker="o", label=key)
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax.lines:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def draw_tree(tree, path: str | os.PathLike, predicted: Sequence[int] | torch.Tensor | None = None,
              title: str | None = None) -> Path:
    """Draw a :class:`~structrnn.Tree` with each node coloured by a sentiment class (0-4).

    ``predicted`` gives one class per node in pre-order (``Tree.to_data`` order); by default
    the tree's own labels are used. Leaves show their tokens.
    """
    plt = pyplot()
    nodes, parents, _ = tree.flatten()
    n = len(nodes)
    labels = [int(v) for v in predicted] if predicted is not None else [
        int(node.label) if str(node.label).isdigit() else 2 for node in nodes]
    children: list[list[int]] = [[] for _ in range(n)]
    for v in range(1, n):
        children[parents[v]].append(v)
    depth = [0] * n
    for v in range(1, n):  # pre-order: parents come first
        depth[v] = depth[parents[v]] + 1
    xpos = [0.0] * n
    leaf_rank = 0
    for v in range(n):  # leaves left to right in pre-order
        if not children[v]:
            xpos[v] = float(leaf_rank)
            leaf_rank += 1
    for v in reversed(range(n)):  # parents centred over their children
        if children[v]:
            xpos[v] = sum(xpos[c] for c in children[v]) / len(children[v])
    width = max(4.0, 0.6 * leaf_rank)
    fig, ax = plt.subplots(figsize=(min(width, 40), 1.0 + 0.45 * (max(depth) + 1)))
    for v in range(1, n):
        p = parents[v]
        ax.plot([xpos[p], xpos[v]], [-depth[p], -depth[v]], color="#888888", lw=0.8, zorder=1)
    colours = [SENTIMENT_COLOURS[min(max(c, 0), 4)] for c in labels]
    ax.scatter(xpos, [-d for d in depth], c=colours, s=120, edgecolors="black", linewidths=0.5,
               zorder=2)
    for v in range(n):
        ax.annotate(str(labels[v]), (xpos[v], -depth[v]), ha="center", va="center", fontsize=6,
                    zorder=3)
        if nodes[v].token is not None:
            ax.annotate(nodes[v].token, (xpos[v], -depth[v] - 0.45), ha="center", va="top",
                        fontsize=7, rotation=60)
    ax.set_axis_off()
    ax.set_ylim(-max(depth) - 1.6, 0.6)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_confusion(true: torch.Tensor, pred: torch.Tensor, path: str | os.PathLike,
                   class_names: Sequence[str] | None = None) -> Path:
    """Confusion matrix (rows true, columns predicted), counts annotated."""
    plt = pyplot()
    k = int(max(int(true.max()), int(pred.max())) + 1) if true.numel() else 1
    if class_names is not None:
        k = max(k, len(class_names))
    matrix = torch.bincount(true.long() * k + pred.long(), minlength=k * k).view(k, k)
    fig, ax = plt.subplots(figsize=(1 + 0.7 * k, 1 + 0.7 * k))
    ax.imshow(matrix.numpy(), cmap="Blues")
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = int(matrix.max()) if matrix.numel() else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if matrix[i, j] > top / 2 else "black")
    return save_figure(fig, path)
