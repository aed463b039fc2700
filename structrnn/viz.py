"""Pictures with matplotlib (the ``viz`` extra): learning curves, sentiment trees, confusion
matrices, shortest paths, measured-against-predicted scatters, atom contributions. Every
function writes a file (PNG, SVG or PDF by the suffix) and returns its path.

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

__all__ = ["pyplot", "save_figure", "plot_learning_curves", "draw_tree", "plot_confusion",
           "draw_path", "draw_path_steps", "panel_steps", "plot_scatter", "draw_atom_weights"]

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


# -- shortest paths (structrnn train shortest-path) ----------------------------------------------
def draw_path(data, node_pred: torch.Tensor, edge_pred: torch.Tensor, path: str | os.PathLike,
              title: str) -> Path:
    """A shortest-path graph (``pos``, ``x`` = [is_start, is_end], ``edge_index``) at its
    positions; the predicted path in red, the start a square, the end a star.

    ``node_pred`` (N,) and ``edge_pred`` (E,): 1 on the predicted path."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    pos = data.pos.numpy()
    for j, (a, b) in enumerate(data.edge_index.t().tolist()):
        if a < b:
            on = bool(edge_pred[j])
            ax.plot(*pos[[a, b]].T, color="crimson" if on else "0.75", lw=3 if on else 1,
                    zorder=1)
    colors = ["crimson" if int(p) else "steelblue" for p in node_pred]
    ax.scatter(pos[:, 0], pos[:, 1], c=colors, s=60, zorder=2)
    start, end = int(data.x[:, 0].argmax()), int(data.x[:, 1].argmax())
    ax.scatter(*pos[start], marker="s", s=200, facecolors="none", edgecolors="k", zorder=3,
               label="start")
    ax.scatter(*pos[end], marker="*", s=300, facecolors="none", edgecolors="k", zorder=3,
               label="end")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.legend(loc="upper right")
    ax.set_xticks([])
    ax.set_yticks([])
    return save_figure(fig, path, dpi=100)


def panel_steps(steps: int, most: int = 23) -> list[int]:
    """The rounds shown (1-based): all of them up to ``most``, else ``most`` spread evenly
    over them, the first and the last included."""
    if steps <= most:
        return list(range(1, steps + 1))
    return sorted({round(1 + i * (steps - 1) / (most - 1)) for i in range(most)})


GREY, CRIMSON = (0.78, 0.78, 0.78), (0.86, 0.08, 0.24)  # an edge's colour at p = 0 and 1


def _path_panel(ax, data, node_p: torch.Tensor, edge_p: torch.Tensor, title: str) -> None:
    """One graph on ``ax``: nodes and edges shaded by their probability of being on the path
    (``node_p`` (N,), ``edge_p`` (E,); the two directions of an edge averaged), start a square,
    end a star."""
    pos = data.pos.numpy()
    both: dict[tuple[int, int], list[float]] = {}
    for (a, b), p in zip(data.edge_index.t().tolist(), edge_p.tolist(), strict=True):
        both.setdefault((min(a, b), max(a, b)), []).append(p)
    for (a, b), ps in both.items():
        p = sum(ps) / len(ps)
        colour = [g * (1 - p) + c * p for g, c in zip(GREY, CRIMSON, strict=True)]
        ax.plot(*pos[[a, b]].T, color=colour, lw=0.6 + 2.4 * p, zorder=1)
    ax.scatter(pos[:, 0], pos[:, 1], c=node_p.numpy(), cmap="Reds", vmin=0, vmax=1, s=22,
               edgecolors="0.4", linewidths=0.4, zorder=2)
    start, end = int(data.x[:, 0].argmax()), int(data.x[:, 1].argmax())
    ax.scatter(*pos[start], marker="s", s=90, facecolors="none", edgecolors="k", zorder=3)
    ax.scatter(*pos[end], marker="*", s=140, facecolors="none", edgecolors="k", zorder=3)
    ax.set_title(title, fontsize=8)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_path_steps(data, node_p: torch.Tensor, edge_p: torch.Tensor, path: str | os.PathLike,
                    title: str) -> Path:
    """A grid of panels, one per round (:func:`panel_steps`) and the target last: each shows
    the node and edge probabilities of that round (``node_p`` (S, N), ``edge_p`` (S, E)) and
    how many nodes and edges its argmax gets wrong. ``data`` needs ``y`` and ``edge_y``."""
    plt = pyplot()
    shown = panel_steps(node_p.size(0))
    cols = min(6, len(shown) + 1)
    rows = -(-(len(shown) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.4 * rows + 0.4), squeeze=False)
    for ax, step in zip(list(axes.flat)[:len(shown)], shown, strict=True):
        n, e = node_p[step - 1], edge_p[step - 1]
        wrong = int(((n > 0.5).long() != data.y).sum() + ((e > 0.5).long() != data.edge_y).sum())
        _path_panel(ax, data, n, e, f"step {step}: {wrong} wrong")
    _path_panel(axes.flat[len(shown)], data, data.y.float(), data.edge_y.float(), "target")
    for ax in list(axes.flat)[len(shown) + 1:]:
        ax.axis("off")
    fig.suptitle(title + " (square: start, star: end; red: on the path)", fontsize=10)
    return save_figure(fig, path, dpi=90)


# -- molecules (structrnn train molecules) -------------------------------------------------------
def plot_scatter(results: Sequence[dict], names: Sequence[str], path: str | os.PathLike) -> Path:
    """Predicted against measured, one panel per target ``names[t]``: every result (a seed)
    gives ``test_pred`` and ``test_true`` (M, T), ``test_rmse`` {target: RMSE} and ``seed``."""
    import math

    import numpy as np

    plt = pyplot()
    cols = min(len(names), 4)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for t, name in enumerate(names):
        ax = axes[t // cols][t % cols]
        for r in results:
            p, y = np.asarray(r["test_pred"])[:, t], np.asarray(r["test_true"])[:, t]
            ax.scatter(y, p, s=8, alpha=0.6, label=f"seed {r['seed']}")
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        rmse = np.mean([r["test_rmse"][name] for r in results])
        ax.set_title(f"{name[:60]}\ntest RMSE {rmse:.3f}", fontsize=9)
        ax.set_xlabel("measured")
        ax.set_ylabel("predicted")
    for t in range(len(names), rows * cols):
        axes[t // cols][t % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def draw_atom_weights(smiles: str, weights: Sequence[float], path: str | os.PathLike) -> Path:
    """The molecule ``smiles`` with each atom coloured and labelled by its weight (RDKit's
    similarity map; PNG)."""
    from rdkit import Chem
    from rdkit.Chem.Draw import SimilarityMaps, rdMolDraw2D

    from structrnn._io import atomic_write

    mol = Chem.MolFromSmiles(smiles.strip())
    for atom, w in zip(mol.GetAtoms(), weights, strict=True):
        atom.SetProp("atomNote", f"{w:.1f}")
    drawer = rdMolDraw2D.MolDraw2DCairo(500, 400)
    SimilarityMaps.GetSimilarityMapFromWeights(mol, list(weights), draw2d=drawer)
    drawer.FinishDrawing()
    data = drawer.GetDrawingText()
    return atomic_write(path, lambda f: f.write(data))
