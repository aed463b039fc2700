"""Graph networks on molecules, from Python: train a small model, load it, save it to one file,
load that file back and predict new molecules in real units.

    python examples/molecules.py                              # RDKit's shipped molecules: TPSA
    python examples/molecules.py --data ../shared/datasets    # ESOL: log solubility (mol/L)

Two seeds make an ensemble: each prediction comes with ``<target>_std``, the spread of the two
models. An unreadable SMILES gets its reason under ``"error"``; the others are predicted. The
run folder (``--out``) holds what ``structrnn train molecules`` writes, and ``model.pt``. With
the defaults it takes about 15 s on one core.

The NCI molecules are drug-sized: ethanol (TPSA 20.2) and benzene (0) lie outside what the
small model saw, and it over-estimates them; the spread of two seeds does not measure that.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import structrnn
from structrnn.tasks.molecules.task import TASK
from structrnn.training.task import train as train_task

NEW_MOLECULES = ["CCO", "c1ccccc1", "not-a-smiles"]


def main(argv: list[str] | None = None) -> list[dict]:
    """Train, save, load and predict; returns the predictions of :data:`NEW_MOLECULES`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None,
                   help="the folder holding esol/delaney-processed.csv: train on ESOL")
    p.add_argument("--out", default="runs/example-molecules", help="the run folder")
    p.add_argument("--max-molecules", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", default="0,1", help="one model per seed: an ensemble")
    p.add_argument("--hidden", type=int, default=32)
    args = p.parse_args(argv)

    dataset = ["--dataset", "esol", "--data", args.data] if args.data else ["--dataset", "builtin"]
    metrics = train_task(TASK, [*dataset, "--max-molecules", str(args.max_molecules),
                                "--epochs", str(args.epochs), "--seeds", args.seeds, "--hidden",
                                str(args.hidden), "--lr", "3e-3", "--no-progress",
                                "--overwrite", "--out", args.out])
    for name in metrics["targets"]:
        rmse = metrics["test_rmse"][name]
        print(f"trained on {metrics['dataset']}: test RMSE of {name!r} {rmse['mean']:.3f} "
              f"+- {rmse['std']:.3f}")

    predictor = structrnn.load(args.out)           # the run folder: every seed's best model
    path = predictor.save(Path(args.out) / "model.pt")  # one file: weights, scalers, config
    predictor = structrnn.load(path)               # what a user of the model file does
    print(f"{predictor!r} from {path}")
    predictions = predictor.predict(NEW_MOLECULES)
    for row in predictions:
        print(json.dumps(row))
    return predictions


if __name__ == "__main__":
    main()
