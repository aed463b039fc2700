"""Batches of trees for PyG: ``Batch`` objects that carry their level schedule.

A tree batch names each node's slot under its parent ``child_index`` and has no ``pos`` (PyG's
node coordinates). Tree ``Data`` saved before the rename carry the slot as an integer ``pos``:
the loader renames it (with a warning, once), so such datasets still load.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch_geometric.data import Batch, Data

from structrnn._deprecation import warn_once
from structrnn.levels.schedule import tree_schedule
from structrnn.trees.convert import LEGACY_SLOT_KEY

__all__ = ["collate_trees", "TreeLoader"]


def collate_trees(data_list: list[Data]) -> Batch:
    """``Batch.from_data_list`` plus the batch's
    :class:`~structrnn.levels.schedule.TreeSchedule` as ``batch.schedule``, computed here on the
    CPU (in DataLoader workers when ``num_workers > 0``)."""
    if len(data_list) == 0:
        raise ValueError("data_list: expected at least one tree, got an empty list")
    return _attach_schedule(Batch.from_data_list(data_list))


def _attach_schedule(batch: Batch) -> Batch:
    """``batch.schedule`` from its ``edge_index`` (child -> parent) and, when stored, ``height``;
    the schedule's indices are in range by construction, so the level loops check none."""
    height = batch.height if "height" in batch else None
    batch.schedule = tree_schedule(batch.edge_index, batch.num_nodes, height)
    return upgrade_legacy_slots(batch)


def upgrade_legacy_slots(data: Data) -> Data:
    """``data`` (a tree ``Data`` or ``Batch``) with an old-layout slot renamed: an integer
    ``pos`` (N,) and no ``child_index`` is the child slot of a tree saved before the rename, and
    becomes ``child_index``. Float ``pos`` (coordinates) and current data are left as they are.
    """
    if "child_index" in data or LEGACY_SLOT_KEY not in data:
        return data
    slot = data[LEGACY_SLOT_KEY]
    if not torch.is_tensor(slot) or slot.is_floating_point() or slot.dim() != 1:
        return data
    warn_once("tree-data.pos", "tree Data with an integer 'pos' (the child slot of the layout "
              "before structrnn named it 'child_index'): read as child_index; re-save the data "
              "with Tree.to_data to silence this", stacklevel=4)
    data.child_index = slot
    del data[LEGACY_SLOT_KEY]
    return data


class _ScheduledCollate:
    """A user's ``collate_fn`` followed by the schedule, as :func:`collate_trees` attaches it.

    A class, not a closure, so that DataLoader workers can pickle it (given a picklable
    ``collate_fn``)."""

    def __init__(self, collate_fn: Callable[[list], Batch]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, data_list: list) -> Batch:
        batch = self.collate_fn(data_list)
        if not isinstance(batch, Batch) or "edge_index" not in batch:
            got = type(batch).__name__ if not isinstance(batch, Batch) else "a Batch without it"
            raise TypeError(f"TreeLoader: collate_fn must return a torch_geometric Batch with "
                            f"edge_index (the trees' child -> parent edges), got {got}")
        return _attach_schedule(batch)


class TreeLoader(torch.utils.data.DataLoader):
    """A ``DataLoader`` over tree ``Data`` objects whose batches carry their schedule.

    PyG's own ``DataLoader`` works as well (the model then builds the schedule itself, one
    host synchronisation per batch); this one moves that work into the loader's workers.

    ``collate_fn`` (optional) builds the batch from the list of ``Data``; it must return a PyG
    ``Batch`` with ``edge_index``, and the loader then attaches ``batch.schedule`` to it as
    :func:`collate_trees` does. The default is ``Batch.from_data_list``.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False,
                 collate_fn: Callable[[list], Batch] | None = None, **kwargs) -> None:
        collate = collate_trees if collate_fn is None else _ScheduledCollate(collate_fn)
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                         **kwargs)
