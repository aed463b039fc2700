"""Molecule benchmarks: featurisation speed, the graph cache, and training throughput.

1. Featurisation, molecules/s: ``structrnn.datasets.molecules.from_smiles`` against PyG's
   ``torch_geometric.utils.from_smiles``, side by side on the same SMILES in alternating rounds:
   ``--molecules`` of them (default 20,000): ESOL's and QM9's when ``--data`` has them, RDKit's
   shipped NCI molecules, then random SMILES spellings of those (RDKit ``doRandom``) to reach
   the count.
2. The cache: the same SMILES as a CSV read by ``MoleculeCSV`` twice, the first time
   featurising and writing the cache, the second loading it (molecules/s each).
3. Training, graphs/s: one epoch of the ESOL model (``gn-gru``, and ``mpnn``: the edge-network
   MPNN of structrnn.graphs.models) forward+backward+Adam at batch 32, with PyG's ``NNConv`` +
   ``torch.nn.GRU`` MPNN (the PyG QM9 example) as the peer (``--skip-training`` leaves it out).

    structrnn bench molecules [--data DATASETS] [--molecules 20000] [--rounds 3] [--threads 1]
    python benchmarks/bench_molecules.py ...    # the same, from a source tree

``--data`` (default ``$STRUCTRNN_DATA``, else ``../shared/datasets`` when present) is the folder
holding ``esol/delaney-processed.csv`` and ``qm9/qm9_small_unique.csv``; without it the
benchmark says so and uses RDKit's molecules.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch_geometric.loader import DataLoader

from structrnn.benchmarks import default_data


def machine() -> str:
    return (f"{platform.platform()}; {platform.processor() or platform.machine()}; "
            f"{os.cpu_count()} CPUs; python {platform.python_version()}; "
            f"torch {torch.__version__}; threads {torch.get_num_threads()}")


def _csv_smiles(path: Path, column: str) -> list[str]:
    with open(path, newline="") as f:
        return [row[column].strip() for row in csv.DictReader(f)]


def load_smiles(data: str | os.PathLike | None, count: int = 20_000) -> tuple[str, list[str]]:
    """``count`` SMILES RDKit reads: ESOL's and QM9's (when ``data`` has them), RDKit's NCI
    molecules, then random spellings of the NCI molecules (seeded); and where they came from."""
    from rdkit import Chem, rdBase

    from structrnn.datasets.molecules.builtin import builtin_smiles_path

    sources, smiles = [], []
    for name, rel, column in (("ESOL", "esol/delaney-processed.csv", "smiles"),
                              ("QM9", "qm9/qm9_small_unique.csv", "smiles")):
        path = Path(data or ".") / rel
        if data and path.is_file():
            found = _csv_smiles(path, column)
            smiles += found
            sources.append(f"{name} {len(found)}")
        else:
            print(f"{name}: not found ({path if data else 'no --data'}); pass --data or set "
                  "$STRUCTRNN_DATA")
    with rdBase.BlockLogs():
        mols = []
        for line in builtin_smiles_path().read_text().splitlines():
            if len(smiles) + len(mols) >= count:
                break
            mol = Chem.MolFromSmiles(line.split()[0])
            if mol is not None:
                mols.append(mol)
        smiles += [Chem.MolToSmiles(m) for m in mols]
        sources.append(f"RDKit NCI {len(mols)}")
        start = len(smiles)
        while mols and len(smiles) < count:  # random spellings: new strings, same molecules
            for m in mols[:count - len(smiles)]:
                smiles.append(Chem.MolToSmiles(m, doRandom=True))
        if len(smiles) > start:
            sources.append(f"{len(smiles) - start} random spellings of the NCI molecules")
    return " + ".join(sources), smiles[:count]


def time_it(fn, smiles: list[str]) -> tuple[float, int]:
    """Molecules per second of ``fn`` over ``smiles``, and how many it refused (PyG's
    featuriser raises on atoms outside its vocabularies)."""
    failed = 0
    start = time.perf_counter()
    for s in smiles:
        try:
            fn(s)
        except (ValueError, KeyError, IndexError):
            failed += 1
    return len(smiles) / (time.perf_counter() - start), failed


def featurisation(smiles: list[str], rounds: int) -> dict[str, float]:
    """Section 1: both featurisers, best of ``rounds`` alternating rounds."""
    from rdkit import rdBase
    from torch_geometric.utils import from_smiles as pyg_from_smiles

    from structrnn.datasets.molecules import from_smiles

    ours = theirs = 0.0
    refused = 0
    with rdBase.BlockLogs():
        for _ in range(rounds):  # alternate so that both see the same machine load
            rate, _ = time_it(from_smiles, smiles)
            ours = max(ours, rate)
            rate, refused = time_it(pyg_from_smiles, smiles)
            theirs = max(theirs, rate)
    print(f"   structrnn from_smiles : {ours:9.0f} molecules/s  (one-hot float features, "
          "58 atom + 18 bond columns)")
    print(f"   PyG from_smiles       : {theirs:9.0f} molecules/s  (9 atom + 3 bond integer "
          f"categories; refused {refused})")
    print(f"   ratio ours/PyG        : {ours / theirs:9.2f}x")
    return {"structrnn_mol_per_s": ours, "pyg_mol_per_s": theirs}


def cache(smiles: list[str]) -> dict[str, float]:
    """Section 2: a CSV of ``smiles`` through ``MoleculeCSV``: built (featurised and written to
    the cache), then loaded from the cache."""
    import warnings

    from structrnn.datasets.molecules import MoleculeCSV

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "molecules.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["smiles", "y"])
            writer.writerows([s, 0] for s in smiles)
        rates = {}
        for what in ("build", "load"):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # duplicates and skipped rows: not measured
                ds = MoleculeCSV(path, "smiles", ["y"], cache_dir=Path(tmp) / "cache")
            rates[what] = len(ds) / (time.perf_counter() - start)
            assert ds.cache_hit == (what == "load")
    print(f"   MoleculeCSV, first read (featurise + write the cache): {rates['build']:9.0f} "
          "molecules/s")
    print(f"   MoleculeCSV, second read (from the cache)            : {rates['load']:9.0f} "
          f"molecules/s  ({rates['load'] / rates['build']:.0f}x)")
    return {"cache_build_mol_per_s": rates["build"], "cache_load_mol_per_s": rates["load"]}


class PygMPNN(nn.Module):
    """The peer: PyG's QM9 NNConv example (Gilmer et al.'s edge network + torch.nn.GRU,
    Set2Set readout)."""

    def __init__(self, node_in: int, edge_in: int, hidden: int = 64, steps: int = 3) -> None:
        super().__init__()
        from torch_geometric.nn import NNConv, Set2Set

        self.steps = steps
        self.lin0 = nn.Linear(node_in, hidden)
        net = nn.Sequential(nn.Linear(edge_in, 128), nn.ReLU(), nn.Linear(128, hidden * hidden))
        self.conv = NNConv(hidden, hidden, net, aggr="add")
        self.gru = nn.GRU(hidden, hidden)
        self.set2set = Set2Set(hidden, processing_steps=3)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, data):
        out = torch.relu(self.lin0(data.x))
        h = out.unsqueeze(0)
        for _ in range(self.steps):
            m = torch.relu(self.conv(out, data.edge_index, data.edge_attr))
            out, h = self.gru(m.unsqueeze(0), h)
            out = out.squeeze(0)
        return self.head(self.set2set(out, data.batch))


def train_rate(model: nn.Module, graphs: list, batch_size: int = 32) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loader = DataLoader(graphs, batch_size=batch_size, shuffle=True)
    batches = list(loader)  # collation is not what is measured
    start = time.perf_counter()
    for b in batches:
        opt.zero_grad()
        loss = (model(b).squeeze(-1) - b.y[:, 0]).pow(2).mean()
        loss.backward()
        opt.step()
    return len(graphs) / (time.perf_counter() - start)


def training(smiles: list[str], count: int, rounds: int) -> dict[str, float]:
    """Section 3: graphs/s of one training epoch, ours and the PyG peer."""
    from structrnn.datasets.molecules import from_smiles
    from structrnn.tasks.molecules.model import MoleculeModel

    graphs = []
    for s in smiles[:count]:
        g = from_smiles(s)
        g.y = torch.randn(1, 1)
        graphs.append(g)
    node_in, edge_in = graphs[0].x.size(1), graphs[0].edge_attr.size(1)
    print(f"\n3. training, {len(graphs)} graphs, hidden 64, 3 rounds, batch 32, set2set "
          f"(best of {rounds} epochs)")
    torch.manual_seed(0)
    models = {"structrnn gn-gru": MoleculeModel(node_in, edge_in, 1, 64, 3, "gn-gru"),
              "structrnn mpnn (edge network)": MoleculeModel(node_in, edge_in, 1, 64, 3, "mpnn"),
              "structrnn dmpnn (chemprop)": MoleculeModel(node_in, edge_in, 1, 64, 3, "dmpnn"),
              "PyG NNConv + nn.GRU (peer)": PygMPNN(node_in, edge_in, 64, 3)}
    rates = dict.fromkeys(models, 0.0)
    for _ in range(rounds):
        for key, model in models.items():
            rates[key] = max(rates[key], train_rate(model, graphs))
    peer = rates["PyG NNConv + nn.GRU (peer)"]
    for key, rate in rates.items():
        print(f"   {key:31s}: {rate:8.0f} graphs/s   ratio to peer {rate / peer:5.2f}x")
    return rates


def main(argv: list[str] | None = None) -> dict:
    """Run from a command line (``argv``, default ``sys.argv[1:]``); prints the figures and
    returns them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=default_data(),
                        help="folder with esol/ and qm9/ (default $STRUCTRNN_DATA, else "
                             "../shared/datasets when present)")
    parser.add_argument("--molecules", type=int, default=20_000,
                        help="how many SMILES to featurise")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--train-graphs", type=int, default=640)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from structrnn.benchmarks.trees import machine as machine_info

    info = machine_info(torch.get_num_threads())
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print("machine:", machine())
    if hasattr(os, "getloadavg"):
        print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    name, smiles = load_smiles(args.data, args.molecules)
    print(f"\n1. featurisation, {len(smiles)} SMILES ({name}), best of {args.rounds} rounds")
    figures = featurisation(smiles, args.rounds)
    print(f"\n2. the graph cache, the same {len(smiles)} SMILES as a CSV")
    figures.update(cache(smiles))
    if not args.skip_training:
        figures.update(training(smiles, args.train_graphs, args.rounds))
    if args.json:
        from structrnn.benchmarks.trees import bench_record, write_json

        what = (f"featurisation of {len(smiles):,} SMILES ({name}) into PyG graphs, best of "
                f"{args.rounds} rounds, {info['threads']} thread(s)")
        figure = (f"{figures['structrnn_mol_per_s']:,.0f} molecules/s = "
                  f"{figures['structrnn_mol_per_s'] / figures['pyg_mol_per_s']:.2f}x PyG's "
                  f"from_smiles ({figures['pyg_mol_per_s']:,.0f}/s); the graph cache loads "
                  f"{figures['cache_load_mol_per_s']:,.0f}/s")
        write_json(args.json, bench_record("molecules", argv, info,
                                           [{"what": what, "figure": figure}], results=figures))
    return figures


if __name__ == "__main__":
    main()
