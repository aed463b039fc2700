"""Graph networks on molecules: predict a property from the molecular graph.

With no flags it trains on the molecules RDKit ships, learning their topological polar surface
area (computed by RDKit), and needs nothing else::

    python examples/molecules.py                       # built-in set, R^2 reported
    python examples/molecules.py --dataset esol --data ../shared/datasets --seeds 0,1,2
    python examples/molecules.py --dataset mutag --data ../shared/datasets   # 10-fold CV

Every flag of ``structrnn train molecules`` works here (``--help``). Outputs go to ``--out``
(metrics.json, config.json, checkpoints, scatter.png, atom_contributions.png).
"""

from __future__ import annotations

import sys

from structrnn.tasks.molecules.task import main as task_main

# A fresh clone on a CPU should finish in a few minutes: one seed, a slice of the built-in set.
QUICK = ["--seeds", "0", "--epochs", "15", "--max-molecules", "1500"]


def main(argv: list[str] | None = None) -> dict:
    """Run the molecule task; with no flags, the quick built-in default above."""
    argv = sys.argv[1:] if argv is None else list(argv)
    metrics = task_main(argv if argv else QUICK)
    if metrics["kind"] == "classification":
        acc = metrics["test_accuracy"]
        print(f"{metrics['dataset']}: test accuracy {acc['mean']:.3f} +- {acc['std']:.3f}")
    else:
        for name in metrics["targets"]:
            rmse, r2 = metrics["test_rmse"][name], metrics["test_r2"][name]
            print(f"{metrics['dataset']} {name}: test RMSE {rmse['mean']:.3f} +- "
                  f"{rmse['std']:.3f}, R^2 {r2['mean']:.3f}")
    return metrics


if __name__ == "__main__":
    main()
