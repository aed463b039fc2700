"""The op-by-op level loop frees each pass: no LevelStore (nor its graph and states) outlives
the pass once its outputs are gone. A store that kept its last token referenced the autograd
node that references the store back: a cycle through the C++ graph that Python's collector
cannot break, so training with any cell without a fused kernel grew by megabytes a batch."""

from __future__ import annotations

import gc

import pytest
import torch

import structrnn as sr
from structrnn.levels.kernels.level_store import LevelStore
from structrnn.levels.run import run_up


class CustomCell(sr.LSTMCell):
    """A user's cell: it overrides combine, so it runs op by op, not through a kernel."""

    def combine(self, x_proj, prev, index, size):
        return super().combine(x_proj, prev, index, size)


def _live_stores() -> int:
    gc.collect()
    return sum(isinstance(o, LevelStore) for o in gc.get_objects())


@pytest.mark.parametrize("backward", [True, False])
def test_a_pass_leaves_no_level_store_behind(backward):
    torch.manual_seed(0)
    cell = CustomCell(3, 5)
    edge_index = torch.tensor([[1, 2, 3, 4], [0, 0, 2, 2]])
    before = _live_stores()
    for _ in range(3):
        h = run_up(cell, torch.randn(5, 3), edge_index)
        if backward:
            h.sum().backward()
        del h
    assert _live_stores() == before
