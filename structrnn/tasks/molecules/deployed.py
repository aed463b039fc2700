"""A molecule run as one module of tensors, for ``torch.export`` and ONNX.

:class:`DeployedMolecules` holds every member of the run (seeds, folds) with what the
predictor does around them in Python: the RDKit descriptors' CDF normalisation through each
member's own training molecules, the target scaling back to real units (regression) or the
softmax per task (classification), and the ensemble mean. Featurisation (SMILES -> atoms and
bonds, RDKit descriptors) stays in Python: :func:`graph_inputs` makes the inputs.

Inputs, in order (``N`` atoms, ``E`` directed bonds, ``G`` molecules of the batch)::

    x            (N, node_in)  float32  structrnn's atom features (datasets/molecules/graphs.py)
    edge_index   (2, E)        int64    both directions of every bond, row 0 the sender
    edge_attr    (E, edge_in)  float32  the bond features
    batch        (N,)          int64    the molecule of each atom, 0 .. G-1, sorted
    ptr          (G + 1,)      int64    molecule g holds atoms ptr[g]:ptr[g+1] (PyG's Batch.ptr)
    descriptors  (G, D)        float64  raw RDKit descriptors (rdkit_descriptors), NaN allowed;
                                        only for runs with --global-features rdkit

Outputs: ``prediction`` (G, T), the members' mean in real units (regression: the targets'
units; classification: per task its class probabilities side by side), and ``members``
(G, M, T), each member's own (their spread is the predictor's ``<target>_std``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import torch
from torch import Tensor, nn

__all__ = ["DeployedMolecules", "graph_inputs", "INPUT_NAMES", "OUTPUT_NAMES"]

INPUT_NAMES = ("x", "edge_index", "edge_attr", "batch", "ptr", "descriptors")
OUTPUT_NAMES = ("prediction", "members")


def cdf_normalise_dense(values: Tensor, reference: Tensor, count: Tensor) -> Tensor:
    """:func:`structrnn.datasets.molecules.descriptors.cdf_normalise` without ``searchsorted``
    (which ONNX lacks): the count of reference values ``<=`` each value by comparison.

    Args:
        values: (G, D) raw descriptors, float64.
        reference: (R, D) the training molecules' descriptors, float64, non-finite ones +inf.
        count: (D,) the finite reference values per column.
    """
    v = torch.nan_to_num(values, nan=0.0)
    below = (reference.unsqueeze(0) <= v.unsqueeze(1)).sum(1)            # (G, D)
    out = torch.minimum(below, count) / count.clamp(min=1) - 0.5
    out = torch.where(torch.isnan(values) | (count == 0), torch.zeros_like(out), out)
    return out.float()


class DeployedMolecules(nn.Module):
    """The members of a molecule run with their readout, descriptor normalisation, target
    scaling and ensemble mean (see the module for the inputs and outputs).

    Args:
        models: the members' :class:`~structrnn.tasks.molecules.model.MoleculeModel` s.
        kind: ``"regression"`` or ``"classification"``.
        means, stds: per member (T,) its target scaling (regression), else None.
        references: per member (R, D) raw training descriptors (``--global-features rdkit``),
            else None.
        classes: per task its number of classes (classification).
    """

    def __init__(self, models: Sequence[nn.Module], kind: str,
                 means: Sequence[Tensor | None], stds: Sequence[Tensor | None],
                 references: Sequence[Tensor | None], classes: Sequence[int] | None = None
                 ) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)
        self.kind, self.classes = kind, list(classes) if classes is not None else None
        self.descriptors = references[0] is not None
        for k, (mean, std, ref) in enumerate(zip(means, stds, references, strict=True)):
            if kind == "regression":
                self.register_buffer(f"mean_{k}", mean.detach().float().clone())
                self.register_buffer(f"std_{k}", std.detach().float().clone())
            if ref is not None:
                ref = ref.detach().double()
                finite = torch.isfinite(ref)
                self.register_buffer(f"reference_{k}", torch.where(
                    finite, ref, torch.full_like(ref, float("inf"))))
                self.register_buffer(f"count_{k}", finite.sum(0))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, members={len(self.members)}, descriptors={self.descriptors}"

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor,
                ptr: Tensor, descriptors: Tensor | None = None) -> tuple[Tensor, Tensor]:
        graphs = SimpleNamespace(x=x, edge_index=edge_index, edge_attr=edge_attr, batch=batch,
                                 num_graphs=ptr.size(0) - 1, num_nodes=x.size(0), u=None)
        outs = []
        for k, model in enumerate(self.members):
            if self.descriptors:
                graphs.u = cdf_normalise_dense(descriptors, getattr(self, f"reference_{k}"),
                                               getattr(self, f"count_{k}"))
            out = model(graphs).float()
            if self.kind == "classification":
                out = torch.cat([torch.softmax(block, 1)
                                 for block in out.split(self.classes, dim=1)], 1)
            else:
                out = out * getattr(self, f"std_{k}") + getattr(self, f"mean_{k}")
            outs.append(out)
        members = torch.stack(outs, 1)
        return members.mean(1), members


def graph_inputs(graphs: Sequence, descriptors: Tensor | None = None) -> tuple[Tensor, ...]:
    """The inputs of :class:`DeployedMolecules` for a list of molecule ``Data``
    (:func:`~structrnn.datasets.molecules.from_smiles`) and their raw descriptors (G, D)."""
    from torch_geometric.data import Batch

    b = Batch.from_data_list(list(graphs))
    inputs = (b.x, b.edge_index, b.edge_attr, b.batch, b.ptr)
    return inputs if descriptors is None else (*inputs, descriptors.double())
