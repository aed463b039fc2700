"""RDKit descriptors as a molecule's global input, and their CDF normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")
from rdkit import Chem  # noqa: E402
from rdkit.Chem import Crippen, rdMolDescriptors  # noqa: E402

from structrnn.datasets.molecules.descriptors import cdf_normalise, rdkit_descriptors  # noqa: E402

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CCCCC1N", "O=C(O)CCl"]


def test_descriptors_match_rdkit_called_directly():
    values, names = rdkit_descriptors(SMILES)
    assert values.shape == (len(SMILES), len(names)) and len(names) > 100
    for row, smi in enumerate(SMILES):
        mol = Chem.MolFromSmiles(smi)
        assert values[row, names.index("MolLogP")] == pytest.approx(Crippen.MolLogP(mol))
        assert values[row, names.index("TPSA")] == pytest.approx(rdMolDescriptors.CalcTPSA(mol))
        assert values[row, names.index("HeavyAtomCount")] == mol.GetNumHeavyAtoms()


def test_invalid_smiles_names_the_row():
    with pytest.raises(ValueError, match=r"smiles\[1\].*'C1CC'"):
        rdkit_descriptors(["CCO", "C1CC"])


def reference_cdf(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    out = np.zeros_like(values, dtype=float)
    for j in range(values.shape[1]):
        ref = np.sort(reference[np.isfinite(reference[:, j]), j])
        for i, v in enumerate(values[:, j]):
            if np.isnan(v) or ref.size == 0:
                out[i, j] = 0.0
            else:
                out[i, j] = np.searchsorted(ref, v, side="right") / ref.size - 0.5
    return out


def test_cdf_normalise_matches_a_per_column_reference():
    gen = np.random.default_rng(0)
    reference = gen.standard_cauchy((40, 6))  # heavy tails, as some descriptors have
    reference[3, 1] = np.nan
    reference[:, 5] = np.nan  # a column RDKit never computed
    values = np.concatenate([reference[:10], gen.standard_cauchy((7, 6))])
    values[2, 0] = np.nan
    got = cdf_normalise(torch.from_numpy(values), torch.from_numpy(reference))
    assert got.dtype == torch.float32 and got.shape == values.shape
    np.testing.assert_allclose(got.numpy(), reference_cdf(values, reference), atol=1e-6)
    assert float(got.abs().max()) <= 0.5


def test_cdf_normalise_checks_shapes():
    with pytest.raises(ValueError, match="share D"):
        cdf_normalise(torch.zeros(3, 4), torch.zeros(5, 3))
