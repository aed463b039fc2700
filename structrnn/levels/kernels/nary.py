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

    @property
    def sizes(self) -> list[int]:
        """Nodes per level."""
        return [b - a for a, b in zip(self.node_ptr[:-1], self.node_ptr[1:], strict=True)]

    @property
    def edge_sizes(self) -> list[int]:
        """Edges per level."""
        return [b - a for a, b in zip(self.edge_ptr[:-1], self.edge_ptr[1:], strict=True)]

    def rows_of(self, level: int) -> Tensor:
        """The (parent in level, slot) rows of the edges feeding ``level``."""
        return self.rows[self.edge_ptr[level]:self.edge_ptr[level + 1]]


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


def _levels(t: Tensor, sizes: list[int]) -> list[Tensor]:
    """``t``'s rows as one view per level: a single ``split`` instead of a slice per level
    (each slice is a dispatcher call; a batch of sentences has some 700 of them per step)."""
    return list(t.split(sizes))


class _NaryLSTM(Function):
    @staticmethod
    def forward(ctx, pre: Tensor, w_hh: Tensor, plan: _Plan):
        N, A = pre.size(0), plan.arity
        H = w_hh.size(1) // A
        sig = (2 + A) * H  # o, i, f_0 .. f_A-1: the sigmoid gates; then g (tanh)
        sizes, inner = plan.sizes, plan.sizes[1:]  # nodes per level; levels above 0
        act = torch.empty_like(pre)
        h, c, tanh_c = (pre.new_empty(N, H) for _ in range(3))
        # children by slot, for the nodes above level 0 only (leaves have none)
        h_cat, c_cat = pre.new_empty(N - sizes[0], A * H), pre.new_empty(N - sizes[0], A * H)
        w_t = w_hh.t()
        pre_l, act_l, sig_l, g_l = (_levels(t, sizes) for t in
                                    (pre, act, act[:, :sig], act[:, sig:]))
        o_l, i_l, c_l, h_l, t_l = (_levels(t, sizes) for t in
                                   (act[:, :H], act[:, H:2 * H], c, h, tanh_c))
        f_l = [_levels(act[:, (2 + k) * H:(3 + k) * H], sizes) for k in range(A)]
        hc_l = _levels(h_cat, inner)
        cc_k = [_levels(c_cat[:, k * H:(k + 1) * H], inner) for k in range(A)]
        # the same memory as (n * A, H) rows: where a full level's children are gathered to
        hcv_l, ccv_l = (_levels(t.view(-1, H), [A * n for n in inner]) for t in (h_cat, c_cat))
        pred_l = _levels(plan.pred, plan.edge_sizes)
        for level in range(len(sizes)):
            a = act_l[level]
            if level == 0:  # no children
                torch.sigmoid(pre_l[0][:, :sig], out=sig_l[0])
                torch.tanh(pre_l[0][:, sig:], out=g_l[0])
            else:
                k = level - 1
                if plan.full:
                    torch.index_select(h, 0, pred_l[level], out=hcv_l[k])
                    torch.index_select(c, 0, pred_l[level], out=ccv_l[k])
                else:
                    _scatter_slots(h, hcv_l[k], plan, level, pred_l[level])
                    _scatter_slots(c, ccv_l[k], plan, level, pred_l[level])
                torch.addmm(pre_l[level], hc_l[k], w_t, out=a)
                sig_l[level].sigmoid_()
                g_l[level].tanh_()
            torch.mul(i_l[level], g_l[level], out=c_l[level])
            if level:
                for j in range(A):  # a loop over slots: c += f_j * c_j
                    c_l[level].addcmul_(f_l[j][level], cc_k[j][level - 1])
            torch.tanh(c_l[level], out=t_l[level])
            torch.mul(o_l[level], t_l[level], out=h_l[level])
        ctx.save_for_backward(act, tanh_c, h_cat, c_cat, w_hh)
        ctx.plan = plan
        return h.index_select(0, plan.rank), c.index_select(0, plan.rank)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor | None, grad_c: Tensor | None):
        act, tanh_c, h_cat, c_cat, w_hh = ctx.saved_tensors
        plan: _Plan = ctx.plan
        A, sizes = plan.arity, plan.sizes
        N, H = tanh_c.shape
        n_leaf, inner = sizes[0], sizes[1:]
        # the outputs were h[rank]: their gradient in sorted order is a gather by order
        dh = tanh_c.new_zeros(N, H) if grad_h is None else grad_h.index_select(0, plan.order)
        dc = tanh_c.new_zeros(N, H) if grad_c is None else grad_c.index_select(0, plan.order)
        # local derivatives of every node at once, so each level below is a few multiplications:
        # coef's o block multiplies dh, its i, f_k and g blocks multiply dc
        o, i, g = act[:, :H], act[:, H:2 * H], act[:, (2 + A) * H:]
        # (each written as s - s * s and the like: two passes over the nodes instead of three,
        # and on a wide batch these passes are memory-bound)
        dc_dh = torch.addcmul(o, o * tanh_c, tanh_c, value=-1)  # o (1 - tanh(c)^2): c -> h
        coef = torch.empty_like(act)
        torch.mul(tanh_c, torch.addcmul(o, o, o, value=-1), out=coef[:, :H])  # tanh(c) o (1-o)
        torch.mul(g, torch.addcmul(i, i, i, value=-1), out=coef[:, H:2 * H])  # g i (1 - i)
        torch.addcmul(i, i * g, g, value=-1, out=coef[:, (2 + A) * H:])  # i (1 - g^2)
        coef[:n_leaf, 2 * H:(2 + A) * H].zero_()  # leaves keep no child memory
        f = act[n_leaf:, 2 * H:(2 + A) * H]  # c_k f_k (1 - f_k) for every slot
        torch.mul(c_cat, torch.addcmul(f, f, f, value=-1), out=coef[n_leaf:, 2 * H:(2 + A) * H])
        d_gates = torch.empty_like(act)
        # per-level views, made once (see _levels)
        dh_l, dc_l, dc_dh_l, dg_l = (_levels(t, sizes) for t in (dh, dc, dc_dh, d_gates))
        dcu_l = _levels(dc.unsqueeze(1), sizes)
        dg_o_l, coef_o_l = _levels(d_gates[:, :H], sizes), _levels(coef[:, :H], sizes)
        dg_rest_l, coef_rest_l = (_levels(t[:, H:].unflatten(1, (2 + A, H)), sizes)
                                  for t in (d_gates, coef))
        f_l = _levels(act[:, 2 * H:(2 + A) * H].unflatten(1, (A, H)), sizes)
        # per (parent, slot): the memory's and the state's gradient for each child
        by_slot = [tanh_c.new_empty(N - n_leaf, A * H) for _ in range(2)]
        dcc_l = _levels(by_slot[0].unflatten(1, (A, H)), inner)  # (n, A, H): dc * f_k
        dhc_l = _levels(by_slot[1], inner)  # (n, A H): dg @ w_hh
        dccv_l, dhcv_l = (_levels(t.view(-1, H), [A * n for n in inner]) for t in by_slot)
        pred_l = _levels(plan.pred, plan.edge_sizes)
        for level in reversed(range(len(sizes))):
            dc_lv = dc_l[level]
            dc_lv.addcmul_(dh_l[level], dc_dh_l[level])
            torch.mul(dh_l[level], coef_o_l[level], out=dg_o_l[level])
            torch.mul(dcu_l[level], coef_rest_l[level], out=dg_rest_l[level])
            if level and plan.edge_sizes[level]:
                k = level - 1
                torch.mul(dcu_l[level], f_l[level], out=dcc_l[k])
                torch.mm(dg_l[level], w_hh, out=dhc_l[k])
                _add_to_children(dc, dccv_l[k], plan, level, pred_l[level])
                _add_to_children(dh, dhcv_l[k], plan, level, pred_l[level])
        grad_w = d_gates[n_leaf:].t() @ h_cat if ctx.needs_input_grad[1] else None
        return d_gates, grad_w, None


def _scatter_slots(states: Tensor, out: Tensor, plan: _Plan, level: int, pred: Tensor) -> None:
    """``out`` (n * A, H) := the children's ``states`` by (parent, slot), zero where a slot is
    empty (levels whose nodes do not all have every slot filled)."""
    out.zero_()
    if pred.numel():
        out.index_add_(0, plan.rows_of(level), states.index_select(0, pred))


def _add_to_children(grad: Tensor, by_slot: Tensor, plan: _Plan, level: int,
                     pred: Tensor) -> None:
    """Add the (n * A, H) per-(parent, slot) gradients into the children's rows of ``grad``."""
    if plan.full:  # the edges are the (parent, slot) rows in order
        grad.index_add_(0, pred, by_slot)
    else:
        grad.index_add_(0, pred, by_slot.index_select(0, plan.rows_of(level)))


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
