"""Whole-molecule descriptors from RDKit, the global input ``u`` of a molecule's graph.

A graph network has a global attribute; for molecules the natural one is what cheminformatics
already computes per molecule (logP, molar refractivity, TPSA, ring counts, ...). Chemprop
(Yang et al. 2019) concatenates RDKit's 2-D descriptors, each mapped through its cumulative
distribution, to the learned graph vector; :func:`rdkit_descriptors` and
:func:`cdf_normalise` do the same with RDKit's ``CalcMolDescriptors`` and the empirical
distribution of the training molecules.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from structrnn._errors import InputError
from structrnn.datasets.molecules.graphs import import_rdkit

__all__ = ["rdkit_descriptors", "cdf_normalise"]


def rdkit_descriptors(smiles: Sequence[str], progress: bool = False) -> tuple[Tensor, list[str]]:
    """RDKit's 2-D descriptors of each molecule.

    Args:
        smiles: M SMILES strings (each must parse: they come from a featurised data set).
        progress: show a tqdm bar.

    Returns:
        ``(values (M, D) float64, names)``; a value RDKit cannot compute, or computes as
        infinite, is NaN.
    """
    import_rdkit()
    from rdkit import Chem, RDLogger
    from rdkit.Chem import Descriptors

    names = [name for name, _ in Descriptors._descList]
    rows = np.full((len(smiles), len(names)), np.nan)
    RDLogger.DisableLog("rdApp.*")  # descriptor warnings per molecule would flood the log
    try:
        for i, smi in enumerate(tqdm(smiles, desc="RDKit descriptors", disable=not progress)):
            mol = Chem.MolFromSmiles(smi.strip())
            if mol is None:
                raise InputError(f"smiles[{i}]: invalid SMILES {smi!r}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy overflow in a few descriptors (Ipc)
                values = Descriptors.CalcMolDescriptors(mol, missingVal=np.nan)
            rows[i] = [values[name] for name in names]
    finally:
        RDLogger.EnableLog("rdApp.*")
    rows[~np.isfinite(rows)] = np.nan
    return torch.from_numpy(rows), names


def cdf_normalise(values: Tensor, reference: Tensor) -> Tensor:
    """Map each column through the empirical distribution of ``reference``.

    Args:
        values: (M, D) raw descriptors (NaN allowed).
        reference: (R, D) raw descriptors of the training molecules.

    Returns:
        (M, D) float32 in [-0.5, 0.5]: the fraction of reference values <= the value, less one
        half; NaN, and columns with no finite reference value, give 0 (the median). Unlike a
        mean/std scaling this is not thrown by the heavy tails of descriptors such as ``Ipc``.
    """
    if values.dim() != 2 or reference.dim() != 2 or values.size(1) != reference.size(1):
        raise ValueError(f"values (M, D) and reference (R, D) must share D; got "
                         f"{tuple(values.shape)} and {tuple(reference.shape)}")
    ref = reference.double().t().contiguous()  # (D, R)
    finite = torch.isfinite(ref)
    count = finite.sum(1, keepdim=True)
    ref = torch.where(finite, ref, torch.full_like(ref, float("inf"))).sort(1).values
    v = values.double().t().contiguous()  # (D, M)
    below = torch.searchsorted(ref, torch.nan_to_num(v, nan=0.0), right=True)
    out = below.clamp(max=count) / count.clamp(min=1) - 0.5
    out = torch.where(torch.isnan(v) | (count == 0), torch.zeros_like(out), out)
    return out.t().float()
