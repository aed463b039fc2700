"""The Child-Sum Tree-LSTM over a whole schedule as one autograd node, with a hand-written
backward.

Run op by op, a level of :meth:`structrnn.cells.LSTMCell.combine` records some twenty-five
autograd nodes, and the level store two more; on the small levels of a batch of sentences that
bookkeeping, not arithmetic, is most of the time. :func:`child_sum_lstm` computes the same
states (Tai et al. 2015, eqs. 2-8) level by level into preallocated buffers with no graph, and
its backward walks the levels in reverse with the derivatives written out. The recurrent
weights' gradient is two matrix products over all nodes at the end instead of two per level.

Inside, the gate blocks are in the order ``o, i, g, f`` (:func:`kernel_order`), not the cell's
``i, f, g, o``: the node's own gates ``o, i, g`` are one contiguous block, so the recurrent
product per level covers 3H rows (a node's f block is never used: each child has its own
forget gate from its own ``h``), one sigmoid covers ``o`` and ``i``, and in the backward the
blocks driven by the memory's gradient (``i``, ``g``) are one slice.

Checked against the op-by-op path (``run_schedule(..., fused=False)``) and by
``torch.autograd.gradcheck`` in ``tests/test_tree_kernels.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from structrnn.levels.schedule import Schedule

__all__ = ["child_sum_lstm", "kernel_order"]


def kernel_order(hidden: int, device: torch.device | None = None) -> Tensor:
    """(4H,) rows of :class:`~structrnn.cells.LSTMCell`'s gates (blocks i, f, g, o) in the
    kernel's order o, i, g, f (for ``weight_hh``, ``bias_hh`` and the input projection)."""
    return torch.cat([torch.arange(b * hidden, (b + 1) * hidden, device=device)
                      for b in (3, 0, 2, 1)])


class _Plan(NamedTuple):
    """The schedule as the kernel reads it, plus each edge's parent as a sorted position."""

    node_ptr: list[int]
    edge_ptr: list[int]
    order: Tensor
    rank: Tensor
    pred: Tensor
    target: Tensor
    parent: Tensor


def _plan(s: Schedule) -> _Plan:
    counts = torch.tensor([s.edge_ptr[k + 1] - s.edge_ptr[k] for k in range(s.num_levels)],
                          device=s.target.device)
    starts = torch.tensor(s.node_ptr[:-1], device=s.target.device, dtype=s.target.dtype)
    parent = s.target + torch.repeat_interleave(starts, counts, output_size=s.target.numel())
    return _Plan(s.node_ptr, s.edge_ptr, s.order, s.rank, s.pred, s.target, parent)


class _ChildSumLSTM(Function):
    @staticmethod
    def forward(ctx, pre: Tensor, pre_f: Tensor, w_hh: Tensor, plan: _Plan):
        N, H = pre.size(0), w_hh.size(1)
        node_ptr, edge_ptr, pred, target = plan.node_ptr, plan.edge_ptr, plan.pred, plan.target
        act = pre.new_empty(N, 3 * H)  # sigmoid(o), sigmoid(i), tanh(g)
        h, c, tanh_c, h_sum = (pre.new_empty(N, H) for _ in range(4))
        f = pre.new_empty(pred.numel(), H)  # forget gate of every (child, parent) edge
        w_t, w_f_t = w_hh[:3 * H].t(), w_hh[3 * H:].t()
        for level in range(len(node_ptr) - 1):
            n0, n1 = node_ptr[level], node_ptr[level + 1]
            e0, e1 = edge_ptr[level], edge_ptr[level + 1]
            gates, c_l, a = pre[n0:n1], c[n0:n1], act[n0:n1]
            if level:  # level 0 has no children (its h_sum is never read)
                h_sum[n0:n1].zero_()
            if e1 > e0:
                src, idx = pred[e0:e1], target[e0:e1]
                h_src = h.index_select(0, src)
                h_sum[n0:n1].index_add_(0, idx, h_src)
                f_l = f[e0:e1]
                torch.addmm(pre_f.index_select(0, plan.parent[e0:e1]), h_src, w_f_t, out=f_l)
                f_l.sigmoid_()
                # the recurrent product straight into the activations' rows, then in place
                torch.addmm(gates, h_sum[n0:n1], w_t, out=a)
                a[:, :2 * H].sigmoid_()
                a[:, 2 * H:].tanh_()
            else:
                torch.sigmoid(gates[:, :2 * H], out=a[:, :2 * H])
                torch.tanh(gates[:, 2 * H:], out=a[:, 2 * H:])
            torch.mul(a[:, H:2 * H], a[:, 2 * H:], out=c_l)
            if e1 > e0:
                c_l.index_add_(0, idx, f[e0:e1] * c.index_select(0, src))
            torch.tanh(c_l, out=tanh_c[n0:n1])
            torch.mul(a[:, :H], tanh_c[n0:n1], out=h[n0:n1])
        ctx.save_for_backward(act, f, h, c, tanh_c, h_sum, w_hh)
        ctx.plan = plan
        return h.index_select(0, plan.rank), c.index_select(0, plan.rank)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor | None, grad_c: Tensor | None):
        act, f, h, c, tanh_c, h_sum, w_hh = ctx.saved_tensors
        plan: _Plan = ctx.plan
        node_ptr, edge_ptr, pred, target = plan.node_ptr, plan.edge_ptr, plan.pred, plan.target
        N, H = h.shape
        # the outputs were h[rank]: their gradient in sorted order is a gather by order
        dh = h.new_zeros(N, H) if grad_h is None else grad_h.index_select(0, plan.order)
        dc = c.new_zeros(N, H) if grad_c is None else grad_c.index_select(0, plan.order)
        # local derivatives of every node and edge at once, so each level below is a few
        # multiplications: coef's o block multiplies dh, its i and g blocks dc
        o, i, g = act[:, :H], act[:, H:2 * H], act[:, 2 * H:]
        # (each written as s - s * s and the like: two passes over the nodes instead of three,
        # and on a wide batch these passes are memory-bound)
        dc_dh = torch.addcmul(o, o * tanh_c, tanh_c, value=-1)  # o (1 - tanh(c)^2): c -> h
        coef = torch.empty_like(act)
        torch.mul(tanh_c, torch.addcmul(o, o, o, value=-1), out=coef[:, :H])  # tanh(c) o (1-o)
        torch.mul(g, torch.addcmul(i, i, i, value=-1), out=coef[:, H:2 * H])  # g i (1 - i)
        torch.addcmul(i, i * g, g, value=-1, out=coef[:, 2 * H:])  # i (1 - g^2)
        # per edge: f's pre-activation -> c, c_child f (1 - f)
        df_dc = c.index_select(0, pred).mul_(torch.addcmul(f, f, f, value=-1))
        d_gates = torch.empty_like(act)  # o, i, g; the forget gates' come from the edges
        d_f = f.new_empty(f.shape)  # per edge
        w_oig, w_f = w_hh[:3 * H], w_hh[3 * H:]
        for level in reversed(range(len(node_ptr) - 1)):
            n0, n1 = node_ptr[level], node_ptr[level + 1]
            e0, e1 = edge_ptr[level], edge_ptr[level + 1]
            dh_l, dc_l, dg = dh[n0:n1], dc[n0:n1], d_gates[n0:n1]
            dc_l.addcmul_(dh_l, dc_dh[n0:n1])
            torch.mul(dh_l, coef[n0:n1, :H], out=dg[:, :H])
            torch.mul(dc_l.unsqueeze(1), coef[n0:n1, H:].view(-1, 2, H),
                      out=dg[:, H:].view(-1, 2, H))
            if e1 > e0:
                src, idx = pred[e0:e1], target[e0:e1]
                dc_parent = dc_l.index_select(0, idx)
                torch.mul(dc_parent, df_dc[e0:e1], out=d_f[e0:e1])
                dc.index_add_(0, src, dc_parent * f[e0:e1])
                # each child's h fed its parent's h_sum (o, i, g) and its own forget gate
                dh_child = torch.addmm((dg @ w_oig).index_select(0, idx), d_f[e0:e1], w_f)
                dh.index_add_(0, src, dh_child)
        grad_f = grad_w = None
        if ctx.needs_input_grad[2]:
            n1 = node_ptr[1]  # level 0 has no children (h_sum = 0); f from the edges
            grad_w = torch.cat([d_gates[n1:].t() @ h_sum[n1:],
                                d_f.t() @ h.index_select(0, pred)])
        if ctx.needs_input_grad[1]:  # each parent's forget pre-activation, from its edges
            grad_f = d_f.new_zeros(N, H).index_add_(0, plan.parent, d_f)
        return d_gates, grad_f, grad_w, None


def child_sum_lstm(pre: Tensor | tuple[Tensor, Tensor], weight_hh: Tensor, schedule: Schedule,
                   prepared: bool = False) -> tuple[Tensor, Tensor]:
    """Child-Sum Tree-LSTM states of every node, run over the levels of ``schedule``.

    Args:
        pre: (N, 4H) ``x @ weight_ih.T + bias_ih + bias_hh`` (gate order i, f, g, o). Both
            biases enter here, so autograd gives their gradients (a node's f block only counts
            through the edges from its children).
        weight_hh: (4H, H).
        schedule: a :class:`~structrnn.levels.schedule.Schedule` whose level 0 has no incoming edges
            (true of every schedule ``make_schedule`` builds).
        prepared: ``pre`` is the pair ``(pre_oig (N, 3H), pre_f (N, H))``, rows already in the
            schedule's order (``pre[schedule.order]``), gate blocks and ``weight_hh``'s rows in
            the kernel's order (:func:`kernel_order`: o, i, g, then f); the rows of level 0 in
            ``pre_f`` are not read. This is how :func:`structrnn.levels.run.run_schedule` calls
            it: no gathers, and each part's gradient a contiguous tensor.

    Returns:
        ``(h, c)``, each (N, H), rows in the original node order. Double backward is not
        supported.
    """
    s = schedule
    H = weight_hh.size(1)
    if not prepared:
        order = kernel_order(H, pre.device)
        pre = pre.index_select(0, s.order).index_select(1, order)
        pre = (pre[:, :3 * H], pre[:, 3 * H:])
        weight_hh = weight_hh.index_select(0, order)
    pre_oig, pre_f = pre
    if s.num_levels == 0:
        empty = pre_oig.new_zeros(0, H)
        return empty, empty.clone()
    return _ChildSumLSTM.apply(pre_oig.contiguous(), pre_f, weight_hh, _plan(s))
