"""The level loop unrolled to a fixed height: a cell over a tree or DAG with no data-dependent
shape, for ``torch.export`` and ONNX.

:func:`structrnn.levels.run.run_schedule` runs one cell call per level, and the levels (their
number and sizes) are read from the data on the host: a graph that ``torch.export`` or an ONNX
runtime cannot hold. :func:`run_unrolled` computes the same states another way: it runs the cell
over *all* nodes ``max_height + 1`` times, round ``k`` recomputing every node from its
predecessors' states of round ``k - 1`` (predecessors gathered by ``edge_index``, reduced by the
cell's own many-predecessor step, so Child-Sum keeps one forget gate per child). After round
``k`` every node of height ``<= k`` has its exact state (a leaf is exact after round 0, and a node
is exact one round after its last child), so the result is exact for every node of a graph whose
height (longest path from a source) is at most ``max_height``. The shapes are those of the inputs
alone, and the graph holds ``max_height + 1`` copies of one step.

A deeper graph would give wrong states, so the pass also returns ``too_deep``, a 0-d bool
tensor computed in the same graph (a node still reachable by a path of ``max_height + 1``
edges); the callers (:mod:`structrnn.export`) turn it into an error. :func:`graph_height` is the
host-side count that names the actual height in that error.

Cost: ``(max_height + 1) * N`` node steps against the level loop's ``N``, in ``max_height + 1``
wide calls against one narrow call per level (``docs/architecture.md``, "Export").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structrnn.cells import NaryLSTMCell, RNNCellBase, map_state

__all__ = ["run_unrolled", "reachable_at", "graph_height"]


def reachable_at(edge_index: Tensor, num_nodes: int, rounds: int, like: Tensor) -> Tensor:
    """(N,) float, 1 where a node is the end of a path of ``rounds`` edges (its height is at
    least ``rounds``), else 0. Only ``index_add`` and comparisons: no data-dependent shape.

    ``like`` gives the dtype and device (a float tensor of the pass)."""
    src, dst = edge_index[0], edge_index[1]
    reach = like.new_ones(num_nodes)
    for _ in range(rounds):
        # clamped to {0, 1}: on a DAG the number of paths can grow exponentially
        reach = (like.new_zeros(num_nodes).index_add(0, dst, reach[src]) > 0).to(like.dtype)
    return reach


def graph_height(edge_index: Tensor, num_nodes: int) -> int:
    """The height of a batch of trees or DAGs (edges predecessor -> node): the longest path, in
    edges; -1 without nodes. A cycle has no height: ``num_nodes`` or more is returned then (the
    caller's bound is exceeded all the same). On the host, one round per level."""
    if num_nodes == 0:
        return -1
    src, dst = edge_index[0].cpu(), edge_index[1].cpu()
    reach = torch.ones(num_nodes)
    height = 0
    while height < num_nodes:
        reach = (torch.zeros(num_nodes).index_add(0, dst, reach[src]) > 0).float()
        if not bool(reach.any()):
            return height
        height += 1
    return height


def _nary_step(cell: NaryLSTMCell, x_proj: Tensor, prev: tuple[Tensor, Tensor] | None,
               dst: Tensor, slot: Tensor | None, size: int) -> tuple[Tensor, Tensor]:
    """One N-ary Tree-LSTM step of every node from its children in their slots, written from
    the cell's own parameters (Tai et al. 2015, section 3.2; the layout of
    :class:`~structrnn.NaryLSTMCell`: ``weight_hh`` rows i, f_0 .. f_{A-1}, g, o and columns the
    slots side by side). Missing slots are zero."""
    H, A = cell.hidden_size, cell.arity
    if prev is None:
        h_cat = x_proj.new_zeros(size, A * H)
        c_slots = x_proj.new_zeros(size, A, H)
    else:
        h_prev, c_prev = prev
        row = dst * A + (slot if slot is not None else torch.zeros_like(dst))
        h_cat = x_proj.new_zeros(size * A, H).index_add(0, row, h_prev).reshape(size, A * H)
        c_slots = x_proj.new_zeros(size * A, H).index_add(0, row, c_prev).reshape(size, A, H)
    gh = F.linear(h_cat, cell.weight_hh, cell.bias_hh)
    xi, xf, xg, xo = x_proj.chunk(4, 1)
    i = torch.sigmoid(xi + gh[:, :H])
    f = torch.sigmoid(xf.unsqueeze(1) + gh[:, H:(1 + A) * H].reshape(size, A, H))
    g = torch.tanh(xg + gh[:, (1 + A) * H:(2 + A) * H])
    o = torch.sigmoid(xo + gh[:, (2 + A) * H:])
    c = i * g + (f * c_slots).sum(1)
    return o * torch.tanh(c), c


def run_unrolled(cell: nn.Module, x: Tensor | None, edge_index: Tensor, max_height: int,
                 num_nodes: int | None = None, slot: Tensor | None = None):
    """Run ``cell`` over a batch of trees or DAGs with the level loop unrolled.

    Args:
        cell: a structrnn cell (its ``project_input`` once, then ``combine`` over all nodes per
            round; a :class:`~structrnn.NaryLSTMCell` runs :func:`_nary_step` on its
            parameters) or any module called as ``cell(input, hx, index=..., size=...)``.
        x: (N, input_size) node inputs, or None (then ``num_nodes``).
        edge_index: (2, E) long, predecessor -> node (a tree's child -> parent).
        max_height: the deepest graph the result is exact for (longest path, in edges).
        num_nodes: N when ``x`` is None.
        slot: (E,) long, each edge's child slot in ``[0, arity)`` (N-ary cells).

    Returns:
        ``(state, too_deep)``: every node's state in the cell's form (``h`` (N, H), or
        ``(h, c)`` for LSTM cells), exact when ``too_deep`` (a 0-d bool tensor) is False.
    """
    if max_height < 0:
        raise ValueError(f"max_height: expected >= 0, got {max_height}")
    n = x.size(0) if x is not None else num_nodes
    if n is None:
        raise ValueError("num_nodes: required when x is None")
    src, dst = edge_index[0], edge_index[1]
    fast = isinstance(cell, RNNCellBase)
    xp = cell.project_input(x) if fast else x
    nary = isinstance(cell, NaryLSTMCell)
    if nary:
        xp = cell._input_gates(xp, n)

    def step(prev, index):
        if nary:
            return _nary_step(cell, xp, prev, index, slot if prev is not None else None, n)
        if fast:
            return cell.combine(xp, prev, index, n)
        return cell(xp, prev, index=index, size=n)

    state = step(None, None)  # round 0: every node as a leaf; the leaves are done
    for _ in range(max_height):
        state = step(map_state(state, lambda t: t.index_select(0, src)), dst)
    like = state[0] if isinstance(state, tuple) else state
    too_deep = reachable_at(edge_index, n, max_height + 1, like).sum() > 0
    return state, too_deep
