"""``structrnn train molecules|tu``: graph networks on molecules and TU graph sets.

Data sets (``--dataset``):

* ``builtin`` (default): RDKit's shipped NCI molecules, target TPSA (or ``--target logp``, or
  ``--target lipinski``: 1 when the molecule breaks at most one of Lipinski's rules, a
  classification) computed by RDKit; random split. Needs nothing but RDKit.
* ``esol``: ``DATA/esol/delaney-processed.csv``, log solubility; random (or scaffold) 80/10/10
  per seed; test RMSE mean +- std over seeds (MoleculeNet protocol).
* ``qm9``: ``DATA/qm9/qm9_small_unique.csv`` (a subset of QM9), the 12 standard targets
  (``--target`` to pick some); MAE per target.
* ``csv``: any MoleculeNet-style CSV (``--csv PATH --smiles-col --target``), one or several
  target columns, empty cells for missing labels.
* ``mutag`` (or any TU name via ``--tu-name``): graph classification, stratified 10-fold CV per
  seed; in each fold a stratified ninth of the training part is held out for model selection
  (the epoch, and with ``--tune`` the hyper-parameters), so the test fold never chooses anything.
  Node labels, continuous node attributes (standardised on the training part), both or neither
  (one-hot degrees) and sets without edge labels all train.

Regression or classification (``--task``): inferred from the targets when not given (every
value an integer 0..9: classification; said in a notice). A classification has one softmax per
target column (binary or multi-class), missing labels left out of the loss, ``--class-weights
balanced`` for rare positives, and reports accuracy, ROC-AUC and PR-AUC per task and averaged;
molecules are then split by Bemis-Murcko scaffold unless ``--split`` says otherwise
(MoleculeNet's practice).

Models (``--model``): ``gn-gru`` (default): a GraphNetwork block whose edge update is an MLP of
``[bond, atom_sender, atom_receiver]`` and whose node update is a GRU cell, run ``--steps`` rounds
with shared weights (Gilmer et al.'s MPNN with a pair message function); ``mpnn``:
:class:`structrnn.graphs.models.MPNN`'s edge network (``A(e) x_sender``) with the GRU update;
``gin``: Xu et al. (2019)'s GIN, ``--steps`` layers, its readout over every layer; ``dmpnn``:
chemprop's directed MPNN (Yang et al. 2019), depth ``--steps``.
Readouts (``--readout``): ``set2set`` (Vinyals et al. 2016), ``sum``, ``mean`` or
``atom-sum`` (an MLP per atom, summed: the prediction is a sum of per-atom contributions, which
are drawn on a molecule). Defaults: ``atom-sum`` for ``builtin``, ``sum`` for ``qm9`` (its
energies scale with the molecule's size) and ``gin``, ``set2set`` otherwise.

Global features (``--global-features rdkit``, SMILES sets other than ``builtin``): RDKit's 2-D
descriptors of each molecule, mapped through their empirical distribution on the training split,
are concatenated to the graph readout, as Chemprop does with ``rdkit_2d_normalized``.

``--tune N`` searches depth, hidden size, dropout, learning rate and epochs with Optuna (N trials,
``--tune-timeout`` seconds at most) for every unit on that unit's validation split, then trains
the unit with the best; the chosen values go to ``config.json`` (``tuned``), so ``--config``
replays the run without searching (:mod:`structrnn.tasks.molecules.tune`).

Regression targets are standardised with the training statistics; the model of the epoch with
the best validation score is the one tested. Training runs in the shared loop
(:func:`structrnn.training.loop.fit`), so every run flag works here (``--amp``, ``--ema``,
``--clip-grad`` (default 10), ``--tensorboard``, ``--resume``, DDP under torchrun). The run folder
holds ``config.json``, ``metrics.json``, ``metrics.jsonl`` (every unit's epochs, with ``unit``),
one folder per seed (and fold) under ``units/NAME/`` with its ``checkpoint.pt``, ``best.pt``
(weights, model arguments, target scaling, featuriser version and descriptor
reference: what ``structrnn.load(RUN)`` predicts with) and ``metrics.jsonl``,
``scatter.png`` and, for ``atom-sum``, ``atom_contributions.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.loader import DataLoader

from structrnn._errors import InputError
from structrnn._paths import data_root
from structrnn.tasks.molecules.metrics import (
    class_weights,
    classification_loss,
    classification_metrics,
    infer_kind,
    regression_metrics,
)
from structrnn.tasks.molecules.model import MODELS, READOUTS, MoleculeModel
from structrnn.training import distributed
from structrnn.training.checkpoint import seed_everything
from structrnn.training.logging import notice
from structrnn.training.loop import FitOptions, FitResult, fit
from structrnn.training.options import add_run_arguments, run_config, set_threads
from structrnn.training.run_folder import RunFolder, open_run

__all__ = ["add_arguments", "run", "main", "DATASETS", "regression_metrics", "fit_unit"]

DATASETS = ("builtin", "esol", "qm9", "csv", "mutag")
ESOL_TARGET = "measured log solubility in mols per litre"
QM9_TARGETS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "u0", "u298", "h298",
               "g298", "cv")
CONFIG_KEYS = ("dataset", "data", "target", "csv", "smiles_col", "tu_name", "split", "folds",
               "seeds", "model", "readout", "global_features", "hidden", "steps", "lr",
               "weight_decay", "dropout", "batch_size", "max_molecules", "kind", "class_weights",
               "no_edge_features", "tune", "tune_timeout", "tuned", "fold_models")
EPOCHS = {"builtin": 30, "esol": 100, "qm9": 60, "csv": 100, "mutag": 100}
# the settings --tune may change, per unit
TUNED_KEYS = ("steps", "hidden", "dropout", "lr", "epochs")


# --- command line -------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from err


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected JSON, got {text!r}") from err


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add this task's flags and the shared run flags to ``p`` (``structrnn train tu`` sets the
    default ``--dataset mutag``)."""
    p.add_argument("--data", default=None,
                   help="root of the data sets: esol/, qm9/, MUTAG/ ... (default "
                        "$STRUCTRNN_DATA)")
    p.add_argument("--dataset", choices=DATASETS, default="builtin")
    p.add_argument("--target", default=None,
                   help="builtin: tpsa|logp|lipinski; qm9: comma-separated targets (default all "
                        "12); csv: comma-separated target columns")
    p.add_argument("--csv", default=None, help="--dataset csv: the CSV file")
    p.add_argument("--smiles-col", default="smiles")
    p.add_argument("--tu-name", default="MUTAG", help="--dataset mutag: which TU set")
    # dest "kind": the command line's own "task" is the sub-command
    p.add_argument("--task", dest="kind", choices=("classification", "regression"),
                   default=None, help="default: inferred from the targets (integer labels "
                                      "0..9: classification)")
    p.add_argument("--class-weights", choices=("none", "balanced"), default="none",
                   help="classification: balanced weighs each class by n / (classes * n_class) "
                        "of the training labels (rare positives count more)")
    p.add_argument("--split", choices=("random", "scaffold"), default=None,
                   help="molecules: default scaffold for a classification, random otherwise")
    p.add_argument("--folds", type=int, default=10, help="TU sets: k of the stratified k-fold")
    p.add_argument("--fold-models", type=int, default=1, metavar="K",
                   help="TU sets: K models per fold, each selected on another ninth of the "
                        "fold's training part; the fold is tested on their mean probabilities")
    p.add_argument("--seeds", type=_int_list, default=None,
                   help="comma-separated seeds, one unit each (default: --seed alone when "
                        "given, else 0,1,2)")
    p.add_argument("--model", choices=MODELS, default="gn-gru")
    p.add_argument("--readout", choices=READOUTS, default=None,
                   help="default atom-sum for builtin, sum for qm9 and gin, set2set otherwise")
    p.add_argument("--global-features", choices=("none", "rdkit"), default="none",
                   help="rdkit: RDKit's 2-D descriptors of each molecule, CDF-normalised on the "
                        "training set, join the readout (Chemprop's rdkit_2d_normalized)")
    p.add_argument("--no-edge-features", action="store_true",
                   help="the models see no bond / edge features (a constant instead)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="message-passing rounds (GIN: layers)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-molecules", type=int, default=None,
                   help="use only the first N molecules/graphs (tiny runs)")
    p.add_argument("--tune", type=int, default=0, metavar="N",
                   help="search steps, hidden, dropout, lr and epochs with Optuna: N trials per "
                        "unit on its validation split (pip install 'structrnn[tune]')")
    p.add_argument("--tune-timeout", type=float, default=None, metavar="SECONDS",
                   help="--tune: stop each unit's search after this long")
    p.add_argument("--tuned", type=_json, default=None, help=argparse.SUPPRESS)
    add_run_arguments(p, out="runs/molecules", epochs=None, seed=None)
    p.set_defaults(clip_grad=10.0)
    for action in p._actions:  # the task's own defaults, in the shared flags' help
        if action.dest == "epochs":
            action.help = ("default: 30 (builtin), 100 (esol), 60 (qm9), 100 (mutag); with "
                           "--tune the most a trial may train")
        if action.dest == "out":
            action.default, action.help = None, "run folder (default runs/molecules-DATASET)"
    return p


def main(argv: list[str] | None = None) -> dict:
    """``python -m structrnn.tasks.molecules.task [flags]``."""
    parser = add_arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    return run(parser.parse_args(argv))


# --- data ---------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """A loaded data set and what the models and metrics need to know of it.

    ``graphs``: indexable collection of Data; ``kind``: "regression" or "classification";
    ``classes``: per target its number of classes (classification); ``labels``: (G,) the class
    of each TU graph (stratification); ``descriptors``: (G, D) raw RDKit descriptors;
    ``model_extra``: further :class:`MoleculeModel` arguments (node encoding, scaled columns).
    """

    graphs: Any
    kind: str
    target_names: list[str]
    node_in: int
    edge_in: int
    out_channels: int
    smiles: list[str] | None
    labels: np.ndarray | None = None
    descriptors: Tensor | None = None
    classes: list[int] | None = None
    model_extra: dict[str, Any] | None = None


def _root(args) -> Path:
    root = data_root(args.data)
    if not root.is_dir():
        raise InputError(f"--dataset {args.dataset}: no data folder {root} (pass --data ROOT or "
                         "set STRUCTRNN_DATA to the folder holding esol/, qm9/, MUTAG/ ...)")
    return root


def _targets(args, default: list[str]) -> list[str]:
    return [t.strip() for t in args.target.split(",")] if args.target else default


def _prepare_tu(args) -> Prepared:
    from structrnn.datasets.tu import load_tu

    if args.global_features != "none":
        raise InputError("--global-features rdkit needs molecules given as SMILES; "
                         f"the TU set {args.tu_name} has none")
    if args.kind == "regression":
        raise InputError("--task regression: TU sets are graph classifications")
    try:
        ds, info = load_tu(_root(args), args.tu_name)
    except ValueError as err:
        raise InputError(str(err)) from err
    notice(info.describe())
    if args.max_molecules:
        ds = ds[:args.max_molecules]
    args.kind = "classification"
    edge_in = 0 if args.no_edge_features else info.edge_features
    extra = {"node_encoding": "degree" if info.max_degree is not None else "features",
             "node_scale": info.node_attributes,
             "edge_scale": 0 if args.no_edge_features else info.edge_attributes}
    return Prepared(ds, "classification", ["class"], info.node_features, edge_in,
                    info.classes, None, ds.y.numpy(), classes=[info.classes], model_extra=extra)


def _molecules(args):
    """The molecule set of ``args.dataset`` (MoleculeGraphs)."""
    from structrnn.datasets.molecules import MoleculeCSV

    if args.dataset == "builtin":
        from structrnn.datasets.molecules.builtin import builtin_molecules

        if args.global_features != "none":
            raise InputError("--global-features rdkit: the builtin targets are RDKit "
                             "descriptors themselves, so the model would be handed the answer")
        try:
            return builtin_molecules(args.target or "tpsa", max_molecules=args.max_molecules)
        except ValueError as err:
            raise InputError(f"--target: {err}") from err
    if args.dataset == "esol":
        path, targets = _root(args) / "esol" / "delaney-processed.csv", [ESOL_TARGET]
    elif args.dataset == "qm9":
        path = _root(args) / "qm9" / "qm9_small_unique.csv"
        targets = _targets(args, list(QM9_TARGETS))
    else:
        if not args.csv or not args.target:
            raise InputError("--dataset csv needs --csv PATH and --target COLUMN[,COLUMN]")
        path, targets = Path(args.csv), _targets(args, [])
    ds = MoleculeCSV(path, args.smiles_col, targets)
    if args.max_molecules:
        ds.graphs, ds.smiles, ds.y = (ds.graphs[:args.max_molecules],
                                      ds.smiles[:args.max_molecules],
                                      ds.y[:args.max_molecules])
    return ds


def _kind(args, ds) -> list[int] | None:
    """Settle ``args.kind`` (inferred when not given, with a notice); the classes per target
    of a classification."""
    kind, classes, reason = infer_kind(ds.y, ds.target_names)
    if args.kind is None:
        args.kind = kind
        notice(f"--task not given: {kind}, as {reason} (pass --task to choose)")
    if args.kind == "regression":
        return None
    if classes is None:
        values = ds.y[~torch.isnan(ds.y)]
        if not bool((values == values.round()).all()) or float(values.min()) < 0:
            raise InputError(f"--task classification: the targets {ds.target_names} must be "
                             "class labels 0, 1, 2 ...; they hold other numbers")
        classes = [max(2, int(torch.nan_to_num(ds.y[:, t], nan=0).max()) + 1)
                   for t in range(ds.y.size(1))]
    return classes


def prepare(args) -> Prepared:
    """Load the data set named by ``args.dataset``; settles ``args.kind`` (inferred when not
    given) and ``args.split`` (scaffold for a molecule classification, else random)."""
    from structrnn.datasets.molecules import NUM_ATOM_FEATURES, NUM_BOND_FEATURES

    if args.dataset == "mutag":
        return _prepare_tu(args)
    ds = _molecules(args)
    classes = _kind(args, ds)
    if args.split is None:
        args.split = "scaffold" if classes is not None else "random"
    descriptors = None
    if args.global_features == "rdkit":
        from structrnn.datasets.molecules.descriptors import rdkit_descriptors

        descriptors, _ = rdkit_descriptors(ds.smiles, progress=not args.no_progress)
    edge_in = 0 if args.no_edge_features else NUM_BOND_FEATURES
    out = len(ds.target_names) if classes is None else sum(classes)
    return Prepared(ds, args.kind, ds.target_names, NUM_ATOM_FEATURES, edge_in, out, ds.smiles,
                    descriptors=descriptors, classes=classes)


def _fold_units(args, labels: np.ndarray, seed: int) -> list[dict]:
    """The units of one seed of a TU set: per outer fold ``--fold-models`` models, each with
    another stratified ninth of the fold's training part held out to select its epoch (and
    settings); the test fold is predicted by their mean probabilities."""
    from structrnn.datasets.splits import stratified_kfold

    out = []
    for fold, (train, test) in enumerate(stratified_kfold(labels, args.folds, seed)):
        inner = stratified_kfold(labels[train], 9, seed)
        for member in range(args.fold_models):
            inner_tr, inner_val = inner[member]
            name = f"seed{seed}-fold{fold}" + (f"-val{member}" if args.fold_models > 1 else "")
            out.append({"name": name, "seed": seed, "fold": fold, "member": member,
                        "train": train[inner_tr], "val": train[inner_val], "test": test})
    return out


def unit_seed(unit: dict) -> int:
    """The seed of a unit's weights and batch order: its seed, fold and fold member."""
    return unit["seed"] * 1000 + unit.get("fold", 0) + 1_000_000 * unit.get("member", 0)


def units(args, prep: Prepared) -> list[dict]:
    """One training run per seed (and per fold, and fold member, for TU sets), with its index
    arrays."""
    from structrnn.datasets.splits import random_split, scaffold_split

    out = []
    n = len(prep.graphs)
    for seed in args.seeds:
        if args.dataset == "mutag":
            out += _fold_units(args, prep.labels, seed)
        else:
            if (args.split or "random") == "scaffold":
                train, val, test = scaffold_split(prep.smiles, (0.8, 0.1, 0.1), seed)
            else:
                train, val, test = random_split(n, (0.8, 0.1, 0.1), seed)
            out.append({"name": f"seed{seed}", "seed": seed, "train": train, "val": val,
                        "test": test})
    return out


def _subset(graphs, idx: np.ndarray, u: Tensor | None = None) -> list:
    """The graphs at ``idx``; with ``u`` (num_graphs, D), copies carrying their row as ``u``."""
    if u is None:
        return [graphs[int(i)] for i in idx]
    out = []
    for i in idx:
        g = copy.copy(graphs[int(i)])  # shallow: the stored graph keeps no ``u``
        g.u = u[int(i)].unsqueeze(0)
        out.append(g)
    return out


@torch.no_grad()
def predict(model: nn.Module, loader, device) -> tuple[Tensor, Tensor]:
    """(M, out) the model's outputs and (M, ...) the targets of every batch of ``loader``."""
    model.eval()
    preds, ys = [], []
    for batch in loader:
        batch = batch.to(device)
        preds.append(model(batch).cpu())
        ys.append(batch.y.cpu())
    return torch.cat(preds), torch.cat(ys)


def _column_stats(values: list[Tensor], width: int) -> tuple[Tensor, Tensor] | None:
    """Mean and (population) standard deviation of the first ``width`` columns."""
    if not width:
        return None
    stacked = torch.cat([v[:, :width] for v in values]).double()
    return stacked.mean(0).float(), stacked.std(0, unbiased=False).float()


# --- training one unit --------------------------------------------------------------------------


class Unit:
    """One seed (and fold): its data, target scaling and model; trained by :func:`fit`."""

    def __init__(self, args, prep: Prepared, unit: dict, device) -> None:
        self.args, self.prep, self.unit, self.device = args, prep, unit, device
        u = None
        if prep.descriptors is not None:
            from structrnn.datasets.molecules.descriptors import cdf_normalise

            # the distribution comes from the training molecules only
            self.reference = prep.descriptors[unit["train"]]
            u = cdf_normalise(prep.descriptors, self.reference)
        self.train_set = _subset(prep.graphs, unit["train"], u)
        self.val_set = _subset(prep.graphs, unit["val"], u)
        self.test_set = _subset(prep.graphs, unit["test"], u)
        self.mean = self.std = None
        self.weights = None
        if prep.kind == "regression":
            y = torch.cat([g.y for g in self.train_set])
            self.mean = torch.nanmean(y, 0)
            std = torch.sqrt(torch.nanmean((y - self.mean) ** 2, 0))
            self.std = torch.where(std > 0, std, torch.ones_like(std))
        elif getattr(args, "class_weights", "none") == "balanced":
            self.weights = class_weights(torch.cat([g.y for g in self.train_set]),
                                         prep.classes)
        self.model = MoleculeModel(**self.model_args()).to(device)
        extra = prep.model_extra or {}
        if extra.get("node_scale") or extra.get("edge_scale"):
            # continuous attributes standardised with the training graphs' statistics only
            self.model.set_scaling(
                _column_stats([g.x for g in self.train_set], extra["node_scale"]),
                _column_stats([g.edge_attr for g in self.train_set], extra["edge_scale"]))

    def batches(self, epoch: int):
        """This process's shuffled batches; the order is seeded by the unit's seed and the
        epoch, so a resumed run draws the same batches."""
        seed = unit_seed(self.unit)
        return distributed.distributed_loader(
            self.train_set, self.args.batch_size, shuffle=True, seed=seed, epoch=epoch,
            loader_class=DataLoader, generator=torch.Generator().manual_seed(seed + epoch))

    def loss(self, model: nn.Module, batch) -> tuple[Tensor, Tensor]:
        """The summed loss over this process's targets scaled to the global batch mean."""
        out = model(batch).float()
        if self.prep.kind == "classification":
            loss_sum, count = classification_loss(out, batch.y, self.prep.classes, self.weights)
        else:
            target = (batch.y - self.mean.to(out.device)) / self.std.to(out.device)
            mask = ~torch.isnan(target)
            loss_sum = (out[mask] - target[mask]).pow(2).sum()
            count = mask.sum()
        if not distributed.is_distributed():
            loss = loss_sum / count.clamp(min=1)
            return loss, loss.detach()
        return distributed.global_mean_loss(loss_sum, count)

    def evaluate(self, model: nn.Module, graphs) -> dict[str, Any]:
        """The figures of ``model`` on ``graphs``: RMSE, MAE and R^2 per target (regression) or
        :func:`~structrnn.tasks.molecules.metrics.classification_metrics`, with the
        predictions (``pred`` in real units, or the logits) and ``true``."""
        pred, y = predict(model, DataLoader(graphs, batch_size=self.args.batch_size),
                          self.device)
        if self.prep.kind == "classification":
            m = classification_metrics(pred, y, self.prep.target_names, self.prep.classes)
        else:
            pred = pred * self.std + self.mean
            m = regression_metrics(pred, y, self.prep.target_names)
        m["pred"], m["true"] = pred, y
        return m

    def score(self, metrics: dict) -> float:
        """Lower is better: the validation error (mean standardised MAE for multi-target sets);
        for a TU set minus the accuracy, for molecules minus the mean ROC-AUC."""
        if self.prep.kind == "classification":
            if self.args.dataset == "mutag":
                # accuracy first; the (small-weighted) loss breaks the many ties of a small set
                return -metrics["mean_accuracy"] + 1e-3 * min(metrics["loss"], 100.0)
            auc = metrics["mean_roc_auc"]
            # a validation split with one class only has no AUC: the loss decides
            return metrics["loss"] if math.isnan(auc) else -auc
        names = self.prep.target_names
        if len(names) == 1:
            return metrics["rmse"][names[0]]
        scaled = [metrics["mae"][n] / float(s) for n, s in zip(names, self.std, strict=True)]
        return float(np.mean(scaled))

    def validate(self, model: nn.Module) -> dict[str, float]:
        val = self.evaluate(model, self.val_set)
        figures = {"val_score": self.score(val)}
        if self.prep.kind == "classification":
            figures["val_accuracy"] = val["mean_accuracy"]
            figures["val_roc_auc"] = val["mean_roc_auc"]
            if self.args.dataset == "mutag" and self.test_set:
                # the held-out fold's accuracy per epoch, for the GIN-paper protocol (see
                # summarise); never used to select anything
                figures["test_accuracy"] = self.evaluate(model, self.test_set)["mean_accuracy"]
        return figures

    def model_args(self) -> dict[str, Any]:
        """The :class:`MoleculeModel` arguments of this unit (what rebuilds it to predict)."""
        return {"node_in": self.prep.node_in, "edge_in": self.prep.edge_in,
                "out_channels": self.prep.out_channels, "hidden": self.args.hidden,
                "steps": self.args.steps, "model": self.args.model,
                "readout": self.args.readout, "dropout": self.args.dropout,
                "global_in": 0 if self.prep.descriptors is None
                else int(self.prep.descriptors.size(1)), **(self.prep.model_extra or {})}

    def best_extra(self) -> dict:
        """What predicting in real units needs, saved beside the best weights: the model's
        arguments, the target names and scaling (or classes), the featuriser version (SMILES
        sets) and the descriptor reference (``--global-features rdkit``)."""
        extra: dict[str, Any] = {"target_names": self.prep.target_names,
                                 "kind": self.prep.kind, "model_args": self.model_args()}
        if self.prep.classes is not None:
            extra["classes"] = list(self.prep.classes)
        if self.prep.smiles is not None:
            from structrnn.datasets.molecules.graphs import FEATURISER_VERSION

            extra["featuriser"] = FEATURISER_VERSION
        if self.mean is not None:
            extra["target_mean"], extra["target_std"] = self.mean, self.std
        if self.prep.descriptors is not None:
            extra["descriptor_reference"] = self.reference
        return extra

    def result(self, fitted: FitResult) -> dict:
        """This unit's entry of metrics.json."""
        test = self.evaluate(fitted.model, self.test_set)
        history = fitted.history
        result: dict[str, Any] = {
            "unit": self.unit["name"], "seed": self.unit["seed"],
            "best_epoch": fitted.best_epoch, "best_val_score": fitted.best_score,
            "train_loss_first": history[0]["train_loss"] if history else None,
            "train_loss_last": history[-1]["train_loss"] if history else None,
            "epoch_seconds": (float(np.mean([h["epoch_seconds"] for h in history]))
                              if history else None),
            "sizes": [len(self.unit[k]) for k in ("train", "val", "test")],
        }
        if "fold" in self.unit:
            result["fold"] = self.unit["fold"]
            result["test_accuracy"] = test["mean_accuracy"]
            result["test_roc_auc"] = test["mean_roc_auc"]
            result["test_accuracy_by_epoch"] = [h["test_accuracy"] for h in history]
            result["test_pred"] = test["pred"].tolist()  # for the fold's ensemble
            result["test_true"] = test["true"].tolist()
            return result
        keys = (("accuracy", "roc_auc", "pr_auc") if self.prep.kind == "classification"
                else ("rmse", "mae", "r2"))
        for k in keys:
            result[f"test_{k}"] = test[k]
        if self.prep.kind == "classification":
            for k in keys:
                result[f"test_mean_{k}"] = test[f"mean_{k}"]
        result["test_pred"] = test["pred"].tolist()
        result["test_true"] = test["true"].tolist()
        result["test_index"] = [int(i) for i in self.unit["test"]]
        return result


def fit_unit(args, prep: Prepared, unit: dict, folder: RunFolder, device, *,
             report=None) -> tuple[FitResult, Unit]:
    """Seed, build and train one unit in ``folder/units/NAME``.

    ``report``: ``figures -> None`` called with the validation figures after every epoch
    (the tuner's pruning hook; it may raise to stop the training).
    """
    seed_everything(unit_seed(unit))
    work = Unit(args, prep, unit, device)
    optimizer = torch.optim.Adam(work.model.parameters(), lr=args.lr,
                                 weight_decay=args.weight_decay)
    # cosine decay to a tenth of the learning rate over the run
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs,
                                                           eta_min=args.lr / 10)

    def validate(model: nn.Module) -> dict[str, float]:
        figures = work.validate(model)
        if report is not None:
            report(figures)
        return figures

    fitted = fit(work.model, optimizer, train_batches=work.batches, loss=work.loss,
                 validate=validate, folder=folder.unit(unit["name"]),
                 options=FitOptions.from_args(args), device=device,
                 config=run_config(args, CONFIG_KEYS, task_name(args)), select="val_score",
                 mode="min", scheduler=scheduler,
                 resume=getattr(args, "resume", False), best_extra=work.best_extra,
                 desc=f"{unit['name']}: ", prefix="")
    work.model = fitted.model
    return fitted, work


def unit_settings(args, prep: Prepared, unit: dict, folder: RunFolder, device) \
        -> argparse.Namespace:
    """``args`` with this unit's tuned settings: those of ``args.tuned`` (a replayed or resumed
    run), else a fresh search with ``--tune N`` (saved to config.json at once)."""
    tuned = (args.tuned or {}).get(unit["name"])
    if tuned is None and args.tune:
        from structrnn.tasks.molecules.tune import search

        if distributed.is_distributed():  # each process would search on its own clock
            raise InputError("--tune runs in one process: tune without torchrun, then replay "
                             "the run with --config RUN/config.json under torchrun")

        tuned = search(args, prep, unit, device)
        args.tuned = {**(args.tuned or {}), unit["name"]: tuned}
        folder.write_config(run_config(args, CONFIG_KEYS, task_name(args)))
    if not tuned:
        return args
    return argparse.Namespace(**{**vars(args), **{k: tuned[k] for k in TUNED_KEYS
                                                 if k in tuned}})


def train_unit(args, prep: Prepared, unit: dict, folder: RunFolder, device) -> tuple[dict, Unit]:
    """Tune (when asked), seed, build and train one unit in its own folder; returns its result
    and the unit."""
    began = time.perf_counter()
    settings = unit_settings(args, prep, unit, folder, device)
    tune_seconds = time.perf_counter() - began
    fitted, work = fit_unit(settings, prep, unit, folder, device)
    if not distributed.is_main():
        return {}, work
    result = work.result(fitted)
    result["settings"] = {k: getattr(settings, k) for k in TUNED_KEYS}
    if args.tune:
        result["tune_seconds"] = tune_seconds
    return result, work


# --- the run ------------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0}


def fold_figures(names: list[str], preds: list, trues: list) -> list[dict]:
    """Per outer fold of a TU run (units named ``seedS-foldF`` or ``seedS-foldF-valK``): the
    test accuracy and ROC-AUC of its models' mean class probabilities. ``preds`` holds each
    unit's test logits (M, C), ``trues`` its test labels (M,)."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name.rsplit("-val", 1)[0], []).append(i)
    out = []
    for fold, members in groups.items():
        probs = torch.stack([torch.softmax(torch.as_tensor(preds[i], dtype=torch.float), 1)
                             for i in members]).mean(0)
        # the mean probability as logits: classification_metrics applies a softmax again
        m = classification_metrics(probs.clamp(min=1e-12).log(), torch.as_tensor(trues[members[0]]),
                                   ["class"], [probs.size(1)])
        out.append({"fold": fold, "models": len(members), "accuracy": m["mean_accuracy"],
                    "roc_auc": m["mean_roc_auc"]})
    return out


def _gin_protocol(args, results: list[dict]) -> dict:
    """Xu et al. (2019)'s protocol picks one epoch for all folds by the mean accuracy of the
    held-out folds, which peeks at them; reported for comparison with the literature only."""
    # tuned units may train for different numbers of epochs: the epochs they all have
    length = min(len(r["test_accuracy_by_epoch"]) for r in results)
    curves = np.array([r["test_accuracy_by_epoch"][:length] for r in results])
    per_seed = {}
    for seed in args.seeds:
        rows = curves[[r["seed"] == seed for r in results]]
        best = int(rows.mean(0).argmax())
        per_seed[seed] = {"epoch": best + 1, "mean": float(rows[:, best].mean()),
                          "std": float(rows[:, best].std(ddof=1)) if len(rows) > 1 else 0.0}
    return per_seed


def summarise(args, prep: Prepared, results: list[dict]) -> dict[str, Any]:
    """metrics.json: per-unit results and the mean +- std over seeds (or folds)."""
    metrics: dict[str, Any] = {
        "dataset": args.dataset, "kind": prep.kind, "targets": prep.target_names,
        "model": args.model, "readout": args.readout,
        "split": f"stratified {args.folds}-fold" if args.dataset == "mutag" else args.split,
        "seeds": args.seeds, "num_graphs": len(prep.graphs),
        "epoch_seconds": float(np.mean([r["epoch_seconds"] for r in results])),
        "best_epoch": [r["best_epoch"] for r in results],
        # what the validation splits chose, per unit: the epoch and the (tuned) settings
        "chosen": [{"unit": r["unit"], "epoch": r["best_epoch"], **r["settings"]}
                   for r in results],
        "units": [{k: v for k, v in r.items() if not k.startswith("test_pred")
                   and k not in ("test_true", "test_index")} for r in results],
    }
    if prep.classes is not None:
        metrics["classes"] = prep.classes
    if args.tune:
        metrics["tune_seconds"] = float(sum(r.get("tune_seconds", 0.0) for r in results))
    if args.dataset == "mutag":
        folds = fold_figures([r["unit"] for r in results], [r["test_pred"] for r in results],
                             [r["test_true"] for r in results])
        metrics["folds"] = folds
        metrics["test_accuracy"] = _mean_std([f["accuracy"] for f in folds])
        metrics["test_roc_auc"] = _mean_std([f["roc_auc"] for f in folds])
        if args.fold_models > 1:  # the single models, for comparison with the ensembles
            metrics["test_accuracy_single_models"] = _mean_std([r["test_accuracy"]
                                                                for r in results])
        metrics["test_accuracy_gin_protocol"] = _gin_protocol(args, results)
        return metrics
    keys = (("accuracy", "roc_auc", "pr_auc") if prep.kind == "classification"
            else ("rmse", "mae", "r2"))
    for k in keys:
        metrics[f"test_{k}"] = {name: _mean_std([r[f"test_{k}"][name] for r in results])
                                for name in prep.target_names}
        if prep.kind == "classification":
            metrics[f"test_mean_{k}"] = _mean_std([r[f"test_mean_{k}"] for r in results])
    return metrics


def _scatter_png(path: Path, prep: Prepared, results: list[dict]) -> None:
    from structrnn.viz import pyplot, save_figure

    plt = pyplot()
    names = prep.target_names
    cols = min(len(names), 4)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for t, name in enumerate(names):
        ax = axes[t // cols][t % cols]
        for r in results:
            p, y = np.asarray(r["test_pred"])[:, t], np.asarray(r["test_true"])[:, t]
            ax.scatter(y, p, s=8, alpha=0.6, label=f"seed {r['seed']}")
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        rmse = np.mean([r["test_rmse"][name] for r in results])
        ax.set_title(f"{name[:60]}\ntest RMSE {rmse:.3f}", fontsize=9)
        ax.set_xlabel("measured")
        ax.set_ylabel("predicted")
    for t in range(len(names), rows * cols):
        axes[t // cols][t % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path, dpi=110)


def _atom_png(path: Path, work: Unit) -> None:
    """Draw the first test molecule with each atom coloured by its contribution."""
    from rdkit import Chem
    from rdkit.Chem.Draw import SimilarityMaps, rdMolDraw2D
    from torch_geometric.data import Batch

    from structrnn._io import atomic_write

    graph = work.test_set[0]
    work.model.eval()
    with torch.no_grad():
        c = work.model.atom_contributions(Batch.from_data_list([graph]).to(work.device))
    # in target units: y = std * sum_v c_v + mean; spread the mean evenly over the atoms
    contrib = (c[:, 0].cpu() * work.std[0] + work.mean[0] / graph.num_nodes).tolist()
    mol = Chem.MolFromSmiles(graph.smiles.strip())
    for atom, w in zip(mol.GetAtoms(), contrib, strict=True):
        atom.SetProp("atomNote", f"{w:.1f}")
    drawer = rdMolDraw2D.MolDraw2DCairo(500, 400)
    SimilarityMaps.GetSimilarityMapFromWeights(mol, contrib, draw2d=drawer)
    drawer.FinishDrawing()
    data = drawer.GetDrawingText()
    atomic_write(path, lambda f: f.write(data))


def task_name(args: argparse.Namespace) -> str:
    """``tu`` for a TU graph set, ``molecules`` for SMILES (what ``structrnn.load`` reads)."""
    return "tu" if args.dataset == "mutag" else "molecules"


def resolve_defaults(args: argparse.Namespace) -> None:
    """The defaults that depend on the data set, and the seeds (``--seeds``, else ``--seed``,
    else 0, 1, 2)."""
    if args.epochs is None:
        args.epochs = EPOCHS[args.dataset]
    if args.readout is None:
        # QM9's energies grow with the molecule: a sum keeps that, set2set (mean-like) loses it
        args.readout = ("sum" if args.model == "gin" else
                        {"builtin": "atom-sum", "qm9": "sum"}.get(args.dataset, "set2set"))
    if args.model == "gin" and args.readout not in ("sum", "mean"):
        raise InputError(f"--readout {args.readout}: GIN pools every layer by sum or mean")
    if args.epochs < 1:
        raise InputError(f"--epochs: expected >= 1, got {args.epochs}")
    if args.tune < 0 or (args.tune_timeout is not None and args.tune_timeout <= 0):
        raise InputError(f"--tune {args.tune} / --tune-timeout {args.tune_timeout}: expected "
                         "a number of trials >= 0 and a positive number of seconds")
    if not 1 <= args.fold_models <= 9:
        raise InputError(f"--fold-models: expected 1..9 (one per ninth of the training part), "
                         f"got {args.fold_models}")
    if args.seeds is None:
        args.seeds = [args.seed] if args.seed is not None else [0, 1, 2]
    if not args.seeds:
        raise InputError("--seeds: expected at least one seed")
    args.seed = args.seeds[0]
    if args.out is None:
        args.out = f"runs/molecules-{args.dataset}"


def run(args: argparse.Namespace) -> dict:
    """Train and evaluate as ``args`` says; returns (and writes) the metrics."""
    resolve_defaults(args)
    set_threads(args.threads)
    with distributed.process_group(args.device) as device:
        return _run(args, device)


def _previous_tuning(args: argparse.Namespace) -> None:
    """A resumed run keeps the settings its units were tuned with (in its config.json)."""
    config = Path(args.out) / "config.json"
    if args.resume and args.tuned is None and config.is_file():
        args.tuned = json.loads(config.read_text()).get("tuned")


def _run(args: argparse.Namespace, device) -> dict:
    prep = prepare(args)  # first: it settles --task and --split, which config.json records
    _previous_tuning(args)
    folder = open_run(args.out, run_config(args, CONFIG_KEYS, task_name(args)), args.resume,
                      args.overwrite, args.tensorboard)
    results, works = [], []
    for unit in units(args, prep):
        result, work = train_unit(args, prep, unit, folder, device)
        results.append(result)
        works.append(work)
        # the run's log: every unit's epochs so far, each line naming its unit
        folder.rewrite_log([{"unit": r["unit"], **line} for r in results
                            for line in folder.unit(r["unit"]).read_log()] if
                           distributed.is_main() else [])
    if not distributed.is_main():
        return distributed.broadcast_object(None)
    metrics = summarise(args, prep, results)
    folder.write_metrics(metrics)
    if prep.kind == "regression":
        folder.picture("scatter.png", lambda path: _scatter_png(path, prep, results))
        if args.readout == "atom-sum" and prep.smiles is not None:
            folder.picture("atom_contributions.png", lambda path: _atom_png(path, works[0]))
    return distributed.broadcast_object(metrics)


if __name__ == "__main__":
    main()
