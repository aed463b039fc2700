"""Molecules as graphs: RDKit featurisation (:mod:`.graphs`), cached CSV sets, RDKit's shipped
molecules with a computed target (:mod:`.builtin`) and RDKit descriptors (:mod:`.descriptors`).
RDKit is imported only when a molecule is read; the names below load on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from structrnn._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from structrnn.datasets.molecules.graphs import (
        ATOM_FEATURE_GROUPS,
        BOND_FEATURE_GROUPS,
        FEATURISER_VERSION,
        NUM_ATOM_FEATURES,
        NUM_BOND_FEATURES,
        MoleculeCSV,
        MoleculeGraphs,
        SkippedRow,
        from_smiles,
        import_rdkit,
        mol_to_data,
        parse_smiles,
    )

__all__ = ["from_smiles", "MoleculeCSV", "MoleculeGraphs", "SkippedRow", "FEATURISER_VERSION",
           "NUM_ATOM_FEATURES", "NUM_BOND_FEATURES", "ATOM_FEATURE_GROUPS",
           "BOND_FEATURE_GROUPS", "import_rdkit", "parse_smiles", "mol_to_data"]
__getattr__, __dir__ = lazy_exports(__name__, {".graphs": __all__})
del annotations, TYPE_CHECKING, lazy_exports  # plumbing, not public names
