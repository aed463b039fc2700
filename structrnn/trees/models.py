"""Recursive tree models: Tree-LSTM (Child-Sum and N-ary), Tree-GRU, recursive NN, RNTN and
the bidirectional Tree-LSTM, each one cell run bottom-up by :func:`structrnn.levels.run.run_up`.

A batch of trees is a PyG ``Batch`` whose ``edge_index`` points child -> parent
(``docs/architecture.md``, "Data layout"). Every level (all nodes of one height, across all trees
of the batch) is one batched cell call, so the Python loop is over levels, never over nodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structrnn._checks import IndexSpec, check_shape
from structrnn._deprecation import renamed, warn_once
from structrnn.cells import GRUCell, LSTMCell, NaryLSTMCell, RNNCellBase, scatter_sum
from structrnn.levels.run import run_down, run_up
from structrnn.levels.schedule import TreeSchedule, tree_schedule

__all__ = ["TreeLSTM", "TreeGRU", "RecursiveNN", "RNTN",
           "BiTreeLSTM", "RecursiveCell", "RNTNCell"]


def _need_slots(owner: str, child_index: Tensor | None) -> Tensor:
    """``child_index``, which an ordered-children (N-ary) model cannot do without."""
    if child_index is None:
        raise ValueError(f"{owner}: child_index is required: (N,) long, each node's position "
                         "under its parent (a tree batch carries it as batch.child_index), "
                         "got None")
    return child_index


class _TreeModel(nn.Module):
    """Shared checks, ``reset_parameters``, ``repr`` and the bottom-up call for models with one
    cell."""

    cell: nn.Module

    def reset_parameters(self) -> None:
        """Draw new weights, as a new model of the same sizes would."""
        self.cell.reset_parameters()

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"

    def _check(self, x: Tensor, edge_index: Tensor) -> None:
        name = type(self).__name__
        check_shape(x, "x", (None, self.input_size), name)
        check_shape(edge_index, "edge_index", (2, None), name)

    def _up(self, x, edge_index, height, child_index, schedule, x_rows=None, num_nodes=None,
            return_state=False):
        self._check(x, edge_index)
        return run_up(self.cell, x, edge_index, height, child_index, schedule,
                      num_nodes=num_nodes, x_rows=x_rows, return_state=return_state)


def _renamed_slot(owner: str, pos: Tensor | None, child_index: Tensor | None) -> Tensor | None:
    return renamed(owner, "pos", "child_index", pos, child_index, stacklevel=7)


class TreeLSTM(_TreeModel):
    """Tree-LSTM (Tai, Socher & Manning 2015, "Improved Semantic Representations From
    Tree-Structured Long Short-Term Memory Networks").

    ``variant="child-sum"`` uses :class:`~structrnn.LSTMCell` (any number of unordered
    children, one forget gate per child); ``variant="n-ary"`` uses
    :class:`~structrnn.NaryLSTMCell` (ordered children, ``child_index`` gives each child's
    slot). ``.cell`` is that cell: the same weights run as a sequence LSTM.

    Shapes: ``x`` (N, input_size), ``edge_index`` (2, E) child -> parent, ``height`` (N,)
    (derived when None), ``child_index`` (N,) long each node's position under its parent
    (required by ``"n-ary"``, ignored by ``"child-sum"``). Returns ``h`` (N, hidden_size), or
    the cell's state ``(h, c)`` with ``return_state=True`` (``return_cell=`` is its deprecated
    old name).

    When only some nodes have an input (the words of a sentence are its leaves), pass those
    inputs alone: ``x`` (M, input_size), ``x_rows`` (M,) their node ids and ``num_nodes`` N.
    The states equal those of the dense ``x`` with zero rows elsewhere, and the input projection
    runs over the M rows only.
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

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.variant == "n-ary":
            s += f", variant='n-ary', arity={self.cell.arity}"
        return s

    def forward(self, x: Tensor, edge_index: Tensor, height: Tensor | None = None,
                child_index: Tensor | None = None, schedule: TreeSchedule | None = None,
                return_state: bool = False, x_rows: Tensor | None = None,
                num_nodes: int | None = None, *, pos: Tensor | None = None,
                return_cell: bool | None = None):
        child_index = _renamed_slot("TreeLSTM", pos, child_index)
        if return_cell is not None:
            warn_once("TreeLSTM.return_cell", "TreeLSTM: return_cell= is deprecated, use "
                      "return_state= (the old name goes in the next release)", stacklevel=5)
            return_state = return_state or return_cell
        if self.variant == "n-ary":
            slots = _need_slots("TreeLSTM(variant='n-ary')", child_index)
        else:
            slots = None  # child-sum children are unordered
        return self._up(x, edge_index, height, slots, schedule, x_rows, num_nodes, return_state)


class TreeGRU(_TreeModel):
    """Child-Sum Tree-GRU: a GRU whose previous state is the sum of the children's states
    (the tree analogue of Cho et al. 2014, as in Kokkinos & Potamianos 2017). ``.cell`` is a
    :class:`~structrnn.GRUCell`. Children are unordered (``child_index`` is ignored). Returns
    ``h`` (N, hidden_size), which is also the cell's state (``return_state`` changes nothing).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.cell = GRUCell(input_size, hidden_size, bias)

    def forward(self, x: Tensor, edge_index: Tensor, height: Tensor | None = None,
                child_index: Tensor | None = None, schedule: TreeSchedule | None = None,
                return_state: bool = False, *, pos: Tensor | None = None) -> Tensor:
        _renamed_slot("TreeGRU", pos, child_index)
        return self._up(x, edge_index, height, None, schedule, return_state=return_state)


def _slots(prev: Tensor, index: Tensor | None, child_index: Tensor | None, size: int,
           arity: int) -> Tensor:
    """Children's states laid side by side by slot: (size, arity * H), missing slots zero
    (``index=None``: row ``j`` of ``prev`` is row ``j``'s one child, torch's cell call)."""
    if index is None:
        index = torch.arange(size, device=prev.device)
    if child_index is None:
        child_index = torch.zeros_like(index)
    return scatter_sum(prev, index * arity + child_index, size * arity).view(size, -1)


class RecursiveCell(RNNCellBase):
    """Composition of Socher et al. (2011): ``p = tanh(W [c_1; ...; c_arity] + b)``; a node
    without children takes its input as its vector (``input_size == hidden_size``).

    Call: ``cell(input)`` (a leaf: its input), ``cell(input, hx)`` (row ``j`` of ``hx`` is row
    ``j``'s one child, in slot 0, or in slot ``child_index[j]``), and the many-children call
    ``cell(input, hx, index=index, size=size, child_index=child_index)`` as
    :class:`~structrnn.NaryLSTMCell` takes it: ``child_index[j]`` is child ``j``'s slot in
    ``[0, arity)``, required with ``index``; missing slots are zero."""

    num_chunks = 1
    _DEPRECATED_KEYWORDS = {**RNNCellBase._DEPRECATED_KEYWORDS, "pos": "child_index"}

    def __init__(self, hidden_size: int, arity: int = 2, bias: bool = True) -> None:
        self.arity = arity
        # the input passes through unchanged at leaves: no input weights
        super().__init__(hidden_size, hidden_size, bias, hh_rows=hidden_size,
                         hh_cols=arity * hidden_size, input_weights=False)

    def project_input(self, x: Tensor | None) -> Tensor | None:
        return x

    def extra_repr(self) -> str:
        return f"{self.hidden_size}, arity={self.arity}" + ("" if self.bias else ", bias=False")

    def forward(self, input: Tensor | None = None, hx: Tensor | None = None, *,
                index: Tensor | None = None, size: int | None = None,
                child_index: Tensor | None = None, **deprecated) -> Tensor:
        """As :meth:`RNNCellBase.forward`, plus ``child_index`` (M,) long: each child's slot
        in ``[0, arity)``, required with ``index`` (``pos=`` is its deprecated spelling).

        Returns:
            (N, hidden_size) (``(hidden_size,)`` unbatched).
        """
        input, hx, extra = self._resolve_keywords(input, hx, deprecated, child_index=child_index)
        if index is not None and extra["child_index"] is None and self.arity > 1:
            raise ValueError(f"{type(self).__name__}: pass child_index (each child's slot in "
                             f"[0, {self.arity})) with index")
        return self._call(input, hx, index, size, **extra)

    def _index_specs(self, hx: Tensor | None, index: Tensor | None, size: int,
                     child_index: Tensor | None = None) -> list[IndexSpec]:
        specs = [] if index is None else super()._index_specs(hx, index, size)
        if child_index is not None and hx is not None:
            specs.append(IndexSpec(child_index, "child_index", hx.size(0), self.arity))
        return specs

    def combine(self, x_proj: Tensor | None, prev: Tensor | None, index: Tensor | None,
                size: int, child_index: Tensor | None = None) -> Tensor:
        if prev is None:
            if x_proj is None:
                raise ValueError("RecursiveCell: leaves need an input vector")
            return x_proj
        return self.compose(_slots(prev, index, child_index, size, self.arity))

    def compose(self, children: Tensor) -> Tensor:
        """(size, arity * H) children side by side -> (size, H) parents."""
        return torch.tanh(F.linear(children, self.weight_hh, self.bias_hh))


class RNTNCell(RecursiveCell):
    """Recursive Neural Tensor Network composition (Socher et al. 2013, "Recursive Deep Models
    for Semantic Compositionality Over a Sentiment Treebank"):
    ``p = tanh(c^T V^{[1:d]} c + W c + b)`` with ``c = [c_1; c_2]``, ``V`` (d, 2d, 2d)."""

    def __init__(self, hidden_size: int, arity: int = 2, bias: bool = True) -> None:
        super().__init__(hidden_size, arity, bias)
        k = arity * hidden_size
        self.tensor = nn.Parameter(torch.empty(hidden_size, k, k))
        self._reset_tensor()

    def _uniform_parameters(self):
        return (p for name, p in self.named_parameters() if name != "tensor")

    def reset_parameters(self) -> None:
        """W and b as at construction (U(-1/sqrt(H), 1/sqrt(H))), then V (see
        :meth:`_reset_tensor`): the same draws, in the same order, as a new cell."""
        super().reset_parameters()
        if "tensor" in self._parameters:  # absent while the base constructor runs
            self._reset_tensor()

    def _reset_tensor(self) -> None:
        # Socher et al. initialise V small; U(-1/k, 1/k) keeps the bilinear term ~ W c at start.
        k = self.tensor.size(-1)
        nn.init.uniform_(self.tensor, -1.0 / k, 1.0 / k)

    def compose(self, children: Tensor) -> Tensor:
        bilinear = torch.einsum("ni,kij,nj->nk", children, self.tensor, children)
        return torch.tanh(bilinear + F.linear(children, self.weight_hh, self.bias_hh))


class RecursiveNN(_TreeModel):
    """Recursive neural network (Socher et al. 2011, "Parsing Natural Scenes and Natural
    Language with Recursive Neural Networks"): leaves are their word vectors, each parent is
    ``tanh(W [c_1; c_2] + b)`` of its ordered children. ``x`` (N, hidden_size) carries the
    leaves' vectors; ``child_index`` (N,) long each node's slot under its parent (when None,
    children are numbered in the order their edges are listed, as :meth:`Tree.to_data` lists
    them). Returns ``h`` (N, hidden_size), also the cell's state."""

    cell_class = RecursiveCell

    def __init__(self, hidden_size: int, arity: int = 2, bias: bool = True) -> None:
        super().__init__()
        self.input_size = self.hidden_size = hidden_size
        self.cell = self.cell_class(hidden_size, arity, bias)

    def extra_repr(self) -> str:
        return f"{self.hidden_size}, arity={self.cell.arity}"

    def forward(self, x: Tensor, edge_index: Tensor, height: Tensor | None = None,
                child_index: Tensor | None = None, schedule: TreeSchedule | None = None,
                return_state: bool = False, *, pos: Tensor | None = None) -> Tensor:
        child_index = _renamed_slot(type(self).__name__, pos, child_index)
        if child_index is None:
            child_index = _default_child_index(edge_index, x.size(0))
        return self._up(x, edge_index, height, child_index, schedule, return_state=return_state)


class RNTN(RecursiveNN):
    """Recursive Neural Tensor Network (Socher et al. 2013): :class:`RecursiveNN` with the
    tensor composition of :class:`RNTNCell`. Returns ``h`` (N, hidden_size)."""

    cell_class = RNTNCell


def _default_child_index(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Each node's slot under its parent when none are given: children numbered in the order
    their edges are listed (roots get 0)."""
    child, parent = edge_index
    slot = torch.zeros(num_nodes, dtype=torch.long, device=edge_index.device)
    if parent.numel() == 0:
        return slot
    order = torch.argsort(parent, stable=True)
    sorted_parent = parent[order]
    first = torch.searchsorted(sorted_parent, sorted_parent)
    slot[child[order]] = torch.arange(parent.numel(), device=parent.device) - first
    return slot


class BiTreeLSTM(nn.Module):
    """Bidirectional Tree-LSTM: a Child-Sum Tree-LSTM bottom-up, then an LSTM top-down whose
    input at each node is that node's bottom-up state and whose previous state is its parent's
    (Teng & Zhang 2017, "Head-Lexicalized Bidirectional Tree LSTMs"). Every node then sees its
    whole tree.

    Shapes: ``x`` (N, input_size), ``edge_index`` (2, E) child -> parent (children unordered:
    ``child_index`` is ignored). Returns ``h`` (N, 2 * hidden_size), ``[h_up, h_down]``; with
    ``return_state=True`` the pair ``(h, c)``, ``c = [c_up, c_down]`` (N, 2 * hidden_size).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.up = TreeLSTM(input_size, hidden_size, bias=bias)
        self.down_cell = LSTMCell(hidden_size, hidden_size, bias)

    @property
    def cell(self) -> LSTMCell:
        return self.up.cell

    def reset_parameters(self) -> None:
        """Draw new weights for both passes."""
        self.up.reset_parameters()
        self.down_cell.reset_parameters()

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"

    def forward(self, x: Tensor, edge_index: Tensor, height: Tensor | None = None,
                child_index: Tensor | None = None, schedule: TreeSchedule | None = None,
                return_state: bool = False, *, pos: Tensor | None = None):
        _renamed_slot("BiTreeLSTM", pos, child_index)
        if schedule is None:
            schedule = tree_schedule(edge_index, x.size(0), height)
        h_up, c_up = self.up(x, edge_index, schedule=schedule, return_state=True)
        h_down, c_down = run_down(self.down_cell, h_up, edge_index, schedule, return_state=True)
        h = torch.cat([h_up, h_down], dim=-1)
        return (h, torch.cat([c_up, c_down], dim=-1)) if return_state else h
