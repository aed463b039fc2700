"""The Child-Sum Tree-LSTM over a whole schedule as one autograd node, with a hand-written
backward.

Run op by op, a level of :meth:`structrnn.cells.LSTMCell.combine` records some twenty-five
autograd nodes, and the level store two more; on the small levels of a batch of sentences that
bookkeeping, not arithmetic, is most of the time. :func:`child_sum_lstm` computes the same
states (Tai et al. 2015, eqs. 2-8) level by level into preallocated buffers with no graph, and
its backward walks the levels in reverse with the derivatives written out. The recurrent
weights' gradient is two matrix products over all nodes at the end instead of two per level.

Checked against the op-by-op path (``run_schedule(..., fused=False)``) and by
``torch.autograd.gradcheck`` in ``tests/test_tree_kernels.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from structrnn.levels.schedule import Schedule

__all__ = ["child_sum_lstm"]


class _ChildSumLSTM(Function):
    @staticmethod
    def forward(ctx, pre: Tensor, w_hh: Tensor, order: Tensor, rank: Tensor, pred: Tensor,
                target: Tensor, node_ptr: list[int], edge_ptr: list[int]):
        N, H = pre.size(0), w_hh.size(1)
        pre = pre.index_select(0, order)  # sorted: each level a contiguous block of rows
        act = torch.empty_like(pre)  # sigmoid(i), (unused), tanh(g), sigmoid(o)
        h, c, tanh_c, h_sum = (pre.new_empty(N, H) for _ in range(4))
        f = pre.new_empty(pred.numel(), H)  # forget gate of every (child, parent) edge
        w_t, w_f_t = w_hh.t(), w_hh[H:2 * H].t()
        for level in range(len(node_ptr) - 1):
            n0, n1 = node_ptr[level], node_ptr[level + 1]
            e0, e1 = edge_ptr[level], edge_ptr[level + 1]
            gates, c_l, a = pre[n0:n1], c[n0:n1], act[n0:n1]
            h_sum[n0:n1].zero_()  # rows of level 0 (no children) are never read
            if e1 > e0:
                src, idx = pred[e0:e1], target[e0:e1]
                h_src = h.index_select(0, src)
                h_sum[n0:n1].index_add_(0, idx, h_src)
                gates = torch.addmm(gates, h_sum[n0:n1], w_t)
                f_l = torch.addmm(pre[n0:n1, H:2 * H].index_select(0, idx), h_src, w_f_t)
                torch.sigmoid(f_l, out=f[e0:e1])
            torch.sigmoid(gates[:, :H], out=a[:, :H])
            torch.tanh(gates[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])
            torch.sigmoid(gates[:, 3 * H:], out=a[:, 3 * H:])
            torch.mul(a[:, :H], a[:, 2 * H:3 * H], out=c_l)
            if e1 > e0:
                c_l.index_add_(0, idx, f[e0:e1] * c.index_select(0, src))
            torch.tanh(c_l, out=tanh_c[n0:n1])
            torch.mul(a[:, 3 * H:], tanh_c[n0:n1], out=h[n0:n1])
        ctx.save_for_backward(act, f, h, c, tanh_c, h_sum, w_hh, order, rank, pred, target)
        ctx.node_ptr, ctx.edge_ptr = node_ptr, edge_ptr
        return h.index_select(0, rank), c.index_select(0, rank)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor | None, grad_c: Tensor | None):
        act, f, h, c, tanh_c, h_sum, w_hh, order, rank, pred, target = ctx.saved_tensors
        node_ptr, edge_ptr = ctx.node_ptr, ctx.edge_ptr
        N, H = h.shape
        # the outputs were h[rank]: their gradient in sorted order is a gather by order
        dh = h.new_zeros(N, H) if grad_h is None else grad_h.index_select(0, order)
        dc = c.new_zeros(N, H) if grad_c is None else grad_c.index_select(0, order)
        # local derivatives of every node and edge at once, so each level below is a few
        # multiplications rather than a dozen small ops
        i, g, o = act[:, :H], act[:, 2 * H:3 * H], act[:, 3 * H:]
        dc_dh = o * (1 - tanh_c * tanh_c)  # c -> h
        do_dh = tanh_c * o * (1 - o)  # o's pre-activation -> h
        di_dc = g * i * (1 - i)
        dg_dc = i * (1 - g * g)
        df_dc = c.index_select(0, pred) * f * (1 - f)  # per edge: f's pre-activation -> c
        d_gates = act.new_empty(N, 4 * H)  # i, g, o per level; the f block from the edges
        d_gates[:, H:2 * H].zero_()
        d_f = f.new_empty(f.shape)  # per edge
        w_f = w_hh[H:2 * H]
        for level in reversed(range(len(node_ptr) - 1)):
            n0, n1 = node_ptr[level], node_ptr[level + 1]
            e0, e1 = edge_ptr[level], edge_ptr[level + 1]
            dh_l, dc_l, dg = dh[n0:n1], dc[n0:n1], d_gates[n0:n1]
            dc_l.addcmul_(dh_l, dc_dh[n0:n1])
            torch.mul(dh_l, do_dh[n0:n1], out=dg[:, 3 * H:])
            torch.mul(dc_l, di_dc[n0:n1], out=dg[:, :H])
            torch.mul(dc_l, dg_dc[n0:n1], out=dg[:, 2 * H:3 * H])
            if e1 > e0:
                src, idx = pred[e0:e1], target[e0:e1]
                dc_parent = dc_l.index_select(0, idx)
                torch.mul(dc_parent, df_dc[e0:e1], out=d_f[e0:e1])
                dc.index_add_(0, src, dc_parent * f[e0:e1])
                # each child's h fed its parent's h_sum (i, g, o) and its own forget gate
                dh_child = (dg @ w_hh).index_select(0, idx)
                dh_child.addmm_(d_f[e0:e1], w_f)
                dh.index_add_(0, src, dh_child)
        grad_pre = grad_w = None
        if ctx.needs_input_grad[1]:
            # level 0 has no children (h_sum = 0); the f rows come from the edges
            n1 = node_ptr[1]
            grad_w = d_gates[n1:].t() @ h_sum[n1:]
            grad_w[H:2 * H] = d_f.t() @ h.index_select(0, pred)
        if ctx.needs_input_grad[0]:
            parent = _edge_parent_rows(target, node_ptr, edge_ptr)
            d_gates[:, H:2 * H].index_add_(0, parent, d_f)
            grad_pre = d_gates.index_select(0, rank)
        return grad_pre, grad_w, None, None, None, None, None, None


def _edge_parent_rows(target: Tensor, node_ptr: list[int], edge_ptr: list[int]) -> Tensor:
    """Row of each edge's parent in the sorted numbering (``target`` is within its level)."""
    counts = torch.tensor([edge_ptr[k + 1] - edge_ptr[k] for k in range(len(edge_ptr) - 1)],
                          device=target.device)
    starts = torch.tensor(node_ptr[:-1], device=target.device, dtype=target.dtype)
    return target + torch.repeat_interleave(starts, counts, output_size=target.numel())


def child_sum_lstm(pre: Tensor, weight_hh: Tensor, schedule: Schedule) -> tuple[Tensor, Tensor]:
    """Child-Sum Tree-LSTM states of every node, run over the levels of ``schedule``.

    Args:
        pre: (N, 4H) ``x @ weight_ih.T + bias_ih + bias_hh`` (gate order i, f, g, o). Both
            biases enter here, so autograd gives their gradients (a node's f block only counts
            through the edges from its children).
        weight_hh: (4H, H).
        schedule: a :class:`~structrnn.levels.schedule.Schedule` whose level 0 has no incoming edges
            (true of every schedule ``make_schedule`` builds).

    Returns:
        ``(h, c)``, each (N, H), rows in the original node order. Double backward is not
        supported.
    """
    s = schedule
    return _ChildSumLSTM.apply(pre, weight_hh, s.order, s.rank, s.pred, s.target, s.node_ptr,
                               s.edge_ptr)
