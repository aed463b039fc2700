"""Running a cell over the levels of a schedule: any DAG, trees included.

:func:`run_schedule` runs any cell over the levels of a
:class:`~structrnn.levels.schedule.Schedule`: every level (all nodes whose predecessors are done,
across all structures of the batch) is one batched cell call, so the Python loop is over levels,
never over nodes. :func:`run_up` and :func:`run_down` build the schedule of a batch of trees
(child -> parent edges) and run the cell bottom-up or top-down. The stock Tree-LSTM cells take a
faster route over the same levels: the whole pass as one autograd node with a hand-written
backward (:mod:`structrnn.levels.kernels`; ``fused=False`` runs them op by op like any cell).

Inputs that only some nodes have (the words of a sentence sit on its leaves) can be passed as
those rows alone (``x_rows``): the kernels then project only them, and skip the forget block
of the projection for rows on level 0, which has no predecessor to forget. ``compile=True``
runs the op-by-op step of any other cell through ``torch.compile`` (opt-in: measured, it pays
only on wide levels; see ``structrnn bench trees --compiled``).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structrnn._deprecation import renamed
from structrnn.cells import (
    LSTMCell,
    NaryLSTMCell,
    RNNCellBase,
    inherits,
    state_from_tuple,
    state_h,
    state_tuple,
)
from structrnn.levels.kernels.child_sum import child_sum_lstm
from structrnn.levels.kernels.child_sum import kernel_order as child_sum_order
from structrnn.levels.kernels.level_store import LevelStore
from structrnn.levels.kernels.nary import input_order as nary_input_order
from structrnn.levels.kernels.nary import kernel_order as nary_order
from structrnn.levels.kernels.nary import nary_lstm
from structrnn.levels.schedule import Schedule, TreeSchedule, tree_schedule

__all__ = ["run_schedule", "run_up", "run_down"]


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


# The fused kernels re-implement ``combine`` (the recurrence) only: they take the input gates
# from the cell's own ``project_input`` and ``_input_gates``, so a subclass may change those and
# keep the kernel; one that changes ``combine`` runs op by op.
_KERNEL_REPLACES = ("combine",)
# A cell whose input methods are the stock ones gets its projection computed here, straight
# into the kernel's layout (and only where the kernel reads it).
_STOCK_INPUT = ("project_input", "_input_gates")


class _Layout(NamedTuple):
    """Where the kernel wants the cell's gates: ``hh`` (G,) the rows of ``weight_hh`` and
    ``bias_hh`` in the kernel's order, ``ih`` (G,) the rows of the input projection (N-ary: its
    forget block once per slot), ``forget`` the kernel's columns of the forget gate(s), which
    level 0 (no predecessors) never reads."""

    hh: Tensor
    ih: Tensor
    forget: slice


def _layout(cell: nn.Module, child_sum: bool, device: torch.device) -> _Layout:
    H = cell.hidden_size
    if child_sum:
        order = child_sum_order(H, device)
        return _Layout(order, order, slice(3 * H, 4 * H))
    A = cell.arity
    return _Layout(nary_order(H, A, device), nary_input_order(H, A, device),
                   slice(2 * H, (2 + A) * H))


def _kernel_pre(cell: nn.Module, x: Tensor | None, x_rows: Tensor | None, s: Schedule, n: int,
                lay: _Layout) -> Tensor | tuple[Tensor, Tensor]:
    """The kernel's pre-activations before the recurrence, rows in the schedule's order,
    columns in the kernel's: the input projection plus both biases. (n, G) for the N-ary
    kernel; for the Child-Sum one the pair (n, 3H) of o, i, g and (n, H) of f, each contiguous
    (the forget block is read per edge, and its gradient is a sum over the edges).

    With ``x_rows`` only those nodes have an input; every other row is the biases alone (what a
    zero input gives). Rows of level 0 have no predecessor, so their forget block is never read:
    when every input row is on level 0 (the words of a sentence are its leaves) that block of
    the projection is skipped. Besides the work, this keeps ``weight_ih``'s forget rows out of
    the products: a tree model whose inputs sit on its leaves never trains them, and weight
    decay shrinks them into subnormal floats, on which CPU arithmetic runs ten times slower.
    """
    b_hh = cell.bias_hh.index_select(0, lay.hh) if cell.bias_hh is not None else None
    if not inherits(cell, RNNCellBase, _STOCK_INPUT):  # the cell's own input methods
        if x is not None and x_rows is not None:
            x = _dense_input(x, x_rows, n)
        xs = x.index_select(0, s.order) if x is not None else None
        pre = cell._input_gates(cell.project_input(xs), n).index_select(1, lay.ih)
        return _split(pre if b_hh is None else pre + b_hh, lay)
    b_ih = cell.bias_ih.index_select(0, lay.ih) if cell.bias_ih is not None else None
    bias = b_ih if b_hh is None else b_hh if b_ih is None else b_ih + b_hh
    width = lay.hh.numel()
    if bias is None:
        bias = cell.weight_hh.new_zeros(width)
    if x is None:
        return _split(bias.expand(n, width), lay)
    w_ih = cell.weight_ih.index_select(0, lay.ih)
    f = lay.forget
    if x_rows is None:
        xs = x.index_select(0, s.order)
        if f.stop == width:  # Child-Sum: the two parts, each one product
            return (F.linear(xs, w_ih[:f.start], bias[:f.start]),
                    F.linear(xs, w_ih[f.start:], bias[f.start:]))
        return F.linear(xs, w_ih, bias)
    rows = s.rank.index_select(0, x_rows)
    leaves_only = rows.device.type == "cpu" and bool((rows < s.node_ptr[1]).all())  # host read
    if f.stop == width:  # Child-Sum
        oig = bias[:f.start].expand(n, -1).index_add(0, rows, F.linear(x, w_ih[:f.start]))
        forget = bias[f.start:].expand(n, -1)
        if not leaves_only:
            forget = forget.index_add(0, rows, F.linear(x, w_ih[f.start:]))
        return oig, forget
    if leaves_only:
        keep = torch.cat([torch.arange(f.start, device=rows.device),
                          torch.arange(f.stop, width, device=rows.device)])
        proj = F.linear(x, w_ih.index_select(0, keep))
        proj = torch.cat([proj[:, :f.start], proj.new_zeros(proj.size(0), f.stop - f.start),
                          proj[:, f.start:]], dim=1)
    else:
        proj = F.linear(x, w_ih)
    return bias.expand(n, -1).index_add(0, rows, proj)


def _split(pre: Tensor, lay: _Layout) -> Tensor | tuple[Tensor, Tensor]:
    """The Child-Sum kernel's two parts of ``pre`` (its forget block is last); N-ary: ``pre``."""
    f = lay.forget
    return (pre[:, :f.start], pre[:, f.start:]) if f.stop == pre.size(1) else pre


def _dense_input(x: Tensor, x_rows: Tensor, n: int) -> Tensor:
    """(n, input_size): ``x``'s rows at ``x_rows``, zeros elsewhere."""
    return x.new_zeros(n, x.size(1)).index_copy(0, x_rows, x)


def _sparse_projection(cell: nn.Module, x: Tensor, x_rows: Tensor, s: Schedule, n: int
                       ) -> Tensor:
    """``cell.project_input`` of the dense input, rows in the schedule's order, computed on the
    M rows of ``x`` alone: every other row is the projection of a zero input, computed once.
    (A cell's ``project_input`` acts row by row: the contract of ``docs/architecture.md``.)"""
    proj = cell.project_input(x)                                       # (M, G)
    zero = cell.project_input(x.new_zeros(1, x.size(1)))               # (1, G)
    return zero.expand(n, -1).index_copy(0, s.rank.index_select(0, x_rows), proj)


def _run_fused(cell: nn.Module, x: Tensor | None, x_rows: Tensor | None, s: Schedule, n: int,
               slot_s: Tensor | None) -> tuple[Tensor, Tensor] | None:
    """The pass through a fused kernel (one autograd node, hand-written backward) when one
    computes exactly what ``cell.combine`` would, else None.

    Fused: an :class:`LSTMCell` (Child-Sum) or :class:`NaryLSTMCell` whose class keeps the stock
    ``combine``, with nodes to run and no autocast (the kernels keep one dtype).
    """
    child_sum = inherits(cell, LSTMCell, _KERNEL_REPLACES)
    if not (child_sum or inherits(cell, NaryLSTMCell, _KERNEL_REPLACES)) or n == 0:
        return None
    if _autocast_on(cell.weight_hh.device.type):
        return None
    lay = _layout(cell, child_sum, cell.weight_hh.device)
    pre = _kernel_pre(cell, x, x_rows, s, n, lay)
    w_hh = cell.weight_hh.index_select(0, lay.hh)
    if child_sum:
        return child_sum_lstm(pre, w_hh, s, True)
    slot = slot_s if slot_s is not None else torch.zeros_like(s.pred)
    return nary_lstm(pre, w_hh, s, slot, cell.arity, True)


def _check_slots(cell: nn.Module, slot_s: Tensor | None) -> None:
    """Once per pass, outside the level loop (one host synchronisation): a slot >= arity would
    silently land in the next parent's slots."""
    arity = getattr(cell, "arity", None)
    if slot_s is None or arity is None or not slot_s.numel() or slot_s.is_meta:
        return
    top = int(slot_s.max())
    if top >= arity:
        raise ValueError(f"child_index: a node has a child in position {top}, but the cell "
                         f"takes at most arity={arity} children (binarize the tree: "
                         "Tree.binarize())")


def run_schedule(cell: nn.Module, x: Tensor | None, schedule: Schedule, num_nodes: int,
                 child_index: Tensor | None = None, fused: bool = True,
                 x_rows: Tensor | None = None, compile: bool = False, return_state: bool = False,
                 *, pos: Tensor | None = None):
    """Run ``cell`` over the levels of ``schedule``.

    Args:
        cell: a structrnn cell (uses its ``project_input`` / ``combine`` split: one input matmul
            for all nodes, then one recurrent matmul per level) or any module called as
            ``cell(input, hx, index=..., size=...)``.
        x: (N, input_size) node inputs, or None.
        schedule: the pass's :class:`~structrnn.levels.schedule.Schedule`.
        num_nodes: N.
        child_index: (N,) long, each node's slot under its parent, as on tree ``Data``:
            required by a cell with ordered slots (``arity`` > 1: N-ary cells), ignored by
            others. (``pos=`` is its deprecated old name.)
        fused: run a plain :class:`LSTMCell` or :class:`NaryLSTMCell` through its kernel
            (:mod:`structrnn.levels.kernels.child_sum`, :mod:`structrnn.levels.kernels.nary`: one
            autograd node for the whole pass); False runs every cell op by op.
        x_rows: (M,) long, when only some nodes have an input: ``x`` (M, input_size) holds the
            inputs of nodes ``x_rows`` and every other node's input is zero (the words of a
            sentence sit on its leaves). The same states as the dense ``x``; the fused kernels
            then project the M rows only.
        compile: on the op-by-op path (any cell without a kernel, or ``fused=False``), run
            the cell's step (``combine``, or the module's call) through ``torch.compile``
            (dynamic shapes: the levels differ in size), which fuses its elementwise work.
            The first calls compile (seconds to minutes); where compiling fails, a warning
            says so and the step runs as it is. Opt-in: whether it pays depends on the cell
            and the machine (``structrnn bench trees --compiled``).

        return_state: return the cell's whole state (``(h, c)`` for LSTM cells) instead of
            ``h``.

    Returns:
        ``h`` (N, H) of every node in the original node order; with ``return_state=True`` the
        cell's state form: ``h`` for RNN/GRU cells, ``(h, c)`` for LSTM cells.
    """
    child_index = renamed("run_schedule", "pos", "child_index", pos, child_index)
    if child_index is None and getattr(cell, "arity", 1) > 1 and schedule.pred.numel():
        raise ValueError(f"run_schedule: {type(cell).__name__} (arity={cell.arity}) takes "
                         "ordered children: child_index is required, (N,) long, each node's "
                         "position under its parent (batch.child_index of a tree batch); "
                         "got None")
    state = _run_schedule(cell, x, schedule, num_nodes, child_index, fused, x_rows, compile)
    return state if return_state else state_h(state)


def _run_schedule(cell: nn.Module, x: Tensor | None, schedule: Schedule, num_nodes: int,
                  child_index: Tensor | None, fused: bool, x_rows: Tensor | None,
                  compile: bool):
    """:func:`run_schedule`, returning the cell's full state."""
    device = x.device if x is not None else next(cell.parameters()).device
    s = _to(schedule, device)
    fast = isinstance(cell, RNNCellBase)
    # the slot of each scheduled predecessor (child_index is per node: its place in its parent)
    slot_s = child_index[s.order][s.pred] if child_index is not None else None
    _check_slots(cell, slot_s)
    if fused and (states := _run_fused(cell, x, x_rows, s, num_nodes, slot_s)) is not None:
        return states
    if fast and x is not None and x_rows is not None:
        xp = _sparse_projection(cell, x, x_rows, s, num_nodes)
    else:
        if x is not None and x_rows is not None:
            x = _dense_input(x, x_rows, num_nodes)
        xs = x[s.order] if x is not None else None
        xp = cell.project_input(xs) if fast else xs
    step = _compiled_step(cell, fast) if compile else (cell.combine if fast else cell)
    # Split once: a slice per level would make backward build and add a full-size gradient of
    # xp at every level (O(nodes x levels)); split's backward is one concatenation.
    sizes = [s.node_ptr[i + 1] - s.node_ptr[i] for i in range(s.num_levels)]
    xp_levels = xp.split(sizes) if xp is not None else [None] * s.num_levels
    slot = None
    # One store holds every state component side by side (h and c for LSTMs), so each level
    # is one gather and one contiguous write, whatever the cell's state.
    store, widths = None, None
    for level in range(s.num_levels):
        n0, n1 = s.node_ptr[level], s.node_ptr[level + 1]
        e0, e1 = s.edge_ptr[level], s.edge_ptr[level + 1]
        if e1 > e0:
            prev = state_from_tuple(store.read(s.pred[e0:e1]).split(widths, dim=1))
            index = s.target[e0:e1]
            if slot_s is not None:
                slot = slot_s[e0:e1]
        else:
            prev, index = None, None
        x_level = xp_levels[level]
        if fast:  # a slotted cell's combine takes the slots fifth, whatever it names them
            args = (x_level, prev, index, n1 - n0) + (() if slot is None else (slot,))
            out = step(*args)
        elif slot is None:
            out = step(x_level, prev, index=index, size=n1 - n0)
        else:
            out = step(x_level, prev, index=index, size=n1 - n0, child_index=slot)
        out = state_tuple(out)
        if store is None:
            widths = [o.size(1) for o in out]
            store = LevelStore(num_nodes, sum(widths), out[0])
        store.write(n0, torch.cat(out, dim=1) if len(out) > 1 else out[0])
    if store is None:  # no nodes at all: an empty step gives the state's shape (0 rows)
        empty = xp[:0] if xp is not None else None
        return cell.combine(empty, None, None, 0) if fast else cell(empty, None, size=0)
    states = store.read(s.rank)
    store.close()  # no reference from the store back into the autograd graph (a leak)
    return state_from_tuple(states.split(widths, dim=1))


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # cell -> its compiled step


def _compiled_step(cell: nn.Module, fast: bool) -> Callable:
    """``cell.combine`` (or the cell itself) through ``torch.compile``, made once per cell;
    a step whose compilation fails warns once and runs eagerly from then on."""
    if cell in _COMPILED:
        return _COMPILED[cell]
    eager = cell.combine if fast else cell
    compiled = torch.compile(eager, dynamic=True)
    state = {"ok": True}

    def step(*args, **kwargs):
        if state["ok"]:
            try:
                return compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - no compiler, an unsupported op ...
                state["ok"] = False
                warnings.warn(f"torch.compile of {type(cell).__name__}'s step failed "
                              f"({type(err).__name__}: {str(err)[:200]}); running it eagerly",
                              stacklevel=3)
        return eager(*args, **kwargs)

    _COMPILED[cell] = step
    return step


def _schedule_for(edge_index: Tensor, num_nodes: int, height: Tensor | None,
                  schedule: TreeSchedule | None) -> TreeSchedule:
    if schedule is not None:
        return schedule
    return tree_schedule(edge_index, num_nodes, height)


def run_up(cell: nn.Module, x: Tensor | None, edge_index: Tensor, height: Tensor | None = None,
           child_index: Tensor | None = None, schedule: TreeSchedule | None = None,
           num_nodes: int | None = None, fused: bool = True, x_rows: Tensor | None = None,
           compile: bool = False, return_state: bool = False, *, pos: Tensor | None = None):
    """Run ``cell`` bottom-up: each node's predecessors are its children.

    Args:
        x: (N, input_size) node inputs (zeros where a node has no input), or None.
        edge_index: (2, E) child -> parent.
        height: (N,) node heights (stored on tree ``Data``); derived when None.
        child_index: (N,) long, each node's position under its parent (needed by N-ary cells;
            ``pos=`` is its deprecated old name).
        schedule: precomputed :class:`TreeSchedule` (``batch.schedule`` from
            :func:`~structrnn.trees.loader.collate_trees`); built on the CPU when None.
        num_nodes: N, when ``x`` is None or holds only some nodes' inputs (``x_rows``).
        fused, x_rows, compile, return_state: as in :func:`run_schedule`.

    Returns:
        ``h`` (N, H) of every node; with ``return_state=True`` the cell's state form (``(h, c)``
        for LSTM cells).
    """
    child_index = renamed("run_up", "pos", "child_index", pos, child_index)
    n = _num_nodes(x, num_nodes, x_rows)
    sched = _schedule_for(edge_index, n, height, schedule)
    return run_schedule(cell, x, sched.up, n, child_index, fused=fused, x_rows=x_rows,
                        compile=compile, return_state=return_state)


def run_down(cell: nn.Module, x: Tensor | None, edge_index: Tensor,
             schedule: TreeSchedule | None = None, num_nodes: int | None = None,
             fused: bool = True, x_rows: Tensor | None = None, compile: bool = False,
             return_state: bool = False):
    """Run ``cell`` top-down: each node's predecessor is its parent (roots start from zero).
    Arguments and result as :func:`run_up`."""
    n = _num_nodes(x, num_nodes, x_rows)
    sched = _schedule_for(edge_index, n, None, schedule)
    return run_schedule(cell, x, sched.down, n, fused=fused, x_rows=x_rows, compile=compile,
                        return_state=return_state)


def _num_nodes(x: Tensor | None, num_nodes: int | None, x_rows: Tensor | None) -> int:
    if num_nodes is not None:
        return num_nodes
    if x_rows is not None:
        raise ValueError("num_nodes: required with x_rows (x then holds only some nodes)")
    return x.size(0)
