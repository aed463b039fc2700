"""``TreeData``: one tree as a PyG ``Data`` (the layout of ``docs/architecture.md``), telling PyG
that its ``child_index`` is a slot, not a node id.

PyG treats every attribute whose name contains ``index`` as node ids: ``Batch.from_data_list``
offsets it by the nodes before it. ``child_index`` (N,) is each node's position among its
parent's children (0 .. arity - 1), the same in a batch as in its tree, so ``TreeData`` says so
through PyG's own hooks (``__inc__``, ``__cat_dim__``). Imported on first use (it loads PyG).
"""

from __future__ import annotations

from typing import Any

from torch_geometric.data import Data

__all__ = ["TreeData", "SLOT_KEY"]

SLOT_KEY = "child_index"


class TreeData(Data):
    """A tree's ``Data``: ``x``, ``edge_index`` (child -> parent), ``y``, ``child_index``,
    ``height`` (see :func:`structrnn.trees.convert.tree_to_data`). Batches like ``Data`` except
    that ``child_index`` is concatenated as it is (a slot, not a node id)."""

    def __inc__(self, key: str, value: Any, *args, **kwargs) -> Any:
        if key == SLOT_KEY:
            return 0
        return super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key: str, value: Any, *args, **kwargs) -> Any:
        if key == SLOT_KEY:
            return 0
        return super().__cat_dim__(key, value, *args, **kwargs)
