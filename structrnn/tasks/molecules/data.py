"""The data of ``structrnn train molecules`` and ``structrnn train tu``: the data set the flags
name (SMILES sets through RDKit, TU graph sets), the kind of its targets, and the units of a
run (one per seed and ensemble member, or per seed, fold and fold model of a TU set) with their
index arrays, and the names of a run's units from its config (:func:`unit_names`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from structrnn._errors import InputError
from structrnn._paths import data_root
from structrnn.training.logging import notice

__all__ = ["Prepared", "prepare", "units", "unit_names", "split_units", "subset", "DATASETS",
           "ESOL_TARGET", "QM9_TARGETS"]

DATASETS = ("builtin", "esol", "qm9", "csv")
ESOL_TARGET = "measured log solubility in mols per litre"
QM9_TARGETS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "u0", "u298", "h298",
               "g298", "cv")


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
    """Settle ``args.kind``, saying why on stderr: a target of 0s and 1s only is a
    classification, any other (integers included: counts, ring numbers ...) a regression unless
    ``--task classification`` says so. The classes per target of a classification."""
    values = ds.y[~torch.isnan(ds.y)]
    integral = bool((values == values.round()).all()) and bool((values >= 0).all())
    binary = values.numel() > 0 and bool(((values == 0) | (values == 1)).all())
    if args.kind is None:
        args.kind = "classification" if binary else "regression"
        why = ("every target is 0 or 1" if binary else "the targets are integers other than "
               "0 and 1 (pass --task classification for classes)" if integral and
               values.numel() else "the targets are numbers")
        notice(f"--task not given: {args.kind}, as {why}")
    if args.kind == "regression":
        return None
    if not integral:
        raise InputError(f"--task classification: the targets {ds.target_names} must be "
                         "class labels 0, 1, 2 ...; they hold other numbers")
    notice(f"--task classification: {', '.join(ds.target_names)} as class labels")
    return [max(2, int(torch.nan_to_num(ds.y[:, t], nan=0).max()) + 1)
            for t in range(ds.y.size(1))]


def prepare(args) -> Prepared:
    """Load the data set named by ``args.dataset``; settles ``args.kind`` (inferred when not
    given) and ``args.split`` (scaffold for a molecule classification, else random)."""
    from structrnn.datasets.molecules import NUM_ATOM_FEATURES, NUM_BOND_FEATURES

    if args.dataset == "mutag":  # a TU set: graph labels are classes
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
    """The units of one seed of a TU set: per outer fold ``--fold-models`` models (or
    ``--fair-repeats`` repeats under ``--protocol fair``), each with another stratified ninth
    of the fold's training part held out to select its epoch (and settings); the test fold is
    predicted by their mean probabilities (the mean of the repeats' accuracies, fair)."""
    from structrnn.datasets.splits import stratified_kfold

    fair = getattr(args, "protocol", "cv") == "fair"  # repeats of the chosen setting
    count = args.fair_repeats if fair else args.fold_models
    out = []
    for fold, (train, test) in enumerate(stratified_kfold(labels, args.folds, seed)):
        inner = stratified_kfold(labels[train], 9, seed)
        for member in range(count):
            inner_tr, inner_val = inner[member]
            tail = f"-rep{member}" if fair else f"-val{member}" if count > 1 else ""
            name = f"seed{seed}-fold{fold}{tail}"
            out.append({"name": name, "seed": seed, "fold": fold, "member": member,
                        "train": train[inner_tr], "val": train[inner_val], "test": test,
                        "init_seed": seed * 1000 + fold + 1_000_000 * member})
    return out


def _member_name(seed: int, member: int, ensemble: int) -> str:
    return f"seed{seed}" + (f"-ens{member}" if ensemble > 1 else "")


def units(args, prep: Prepared) -> list[dict]:
    """One training run per seed (and per fold, and fold member, for TU sets), with its index
    arrays and ``init_seed``, the seed of its weights and batch order.

    With ``--ensemble K`` each seed's split trains K members (chemprop's ensembles): the same
    split, members ``seedS-ens0`` ... ``seedS-ens{K-1}`` with their own weights and batch order
    (``init_seed`` ``1000 S + m``)."""
    from structrnn.datasets.splits import random_split, scaffold_split

    out = []
    n = len(prep.graphs)
    ensemble = getattr(args, "ensemble", 1)
    for seed in args.seeds:
        if args.dataset == "mutag":
            out += _fold_units(args, prep.labels, seed)
            continue
        if (args.split or "random") == "scaffold":
            train, val, test = scaffold_split(prep.smiles, (0.8, 0.1, 0.1), seed)
        else:
            train, val, test = random_split(n, (0.8, 0.1, 0.1), seed)
        for member in range(ensemble):
            out.append({"name": _member_name(seed, member, ensemble), "seed": seed,
                        "member": member, "train": train, "val": val, "test": test,
                        "init_seed": seed * 1000 + member})
    return out


def split_units(names: list[str]) -> dict[str, list[int]]:
    """The positions of ``names`` grouped by the split they share: ``seedS`` for molecules
    (its ensemble members ``seedS-ensM``), ``seedS-foldF`` for TU sets (its fold models
    ``-valK`` or repeats ``-repR``), in order."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        for tail in ("-ens", "-val", "-rep"):
            name = name.split(tail, 1)[0]
        groups.setdefault(name, []).append(i)
    return groups


def unit_names(config: dict) -> list[str]:
    """The units of a run, in training order, from its config.json: ``seedS`` (``seedS-ensM``
    with ``--ensemble``), for TU sets ``seedS-foldF`` (``seedS-foldF-valK`` with several models
    per fold, ``seedS-foldF-repR`` under ``--protocol fair``). What :func:`units` names."""
    seeds = config.get("seeds") or ([config["seed"]] if config.get("seed") is not None else [])
    if config.get("dataset") == "mutag":
        if config.get("protocol") == "fair":
            members = [f"-rep{r}" for r in range(int(config.get("fair_repeats") or 3))]
        else:
            k = int(config.get("fold_models") or 1)
            members = [""] if k == 1 else [f"-val{m}" for m in range(k)]
        return [f"seed{s}-fold{f}{m}" for s in seeds for f in range(int(config.get("folds", 10)))
                for m in members]
    ensemble = int(config.get("ensemble") or 1)
    return [_member_name(s, m, ensemble) for s in seeds for m in range(ensemble)]


def subset(graphs, idx: np.ndarray, u: Tensor | None = None) -> list:
    """The graphs at ``idx``; with ``u`` (num_graphs, D), copies carrying their row as ``u``."""
    if u is None:
        return [graphs[int(i)] for i in idx]
    out = []
    for i in idx:
        g = copy.copy(graphs[int(i)])  # shallow: the stored graph keeps no ``u``
        g.u = u[int(i)].unsqueeze(0)
        out.append(g)
    return out
