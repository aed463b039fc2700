"""The N-ary Tree-LSTM over a whole schedule as one autograd node, with a hand-written backward.

The constituency Tree-LSTM of Tai et al. (2015, section 3.2) run the way
:mod:`structrnn.levels.kernels.child_sum` runs the Child-Sum one: level by level into preallocated
buffers with no autograd graph, and a backward that walks the levels in reverse. Each node's
children are laid side by side by slot (``h_cat`` (N', arity * H), ``c_cat`` likewise, for the
N' nodes above level 0), which is what :meth:`structrnn.cells.NaryLSTMCell.combine` builds per
level.

Inside, the gate blocks are in the order ``o, i, f_0 .. f_{A-1}, g`` (:func:`kernel_order`), not
the cell's ``i, f_0 .. f_{A-1}, g, o``: then one sigmoid covers every sigmoid gate, one tanh the
candidate, and in the backward every block driven by the memory's gradient (``i``, the ``f_k``,
``g``) is one contiguous slice, one broadcast multiplication per level. When every node above
level 0 has exactly one child in every slot (a binarised treebank such as SST), the children's
states are gathered straight into ``h_cat`` and ``c_cat`` (one ``index_select`` each) instead of
being zeroed and scattered; the plan that says so is built once per pass on the CPU.

Checked against the op-by-op path and by ``torch.autograd.gradcheck`` in
``tests/test_tree_kernels.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from structrnn.levels.schedule import Schedule

__all__ = ["nary_lstm", "kernel_order", "input_order"]


def _blocks(*blocks: int, size: int, device: torch.device | None = None) -> Tensor:
    """Row indices of the given blocks of ``size`` rows, in that order."""
    return torch.cat([torch.arange(b * size, (b + 1) * size, device=device) for b in blocks])


def kernel_order(hidden: int, arity: int, device: torch.device | None = None) -> Tensor:
    """((3 + arity) H,) rows of :class:`~structrnn.cells.NaryLSTMCell`'s ``weight_hh`` (blocks
    i, f_0 .. f_{A-1}, g, o) in the kernel's order o, i, f_0 .. f_{A-1}, g."""
    a = arity
    return _blocks(a + 2, 0, *range(1, a + 1), a + 1, size=hidden, device=device)


def input_order(hidden: int, arity: int, device: torch.device | None = None) -> Tensor:
    """((3 + arity) H,) rows of the input projection (blocks i, f, g, o: one forget block for
    every slot) in the kernel's order o, i, f (arity times), g."""
    return _blocks(3, 0, *[1] * arity, 2, size=hidden, device=device)


class _Plan(NamedTuple):
    """Where each level's children go: ``pred`` (E,) each edge's child (sorted position),
    ``rows`` (E,) its ``parent_in_level * A + slot``; ``full``: the edges of every level are
    exactly its ``(parent, slot)`` pairs in order, so ``h_cat`` is a plain gather."""

    node_ptr: list[int]
    edge_ptr: list[int]
    pred: Tensor
    rows: Tensor
    full: bool
    arity: int
    order: Tensor
    rank: Tensor


def _plan(s: Schedule, slot: Tensor, arity: int) -> _Plan:
    """The pass's :class:`_Plan`. The check for ``full`` reads the indices on the host, so it is
    made only when they are on the CPU (where the schedule is built); elsewhere the general
    scatter runs."""
    rows = s.target * arity + slot
    n_leaf, n = s.node_ptr[1] if s.num_levels else 0, s.node_ptr[-1]
    general = _Plan(s.node_ptr, s.edge_ptr, s.pred, rows, False, arity, s.order, s.rank)
    if s.pred.device.type != "cpu" or s.pred.numel() != (n - n_leaf) * arity:
        return general
    counts = torch.tensor([s.edge_ptr[k + 1] - s.edge_ptr[k] for k in range(s.num_levels)])
    starts = torch.tensor(s.node_ptr[:-1]) * arity
    # the (parent, slot) row of every edge in one numbering of all levels
    global_rows = rows + torch.repeat_interleave(starts, counts, output_size=rows.numel())
    perm = torch.argsort(global_rows)
    full = bool((global_rows[perm] == torch.arange(n_leaf * arity, n * arity)).all())
    if not full:
        return general
    # the sort keeps the levels apart (their rows are increasing), so edge_ptr still holds
    return general._replace(pred=s.pred[perm], rows=rows[perm], full=True)


class _NaryLSTM(Function):
    @staticmethod
    def forward(ctx, pre: Tensor, w_hh: Tensor, plan: _Plan):
        N, A = pre.size(0), plan.arity
        H = w_hh.size(1) // A
        sig = (2 + A) * H  # o, i, f_0 .. f_A-1: the sigmoid gates; then g (tanh)
        node_ptr, edge_ptr = plan.node_ptr, plan.edge_ptr
        n_leaf = node_ptr[1]
        act = torch.empty_like(pre)
        h, c, tanh_c = (pre.new_empty(N, H) for _ in range(3))
        # children by slot, for the nodes above level 0 only (leaves have none)
        h_cat, c_cat = pre.new_empty(N - n_leaf, A * H), pre.new_empty(N - n_leaf, A * H)
        w_t = w_hh.t()
        for level in range(len(node_ptr) - 1):
            n0, n1 = node_ptr[level], node_ptr[level + 1]
            e0, e1 = edge_ptr[level], edge_ptr[level + 1]
            gates, a, c_l = pre[n0:n1], act[n0:n1], c[n0:n1]
            if level:
                hc, cc = h_cat[n0 - n_leaf:n1 - n_leaf], c_cat[n0 - n_leaf:n1 - n_leaf]
                _gather_children(h, hc, plan, e0, e1, H)
                _gather_children(c, cc, plan, e0, e1, H)
                gates = torch.addmm(gates, hc, w_t)
            torch.sigmoid(gates[:, :sig], out=a[:, :sig])
            torch.tanh(gates[:, sig:], out=a[:, sig:])
            torch.mul(a[:, H:2 * H], a[:, sig:], out=c_l)  # i * g
            if level and e1 > e0:
                for k in range(A):  # a loop over slots: c += f_k * c_k
                    c_l.addcmul_(a[:, (2 + k) * H:(3 + k) * H], cc[:, k * H:(k + 1) * H])
            torch.tanh(c_l, out=tanh_c[n0:n1])
            torch.mul(a[:, :H], tanh_c[n0:n1], out=h[n0:n1])
        ctx.save_for_backward(act, tanh_c, h_cat, c_cat, w_hh)
        ctx.plan = plan
        return h.index_select(0, plan.rank), c.index_select(0, plan.rank)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor | None, grad_c: Tensor | None):
        act, tanh_c, h_cat, c_cat, w_hh = ctx.saved_tensors
        plan: _Plan = ctx.plan
        node_ptr, edge_ptr, A = plan.node_ptr, plan.edge_ptr, plan.arity
        N, H = tanh_c.shape
        n_leaf = node_ptr[1]
        # the outputs were h[rank]: their gradient in sorted order is a gather by order
        dh = tanh_c.new_zeros(N, H) if grad_h is None else grad_h.index_select(0, plan.order)
        dc = tanh_c.new_zeros(N, H) if grad_c is None else grad_c.index_select(0, plan.order)
        # local derivatives of every node at once, so each level below is a few multiplications:
        # coef's o block multiplies dh, its i, f_k and g blocks multiply dc
        o, i, g = act[:, :H], act[:, H:2 * H], act[:, (2 + A) * H:]
        dc_dh = o * (1 - tanh_c * tanh_c)  # c -> h
        coef = torch.empty_like(act)
        torch.mul(tanh_c * o, 1 - o, out=coef[:, :H])
        torch.mul(g * i, 1 - i, out=coef[:, H:2 * H])
        torch.mul(i, 1 - g * g, out=coef[:, (2 + A) * H:])
        coef[:n_leaf, 2 * H:(2 + A) * H].zero_()  # leaves keep no child memory
        f = act[n_leaf:, 2 * H:(2 + A) * H]
        torch.mul(c_cat * f, 1 - f, out=coef[n_leaf:, 2 * H:(2 + A) * H])
        d_gates = torch.empty_like(act)
        for level in reversed(range(len(node_ptr) - 1)):
            n0, n1 = node_ptr[level], node_ptr[level + 1]
            e0, e1 = edge_ptr[level], edge_ptr[level + 1]
            n = n1 - n0
            dh_l, dc_l, dg = dh[n0:n1], dc[n0:n1], d_gates[n0:n1]
            dc_l.addcmul_(dh_l, dc_dh[n0:n1])
            torch.mul(dh_l, coef[n0:n1, :H], out=dg[:, :H])
            torch.mul(dc_l.unsqueeze(1), coef[n0:n1, H:].view(n, 2 + A, H),
                      out=dg[:, H:].view(n, 2 + A, H))
            if e1 > e0:
                f_l = act[n0:n1, 2 * H:(2 + A) * H].view(n, A, H)
                _scatter_children(dc, (dc_l.unsqueeze(1) * f_l).view(n * A, H), plan, e0, e1)
                _scatter_children(dh, (dg @ w_hh).view(n * A, H), plan, e0, e1)
        grad_w = d_gates[n_leaf:].t() @ h_cat if ctx.needs_input_grad[1] else None
        return d_gates, grad_w, None


def _gather_children(states: Tensor, out: Tensor, plan: _Plan, e0: int, e1: int,
                     H: int) -> None:
    """``out`` (n, A * H) := the children's ``states`` by slot, zero where a slot is empty."""
    if plan.full:
        torch.index_select(states, 0, plan.pred[e0:e1], out=out.view(-1, H))
        return
    out.zero_()
    if e1 > e0:
        out.view(-1, H).index_add_(0, plan.rows[e0:e1], states.index_select(0, plan.pred[e0:e1]))


def _scatter_children(grad: Tensor, by_slot: Tensor, plan: _Plan, e0: int, e1: int) -> None:
    """Add the (n * A, H) per-(parent, slot) gradients into the children's rows of ``grad``."""
    src = plan.pred[e0:e1]
    if plan.full:  # the edges are the (parent, slot) rows in order
        grad.index_add_(0, src, by_slot)
    else:
        grad.index_add_(0, src, by_slot.index_select(0, plan.rows[e0:e1]))


def nary_lstm(pre: Tensor, weight_hh: Tensor, schedule: Schedule, slot: Tensor, arity: int,
              prepared: bool = False) -> tuple[Tensor, Tensor]:
    """N-ary Tree-LSTM states of every node, run over the levels of ``schedule``.

    Args:
        pre: (N, (3 + arity) H) gate pre-activations before the recurrence, in
            :class:`~structrnn.cells.NaryLSTMCell`'s ``weight_hh`` row order (i, f_0 ..
            f_arity-1, g, o): the input projection (its f block repeated per slot) plus
            ``bias_hh``.
        weight_hh: ((3 + arity) H, arity H).
        schedule: a :class:`~structrnn.levels.schedule.Schedule` whose level 0 has no incoming
            edges.
        slot: (E,) each scheduled edge's child slot (``pos``), each < ``arity``.
        prepared: ``pre``'s rows are already in the schedule's order (``pre[schedule.order]``)
            and ``pre``'s columns and ``weight_hh``'s rows in the kernel's order
            (:func:`kernel_order`); the rows of level 0's forget blocks are not read. This is
            how :func:`structrnn.levels.run.run_schedule` calls it, sparing two gathers.

    Returns:
        ``(h, c)``, each (N, H), rows in the original node order. Double backward is not
        supported.
    """
    s = schedule
    if not prepared:
        order = kernel_order(weight_hh.size(1) // arity, arity, pre.device)
        pre = pre.index_select(0, s.order).index_select(1, order)
        weight_hh = weight_hh.index_select(0, order)
    if s.num_levels == 0:
        empty = pre.new_zeros(0, weight_hh.size(1) // arity)
        return empty, empty.clone()
    return _NaryLSTM.apply(pre, weight_hh, _plan(s, slot, arity))
