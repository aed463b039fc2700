"""Molecule featuriser, CSV loader and cache, splits, TU sets and the built-in molecules."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")
from rdkit import Chem  # noqa: E402
from rdkit.Chem import rdMolDescriptors  # noqa: E402
from rdkit.Chem.Scaffolds import MurckoScaffold  # noqa: E402

from structrnn.datasets.molecules import graphs as M  # noqa: E402
from structrnn.datasets.molecules.builtin import builtin_molecules  # noqa: E402
from structrnn.datasets.splits import (  # noqa: E402
    random_split,
    scaffold_split,
    stratified_kfold,
)
from tests.conftest import require_dataset  # noqa: E402

SMILES = [
    "CCO", "c1ccccc1", "Cc1ccccc1", "Oc1ccccc1", "c1ccncc1", "Cc1ccncc1", "C1CCCCC1",
    "OC1CCCCC1", "CC(=O)Oc1ccccc1C(=O)O", "C[C@H](N)C(=O)O", "F/C=C/F", "F/C=C\\F",
    "[Na+].[Cl-]", "C[N+](C)(C)C.[Br-]", "CC#N", "O=C1CCCCC1", "c1ccc2ccccc2c1", "Nc1ccccc1",
    "CCCCCC", "OCC(O)CO", "c1ccc(-c2ccccc2)cc1", "C1CC1", "CC1CC1", "ClC1CC1", "c1ccoc1",
    "Cc1ccoc1", "O=C(O)c1ccoc1", "[O-][N+](=O)c1ccccc1", "C", "O", "CCN(CC)CC", "Brc1ccccc1",
]


def decode(row: torch.Tensor, groups, starts) -> dict:
    """Read a one-hot feature row back into {group: value} (the 'other' slot -> 'other')."""
    out = {}
    for (name, vocab), s in zip(groups, starts, strict=True):
        block = row[s:s + len(vocab) + 1]
        assert block.sum() == 1, f"group {name} is not one-hot: {block}"
        k = int(block.argmax())
        out[name] = vocab[k] if k < len(vocab) else "other"
    return out


def atoms(data):
    return [decode(r, M.ATOM_FEATURE_GROUPS, M._ATOM_STARTS) for r in data.x]


def bonds(data):
    return [decode(r, M.BOND_FEATURE_GROUPS, M._BOND_STARTS) for r in data.edge_attr]


# --- featuriser ---------------------------------------------------------------------------------


@pytest.mark.parametrize("smiles", SMILES)
def test_counts_and_edges_match_rdkit(smiles):
    mol = Chem.MolFromSmiles(smiles)
    data = M.from_smiles(smiles)
    assert data.x.shape == (mol.GetNumAtoms(), M.NUM_ATOM_FEATURES)
    assert data.x.dtype == torch.float and data.edge_attr.dtype == torch.float
    assert data.edge_index.shape == (2, 2 * mol.GetNumBonds())
    assert data.edge_attr.shape == (2 * mol.GetNumBonds(), M.NUM_BOND_FEATURES)
    assert data.smiles == smiles
    expected = set()
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        expected |= {(i, j), (j, i)}
    got = {tuple(e) for e in data.edge_index.t().tolist()}
    assert got == expected and len(got) == data.edge_index.size(1)
    # every feature group one-hot (decode asserts it); values agree with RDKit atom by atom
    for a, f in zip(mol.GetAtoms(), atoms(data), strict=True):
        assert f["element"] == (a.GetSymbol() if a.GetSymbol() in M.ELEMENTS else "other")
        assert f["degree"] == a.GetTotalDegree()
        assert f["formal_charge"] == a.GetFormalCharge()
        assert f["aromatic"] == a.GetIsAromatic() and f["in_ring"] == a.IsInRing()
        assert f["total_hs"] == a.GetTotalNumHs()
    for k, (b, f) in enumerate(zip(mol.GetBonds(), bonds(data)[::2], strict=True)):
        assert f["type"] == str(b.GetBondType()) and f["conjugated"] == b.GetIsConjugated()
        assert torch.equal(data.edge_attr[2 * k], data.edge_attr[2 * k + 1])


def test_agrees_with_pyg_from_smiles():
    """PyG's own featuriser (integer categories) as an independent reference."""
    from torch_geometric.utils import from_smiles as pyg_from_smiles
    from torch_geometric.utils.smiles import e_map, x_map

    for smiles in SMILES:
        ours, theirs = M.from_smiles(smiles), pyg_from_smiles(smiles)
        feats = atoms(ours)
        assert [f["degree"] for f in feats] == theirs.x[:, 2].tolist()
        assert [f["formal_charge"] for f in feats] == (theirs.x[:, 3] - 5).tolist()
        assert [f["total_hs"] for f in feats] == theirs.x[:, 4].tolist()
        assert [int(f["aromatic"]) for f in feats] == theirs.x[:, 7].tolist()
        assert [int(f["in_ring"]) for f in feats] == theirs.x[:, 8].tolist()
        assert [f["hybridisation"] for f in feats] == [
            x_map["hybridization"][k] for k in theirs.x[:, 6].tolist()]
        ours_edges = sorted((s, r, f["type"], f["stereo"], f["conjugated"]) for (s, r), f in
                            zip(ours.edge_index.t().tolist(), bonds(ours), strict=True))
        theirs_edges = sorted((s, r, e_map["bond_type"][t], e_map["stereo"][st], bool(c))
                              for (s, r), (t, st, c) in
                              zip(theirs.edge_index.t().tolist(), theirs.edge_attr.tolist(),
                                  strict=True))
        assert ours_edges == theirs_edges, smiles


def test_specific_features():
    feats = atoms(M.from_smiles("[Na+].[Cl-]"))
    assert [(f["element"], f["formal_charge"], f["degree"]) for f in feats] == [
        ("Na", 1, 0), ("Cl", -1, 0)]
    benzene = M.from_smiles("c1ccccc1")
    assert all(f["aromatic"] and f["in_ring"] and f["hybridisation"] == "SP2"
               for f in atoms(benzene))
    assert all(f["type"] == "AROMATIC" and f["in_ring"] for f in bonds(benzene))
    e, z = M.from_smiles("F/C=C/F"), M.from_smiles("F/C=C\\F")
    stereo = {f["stereo"] for f in bonds(e)}, {f["stereo"] for f in bonds(z)}
    assert "STEREOE" in stereo[0] and "STEREOZ" in stereo[1]
    assert not torch.equal(e.edge_attr, z.edge_attr)
    chiral = atoms(M.from_smiles("C[C@H](N)C(=O)O"))[1]["chirality"]
    assert chiral in ("CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW")
    # an element outside the list goes to "other"; a big charge too
    assert atoms(M.from_smiles("[Hg]"))[0]["element"] == "other"
    assert atoms(M.from_smiles("[Fe+3]"))[0]["formal_charge"] == "other"


def test_one_atom_and_hydrogens():
    data = M.from_smiles("C")
    assert data.x.shape == (1, M.NUM_ATOM_FEATURES)
    assert data.edge_index.shape == (2, 0) and data.edge_attr.shape == (0, M.NUM_BOND_FEATURES)
    h = M.from_smiles("C", explicit_hydrogens=True)
    assert h.num_nodes == 5 and h.edge_index.size(1) == 8
    assert sum(f["element"] == "H" for f in atoms(h)) == 4


@pytest.mark.parametrize("bad", ["C1CC", "not a molecule", "C(C", "", "   "])
def test_invalid_smiles_quoted(bad):
    with pytest.raises(ValueError) as info:
        M.from_smiles(bad)
    assert repr(bad) in str(info.value)


def test_trailing_space_is_stripped():
    data = M.from_smiles("CCO ")
    assert data.num_nodes == 3


# --- CSV loader and cache -----------------------------------------------------------------------


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "smiles", "y1", "y2"])
        w.writerows(rows)


ROWS = [["a", "CCO", "1.0", "2"], ["b", "C1CC", "2.0", "3"], ["c", "c1ccccc1", "3.5", ""],
        ["d", "", "1", "1"], ["e", "CC(=O)O", "x", "1"], ["f", "[Na+].[Cl-]", "-1", "0"]]


def test_csv_skips_and_reports_bad_rows(tmp_path):
    path = tmp_path / "mols.csv"
    write_csv(path, ROWS)
    with pytest.warns(UserWarning, match=r"skipped 3 of 6 records, on lines 3, 5, 6"):
        ds = M.MoleculeCSV(path, "smiles", ["y1", "y2"], cache_dir=tmp_path / "cache")
    assert [s.line for s in ds.skipped] == [3, 5, 6]  # header is line 1
    assert "C1CC" in ds.skipped[0].reason and "'x'" in ds.skipped[2].reason
    assert ds.smiles == ["CCO", "c1ccccc1", "[Na+].[Cl-]"]
    assert len(ds) == 3 and ds[1].y.shape == (1, 2)
    assert ds.y[0].tolist() == [1.0, 2.0] and np.isnan(ds.y[1, 1].item())
    assert ds[2].num_nodes == 2
    assert ds[np.int64(2)] is ds[2] and ds[torch.tensor(0)] is ds[0]
    assert [g.smiles for g in ds[np.array([2, 0])]] == ["[Na+].[Cl-]", "CCO"]


def test_csv_missing_column(tmp_path):
    path = tmp_path / "mols.csv"
    write_csv(path, ROWS[:1])
    with pytest.raises(ValueError, match="solubility"):
        M.MoleculeCSV(path, "smiles", ["solubility"], cache_dir=tmp_path)


def load_quietly(path, cache):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = M.MoleculeCSV(path, "smiles", ["y1"], cache_dir=cache)
    return ds, [str(w.message) for w in caught]


def same_graphs(a, b):
    return all(torch.equal(x.x, y.x) and torch.equal(x.edge_index, y.edge_index)
               and torch.equal(x.edge_attr, y.edge_attr) and torch.equal(x.y, y.y)
               and x.smiles == y.smiles for x, y in zip(a, b, strict=True)) and len(a) == len(b)


def test_cache_hit_corruption_and_version(tmp_path):
    path, cache = tmp_path / "mols.csv", tmp_path / "cache"
    write_csv(path, [r for r in ROWS if r[1] != "C1CC"])
    first, _ = load_quietly(path, cache)
    assert not first.cache_hit and first.cache_path.is_file()
    assert first.cache_path.parent == cache
    again, messages = load_quietly(path, cache)
    assert again.cache_hit and same_graphs(first, again)
    assert [s.line for s in again.skipped] == [s.line for s in first.skipped]
    assert any("skipped 2" in m for m in messages)  # still reported from the cache
    # damaged file: detected, rebuilt, rewritten
    first.cache_path.write_bytes(b"not a torch file")
    rebuilt, messages = load_quietly(path, cache)
    assert not rebuilt.cache_hit and same_graphs(first, rebuilt)
    assert any("rebuilding" in m for m in messages)
    assert load_quietly(path, cache)[0].cache_hit
    # written by another featuriser version: rebuilt
    state = torch.load(first.cache_path, weights_only=True)
    state["version"] = "structrnn-mol-0"
    torch.save(state, first.cache_path)
    rebuilt, messages = load_quietly(path, cache)
    assert not rebuilt.cache_hit and any("structrnn-mol-0" in m for m in messages)
    # changed file content: a different cache key
    write_csv(path, [["z", "CCCC", "9", "9"]])
    changed, _ = load_quietly(path, cache)
    assert not changed.cache_hit and changed.smiles == ["CCCC"]
    assert changed.cache_path != first.cache_path


def test_cache_avoids_read_only_data_dir(tmp_path, monkeypatch):
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    write_csv(data_dir / "mols.csv", ROWS[:1])
    data_dir.chmod(0o555)
    monkeypatch.setenv("STRUCTRNN_CACHE", str(tmp_path / "usercache"))
    try:
        ds = M.MoleculeCSV(data_dir / "mols.csv", "smiles", ["y1"])
        assert sorted(p.name for p in data_dir.iterdir()) == ["mols.csv"]
        assert ds.cache_path.parent == tmp_path / "usercache" / "molecules"
    finally:
        data_dir.chmod(0o755)
    writable = tmp_path / "own"
    writable.mkdir()
    write_csv(writable / "mols.csv", ROWS[:1])
    ds = M.MoleculeCSV(writable / "mols.csv", "smiles", ["y1"])
    assert ds.cache_path.parent == writable / "processed"  # next to the file when allowed


def test_esol_loads(tmp_path):
    root = require_dataset("esol")
    ds = M.MoleculeCSV(root / "delaney-processed.csv", "smiles",
                       ["measured log solubility in mols per litre"], cache_dir=tmp_path)
    assert len(ds) == 1128 and not ds.skipped
    assert ds.smiles[0] == ds.smiles[0].strip()


# --- splits -------------------------------------------------------------------------------------


def test_random_split():
    parts = random_split(101, (0.8, 0.1, 0.1), seed=3)
    assert [len(p) for p in parts] == [80, 10, 11]
    allidx = np.concatenate(parts)
    assert sorted(allidx.tolist()) == list(range(101))
    again = random_split(101, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = random_split(101, (0.8, 0.1, 0.1), seed=4)
    assert not np.array_equal(parts[2], other[2])
    with pytest.raises(ValueError, match="fractions"):
        random_split(10, (0.8, 0.3))


@pytest.mark.parametrize("balanced", [True, False])
def test_scaffold_split(balanced):
    smiles = SMILES * 3
    parts = scaffold_split(smiles, (0.7, 0.15, 0.15), seed=1, balanced=balanced)
    allidx = np.concatenate(parts)
    assert sorted(allidx.tolist()) == list(range(len(smiles)))
    scaffold = [MurckoScaffold.MurckoScaffoldSmiles(mol=Chem.MolFromSmiles(s)) for s in smiles]
    where = {}
    for k, part in enumerate(parts):
        for i in part:
            assert where.setdefault(scaffold[i], k) == k, "a scaffold is in two parts"
    assert len(parts[0]) <= 0.7 * len(smiles) and all(len(p) > 0 for p in parts)
    again = scaffold_split(smiles, (0.7, 0.15, 0.15), seed=1, balanced=balanced)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    if not balanced:  # deterministic scheme: the seed does not matter
        other = scaffold_split(smiles, (0.7, 0.15, 0.15), seed=7, balanced=False)
        assert all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))
        # largest scaffold set (benzene) goes to train first
        assert scaffold.index("c1ccccc1") in parts[0]


def test_scaffold_split_seeds_differ():
    smiles = SMILES * 3
    splits = {tuple(scaffold_split(smiles, seed=s)[2].tolist()) for s in range(5)}
    assert len(splits) > 1


def test_stratified_kfold_balance():
    labels = np.array([1] * 125 + [0] * 63)
    np.random.default_rng(0).shuffle(labels)
    folds = stratified_kfold(labels, k=10, seed=0)
    assert len(folds) == 10
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(188))
    for train, test in folds:
        assert np.intersect1d(train, test).size == 0 and len(train) + len(test) == 188
    for c, total in ((0, 63), (1, 125)):
        counts = [int((labels[te] == c).sum()) for _, te in folds]
        assert sum(counts) == total and max(counts) - min(counts) <= 1
    sizes = [len(te) for _, te in folds]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.array_equal(a[1], b[1]) for a, b in
               zip(folds, stratified_kfold(labels, 10, seed=0), strict=True))
    assert not all(np.array_equal(a[1], b[1]) for a, b in
                   zip(folds, stratified_kfold(labels, 10, seed=1), strict=True))
    with pytest.raises(ValueError, match="k"):
        stratified_kfold([0, 1], k=3)


# --- TU sets and the built-in molecules ---------------------------------------------------------


def test_mutag_from_shared_data(tmp_path):
    from structrnn.datasets.tu import tu_dataset

    root = require_dataset("mutag")
    before = sorted(p.name for p in root.iterdir())
    ds = tu_dataset(root.parent, "MUTAG", cache_dir=tmp_path)
    assert len(ds) == 188 and ds.num_classes == 2
    assert torch.bincount(ds.y).tolist() == [63, 125]  # -1 -> 0 (63), 1 -> 1 (125)
    assert ds.x.shape == (3371, 7) and ds.edge_index.size(1) == 7442
    assert ds.edge_attr.shape == (7442, 4)
    assert sorted(p.name for p in root.iterdir()) == before  # the shared dir is untouched
    assert len(tu_dataset(root.parent, "MUTAG", cache_dir=tmp_path)) == 188  # processed reuse


def test_tu_missing_never_downloads(tmp_path):
    from structrnn.datasets.tu import tu_dataset

    with pytest.raises(FileNotFoundError, match="NOPE_A.txt"):
        tu_dataset(tmp_path, "NOPE", cache_dir=tmp_path)


def test_tu_default_root_is_the_data_root(tmp_path, monkeypatch):
    """No root: $STRUCTRNN_DATA, as every reader (structrnn._paths.data_root)."""
    from structrnn.datasets.tu import tu_dataset

    raw = tmp_path / "data" / "tiny"  # the lower-case layout of shared data folders
    raw.mkdir(parents=True)
    (raw / "TINY_A.txt").write_text("1, 2\n2, 1\n3, 4\n4, 3\n4, 5\n5, 4\n")
    (raw / "TINY_graph_indicator.txt").write_text("1\n1\n2\n2\n2\n")
    (raw / "TINY_graph_labels.txt").write_text("1\n-1\n")
    monkeypatch.setenv("STRUCTRNN_DATA", str(tmp_path / "data"))
    ds = tu_dataset(name="TINY", cache_dir=tmp_path / "cache")
    assert len(ds) == 2 and [g.num_nodes for g in ds] == [2, 3]
    assert sorted(p.name for p in raw.iterdir()) == ["TINY_A.txt", "TINY_graph_indicator.txt",
                                                      "TINY_graph_labels.txt"]
    monkeypatch.setenv("STRUCTRNN_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        tu_dataset(name="TINY", cache_dir=tmp_path / "cache")
    monkeypatch.delenv("STRUCTRNN_DATA")  # then ~/.cache/structrnn, as for SST
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError, match=r"home/\.cache/structrnn"):
        tu_dataset(name="TINY", cache_dir=tmp_path / "cache")


def test_builtin_molecules(tmp_path):
    ds = builtin_molecules("tpsa", max_molecules=40, cache_dir=tmp_path)
    assert len(ds) == 40 and ds.target_names == ["tpsa"]
    for g in ds[:5]:
        expected = rdMolDescriptors.CalcTPSA(Chem.MolFromSmiles(g.smiles))
        assert g.y.item() == pytest.approx(expected, rel=1e-6)
    logp = builtin_molecules("logp", max_molecules=5, cache_dir=tmp_path)
    assert logp.target_names == ["logp"] and len(logp) == 5
    assert builtin_molecules("tpsa", max_molecules=40, cache_dir=tmp_path).cache_hit
    with pytest.raises(ValueError, match="target"):
        builtin_molecules("mass")


def test_molecule_benchmark_runs_with_the_smallest_settings(tmp_path, capsys):
    from structrnn.benchmarks import molecules as bench

    figures = bench.main(["--data", str(tmp_path), "--molecules", "40", "--rounds", "1",
                          "--train-graphs", "16", "--threads", "1"])
    out = capsys.readouterr().out
    assert "ESOL: not found" in out and "40 SMILES (RDKit NCI 40)" in out
    for key in ("structrnn_mol_per_s", "pyg_mol_per_s", "cache_build_mol_per_s",
                "cache_load_mol_per_s", "PyG NNConv + nn.GRU (peer)"):
        assert figures[key] > 0
