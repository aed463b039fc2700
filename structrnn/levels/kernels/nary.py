"""The N-ary Tree-LSTM over a whole schedule as one autograd node, with a hand-written backward.

The constituency Tree-LSTM of Tai et al. (2015, section 3.2) run the way
:mod:`structrnn.levels.kernels.child_sum` runs the Child-Sum one: level by level into preallocated
buffers with no autograd graph, and a backward that walks the levels in reverse. Each node's
children are laid side by side by slot (``h_cat`` (N, arity * H), ``c_cat`` likewise), which
is what :meth:`structrnn.cells.NaryLSTMCell.combine` builds per level.

Checked against the op-by-op path and by ``torch.autograd.gradcheck`` in
``tests/test_tree_kernels.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from structrnn.levels.schedule import Schedule

__all__ = ["nary_lstm"]


class _NaryLSTM(Function):
    @staticmethod
    def forward(ctx, pre: Tensor, w_hh: Tensor, order: Tensor, rank: Tensor, pred: Tensor,
                target: Tensor, slot: Tensor, node_ptr: list[int], edge_ptr: list[int],
                arity: int):
        N, A = pre.size(0), arity
        H = w_hh.size(1) // A
        pre = pre.index_select(0, order)  # sorted: each level a contiguous block of rows
        act = torch.empty_like(pre)  # sigmoid(i), sigmoid(f_0 .. f_A-1), tanh(g), sigmoid(o)
        h, c, tanh_c = (pre.new_empty(N, H) for _ in range(3))
        h_cat, c_cat = pre.new_empty(N, A * H), pre.new_empty(N, A * H)  # children by slot
        w_t = w_hh.t()
        i_, f_, g_, o_ = _blocks(H, A)
        for level in range(len(node_ptr) - 1):
            n0, n1 = node_ptr[level], node_ptr[level + 1]
            e0, e1 = edge_ptr[level], edge_ptr[level + 1]
            gates, a, c_l = pre[n0:n1], act[n0:n1], c[n0:n1]
            if e1 > e0:
                src = pred[e0:e1]
                rows = target[e0:e1] * A + slot[e0:e1]  # (parent, slot) in a (n * A, H) table
                hc, cc = h_cat[n0:n1].zero_(), c_cat[n0:n1].zero_()
                hc.view(-1, H).index_add_(0, rows, h.index_select(0, src))
                cc.view(-1, H).index_add_(0, rows, c.index_select(0, src))
                gates = torch.addmm(gates, hc, w_t)
            else:  # no children: h_cat and c_cat are zero (the backward reads them)
                h_cat[n0:n1].zero_()
                c_cat[n0:n1].zero_()
            torch.sigmoid(gates[:, :(1 + A) * H], out=a[:, :(1 + A) * H])
            torch.tanh(gates[:, g_], out=a[:, g_])
            torch.sigmoid(gates[:, o_], out=a[:, o_])
            torch.mul(a[:, i_], a[:, g_], out=c_l)
            if e1 > e0:
                c_l.add_((a[:, f_] * c_cat[n0:n1]).view(-1, A, H).sum(1))
            torch.tanh(c_l, out=tanh_c[n0:n1])
            torch.mul(a[:, o_], tanh_c[n0:n1], out=h[n0:n1])
        ctx.save_for_backward(act, tanh_c, h_cat, c_cat, w_hh, order, rank, pred, target, slot)
        ctx.node_ptr, ctx.edge_ptr, ctx.arity = node_ptr, edge_ptr, A
        return h.index_select(0, rank), c.index_select(0, rank)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor | None, grad_c: Tensor | None):
        act, tanh_c, h_cat, c_cat, w_hh, order, rank, pred, target, slot = ctx.saved_tensors
        node_ptr, edge_ptr, A = ctx.node_ptr, ctx.edge_ptr, ctx.arity
        N, H = tanh_c.shape
        i_, f_, g_, o_ = _blocks(H, A)
        # the outputs were h[rank]: their gradient in sorted order is a gather by order
        dh = tanh_c.new_zeros(N, H) if grad_h is None else grad_h.index_select(0, order)
        dc = tanh_c.new_zeros(N, H) if grad_c is None else grad_c.index_select(0, order)
        # local derivatives of every node at once, so each level below is a few multiplications
        i, f, g, o = act[:, i_], act[:, f_], act[:, g_], act[:, o_]
        dc_dh = o * (1 - tanh_c * tanh_c)  # c -> h
        do_dh = tanh_c * o * (1 - o)  # o's pre-activation -> h
        di_dc = g * i * (1 - i)
        dg_dc = i * (1 - g * g)
        df_dc = c_cat * f * (1 - f)  # every slot's forget pre-activation -> c (0 without child)
        d_gates = act.new_empty(act.shape)
        for level in reversed(range(len(node_ptr) - 1)):
            n0, n1 = node_ptr[level], node_ptr[level + 1]
            e0, e1 = edge_ptr[level], edge_ptr[level + 1]
            dh_l, dc_l, dg = dh[n0:n1], dc[n0:n1], d_gates[n0:n1]
            dc_l.addcmul_(dh_l, dc_dh[n0:n1])
            torch.mul(dh_l, do_dh[n0:n1], out=dg[:, o_])
            torch.mul(dc_l, di_dc[n0:n1], out=dg[:, i_])
            torch.mul(dc_l, dg_dc[n0:n1], out=dg[:, g_])
            dc_rep = dc_l.repeat(1, A)  # dc against every slot
            torch.mul(dc_rep, df_dc[n0:n1], out=dg[:, f_])
            if e1 > e0:
                n = n1 - n0
                src = pred[e0:e1]
                rows = target[e0:e1] * A + slot[e0:e1]
                dc.index_add_(0, src, (dc_rep * f[n0:n1]).view(n * A, H).index_select(0, rows))
                dh_cat = (dg @ w_hh).view(n * A, H)
                dh.index_add_(0, src, dh_cat.index_select(0, rows))
        grad_w = None
        if ctx.needs_input_grad[1]:
            n1 = node_ptr[1]  # level 0 has no children: h_cat = 0 there
            grad_w = d_gates[n1:].t() @ h_cat[n1:]
        grad_pre = d_gates.index_select(0, rank) if ctx.needs_input_grad[0] else None
        return grad_pre, grad_w, None, None, None, None, None, None, None, None


def _blocks(H: int, A: int) -> tuple[slice, slice, slice, slice]:
    """Column blocks of the gates: i, the A forget gates, g, o."""
    return (slice(0, H), slice(H, (1 + A) * H), slice((1 + A) * H, (2 + A) * H),
            slice((2 + A) * H, (3 + A) * H))


def nary_lstm(pre: Tensor, weight_hh: Tensor, schedule: Schedule, slot: Tensor,
              arity: int) -> tuple[Tensor, Tensor]:
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

    Returns:
        ``(h, c)``, each (N, H), rows in the original node order. Double backward is not
        supported.
    """
    s = schedule
    return _NaryLSTM.apply(pre, weight_hh, s.order, s.rank, s.pred, s.target, slot, s.node_ptr,
                           s.edge_ptr, arity)
