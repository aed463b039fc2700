"""Molecules as graphs: SMILES -> ``torch_geometric.data.Data`` (RDKit), and MoleculeNet CSVs.

Atoms are nodes, bonds are edges listed in both directions (``edge_index`` row 0 the sender,
row 1 the receiver, as everywhere in structrnn). Every feature group is one-hot with a final
"other" slot, so each group of a row sums to exactly one and unseen values still have a place.

RDKit is an optional dependency (``pip install structrnn[chem]``); it is imported on first use.
"""

from __future__ import annotations

import csv
import hashlib
import numbers
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from structrnn._errors import InputError
from structrnn._io import atomic_write, file_sha256, is_writable
from structrnn._paths import cache_dir as default_cache_dir

__all__ = [
    "from_smiles", "MoleculeCSV", "MoleculeGraphs", "SkippedRow", "FEATURISER_VERSION",
    "NUM_ATOM_FEATURES", "NUM_BOND_FEATURES", "ATOM_FEATURE_GROUPS", "BOND_FEATURE_GROUPS",
    "import_rdkit", "parse_smiles", "mol_to_data",
]

# Bump whenever the vocabularies or the order below change: cached graphs are keyed by it.
FEATURISER_VERSION = "structrnn-mol-1"

ELEMENTS = ("H", "B", "C", "N", "O", "F", "Na", "Si", "P", "S", "Cl", "K", "Ca", "Fe", "Cu",
            "Zn", "As", "Se", "Br", "Sn", "I")
DEGREES = (0, 1, 2, 3, 4, 5)
FORMAL_CHARGES = (-2, -1, 0, 1, 2)
HYBRIDISATIONS = ("S", "SP", "SP2", "SP3", "SP3D", "SP3D2")
CHIRAL_TAGS = ("CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW")
TOTAL_HS = (0, 1, 2, 3, 4)
BOOL = (False, True)
BOND_TYPES = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")
BOND_STEREO = ("STEREONONE", "STEREOANY", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS")

# (name, vocabulary); each group takes len(vocabulary) + 1 columns (the last one is "other").
ATOM_FEATURE_GROUPS: tuple[tuple[str, tuple], ...] = (
    ("element", ELEMENTS), ("degree", DEGREES), ("formal_charge", FORMAL_CHARGES),
    ("hybridisation", HYBRIDISATIONS), ("aromatic", BOOL), ("total_hs", TOTAL_HS),
    ("in_ring", BOOL), ("chirality", CHIRAL_TAGS),
)
BOND_FEATURE_GROUPS: tuple[tuple[str, tuple], ...] = (
    ("type", BOND_TYPES), ("conjugated", BOOL), ("in_ring", BOOL), ("stereo", BOND_STEREO),
)


def _offsets(groups) -> tuple[list[int], int]:
    starts, total = [], 0
    for _, vocab in groups:
        starts.append(total)
        total += len(vocab) + 1
    return starts, total


_ATOM_STARTS, NUM_ATOM_FEATURES = _offsets(ATOM_FEATURE_GROUPS)
_BOND_STARTS, NUM_BOND_FEATURES = _offsets(BOND_FEATURE_GROUPS)
# value -> column, one dict per group; misses go to the group's "other" column.
_ATOM_LOOKUP = [{v: s + i for i, v in enumerate(vocab)} for s, (_, vocab)
                in zip(_ATOM_STARTS, ATOM_FEATURE_GROUPS, strict=True)]
_BOND_LOOKUP = [{v: s + i for i, v in enumerate(vocab)} for s, (_, vocab)
                in zip(_BOND_STARTS, BOND_FEATURE_GROUPS, strict=True)]
_ATOM_OTHER = [s + len(vocab) for s, (_, vocab) in zip(_ATOM_STARTS, ATOM_FEATURE_GROUPS,
                                                       strict=True)]
_BOND_OTHER = [s + len(vocab) for s, (_, vocab) in zip(_BOND_STARTS, BOND_FEATURE_GROUPS,
                                                       strict=True)]


def import_rdkit():
    """``rdkit.Chem``, or an ImportError that says how to install it."""
    try:
        from rdkit import Chem
    except ImportError as err:  # pragma: no cover - rdkit is installed in the dev environment
        raise ImportError("molecule support needs RDKit: pip install structrnn[chem]") from err
    return Chem


def _columns(values: Iterable, lookups: list[dict], others: list[int]) -> list[int]:
    return [lk.get(v, other) for v, lk, other in zip(values, lookups, others, strict=True)]


def _one_hot(columns: list[list[int]], width: int) -> Tensor:
    """(len(columns), width) float32 with a 1 at each row's columns."""
    # One NumPy fancy-index assignment over all rows: about twice as fast as building an index
    # tensor and scattering, and far cheaper than a tensor per atom.
    out = np.zeros((len(columns), width), np.float32)
    if columns:
        out[np.arange(len(columns))[:, None], np.asarray(columns)] = 1.0
    return torch.from_numpy(out)


def parse_smiles(smiles: str, explicit_hydrogens: bool = False):
    """An RDKit ``Mol`` from ``smiles`` (surrounding whitespace ignored);
    :class:`~structrnn._errors.InputError` (a ValueError) quoting the text when RDKit cannot
    read it or it has no atoms."""
    Chem = import_rdkit()
    from rdkit import rdBase

    if not isinstance(smiles, str):
        raise ValueError(f"smiles: expected a string, got {type(smiles).__name__}")
    with rdBase.BlockLogs():  # RDKit's own stderr message would duplicate ours
        mol = Chem.MolFromSmiles(smiles.strip())
    if mol is None:
        raise InputError(f"invalid SMILES {smiles!r}: RDKit could not parse it")
    if mol.GetNumAtoms() == 0:
        raise InputError(f"invalid SMILES {smiles!r}: no atoms")
    if explicit_hydrogens:
        mol = Chem.AddHs(mol)
    return mol


# raw RDKit values of an atom (or a bond) -> its one-hot columns. Molecules repeat a few hundred
# kinds of atoms, so after the first molecules every atom is one dict lookup instead of eight
# vocabulary lookups and two enum-to-string conversions (the featuriser's hot loop)
_ATOM_MEMO: dict[tuple, list[int]] = {}
_BOND_MEMO: dict[tuple, list[int]] = {}
_MEMO_LIMIT = 100_000  # stop remembering past this (a pathological input cannot grow it)


def _memo_columns(memo: dict, raw: tuple, lookups: list[dict], others: list[int]) -> list[int]:
    cols = memo.get(raw)
    if cols is None:
        # enums (hybridisation, chirality, bond type, stereo) are matched by their names
        named = tuple(str(v) if type(v).__module__.startswith("rdkit") else v for v in raw)
        cols = _columns(named, lookups, others)
        if len(memo) < _MEMO_LIMIT:
            memo[raw] = cols
    return cols


def mol_to_data(mol, smiles: str | None = None) -> Data:
    """Featurise an RDKit ``Mol`` (see :func:`from_smiles` for the layout)."""
    atom_cols = []
    for i in range(mol.GetNumAtoms()):  # by index: cheaper than RDKit's atom sequence
        a = mol.GetAtomWithIdx(i)
        raw = (a.GetSymbol(), a.GetTotalDegree(), a.GetFormalCharge(), a.GetHybridization(),
               a.GetIsAromatic(), a.GetTotalNumHs(), a.IsInRing(), a.GetChiralTag())
        atom_cols.append(_memo_columns(_ATOM_MEMO, raw, _ATOM_LOOKUP, _ATOM_OTHER))
    senders, receivers, bond_cols = [], [], []
    for k in range(mol.GetNumBonds()):
        b = mol.GetBondWithIdx(k)
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        raw = (b.GetBondType(), b.GetIsConjugated(), b.IsInRing(), b.GetStereo())
        cols = _memo_columns(_BOND_MEMO, raw, _BOND_LOOKUP, _BOND_OTHER)
        senders += [i, j]
        receivers += [j, i]
        bond_cols += [cols, cols]
    edge_index = torch.tensor([senders, receivers], dtype=torch.long).view(2, -1)
    fields = {} if smiles is None else {"smiles": smiles}
    return Data(x=_one_hot(atom_cols, NUM_ATOM_FEATURES), edge_index=edge_index,
                edge_attr=_one_hot(bond_cols, NUM_BOND_FEATURES).view(-1, NUM_BOND_FEATURES),
                **fields)


def from_smiles(smiles: str, explicit_hydrogens: bool = False) -> Data:
    """A molecule as a graph.

    Returns ``Data`` with
      * ``x``: (num_atoms, NUM_ATOM_FEATURES) float one-hot, groups in the order of
        ``ATOM_FEATURE_GROUPS`` (element, degree counting hydrogens, formal charge,
        hybridisation, aromatic, total H count, ring membership, chirality tag), each with a
        last "other" column;
      * ``edge_index``: (2, 2 * num_bonds) long, both directions of every bond, the two
        directions of bond ``k`` at columns ``2k`` and ``2k+1``;
      * ``edge_attr``: (2 * num_bonds, NUM_BOND_FEATURES) float one-hot (bond type, conjugated,
        in ring, stereo);
      * ``smiles``: the string as given.

    ``explicit_hydrogens=True`` adds the hydrogens as atoms (RDKit ``AddHs``). An unreadable
    SMILES raises ``ValueError`` quoting it.
    """
    return mol_to_data(parse_smiles(smiles, explicit_hydrogens), smiles)


# --- data sets of molecules with a cache --------------------------------------------------------


class SkippedRow(NamedTuple):
    """A record that was left out: ``line`` is the 1-based line of the file (header = line 1)."""

    line: int
    smiles: str
    reason: str


def _pack(graphs: list[Data]) -> dict[str, Tensor]:
    """Concatenate graphs into plain tensors (``torch.load(weights_only=True)`` reads them)."""
    num_nodes = torch.tensor([g.num_nodes for g in graphs], dtype=torch.long)
    num_edges = torch.tensor([g.edge_index.size(1) for g in graphs], dtype=torch.long)
    return {
        "x": torch.cat([g.x for g in graphs]) if graphs else torch.zeros(0, NUM_ATOM_FEATURES),
        "edge_index": (torch.cat([g.edge_index for g in graphs], 1) if graphs
                       else torch.zeros(2, 0, dtype=torch.long)),
        "edge_attr": (torch.cat([g.edge_attr for g in graphs]) if graphs
                      else torch.zeros(0, NUM_BOND_FEATURES)),
        "num_nodes": num_nodes, "num_edges": num_edges,
    }


def _unpack(packed: dict[str, Tensor], smiles: list[str], y: Tensor) -> list[Data]:
    nodes = packed["num_nodes"].tolist()
    edges = packed["num_edges"].tolist()
    xs = packed["x"].split(nodes)
    eis = packed["edge_index"].split(edges, dim=1)
    eas = packed["edge_attr"].split(edges)
    if not (len(nodes) == len(edges) == len(smiles) == y.size(0)):
        raise ValueError("inconsistent cache: counts of graphs, SMILES and targets differ")
    return [Data(x=x, edge_index=ei, edge_attr=ea, y=y[i:i + 1], smiles=s)
            for i, (x, ei, ea, s) in enumerate(zip(xs, eis, eas, smiles, strict=True))]


class MoleculeGraphs(Sequence):
    """A list of molecule graphs with targets, built once and cached on disk.

    Each item is a ``Data`` from :func:`from_smiles` with ``y`` of shape (1, num_targets)
    (NaN where a target is missing), so PyG's ``DataLoader`` batches it directly.

    Attributes: ``smiles`` (list[str]), ``y`` (num_molecules, num_targets), ``target_names``,
    ``skipped`` (list of :class:`SkippedRow`), ``cache_path``, ``cache_hit`` (bool: loaded from
    the cache rather than built).
    """

    def __init__(self, graphs: list[Data], smiles: list[str], y: Tensor,
                 target_names: list[str], skipped: list[SkippedRow]) -> None:
        self.graphs, self.smiles, self.y = graphs, smiles, y
        self.target_names, self.skipped = list(target_names), list(skipped)
        self.cache_path: Path | None = None
        self.cache_hit = False

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i):
        """An int (also NumPy/torch integers) -> one ``Data``; a slice or an index array ->
        a list of them."""
        if isinstance(i, slice):
            return self.graphs[i]
        if isinstance(i, numbers.Integral) or (hasattr(i, "ndim") and i.ndim == 0):
            return self.graphs[int(i)]
        return [self.graphs[int(j)] for j in i]

    @property
    def num_node_features(self) -> int:
        return NUM_ATOM_FEATURES

    @property
    def num_edge_features(self) -> int:
        return NUM_BOND_FEATURES

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} molecules, targets={self.target_names}, "
                f"skipped={len(self.skipped)})")

    # -- building and caching ----------------------------------------------------------------

    @classmethod
    def build(cls, records: Iterable[tuple[int, str, list[float] | None, str | None]],
              target_names: list[str], explicit_hydrogens: bool = False) -> MoleculeGraphs:
        """Featurise ``(line, smiles, targets, error)`` records; a record with an error, or
        whose SMILES fails, is skipped and kept in ``.skipped``."""
        graphs, smiles, ys, skipped = [], [], [], []
        for line, smi, targets, error in records:
            if error is None:
                try:
                    data = from_smiles(smi, explicit_hydrogens)
                except ValueError as err:
                    error = str(err)
            if error is not None:
                skipped.append(SkippedRow(line, smi, error))
                continue
            data.y = torch.tensor([targets], dtype=torch.float)
            graphs.append(data)
            smiles.append(smi)
            ys.append(targets)
        y = torch.tensor(ys, dtype=torch.float).view(len(ys), len(target_names))
        return MoleculeGraphs(graphs, smiles, y, target_names, skipped)

    def save(self, path: str | os.PathLike, key: str) -> None:
        """Write the graphs as plain tensors, atomically."""
        state = {"version": FEATURISER_VERSION, "key": key, "smiles": self.smiles, "y": self.y,
                 "target_names": self.target_names,
                 "skipped": [list(s) for s in self.skipped], **_pack(self.graphs)}
        atomic_write(path, lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str | os.PathLike, key: str) -> MoleculeGraphs:
        """Read what :meth:`save` wrote; ValueError when it is unreadable or for another
        featuriser version or source."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several kinds on a damaged file
            raise ValueError(f"unreadable cache {path}: {err}") from err
        if not isinstance(state, dict) or state.get("version") != FEATURISER_VERSION:
            found = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"cache {path} is for featuriser {found!r}, "
                             f"expected {FEATURISER_VERSION!r}")
        if state.get("key") != key:
            raise ValueError(f"cache {path} was built from other data")
        try:
            graphs = _unpack(state, state["smiles"], state["y"])
            skipped = [SkippedRow(int(a), str(b), str(c)) for a, b, c in state["skipped"]]
        except (KeyError, TypeError, RuntimeError) as err:
            raise ValueError(f"damaged cache {path}: {err}") from err
        return MoleculeGraphs(graphs, state["smiles"], state["y"], state["target_names"],
                              skipped)

    @classmethod
    def cached(cls, cache_path: Path, key: str, build: Callable[[], MoleculeGraphs],
               use_cache: bool = True) -> MoleculeGraphs:
        """Load from ``cache_path`` when it holds ``key``; otherwise build, then save. A damaged
        or outdated cache is reported and rebuilt."""
        if use_cache and cache_path.is_file():
            try:
                out = MoleculeGraphs.load(cache_path, key)
            except ValueError as err:
                warnings.warn(f"{err}; rebuilding it", stacklevel=3)
            else:
                out.cache_path, out.cache_hit = cache_path, True
                return out
        out = build()
        if use_cache:
            try:
                out.save(cache_path, key)
                out.cache_path = cache_path
            except OSError as err:  # a cache we cannot write is not fatal
                warnings.warn(f"could not write the cache {cache_path}: {err}", stacklevel=3)
        return out

    def report_skipped(self, source: str) -> None:
        """Warn how many records were skipped and on which lines."""
        if not self.skipped:
            return
        lines = ", ".join(str(s.line) for s in self.skipped[:20])
        more = f" (and {len(self.skipped) - 20} more)" if len(self.skipped) > 20 else ""
        first = self.skipped[0]
        msg = (f"{source}: skipped {len(self.skipped)} of {len(self) + len(self.skipped)} "
               f"records, on lines {lines}{more}; first reason: {first.reason}")
        warnings.warn(msg, stacklevel=3)


def _cache_location(source: Path, name: str, cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir/name``; by default ``processed/`` next to the source when that directory is
    writable, else :func:`structrnn._paths.cache_dir`."""
    if cache_dir is None:
        beside = source.parent / "processed"
        usable = is_writable(beside) if beside.exists() else is_writable(source.parent)
        cache_dir = beside if usable else default_cache_dir() / "molecules"
    return Path(cache_dir) / name


class MoleculeCSV(MoleculeGraphs):
    """Any MoleculeNet-style CSV: one molecule per row, a SMILES column and target columns.

    Args:
        path: the CSV file.
        smiles_col: name of the SMILES column (surrounding whitespace is stripped).
        target_cols: names of the target columns; empty cells become NaN (MoleculeNet's
            multi-task sets have missing labels). A non-numeric cell skips the row.
        explicit_hydrogens: passed to :func:`from_smiles`.
        cache_dir: where the processed graphs go; default ``processed/`` next to the file if
            writable, else ``$STRUCTRNN_CACHE`` / ``~/.cache/structrnn/molecules``. The cache
            file is keyed by a hash of the file's bytes, the columns and ``FEATURISER_VERSION``;
            a damaged or outdated one is rebuilt.
        use_cache: ``False`` neither reads nor writes a cache.

    Rows whose SMILES RDKit cannot read are skipped and reported: ``.skipped`` lists them
    (line number, SMILES, reason) and a warning gives the count and the line numbers.
    """

    def __init__(self, path: str | os.PathLike, smiles_col: str = "smiles",
                 target_cols: Sequence[str] = (), explicit_hydrogens: bool = False,
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no CSV file at {path}")
        if isinstance(target_cols, str):
            target_cols = [target_cols]
        target_cols = list(target_cols)
        self._check_header(path, smiles_col, target_cols)
        key_text = "\n".join([file_sha256(path), FEATURISER_VERSION, smiles_col, *target_cols,
                              str(explicit_hydrogens)])
        key = hashlib.sha256(key_text.encode()).hexdigest()
        cache_path = _cache_location(path, f"{path.stem}.{key[:16]}.pt", cache_dir)
        built = self.cached(
            cache_path, key,
            lambda: MoleculeGraphs.build(self._records(path, smiles_col, target_cols),
                                         target_cols, explicit_hydrogens),
            use_cache)
        super().__init__(built.graphs, built.smiles, built.y, built.target_names, built.skipped)
        self.cache_path, self.cache_hit, self.path = built.cache_path, built.cache_hit, path
        self.report_skipped(str(path))

    @staticmethod
    def _check_header(path: Path, smiles_col: str, target_cols: list[str]) -> None:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        missing = [c for c in [smiles_col, *target_cols] if c not in header]
        if missing:
            raise InputError(f"{path}: column(s) {missing} not in the header {header}")

    @staticmethod
    def _records(path: Path, smiles_col: str, target_cols: list[str]):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for row in reader:
                line = reader.line_num
                smi = (row.get(smiles_col) or "").strip()
                targets, error = [], None
                for col in target_cols:
                    cell = (row.get(col) or "").strip()
                    try:
                        targets.append(float(cell) if cell else float("nan"))
                    except ValueError:
                        error = f"target {col!r} is not a number: {cell!r}"
                        break
                if not smi and error is None:
                    error = "empty SMILES"
                yield line, smi, targets, error
