"""Train/validation/test splits: random, Bemis-Murcko scaffold, and stratified k-fold.

Every function returns NumPy int64 index arrays (sorted within each part), deterministic for a
given seed, so a dataset is split with ``[dataset[i] for i in idx]`` or ``dataset[idx]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["random_split", "scaffold_split", "stratified_kfold", "murcko_scaffold"]


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    fractions = [float(f) for f in fractions]
    if not fractions or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions: expected non-negative numbers summing to 1, got {fractions}")
    return fractions


def _sizes(n: int, fractions: list[float]) -> list[int]:
    # floor for every part but the last, which takes the remainder (MoleculeNet's convention).
    sizes = [int(f * n) for f in fractions[:-1]]
    return sizes + [n - sum(sizes)]


def random_split(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                 seed: int = 0) -> tuple[np.ndarray, ...]:
    """Shuffle ``range(n)`` with ``seed`` and cut it by ``fractions``: one index array per
    fraction, disjoint, covering everything."""
    if n < 0:
        raise ValueError(f"n: expected a count >= 0, got {n}")
    fractions = _check_fractions(fractions)
    perm = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum(_sizes(n, fractions))[:-1]
    return tuple(np.sort(part) for part in np.split(perm, bounds))


def murcko_scaffold(smiles: str, include_chirality: bool = False) -> str:
    """The Bemis-Murcko scaffold of a molecule as SMILES (``""`` for an acyclic molecule)."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    from structrnn.datasets.molecules.graphs import parse_smiles

    return MurckoScaffold.MurckoScaffoldSmiles(mol=parse_smiles(smiles),
                                               includeChirality=include_chirality)


def scaffold_split(smiles_list: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                   seed: int = 0, balanced: bool = True) -> tuple[np.ndarray, ...]:
    """Split molecules so that no Bemis-Murcko scaffold (RDKit) is in two parts.

    Molecules are grouped by scaffold (acyclic molecules share the empty scaffold); the groups
    are then placed, in an order described below, each into the first part that still has room
    for all of it, else into the last part. Part capacities are ``fractions`` of ``n`` as in
    :func:`random_split`.

    * ``balanced=True`` (default; chemprop's "scaffold_balanced"): groups too big for half a
      validation or test part go first, in random order, then all other groups in random order,
      both shuffled with ``seed``; different seeds give different splits.
    * ``balanced=False`` (DeepChem's deterministic scaffold split): the largest groups first
      (ties by first appearance); ``seed`` is ignored. The test part then holds the rarest
      scaffolds.
    """
    fractions = _check_fractions(fractions)
    groups: dict[str, list[int]] = {}
    for i, smi in enumerate(smiles_list):
        groups.setdefault(murcko_scaffold(smi), []).append(i)
    n = len(smiles_list)
    capacity = [f * n for f in fractions]
    sets = list(groups.values())  # in order of first appearance
    if balanced:
        rng = np.random.default_rng(seed)
        limit = min(c / 2 for c in capacity[1:]) if len(capacity) > 1 else float("inf")
        big = [s for s in sets if len(s) > limit]
        small = [s for s in sets if len(s) <= limit]
        order = [big[i] for i in rng.permutation(len(big))]
        order += [small[i] for i in rng.permutation(len(small))]
    else:
        order = sorted(sets, key=lambda s: (-len(s), s[0]))
    parts: list[list[int]] = [[] for _ in fractions]
    for members in order:
        for k, part in enumerate(parts):
            if k == len(parts) - 1 or len(part) + len(members) <= capacity[k]:
                part.extend(members)
                break
    return tuple(np.sort(np.asarray(p, dtype=np.int64)) for p in parts)


def stratified_kfold(labels: Sequence[int] | np.ndarray, k: int = 10,
                     seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, test) index pairs of scikit-learn's ``StratifiedKFold`` (shuffled with
    ``seed``): every sample is in exactly one test fold, and each class is spread over the folds
    as evenly as possible (per-fold class counts differ by at most one; fold sizes too).

    Raises:
        ValueError: ``k`` outside ``2..len(labels)``, or larger than every class's count.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels).reshape(-1)
    n = labels.shape[0]
    if not 2 <= k <= n:
        raise ValueError(f"k: expected 2 <= k <= number of samples ({n}), got {k}")
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # a class rarer than k is spread as far as it goes: expected on small data sets
        warnings.filterwarnings("ignore", message="The least populated class")
        return [(train.astype(np.int64), test.astype(np.int64))
                for train, test in folds.split(np.zeros(n), labels)]
