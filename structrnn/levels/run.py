"""Running a cell over the levels of a schedule: any DAG, trees included.

:func:`run_schedule` runs any cell over the levels of a
:class:`~structrnn.levels.schedule.Schedule`: every level (all nodes whose predecessors are done,
across all structures of the batch) is one batched cell call, so the Python loop is over levels,
never over nodes. :func:`run_up` and :func:`run_down` build the schedule of a batch of trees
(child -> parent edges) and run the cell bottom-up or top-down. The stock Tree-LSTM cells take a
faster route over the same levels: the whole pass as one autograd node with a hand-written
backward (:mod:`structrnn.levels.kernels`; ``fused=False`` runs them op by op like any cell).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from structrnn.cells import (
    LSTMCell,
    NaryLSTMCell,
    RNNCellBase,
    inherits,
    state_from_tuple,
    state_tuple,
)
from structrnn.levels.kernels.child_sum import child_sum_lstm
from structrnn.levels.kernels.level_store import LevelStore
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


def _run_fused(cell: nn.Module, x: Tensor | None, s: Schedule, n: int,
               pos_s: Tensor | None) -> tuple[Tensor, Tensor] | None:
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
    H = cell.hidden_size
    xp = cell._input_gates(cell.project_input(x), n)  # (n, 4H): i, f, g, o
    if child_sum:  # the kernel sorts the rows itself
        pre = xp if cell.bias_hh is None else xp + cell.bias_hh
        return child_sum_lstm(pre, cell.weight_hh, s)
    A = cell.arity
    # the input's forget block feeds every slot's forget gate
    pre = torch.cat([xp[:, :H], xp[:, H:2 * H].repeat(1, A), xp[:, 2 * H:]], dim=1)
    if cell.bias_hh is not None:
        pre = pre + cell.bias_hh
    slot = pos_s if pos_s is not None else torch.zeros_like(s.pred)
    return nary_lstm(pre, cell.weight_hh, s, slot, A)


def _check_slots(cell: nn.Module, pos_s: Tensor | None) -> None:
    """Once per pass, outside the level loop (one host synchronisation): a slot >= arity would
    silently land in the next parent's slots."""
    arity = getattr(cell, "arity", None)
    if pos_s is None or arity is None or not pos_s.numel() or pos_s.is_meta:
        return
    top = int(pos_s.max())
    if top >= arity:
        raise ValueError(f"pos: a node has a child in position {top}, but the cell takes at "
                         f"most arity={arity} children (binarize the tree: Tree.binarize())")


def run_schedule(cell: nn.Module, x: Tensor | None, schedule: Schedule, num_nodes: int,
                 pos: Tensor | None = None, fused: bool = True):
    """Run ``cell`` over the levels of ``schedule``.

    Args:
        cell: a structrnn cell (uses its ``project_input`` / ``combine`` split: one input matmul
            for all nodes, then one recurrent matmul per level) or any module called as
            ``cell(x, prev, index=..., size=...)``.
        x: (N, input_size) node inputs, or None.
        schedule: the pass's :class:`~structrnn.levels.schedule.Schedule`.
        num_nodes: N.
        pos: (N,) each node's slot under its parent (N-ary cells), as on tree ``Data``.
        fused: run a plain :class:`LSTMCell` or :class:`NaryLSTMCell` through its kernel
            (:mod:`structrnn.levels.kernels.child_sum`, :mod:`structrnn.levels.kernels.nary`: one
            autograd node for the whole pass); False runs every cell op by op.

    Returns:
        The state of every node in the original node order: (N, H), or a tuple for LSTM cells.
    """
    device = x.device if x is not None else next(cell.parameters()).device
    s = _to(schedule, device)
    fast = isinstance(cell, RNNCellBase)
    # the slot of each scheduled predecessor (pos is per node: the child's place in its parent)
    pos_s = pos[s.order][s.pred] if pos is not None else None
    _check_slots(cell, pos_s)
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
            prev = state_from_tuple(store.read(s.pred[e0:e1]).split(widths, dim=1))
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
        out = state_tuple(out)
        if store is None:
            widths = [o.size(1) for o in out]
            store = LevelStore(num_nodes, sum(widths), out[0])
        store.write(n0, torch.cat(out, dim=1) if len(out) > 1 else out[0])
    if store is None:  # no nodes at all: an empty step gives the state's shape (0 rows)
        empty = xp[:0] if xp is not None else None
        return cell.combine(empty, None, None, 0) if fast else cell(empty, None, size=0)
    return state_from_tuple(store.read(s.rank).split(widths, dim=1))


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
            :func:`~structrnn.trees.loader.collate_trees`); built on the CPU when None.
        num_nodes: N, when ``x`` is None.
        fused: as in :func:`run_schedule`.

    Returns:
        The state of every node: (N, H), or ``(h, c)`` for LSTM cells.
    """
    n = x.size(0) if num_nodes is None else num_nodes
    sched = _schedule_for(edge_index, n, height, schedule)
    return run_schedule(cell, x, sched.up, n, pos, fused=fused)


def run_down(cell: nn.Module, x: Tensor | None, edge_index: Tensor,
             schedule: TreeSchedule | None = None, num_nodes: int | None = None,
             fused: bool = True):
    """Run ``cell`` top-down: each node's predecessor is its parent (roots start from zero).
    Arguments and result as :func:`run_up`."""
    n = x.size(0) if num_nodes is None else num_nodes
    sched = _schedule_for(edge_index, n, None, schedule)
    return run_schedule(cell, x, sched.down, n, fused=fused)
