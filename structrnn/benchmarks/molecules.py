"""Molecule benchmarks: featurisation speed and training throughput.

1. Featurisation, molecules/s: ``structrnn.datasets.from_smiles`` against PyG's
   ``torch_geometric.utils.from_smiles``, side by side on the same SMILES (ESOL's when
   ``--data`` has it, else RDKit's shipped NCI molecules), alternating rounds.
2. Training, graphs/s: one epoch of the ESOL model (``gn-gru``, and ``mpnn``: the edge-network
   MPNN of structrnn.graphs.models) forward+backward+Adam at batch 32, with PyG's ``NNConv`` +
   ``torch.nn.GRU`` MPNN (the PyG QM9 example) as the peer.

    structrnn bench molecules [--data DATASETS] [--rounds 3] [--threads 1]
    python benchmarks/bench_molecules.py ...    # the same, from a source tree

``--data`` (default ``$STRUCTRNN_DATA``, else ``../shared/datasets`` when present) is the folder
holding ``esol/delaney-processed.csv``; without it the benchmark says so and uses RDKit's
molecules.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
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


def load_smiles(data: str | os.PathLike | None) -> tuple[str, list[str]]:
    """ESOL's SMILES from ``data/esol`` when present, else RDKit's first 1500 NCI molecules."""
    path = Path(data or ".") / "esol" / "delaney-processed.csv"
    if data and path.is_file():
        import csv

        with open(path, newline="") as f:
            return "ESOL", [row["smiles"].strip() for row in csv.DictReader(f)]
    print(f"ESOL: not found ({path if data else 'no --data'}); using RDKit's molecules (pass "
          "--data or set $STRUCTRNN_DATA)")
    from structrnn.datasets.molecules.builtin import builtin_smiles_path

    lines = builtin_smiles_path().read_text().splitlines()
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        smiles = [s.split()[0] for s in lines[:1500] if Chem.MolFromSmiles(s.split()[0])]
    return "RDKit NCI first 1500", smiles


def time_it(fn, smiles: list[str]) -> float:
    start = time.perf_counter()
    for s in smiles:
        fn(s)
    return len(smiles) / (time.perf_counter() - start)


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


def main(argv: list[str] | None = None) -> int:
    """Run from a command line (``argv``, default ``sys.argv[1:]``); prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=default_data(),
                        help="folder with esol/delaney-processed.csv (default $STRUCTRNN_DATA, "
                             "else ../shared/datasets when present)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--train-graphs", type=int, default=640)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from torch_geometric.utils import from_smiles as pyg_from_smiles

    from structrnn.datasets.molecules import from_smiles
    from structrnn.tasks.molecules.task import MoleculeModel

    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print("machine:", machine())
    name, smiles = load_smiles(args.data)
    print(f"\n1. featurisation, {len(smiles)} SMILES from {name} (best of {args.rounds} rounds)")
    ours, theirs = 0.0, 0.0
    for _ in range(args.rounds):  # alternate so that both see the same machine load
        ours = max(ours, time_it(from_smiles, smiles))
        theirs = max(theirs, time_it(pyg_from_smiles, smiles))
    print(f"   structrnn from_smiles : {ours:9.0f} molecules/s  (one-hot float features)")
    print(f"   PyG from_smiles       : {theirs:9.0f} molecules/s  (integer categories)")
    print(f"   ratio ours/PyG        : {ours / theirs:9.2f}x")

    graphs = []
    for s in smiles[:args.train_graphs]:
        g = from_smiles(s)
        g.y = torch.randn(1, 1)
        graphs.append(g)
    node_in, edge_in = graphs[0].x.size(1), graphs[0].edge_attr.size(1)
    print(f"\n2. training, {len(graphs)} graphs, hidden 64, 3 rounds, batch 32, set2set "
          f"(best of {args.rounds} epochs)")
    torch.manual_seed(0)
    models = {"structrnn gn-gru": MoleculeModel(node_in, edge_in, 1, 64, 3, "gn-gru"),
              "structrnn mpnn (edge network)": MoleculeModel(node_in, edge_in, 1, 64, 3, "mpnn"),
              "PyG NNConv + nn.GRU (peer)": PygMPNN(node_in, edge_in, 64, 3)}
    rates = dict.fromkeys(models, 0.0)
    for _ in range(args.rounds):
        for key, model in models.items():
            rates[key] = max(rates[key], train_rate(model, graphs))
    peer = rates["PyG NNConv + nn.GRU (peer)"]
    for key, rate in rates.items():
        print(f"   {key:31s}: {rate:8.0f} graphs/s   ratio to peer {rate / peer:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
