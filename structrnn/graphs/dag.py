"""Recurrence over directed acyclic graphs: one cell run over the topological levels of a batch
of DAGs, every node computed from its input and its predecessors' states.

A DAG is PyG's graph layout read as an order: an edge u -> v (``edge_index[0] = u``,
``edge_index[1] = v``) means u comes before v, so the predecessors of v in the ``"forward"``
pass are its in-neighbours (in the ``"backward"`` pass, its out-neighbours). The levels
(:func:`structrnn.levels.schedule.dag_schedule`: level 0 the sources, then 1 + the longest path
from a source) hold every node whose predecessors are done, across all graphs of the batch, and
:func:`structrnn.levels.run.run_schedule` makes each level one batched cell call: the Python loop
is over levels, never over nodes. A node with several predecessors goes through the cell's
many-predecessor call (``cell(x, prev, index, size)``): the Child-Sum Tree-LSTM of Tai et al.
(2015) for :class:`~structrnn.LSTMCell`, the summed state for GRU and Elman cells, so a tree
given as a DAG (edges child -> parent) is exactly the Child-Sum tree model and a chain is exactly
the sequence model.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch_geometric.data.data import BaseData
from torch_geometric.utils import softmax

from structrnn._checks import check_shape
from structrnn.cells import RNNCellBase, map_state, state_from_tuple, state_h, state_tuple
from structrnn.levels.run import run_schedule
from structrnn.levels.schedule import DAGSchedule, Schedule, dag_schedule

__all__ = ["DAGRecurrent", "DAGAttention"]

DIRECTIONS = ("forward", "backward", "both")
AGGREGATIONS = ("sum", "attention")


class DAGAttention(nn.Module):
    """Attention over a node's predecessors, as in DAGNN (Thost & Chen 2021, eq. 5)::

        score(u -> v) = w_x . x_v + w_h . h_u
        alpha(u -> v) = exp(score(u -> v)) / sum_{u' in pred(v)} exp(score(u' -> v))

    ``x_v`` is the node's input (DAGNN's ``h_v`` of the layer below) and ``h_u`` the
    predecessor's new state. A bias would cancel in the softmax, so there is none. Without an
    input (``x=None``) the score is ``w_h . h_u`` alone.

    Args:
        input_size: width of ``x`` (``w_x`` (1, input_size)), or None for a cell without input.
        hidden_size: width of ``h`` (``w_h`` (1, hidden_size)).
    """

    def __init__(self, input_size: int | None, hidden_size: int) -> None:
        super().__init__()
        self.node = nn.Linear(input_size, 1, bias=False) if input_size else None
        self.pred = nn.Linear(hidden_size, 1, bias=False)

    def node_scores(self, x: Tensor | None) -> Tensor | None:
        """``w_x . x_v`` of every node: (N, input_size) -> (N, 1), or None without input."""
        if x is None or self.node is None:
            return None
        return self.node(x)

    def forward(self, node_score: Tensor | None, h_pred: Tensor, index: Tensor,
                size: int) -> Tensor:
        """The weights of one level's predecessors.

        Args:
            node_score: (M,) ``w_x . x_v`` of the node each predecessor feeds, or None.
            h_pred: (M, hidden_size) the predecessors' ``h``.
            index: (M,) the row (in ``[0, size)``) each predecessor feeds.
            size: the number of fed rows.

        Returns:
            (M,) ``alpha``: per fed row, its predecessors' weights sum to 1.
        """
        score = self.pred(h_pred).squeeze(1)
        if node_score is not None:
            score = score + node_score
        return softmax(score, index, num_nodes=size)


class _AttendingCell(nn.Module):
    """``cell`` as :func:`run_schedule` calls it, with each predecessor's state multiplied by
    its attention weight first. Its input rows are ``[cell input | w_x . x_v]`` (the cell input
    already projected for a structrnn cell, so the input matmul stays one call over all nodes),
    or zero columns when there is no input."""

    def __init__(self, cell: nn.Module, attention: DAGAttention, width: int | None) -> None:
        super().__init__()
        self.cell, self.attention, self.width = cell, attention, width
        self.fast = isinstance(cell, RNNCellBase)

    def forward(self, x: Tensor, prev=None, index: Tensor | None = None,
                size: int | None = None):
        inp = node = None
        if self.width is not None:
            inp, node = x[:, :self.width], x[:, self.width]
        if prev is not None:
            alpha = self.attention(None if node is None else node[index], state_h(prev), index,
                                   size)
            prev = map_state(prev, lambda t: t * alpha.unsqueeze(1))
        if self.fast:
            return self.cell.combine(inp, prev, index, size)
        return self.cell(inp, prev, index=index, size=size)


def _fresh_copy(cell: nn.Module) -> nn.Module:
    """A cell of the same kind with parameters of its own (drawn anew when it can reset them),
    as ``torch.nn.LSTM(bidirectional=True)`` has one set of weights per direction."""
    other = copy.deepcopy(cell)
    if hasattr(other, "reset_parameters"):
        other.reset_parameters()
    return other


class DAGRecurrent(nn.Module):
    """Run a recurrent cell over the topological levels of a batch of directed acyclic graphs.

    Every node's state is the cell applied to its input and its predecessors' states, in one
    batched cell call per level (all graphs of a PyG ``Batch`` together)::

        state_v = cell(x_v, [state_u for u in pred(v)])       # the cell's many-predecessor call

    A source (no predecessor) starts from the zero state. ``pred(v)`` are v's in-neighbours for
    ``direction="forward"`` (PyG's convention: an edge u -> v means u comes before v), its
    out-neighbours for ``"backward"`` (the edges reversed), and ``"both"`` runs the two passes,
    each with its own cell (``backward_cell``; by default a copy of ``cell`` with freshly drawn
    weights), and concatenates them.

    ``aggregation="attention"`` weights the predecessors as DAGNN does (Thost & Chen 2021): the
    cell receives ``alpha(u -> v) * state_u`` in place of ``state_u``, with ``alpha`` the softmax
    over v's predecessors of ``w_x . x_v + w_h . h_u`` (:class:`DAGAttention`; every component
    of the state is scaled, ``h`` and ``c`` for LSTM cells). A GRU or Elman cell sums its
    predecessors' ``h``, so it then sees DAGNN's message ``sum_u alpha(u -> v) h_u``; the
    Child-Sum LSTM keeps one forget gate per (weighted) predecessor.

    Args:
        cell: a structrnn cell (:class:`~structrnn.GRUCell`, :class:`~structrnn.LSTMCell`,
            :class:`~structrnn.RNNCell`, ...) or any module called as
            ``cell(x, prev, index=..., size=...)``; attention needs its ``input_size`` and
            ``hidden_size`` attributes.
        direction: ``"forward"``, ``"backward"`` or ``"both"``.
        aggregation: ``"sum"`` (the cell's own many-predecessor call) or ``"attention"``.
        backward_cell: the cell of the backward pass of ``"both"`` (pass ``cell`` itself to
            share the weights).
        fused: as in :func:`~structrnn.run_schedule` (a plain LSTMCell with sum aggregation runs
            the whole pass as one autograd node).

    Shapes: ``x`` (N, input_size) or None, ``edge_index`` (2, E). Returns the cell's own form:
    ``h`` (N, hidden_size), or ``(h, c)`` for LSTM cells. With ``"both"`` each component is the
    forward pass's and the backward pass's side by side: ``h`` (N, 2 * hidden_size), and for LSTM
    cells ``(h, c)`` with ``h = [h_fw, h_bw]`` and ``c = [c_fw, c_bw]``, each (N, 2 * hidden_size).

    A cycle in ``edge_index`` is an :class:`~structrnn.InputError` (a ``ValueError``) whose
    message names a node on the cycle and the cycle. The levels are found on the CPU (one host
    synchronisation per call unless ``schedule`` is given).
    """

    def __init__(self, cell: nn.Module, direction: str = "forward", aggregation: str = "sum",
                 backward_cell: nn.Module | None = None, fused: bool = True) -> None:
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"DAGRecurrent: direction must be one of {DIRECTIONS}, "
                             f"got {direction!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"DAGRecurrent: aggregation must be one of {AGGREGATIONS}, "
                             f"got {aggregation!r}")
        if backward_cell is not None and direction != "both":
            raise ValueError("DAGRecurrent: backward_cell is for direction='both'")
        self.direction, self.aggregation, self.fused = direction, aggregation, fused
        self.input_size = getattr(cell, "input_size", None)
        self.hidden_size = getattr(cell, "hidden_size", None)
        self.cell = cell
        self.backward_cell = None
        if direction == "both":
            self.backward_cell = _fresh_copy(cell) if backward_cell is None else backward_cell
        self.attention = self.backward_attention = None
        if aggregation == "attention":
            if self.hidden_size is None:
                raise ValueError("DAGRecurrent: aggregation='attention' needs a cell with "
                                 "input_size and hidden_size attributes")
            self.attention = DAGAttention(self.input_size, self.hidden_size)
            if direction == "both":
                self.backward_attention = DAGAttention(self.input_size, self.hidden_size)

    def extra_repr(self) -> str:
        return f"direction={self.direction!r}, aggregation={self.aggregation!r}"

    def schedule(self, edge_index: Tensor, num_nodes: int) -> DAGSchedule:
        """The passes this model runs, built on the CPU (to build them ahead, e.g. in a
        DataLoader's workers, and pass them to :meth:`forward`)."""
        return dag_schedule(edge_index, num_nodes, forward=self.direction != "backward",
                            backward=self.direction != "forward")

    def forward(self, x: Tensor | BaseData | None, edge_index: Tensor | None = None,
                num_nodes: int | None = None, schedule: DAGSchedule | None = None):
        """Every node's state.

        Args:
            x: (N, input_size) node inputs, None for a cell without input (then pass
                ``num_nodes``), or a PyG ``Data``/``Batch`` holding ``x`` and ``edge_index``.
            edge_index: (2, E) long, u -> v: u comes before v.
            num_nodes: N (default ``x.size(0)``).
            schedule: the passes from :meth:`schedule`, when built ahead.

        Returns:
            ``h`` (N, hidden_size) or ``(h, c)`` for LSTM cells (twice as wide with ``"both"``).
        """
        if isinstance(x, BaseData):
            x, edge_index, num_nodes = x.x, x.edge_index, x.num_nodes
        n = self._check(x, edge_index, num_nodes)
        if schedule is None:
            schedule = self.schedule(edge_index, n)
        passes = []
        if self.direction != "backward":
            passes.append(self._pass(self.cell, self.attention, x, schedule.forward, n))
        if self.direction != "forward":
            cell = self.backward_cell if self.direction == "both" else self.cell
            attention = self.backward_attention if self.direction == "both" else self.attention
            passes.append(self._pass(cell, attention, x, schedule.backward, n))
        if len(passes) == 1:
            return passes[0]
        return state_from_tuple([torch.cat(parts, 1)
                                 for parts in zip(*map(state_tuple, passes), strict=True)])

    def _check(self, x: Tensor | None, edge_index: Tensor | None, num_nodes: int | None) -> int:
        """N, after checking the shapes (no host synchronisation)."""
        name = type(self).__name__
        if edge_index is None:
            raise ValueError(f"{name}: pass edge_index (2, E)")
        check_shape(edge_index, "edge_index", (2, None), name)
        if x is None:
            if num_nodes is None:
                raise ValueError(f"{name}: pass num_nodes when x is None")
            return num_nodes
        check_shape(x, "x", (None, self.input_size), name)
        if num_nodes is not None and num_nodes != x.size(0):
            raise ValueError(f"{name}: num_nodes={num_nodes} but x has {x.size(0)} rows")
        return x.size(0)

    def _pass(self, cell: nn.Module, attention: DAGAttention | None, x: Tensor | None,
              schedule: Schedule, n: int):
        if attention is None:
            return run_schedule(cell, x, schedule, n, fused=self.fused)
        # attention: the cell's input and each node's score travel together through the levels
        fast = isinstance(cell, RNNCellBase)
        inp = cell.project_input(x) if fast else x
        if inp is None:
            like = next(attention.parameters())
            packed, width = like.new_zeros(n, 0), None
        else:
            packed, width = torch.cat([inp, attention.node_scores(x)], 1), inp.size(1)
        return run_schedule(_AttendingCell(cell, attention, width), packed, schedule, n,
                            fused=False)
