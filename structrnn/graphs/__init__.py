"""Graphs: the graph-network block (:mod:`.network`), the named configurations of Battaglia et
al. 2018 (:mod:`.models`) and networkx conversions (:mod:`.convert`)."""

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
           "RelationNetwork", "MPNN", "NonLocal", "EncodeProcessDecode", "mlp"]
