"""Batches of trees for PyG: ``Batch`` objects that carry their level schedule."""

from __future__ import annotations

import torch
from torch_geometric.data import Batch, Data

from structrnn.levels.schedule import tree_schedule

__all__ = ["collate_trees", "TreeLoader"]


def collate_trees(data_list: list[Data]) -> Batch:
    """``Batch.from_data_list`` plus the batch's :class:`TreeSchedule` as ``batch.schedule``,
    computed here on the CPU (in DataLoader workers when ``num_workers > 0``)."""
    if len(data_list) == 0:
        raise ValueError("data_list: expected at least one tree, got an empty list")
    batch = Batch.from_data_list(data_list)
    height = batch.height if "height" in batch else None
    batch.schedule = tree_schedule(batch.edge_index, batch.num_nodes, height)
    return batch


class TreeLoader(torch.utils.data.DataLoader):
    """A ``DataLoader`` over tree ``Data`` objects whose batches carry their schedule.

    PyG's own ``DataLoader`` works as well (the model then builds the schedule itself, one
    host synchronisation per batch); this one moves that work into the loader's workers.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, **kwargs) -> None:
        kwargs.pop("collate_fn", None)
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle,
                         collate_fn=collate_trees, **kwargs)
