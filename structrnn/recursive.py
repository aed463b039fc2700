"""Running a cell over trees, level by level, and the recursive models built on it.

A batch of trees is a PyG ``Batch`` whose ``edge_index`` points child -> parent (DESIGN.md
section 2). :func:`run_up` runs any cell bottom-up: every level (all nodes of one height, across
all trees of the batch) is one batched cell call, so the Python loop is over levels, never over
nodes or trees. :func:`run_down` does the same root-to-leaves. The stock Tree-LSTM cells take
a faster route over the same levels: the whole pass as one autograd node with a hand-written
backward (:mod:`structrnn.child_sum_kernel`, :mod:`structrnn.nary_kernel`; ``fused=False``
runs them op by op like any other cell).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structrnn.cells import GRUCell, LSTMCell, NaryLSTMCell, RNNCellBase, scatter_sum
from structrnn.checks import check_shape
from structrnn.child_sum_kernel import child_sum_lstm
from structrnn.level_store import LevelStore
from structrnn.nary_kernel import nary_lstm
from structrnn.schedule import Schedule, TreeSchedule, tree_schedule

__all__ = ["run_schedule", "run_up", "run_down", "TreeLSTM", "TreeGRU", "RecursiveNN", "RNTN",
           "BiTreeLSTM", "RecursiveCell", "RNTNCell"]


def _to(schedule: Schedule, device: torch.device) -> Schedule:
    if schedule.pred.device == device:
        return schedule
    return schedule._replace(**{k: getattr(schedule, k).to(device, non_blocking=True)
                                for k in ("order", "rank", "pred", "target", "edge_perm")})


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return (torch.is_autocast_enabled() if device_type == "cuda"
                else torch.is_autocast_cpu_enabled())
    except RuntimeError:  # a device autocast does not know (meta)
        return False


def _run_fused(cell: nn.Module, x: Tensor | None, s: Schedule, n: int,
               pos_s: Tensor | None) -> tuple[Tensor, Tensor] | None:
    """The pass through a fused kernel (one autograd node, hand-written backward) when one
    computes exactly what ``cell.combine`` would, else None.

    Fused: a plain :class:`LSTMCell` (Child-Sum) or :class:`NaryLSTMCell` (a subclass may
    change the step), with nodes to run and no autocast (the kernels keep one dtype).
    """
    kind = type(cell)
    if getattr(kind, "combine", None) not in (LSTMCell.combine, NaryLSTMCell.combine) or n == 0:
        return None
    device = cell.weight_hh.device
    if _autocast_on(device.type):
        return None
    H = cell.hidden_size
    if isinstance(cell, LSTMCell):
        # both biases fold into the one input product; the kernel sorts the rows itself
        bias = None if cell.bias_ih is None else cell.bias_ih + cell.bias_hh
        pre = (F.linear(x, cell.weight_ih, bias) if x is not None
               else cell.weight_hh.new_zeros(n, 4 * H) + (0 if bias is None else bias))
        return child_sum_lstm(pre, cell.weight_hh, s)
    A = cell.arity
    xp = cell._input_gates(cell.project_input(x), n)
    # the input's forget block feeds every slot's forget gate
    pre = torch.cat([xp[:, :H], xp[:, H:2 * H].repeat(1, A), xp[:, 2 * H:]], dim=1)
    if cell.bias_hh is not None:
        pre = pre + cell.bias_hh
    slot = pos_s if pos_s is not None else torch.zeros_like(s.pred)
    return nary_lstm(pre, cell.weight_hh, s, slot, A)


def run_schedule(cell: nn.Module, x: Tensor | None, schedule: Schedule, num_nodes: int,
                 pos: Tensor | None = None, fused: bool = True):
    """Run ``cell`` over the levels of ``schedule``.

    Args:
        cell: a structrnn cell (uses its ``project_input`` / ``combine`` split: one input matmul
            for all nodes, then one recurrent matmul per level) or any module called as
            ``cell(x, prev, index=..., size=...)``.
        x: (N, input_size) node inputs, or None.
        schedule: the pass's :class:`~structrnn.schedule.Schedule`.
        num_nodes: N.
        pos: (N,) each node's slot under its parent (N-ary cells), as on tree ``Data``.
        fused: run a plain :class:`LSTMCell` or :class:`NaryLSTMCell` through its kernel
            (:mod:`structrnn.child_sum_kernel`, :mod:`structrnn.nary_kernel`: one autograd
            node for the whole pass); False runs every cell op by op.

    Returns:
        The state of every node in the original node order: (N, H), or a tuple for LSTM cells.
    """
    device = x.device if x is not None else next(cell.parameters()).device
    s = _to(schedule, device)
    fast = isinstance(cell, RNNCellBase)
    # the slot of each scheduled predecessor (pos is per node: the child's place in its parent)
    pos_s = pos[s.order][s.pred] if pos is not None else None
    arity = getattr(cell, "arity", None)
    if pos_s is not None and arity is not None and pos_s.numel() and not pos_s.is_meta:
        # once per call, outside the level loop: a slot >= arity would silently land in the
        # next parent's slots
        top = int(pos_s.max())
        if top >= arity:
            raise ValueError(f"pos: a node has a child in position {top}, but the cell takes at "
                             f"most arity={arity} children (binarize the tree: Tree.binarize())")
    if fused and (states := _run_fused(cell, x, s, num_nodes, pos_s)) is not None:
        return states
    xs = x[s.order] if x is not None else None
    xp = cell.project_input(xs) if fast else xs
    # Split once: a slice per level would make backward build and add a full-size gradient of
    # xp at every level (O(nodes x levels)); split's backward is one concatenation.
    sizes = [s.node_ptr[i + 1] - s.node_ptr[i] for i in range(s.num_levels)]
    xp_levels = xp.split(sizes) if xp is not None else [None] * s.num_levels
    extra = {}
    # One store holds every state component side by side (h and c for LSTMs), so each level
    # is one gather and one contiguous write, whatever the cell's state.
    store, widths = None, None
    for level in range(s.num_levels):
        n0, n1 = s.node_ptr[level], s.node_ptr[level + 1]
        e0, e1 = s.edge_ptr[level], s.edge_ptr[level + 1]
        if e1 > e0:
            prev = store.read(s.pred[e0:e1]).split(widths, dim=1)
            prev = prev if len(prev) > 1 else prev[0]
            index = s.target[e0:e1]
            if pos_s is not None:
                extra = {"pos": pos_s[e0:e1]}
        else:
            prev, index = None, None
        x_level = xp_levels[level]
        if fast:
            out = cell.combine(x_level, prev, index, n1 - n0, **extra)
        else:
            out = cell(x_level, prev, index=index, size=n1 - n0, **extra)
        out = out if isinstance(out, tuple) else (out,)
        if store is None:
            widths = [o.size(1) for o in out]
            store = LevelStore(num_nodes, sum(widths), out[0])
        store.write(n0, torch.cat(out, dim=1) if len(out) > 1 else out[0])
    if store is None:  # no nodes at all: an empty step gives the state's shape (0 rows)
        empty = xp[:0] if xp is not None else None
        return cell.combine(empty, None, None, 0) if fast else cell(empty, None, size=0)
    result = store.read(s.rank).split(widths, dim=1)
    return tuple(result) if len(result) > 1 else result[0]


def _schedule_for(edge_index: Tensor, num_nodes: int, height: Tensor | None,
                  schedule: TreeSchedule | None) -> TreeSchedule:
    if schedule is not None:
        return schedule
    return tree_schedule(edge_index, num_nodes, height)


def run_up(cell: nn.Module, x: Tensor | None, edge_index: Tensor, height: Tensor | None = None,
           pos: Tensor | None = None, schedule: TreeSchedule | None = None,
           num_nodes: int | None = None, fused: bool = True):
    """Run ``cell`` bottom-up: each node's predecessors are its children.

    Args:
        x: (N, input_size) node inputs (zeros where a node has no input), or None.
        edge_index: (2, E) child -> parent.
        height: (N,) node heights (stored on tree ``Data``); derived when None.
        pos: (N,) each node's position under its parent (needed by N-ary cells).
        schedule: precomputed :class:`TreeSchedule` (``batch.schedule`` from
            :func:`~structrnn.schedule.collate_trees`); built on the CPU when None.
        fused: as in :func:`run_schedule`.
    """
    n = x.size(0) if num_nodes is None else num_nodes
    sched = _schedule_for(edge_index, n, height, schedule)
    return run_schedule(cell, x, sched.up, n, pos, fused=fused)


def run_down(cell: nn.Module, x: Tensor | None, edge_index: Tensor,
             schedule: TreeSchedule | None = None, num_nodes: int | None = None,
           fused: bool = True):
    """Run ``cell`` top-down: each node's predecessor is its parent (roots start from zero)."""
    n = x.size(0) if num_nodes is None else num_nodes
    sched = _schedule_for(edge_index, n, None, schedule)
    return run_schedule(cell, x, sched.down, n, fused=fused)


class _TreeModel(nn.Module):
    """Shared checks and the bottom-up call for models with one cell."""

    cell: nn.Module

    def _check(self, x: Tensor, edge_index: Tensor) -> None:
        name = type(self).__name__
        check_shape(x, "x", (None, self.input_size), name)
        check_shape(edge_index, "edge_index", (2, None), name)

    def _up(self, x, edge_index, height, pos, schedule):
        self._check(x, edge_index)
        return run_up(self.cell, x, edge_index, height, pos, schedule)


class TreeLSTM(_TreeModel):
    """Tree-LSTM (Tai, Socher & Manning 2015, "Improved Semantic Representations From
    Tree-Structured Long Short-Term Memory Networks").

    ``variant="child-sum"`` uses :class:`~structrnn.LSTMCell` (any number of unordered
    children, one forget gate per child); ``variant="n-ary"`` uses
    :class:`~structrnn.NaryLSTMCell` (ordered children, ``pos`` gives each child's slot).
    ``.cell`` is that cell: the same weights run as a sequence LSTM.

    Shapes: ``x`` (N, input_size), ``edge_index`` (2, E) child -> parent, ``height`` (N,),
    ``pos`` (N,) each node's position under its parent. Returns ``h`` (N, hidden_size), or
    ``(h, c)`` with ``return_cell=True``.
    """

    def __init__(self, input_size: int, hidden_size: int, variant: str = "child-sum",
                 arity: int = 2, bias: bool = True) -> None:
        super().__init__()
        if variant not in ("child-sum", "n-ary"):
            raise ValueError(f"TreeLSTM: variant must be 'child-sum' or 'n-ary', got {variant!r}")
        self.input_size, self.hidden_size, self.variant = input_size, hidden_size, variant
        if variant == "child-sum":
            self.cell = LSTMCell(input_size, hidden_size, bias)
        else:
            self.cell = NaryLSTMCell(input_size, hidden_size, arity, bias)

    def forward(self, x: Tensor, edge_index: Tensor, height: Tensor | None = None,
                pos: Tensor | None = None, schedule: TreeSchedule | None = None,
                return_cell: bool = False):
        if self.variant == "n-ary" and pos is None:
            raise ValueError("TreeLSTM(variant='n-ary'): pass pos (each child's position)")
        slots = pos if self.variant == "n-ary" else None  # child-sum children are unordered
        h, c = self._up(x, edge_index, height, slots, schedule)
        return (h, c) if return_cell else h


class TreeGRU(_TreeModel):
    """Child-Sum Tree-GRU: a GRU whose previous state is the sum of the children's states
    (the tree analogue of Cho et al. 2014, as in Kokkinos & Potamianos 2017). ``.cell`` is a
    :class:`~structrnn.GRUCell`. Returns (N, hidden_size)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.cell = GRUCell(input_size, hidden_size, bias)

    def forward(self, x: Tensor, edge_index: Tensor, height: Tensor | None = None,
                pos: Tensor | None = None, schedule: TreeSchedule | None = None) -> Tensor:
        return self._up(x, edge_index, height, None, schedule)


def _slots(prev: Tensor, index: Tensor, pos: Tensor | None, size: int, arity: int) -> Tensor:
    """Children's states laid side by side by slot: (size, arity * H), missing slots zero."""
    if pos is None:
        pos = torch.zeros_like(index)
    return scatter_sum(prev, index * arity + pos, size * arity).view(size, -1)


class RecursiveCell(RNNCellBase):
    """Composition of Socher et al. (2011): ``p = tanh(W [c_1; ...; c_arity] + b)``; a node
    without children takes its input as its vector (``input_size == hidden_size``)."""

    num_chunks = 1

    def __init__(self, hidden_size: int, arity: int = 2, bias: bool = True) -> None:
        self.arity = arity
        super().__init__(hidden_size, hidden_size, bias, hh_rows=hidden_size,
                         hh_cols=arity * hidden_size)
        # the input passes through unchanged at leaves: no input weights
        del self.weight_ih
        self.register_parameter("weight_ih", None)
        if bias:
            del self.bias_ih
            self.register_parameter("bias_ih", None)

    def project_input(self, x):
        return x

    def zero_state(self, n, like):
        return like.new_zeros(n, self.hidden_size)

    def combine(self, x_proj, prev, index, size, pos=None):
        if prev is None:
            if x_proj is None:
                raise ValueError("RecursiveCell: leaves need an input vector")
            return x_proj
        return self.compose(_slots(prev, index, pos, size, self.arity))

    def compose(self, children: Tensor) -> Tensor:
        return torch.tanh(F.linear(children, self.weight_hh, self.bias_hh))


class RNTNCell(RecursiveCell):
    """Recursive Neural Tensor Network composition (Socher et al. 2013, "Recursive Deep Models
    for Semantic Compositionality Over a Sentiment Treebank"):
    ``p = tanh(c^T V^{[1:d]} c + W c + b)`` with ``c = [c_1; c_2]``, ``V`` (d, 2d, 2d)."""

    def __init__(self, hidden_size: int, arity: int = 2, bias: bool = True) -> None:
        super().__init__(hidden_size, arity, bias)
        k = arity * hidden_size
        self.tensor = nn.Parameter(torch.empty(hidden_size, k, k))
        # Socher et al. initialise V small; U(-1/k, 1/k) keeps the bilinear term ~ W c at start.
        nn.init.uniform_(self.tensor, -1.0 / k, 1.0 / k)

    def compose(self, children: Tensor) -> Tensor:
        bilinear = torch.einsum("ni,kij,nj->nk", children, self.tensor, children)
        return torch.tanh(bilinear + F.linear(children, self.weight_hh, self.bias_hh))


class RecursiveNN(_TreeModel):
    """Recursive neural network (Socher et al. 2011, "Parsing Natural Scenes and Natural
    Language with Recursive Neural Networks"): leaves are their word vectors, each parent is
    ``tanh(W [c_1; c_2] + b)`` of its ordered children. ``x`` (N, hidden_size) carries the
    leaves' vectors; returns (N, hidden_size)."""

    cell_class = RecursiveCell

    def __init__(self, hidden_size: int, arity: int = 2, bias: bool = True) -> None:
        super().__init__()
        self.input_size = self.hidden_size = hidden_size
        self.cell = self.cell_class(hidden_size, arity, bias)

    def forward(self, x: Tensor, edge_index: Tensor, height: Tensor | None = None,
                pos: Tensor | None = None, schedule: TreeSchedule | None = None) -> Tensor:
        if pos is None:
            pos = _default_pos(edge_index, x.size(0))
        return self._up(x, edge_index, height, pos, schedule)


class RNTN(RecursiveNN):
    """Recursive Neural Tensor Network (Socher et al. 2013): :class:`RecursiveNN` with the
    tensor composition of :class:`RNTNCell`. Returns (N, hidden_size)."""

    cell_class = RNTNCell


def _default_pos(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Each node's slot under its parent when none are given: children numbered in the order
    their edges are listed (roots get 0)."""
    child, parent = edge_index
    pos = torch.zeros(num_nodes, dtype=torch.long, device=edge_index.device)
    if parent.numel() == 0:
        return pos
    order = torch.argsort(parent, stable=True)
    sorted_parent = parent[order]
    first = torch.searchsorted(sorted_parent, sorted_parent)
    pos[child[order]] = torch.arange(parent.numel(), device=parent.device) - first
    return pos


class BiTreeLSTM(nn.Module):
    """Bidirectional Tree-LSTM: a Child-Sum Tree-LSTM bottom-up, then an LSTM top-down whose
    input at each node is that node's bottom-up state and whose previous state is its parent's
    (Teng & Zhang 2017, "Head-Lexicalized Bidirectional Tree LSTMs"). Every node then sees its
    whole tree. Returns (N, 2 * hidden_size): ``[h_up, h_down]``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.up = TreeLSTM(input_size, hidden_size, bias=bias)
        self.down_cell = LSTMCell(hidden_size, hidden_size, bias)

    @property
    def cell(self) -> LSTMCell:
        return self.up.cell

    def forward(self, x: Tensor, edge_index: Tensor, height: Tensor | None = None,
                pos: Tensor | None = None, schedule: TreeSchedule | None = None) -> Tensor:
        if schedule is None:
            schedule = tree_schedule(edge_index, x.size(0), height)
        h_up = self.up(x, edge_index, schedule=schedule)
        h_down, _ = run_down(self.down_cell, h_up, edge_index, schedule)
        return torch.cat([h_up, h_down], dim=-1)
