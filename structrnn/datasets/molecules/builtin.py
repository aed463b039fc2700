"""A molecule regression set that needs nothing but RDKit: the 5,000 NCI molecules RDKit ships
(``rdkit/Data/NCI/first_5K.smi``) with a target RDKit computes from the structure itself
(topological polar surface area, Ertl et al. 2000, or Crippen logP, Wildman & Crippen 1999), or
a class RDKit's descriptors decide: ``lipinski`` is 1 when the molecule breaks at most one of
Lipinski's rules of five (molecular weight <= 500, logP <= 5, at most 5 H-bond donors and 10
acceptors), else 0.

TPSA is a sum of per-atom contributions, so a sum-readout graph network can learn it almost
exactly; it is the offline default of ``structrnn train molecules``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from structrnn._io import file_sha256
from structrnn._paths import cache_dir as default_cache_dir
from structrnn.datasets.molecules.graphs import (
    FEATURISER_VERSION,
    MoleculeGraphs,
    import_rdkit,
    parse_smiles,
)

__all__ = ["builtin_molecules", "builtin_smiles_path", "TARGETS", "lipinski"]

TARGETS = ("tpsa", "logp", "lipinski")


def builtin_smiles_path() -> Path:
    """RDKit's ``Data/NCI/first_5K.smi`` (one ``SMILES<TAB>id`` per line)."""
    import_rdkit()
    from rdkit import RDConfig

    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    if not path.is_file():
        raise FileNotFoundError(f"this RDKit installation does not ship {path}")
    return path


def lipinski(mol) -> float:
    """1.0 when ``mol`` breaks at most one of Lipinski's four rules of five, else 0.0."""
    from rdkit.Chem import Crippen, Descriptors, Lipinski

    broken = sum((Descriptors.MolWt(mol) > 500, Crippen.MolLogP(mol) > 5,
                  Lipinski.NumHDonors(mol) > 5, Lipinski.NumHAcceptors(mol) > 10))
    return float(broken <= 1)


def _target_fn(target: str):
    from rdkit.Chem import Crippen, rdMolDescriptors

    if target == "lipinski":
        return lipinski
    if target == "tpsa":
        return rdMolDescriptors.CalcTPSA
    if target == "logp":
        return Crippen.MolLogP
    raise ValueError(f"target: expected one of {TARGETS}, got {target!r}")


def _records(path: Path, target: str, max_lines: int | None):
    fn = _target_fn(target)
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if max_lines is not None and line_no > max_lines:
                return
            smi = line.split()[0] if line.strip() else ""
            if not smi:
                yield line_no, smi, [], "empty line"
                continue
            try:
                value = float(fn(parse_smiles(smi)))
            except ValueError as err:
                yield line_no, smi, [], str(err)
                continue
            yield line_no, smi, [value], None


def builtin_molecules(target: str = "tpsa", max_molecules: int | None = None,
                      cache_dir: str | os.PathLike | None = None,
                      use_cache: bool = True) -> MoleculeGraphs:
    """RDKit's shipped NCI molecules as graphs (see :func:`from_smiles`) with ``y`` (1, 1) the
    ``target`` (``"tpsa"`` in square angstroms, ``"logp"``, or the 0/1 class ``"lipinski"``).
    ``max_molecules`` reads only the first N lines of the file (for quick runs). Graphs are
    cached under ``cache_dir`` (default ``$STRUCTRNN_CACHE`` or ``~/.cache/structrnn``);
    unreadable lines are in ``.skipped``."""
    _target_fn(target)
    if max_molecules is not None and max_molecules < 1:
        raise ValueError(f"max_molecules: expected >= 1, got {max_molecules}")
    path = builtin_smiles_path()
    key = hashlib.sha256("\n".join([file_sha256(path), FEATURISER_VERSION, target,
                                    str(max_molecules)]).encode()).hexdigest()
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "molecules"
    size = "all" if max_molecules is None else str(max_molecules)
    out = MoleculeGraphs.cached(
        base / f"rdkit-nci-first5k-{target}-{size}.{key[:16]}.pt", key,
        lambda: MoleculeGraphs.build(_records(path, target, max_molecules), [target]),
        use_cache)
    out.report_skipped(str(path))
    return out
