"""What the page shows of a molecule beside its predictions: RDKit's SVG drawing and the units
of each target."""

from __future__ import annotations

__all__ = ["molecule_svg", "target_units", "UNITS"]

# the units the data sets give their targets in (MoleculeNet's QM9 CSV, ESOL, RDKit's TPSA)
UNITS = {
    "tpsa": "Å²", "logp": "log units (octanol/water)", "lipinski": "probability",
    "measured log solubility in mols per litre": "log(mol/L)",
    "mu": "D", "alpha": "a₀³", "homo": "Ha", "lumo": "Ha", "gap": "Ha", "r2": "a₀²",
    "zpve": "Ha", "u0": "Ha", "u298": "Ha", "h298": "Ha", "g298": "Ha", "cv": "cal/(mol·K)",
}


def target_units(name: str, kind: str = "regression") -> str:
    """The units of target ``name``: those of its data set, ``probability`` for a binary
    classification task, else ``as in the training data``."""
    if name in UNITS:
        return UNITS[name]
    return "probability" if kind == "classification" else "as in the training data"


def molecule_svg(smiles: str, width: int = 360, height: int = 260) -> str:
    """RDKit's SVG drawing of ``smiles``.

    Raises:
        ValueError: RDKit cannot read it (the reason, as the predictor gives it).
    """
    from rdkit import Chem, rdBase
    from rdkit.Chem.Draw import rdMolDraw2D

    from structrnn.tasks.molecules.predictor import smiles_error

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles.strip()) if smiles.strip() else None
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(smiles_error(smiles) if smiles.strip() else "empty SMILES")
    drawer = rdMolDraw2D.MolDraw2DSVG(width, height)
    drawer.drawOptions().clearBackground = False
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()
