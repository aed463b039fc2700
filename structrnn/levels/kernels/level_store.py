"""Node states written level by level and read back by row, with an O(rows) backward.

The obvious store, a tensor written in place (``buffer[a:b] = out``) and read with
``buffer[idx]``, makes autograd copy and clear the *whole* buffer's gradient once per level
(``CopySlices``), which costs O(nodes x levels). Here the buffer lives outside autograd and one
gradient buffer is shared by every read and write:

* :meth:`LevelStore.read` (``_Read``) adds its gradient into the shared buffer's rows;
* :meth:`LevelStore.write` (``_Write``) takes its gradient from its rows of that buffer.

A write must run its backward only after every read of its rows has run its own. A zero-size
*token* threads through the writes in forward order and every read takes the current token:
a level's write hands the token to all later reads and writes, so autograd runs their backward
first. The cost is then O(rows read + rows written) per level.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import Function


class _Write(Function):
    @staticmethod
    def forward(ctx, token: Tensor, out: Tensor, store: LevelStore, start: int) -> Tensor:
        store.values[start:start + out.size(0)] = out
        ctx.store, ctx.rows = store, slice(start, start + out.size(0))
        return token.new_empty(0)

    @staticmethod
    def backward(ctx, grad_token: Tensor):
        grad = ctx.store.grad_rows(ctx.rows)
        return grad_token, grad, None, None


class _Read(Function):
    @staticmethod
    def forward(ctx, token: Tensor, store: LevelStore, index: Tensor) -> Tensor:
        ctx.store, ctx.index = store, index
        return store.values[index]

    @staticmethod
    def backward(ctx, grad: Tensor):
        ctx.store.add_grad(ctx.index, grad)
        return None, None, None


class LevelStore:
    """(rows, width) states filled slice by slice in forward order (see the module docstring).

    Reads may only ask for rows already written. Double backward is not supported.
    """

    def __init__(self, rows: int, width: int, like: Tensor) -> None:
        self.values = like.new_zeros(rows, width)
        self.grad: Tensor | None = None
        self.tracked = torch.is_grad_enabled()
        # the token needs a grad_fn chain, so it starts as a leaf that "requires grad"
        self.token = like.new_zeros(0).requires_grad_(self.tracked)

    def write(self, start: int, out: Tensor) -> None:
        """Rows ``start : start + out.size(0)`` := ``out``."""
        if self.tracked:
            self.token = _Write.apply(self.token, out, self, start)
        else:
            self.values[start:start + out.size(0)] = out

    def read(self, index: Tensor) -> Tensor:
        """Rows ``index`` (a new tensor)."""
        if self.tracked:
            return _Read.apply(self.token, self, index)
        return self.values[index]

    def close(self) -> None:
        """Drop the token once the pass has written and read everything. The autograd nodes hold
        the store (``ctx.store``) and the store holds the last token, whose ``grad_fn`` is one of
        those nodes: a cycle through the C++ graph that Python's collector cannot see, so every
        pass's graph and states would leak (about 3.5 MB a batch of 25 SST trees)."""
        self.token = None

    # -- backward helpers ------------------------------------------------------------------
    def add_grad(self, index: Tensor, grad: Tensor) -> None:
        if self.grad is None:
            self.grad = torch.zeros_like(self.values)
        self.grad.index_add_(0, index, grad)

    def grad_rows(self, rows: slice) -> Tensor:
        """The gradient of rows written together, consumed: they are cleared, so that a second
        backward through the same graph (``retain_graph=True``) starts from zero again."""
        if self.grad is None:
            return self.values.new_zeros(self.values[rows].shape)
        grad = self.grad[rows].clone()
        self.grad[rows] = 0
        return grad
