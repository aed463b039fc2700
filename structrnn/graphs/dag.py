"""Recurrence over directed acyclic graphs: one cell run over the topological levels of a batch
of DAGs, every node computed from its input and its predecessors' states.

A DAG is PyG's graph layout read as an order: an edge u -> v (``edge_index[0] = u``,
``edge_index[1] = v``) means u comes before v, so the predecessors of v in the ``"forward"``
pass are its in-neighbours (in the ``"backward"`` pass, its out-neighbours). The levels
(:func:`structrnn.levels.schedule.dag_schedule`: level 0 the sources, then 1 + the longest path
from a source) hold every node whose predecessors are done, across all graphs of the batch, and
:func:`structrnn.levels.run.run_schedule` makes each level one batched cell call: the Python loop
is over levels, never over nodes. A node with several predecessors goes through the cell's
many-predecessor call (``cell(input, hx, index=index, size=size)``): the Child-Sum Tree-LSTM of
Tai et al. (2015) for :class:`~structrnn.LSTMCell`, the summed state for GRU and Elman cells, so
a tree given as a DAG (edges child -> parent) is exactly the Child-Sum tree model and a chain is
exactly the sequence model.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch_geometric.data.data import BaseData
from torch_geometric.utils import softmax

from structrnn._checks import check_shape
from structrnn._deprecation import renamed, warn_once
from structrnn.cells import RNNCellBase, map_state, state_from_tuple, state_h, state_tuple
from structrnn.levels.run import run_schedule
from structrnn.levels.schedule import DAGSchedule, Schedule, dag_schedule

__all__ = ["DAGRecurrent", "DAGAttention"]

DIRECTIONS = ("forward", "backward", "both")
AGGRS = ("sum", "attention")


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

    def reset_parameters(self) -> None:
        """Draw ``w_x`` and ``w_h`` anew (``torch.nn.Linear``'s initialisation)."""
        for layer in (self.node, self.pred):
            if layer is not None:
                layer.reset_parameters()

    def extra_repr(self) -> str:
        return f"input_size={self.node.in_features if self.node else None}, " \
            f"hidden_size={self.pred.in_features}"

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

    def forward(self, input: Tensor, hx=None, *, index: Tensor | None = None,
                size: int | None = None):
        inp = node = None
        if self.width is not None:
            inp, node = input[:, :self.width], input[:, self.width]
        if hx is not None:
            alpha = self.attention(None if node is None else node[index], state_h(hx), index,
                                   size)
            hx = map_state(hx, lambda t: t * alpha.unsqueeze(1))
        if self.fast:
            return self.cell.combine(inp, hx, index, size)
        return self.cell(inp, hx, index=index, size=size)


def _fresh_copy(cell: nn.Module) -> nn.Module:
    """A cell of the same kind with parameters of its own, drawn anew by its
    ``reset_parameters``, as ``torch.nn.LSTM(bidirectional=True)`` has one set of weights per
    direction. A cell with parameters and no ``reset_parameters`` is an error: its copy would
    hold the very same weights."""
    if _has_parameters(cell) and not callable(getattr(cell, "reset_parameters", None)):
        raise TypeError(f"DAGRecurrent(direction='both'): the cell {type(cell).__name__} has no "
                        "reset_parameters(), so a copy of it for the backward pass would start "
                        "with the same weights; give the cell a reset_parameters() method or "
                        "pass backward_cell=")
    other = copy.deepcopy(cell)
    if _has_parameters(other):
        other.reset_parameters()
    return other


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _reset(module: nn.Module, what: str) -> None:
    """``module.reset_parameters()``; a module with parameters and no such method is an error
    (silently keeping its weights would break the promise of "new weights everywhere")."""
    if callable(getattr(module, "reset_parameters", None)):
        module.reset_parameters()
    elif _has_parameters(module):
        raise TypeError(f"DAGRecurrent.reset_parameters: the {what} {type(module).__name__} has "
                        "parameters but no reset_parameters() method to draw new ones; give "
                        "it one")


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

    ``aggr="attention"`` weights the predecessors as DAGNN does (Thost & Chen 2021): the
    cell receives ``alpha(u -> v) * state_u`` in place of ``state_u``, with ``alpha`` the softmax
    over v's predecessors of ``w_x . x_v + w_h . h_u`` (:class:`DAGAttention`; every component
    of the state is scaled, ``h`` and ``c`` for LSTM cells). A GRU or Elman cell sums its
    predecessors' ``h``, so it then sees DAGNN's message ``sum_u alpha(u -> v) h_u``; the
    Child-Sum LSTM keeps one forget gate per (weighted) predecessor.

    Args:
        cell: a structrnn cell (:class:`~structrnn.GRUCell`, :class:`~structrnn.LSTMCell`,
            :class:`~structrnn.RNNCell`, ...) or any module called as
            ``cell(input, hx, index=..., size=...)``; attention needs its ``input_size`` and
            ``hidden_size`` attributes.
        direction: ``"forward"``, ``"backward"`` or ``"both"``.
        aggr: ``"sum"`` (the cell's own many-predecessor call) or ``"attention"``
            (``aggregation=`` is its deprecated old name).
        backward_cell: the cell of the backward pass of ``"both"`` (pass ``cell`` itself to
            share the weights). By default a copy of ``cell`` re-drawn by its
            ``reset_parameters()``; a cell with parameters and no such method is a
            ``TypeError`` (never two directions with the same weights by accident).
        fused: as in :func:`~structrnn.run_schedule` (a plain LSTMCell with sum aggregation runs
            the whole pass as one autograd node).

    Shapes: ``x`` (N, input_size) or None, ``edge_index`` (2, E). Returns ``h`` (N, hidden_size);
    with ``return_state=True`` the cell's state form: ``h`` for RNN/GRU cells, ``(h, c)`` for
    LSTM cells (the same convention as the tree models). With ``"both"`` each component is the
    forward pass's and the backward pass's side by side: ``h = [h_fw, h_bw]`` (N,
    2 * hidden_size), and ``c = [c_fw, c_bw]``.

    A cycle in ``edge_index`` is an :class:`~structrnn.InputError` (a ``ValueError``) whose
    message names a node on the cycle and the cycle. The levels are found on the CPU (one host
    synchronisation per call unless ``schedule`` is given).
    """

    def __init__(self, cell: nn.Module, direction: str = "forward", aggr: str = "sum",
                 backward_cell: nn.Module | None = None, fused: bool = True, *,
                 aggregation: str | None = None) -> None:
        super().__init__()
        if aggregation is not None:  # the old spelling, unless both are given
            aggr = renamed("DAGRecurrent", "aggregation", "aggr", aggregation,
                           None if aggr == "sum" else aggr)
        if direction not in DIRECTIONS:
            raise ValueError(f"DAGRecurrent: direction must be one of {DIRECTIONS}, "
                             f"got {direction!r}")
        if aggr not in AGGRS:
            raise ValueError(f"DAGRecurrent: aggr must be one of {AGGRS}, got {aggr!r}")
        if backward_cell is not None and direction != "both":
            raise ValueError("DAGRecurrent: backward_cell is for direction='both'")
        self.direction, self.aggr, self.fused = direction, aggr, fused
        self.input_size = getattr(cell, "input_size", None)
        self.hidden_size = getattr(cell, "hidden_size", None)
        self.cell = cell
        self.backward_cell = None
        if direction == "both":
            self.backward_cell = _fresh_copy(cell) if backward_cell is None else backward_cell
        self.attention = self.backward_attention = None
        if aggr == "attention":
            if self.hidden_size is None:
                raise ValueError("DAGRecurrent: aggr='attention' needs a cell with "
                                 "input_size and hidden_size attributes")
            self.attention = DAGAttention(self.input_size, self.hidden_size)
            if direction == "both":
                self.backward_attention = DAGAttention(self.input_size, self.hidden_size)

    @property
    def aggregation(self) -> str:
        """Deprecated: :attr:`aggr`."""
        warn_once("DAGRecurrent.aggregation.attr", "DAGRecurrent.aggregation is deprecated, "
                  "use .aggr", stacklevel=3)
        return self.aggr

    def reset_parameters(self) -> None:
        """Draw new weights everywhere: each cell through its own ``reset_parameters()`` (a
        cell with parameters and none is a ``TypeError``), and the attention vectors. A
        ``backward_cell`` that is ``cell`` itself (shared on purpose) is drawn once."""
        _reset(self.cell, "cell")
        if self.backward_cell is not None and self.backward_cell is not self.cell:
            _reset(self.backward_cell, "backward_cell")
        for attention in (self.attention, self.backward_attention):
            if attention is not None:
                attention.reset_parameters()

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"direction={self.direction!r}, aggr={self.aggr!r}")

    def schedule(self, edge_index: Tensor, num_nodes: int) -> DAGSchedule:
        """The passes this model runs, built on the CPU (to build them ahead, e.g. in a
        DataLoader's workers, and pass them to :meth:`forward`)."""
        return dag_schedule(edge_index, num_nodes, forward=self.direction != "backward",
                            backward=self.direction != "forward")

    def forward(self, x: Tensor | BaseData | None, edge_index: Tensor | None = None,
                num_nodes: int | None = None, schedule: DAGSchedule | None = None,
                return_state: bool = False):
        """Every node's state.

        Args:
            x: (N, input_size) node inputs, None for a cell without input (then pass
                ``num_nodes``), or a PyG ``Data``/``Batch`` holding ``x`` and ``edge_index``.
            edge_index: (2, E) long, u -> v: u comes before v.
            num_nodes: N (default ``x.size(0)``).
            schedule: the passes from :meth:`schedule`, when built ahead.
            return_state: return the cell's state form (``(h, c)`` for LSTM cells), not ``h``.

        Returns:
            ``h`` (N, hidden_size), or with ``return_state=True`` the cell's state (``(h, c)``
            for LSTM cells); twice as wide with ``"both"``.
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
        state = passes[0] if len(passes) == 1 else state_from_tuple(
            [torch.cat(parts, 1) for parts in zip(*map(state_tuple, passes), strict=True)])
        return state if return_state else state_h(state)

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
            return run_schedule(cell, x, schedule, n, fused=self.fused, return_state=True)
        # attention: the cell's input and each node's score travel together through the levels
        fast = isinstance(cell, RNNCellBase)
        inp = cell.project_input(x) if fast else x
        if inp is None:
            like = next(attention.parameters())
            packed, width = like.new_zeros(n, 0), None
        else:
            packed, width = torch.cat([inp, attention.node_scores(x)], 1), inp.size(1)
        return run_schedule(_AttendingCell(cell, attention, width), packed, schedule, n,
                            fused=False, return_state=True)
