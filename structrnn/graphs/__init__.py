"""Graphs: the graph-network block (:mod:`.network`), the named configurations of Battaglia et
al. 2018 (:mod:`.models`), the molecule encoders GIN (:mod:`.gin`), D-MPNN (:mod:`.dmpnn`) and
GN-GRU (:mod:`.gngru`), recurrence over directed acyclic graphs (:mod:`.dag`) and networkx
conversions (:mod:`.convert`).

The modules take PyG's argument names (``in_channels``, ``hidden_channels``, ``num_layers``,
``out_channels``, ``edge_dim``, ``aggr``, ``dropout``), have ``reset_parameters()`` and export
with ``torch.export`` / ``torch.onnx.export(..., dynamo=True)`` (docs/graphs.md).

The data layout of a graph batch is in ``docs/architecture.md``. Nothing here imports
:mod:`structrnn.trees`. Every module needs PyTorch Geometric, so the names below are imported on
first use: ``import structrnn.graphs`` alone stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from structrnn._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from structrnn.graphs.convert import from_networkx, to_networkx
    from structrnn.graphs.dag import DAGAttention, DAGRecurrent
    from structrnn.graphs.dmpnn import DMPNN
    from structrnn.graphs.gin import GIN
    from structrnn.graphs.gngru import GNGRU
    from structrnn.graphs.models import (
        MPNN,
        DeepSets,
        EncodeProcessDecode,
        GraphIndependent,
        InteractionNetwork,
        NonLocal,
        RelationNetwork,
        mlp,
    )
    from structrnn.graphs.network import GraphNetwork, aggregate

__all__ = ["GraphNetwork", "aggregate", "GraphIndependent", "InteractionNetwork", "DeepSets",
           "RelationNetwork", "MPNN", "NonLocal", "EncodeProcessDecode", "GIN", "DMPNN", "GNGRU",
           "mlp", "DAGRecurrent",
           "DAGAttention", "from_networkx", "to_networkx"]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".network": ["GraphNetwork", "aggregate"],
    ".models": ["GraphIndependent", "InteractionNetwork", "DeepSets", "RelationNetwork", "MPNN",
                "NonLocal", "EncodeProcessDecode", "mlp"],
    ".gin": ["GIN"],
    ".dmpnn": ["DMPNN"],
    ".gngru": ["GNGRU"],
    ".dag": ["DAGRecurrent", "DAGAttention"],
    ".convert": ["from_networkx", "to_networkx"],
})
del annotations, TYPE_CHECKING, lazy_exports  # plumbing, not public names
