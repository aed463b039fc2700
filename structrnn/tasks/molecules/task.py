"""``structrnn train molecules`` and ``structrnn train tu``: graph networks on molecules and on
TU graph sets.

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

``structrnn train tu --name MUTAG`` (any TU set): graph classification, stratified 10-fold CV per
seed; in each fold a stratified ninth of the training part is held out for model selection (the
epoch, and with ``--tune`` the hyper-parameters), so the test fold never chooses anything. Node
labels, continuous node attributes (standardised on the training part), both or neither (one-hot
degrees) and sets without edge labels all train. TU graph labels are always classes.

Regression or classification (``--task``): when not given, a target of 0s and 1s only is a
classification; any other target, integers (counts) included, a regression; stderr says which
and why. A classification has one softmax per
target column (binary or multi-class), missing labels left out of the loss, ``--class-weights
balanced`` for rare positives, and reports accuracy, ROC-AUC and PR-AUC per task and averaged;
molecules are then split by Bemis-Murcko scaffold unless ``--split`` says otherwise
(MoleculeNet's practice).

Models (``--model``): ``gn-gru`` (the default of ``train tu``): a GraphNetwork block whose edge
update is an MLP of ``[bond, atom_sender, atom_receiver]`` and whose node update is a GRU cell,
run ``--steps`` rounds with shared weights (Gilmer et al.'s MPNN with a pair message
function); ``mpnn``: :class:`structrnn.graphs.models.MPNN`'s edge network (``A(e) x_sender``)
with the GRU update; ``gin``: Xu et al. (2019)'s GIN, ``--steps`` layers, its readout over
every layer; ``dmpnn`` (the default of ``train molecules``): chemprop's directed MPNN (Yang et
al. 2019), depth ``--steps``.
Readouts (``--readout``): ``set2set`` (Vinyals et al. 2016), ``sum``, ``mean`` or
``atom-sum`` (an MLP per atom, summed: the prediction is a sum of per-atom contributions, which
are drawn on a molecule). Defaults: ``atom-sum`` for ``builtin``, ``sum`` for ``qm9`` (its
energies scale with the molecule's size) and ``gin``, ``set2set`` otherwise.

Global features (``--global-features rdkit``, the default for SMILES sets other than
``builtin``): RDKit's 2-D descriptors of each molecule, mapped through their empirical
distribution on the training split, are concatenated to the graph readout, as Chemprop does with
``rdkit_2d_normalized``. ``dmpnn`` with descriptors became the default after it beat ``gn-gru``
without them on the validation splits of ESOL (random) and the QM9 subset, and ``gn-gru`` with
them narrowly on QM9 while tying on ESOL's scaffold split (README, molecule rows).

``--tune N`` searches depth, hidden size, dropout, learning rate and epochs with Optuna (N trials,
``--tune-timeout`` seconds at most) for every unit on that unit's validation split, then trains
the unit with the best; the chosen values go to ``config.json`` (``tuned``), so ``--config``
replays the run without searching (:mod:`structrnn.tasks.molecules.tune`).

Regression targets are standardised with the training statistics; the model of the epoch with
the best validation score is the one tested (``--clip-grad`` defaults to 10). The run folder
holds ``config.json``, ``metrics.json``, ``metrics.jsonl`` (every unit's epochs, with ``unit``),
one folder per seed (and fold) under ``units/NAME/`` with its ``checkpoint.pt``, ``best.pt``
(weights, model arguments, target scaling, featuriser version and descriptor
reference: what ``structrnn.load(RUN)`` predicts with) and ``metrics.jsonl``,
``scatter.png`` and, for ``atom-sum``, ``atom_contributions.png``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

from structrnn._errors import InputError
from structrnn.tasks.molecules import data
from structrnn.tasks.molecules.data import ESOL_TARGET, QM9_TARGETS, Prepared, prepare, units
from structrnn.tasks.molecules.fair import DEFAULT_GRID, fair_units, parse_grid
from structrnn.tasks.molecules.model import MODELS, READOUTS
from structrnn.tasks.molecules.report import finish, fold_figures, summarise
from structrnn.tasks.molecules.report import mean_std as _mean_std
from structrnn.tasks.molecules.tune import TUNED_KEYS
from structrnn.tasks.molecules.uncertainty import SCALES
from structrnn.tasks.molecules.unit import Unit, build
from structrnn.training import distributed
from structrnn.training.options import add_run_arguments, run_config
from structrnn.training.run_folder import RunFolder
from structrnn.training.seeds import int_list
from structrnn.training.task import Task, fit_unit, previous_config

__all__ = ["TASK", "TU", "add_arguments", "add_tu_arguments", "prepare", "units", "Unit",
           "summarise", "fold_figures", "resolve_defaults", "ESOL_TARGET", "QM9_TARGETS",
           "TUNED_KEYS", "_mean_std"]

MODEL_KEYS = ("seeds", "model", "readout", "hidden", "steps", "lr", "weight_decay", "dropout",
              "batch_size", "max_molecules", "kind", "class_weights", "no_edge_features", "tune",
              "tune_timeout", "tuned", "study", "data", "dataset")
CONFIG_KEYS = (*MODEL_KEYS, "target", "csv", "smiles_col", "split", "global_features",
               "ensemble", "conformal", "conformal_scale")
TU_KEYS = (*MODEL_KEYS, "tu_name", "folds", "fold_models", "protocol", "grid", "fair_repeats",
           "fair")
EPOCHS = {"builtin": 30, "esol": 100, "qm9": 60, "csv": 100, "mutag": 100}


# --- command line -------------------------------------------------------------------------------
def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected JSON, got {text!r}") from err


def _model_arguments(p: argparse.ArgumentParser, *, sets: str, epochs: str,
                     model: str = "gn-gru") -> None:
    """The flags molecules and TU sets share (``model``: the default ``--model``), and the run
    flags."""
    p.add_argument("--data", default=None, help=f"root of the data sets: {sets} (default "
                                                "$STRUCTRNN_DATA)")
    p.add_argument("--class-weights", choices=("none", "balanced"), default="none",
                   help="classification: balanced weighs each class by n / (classes * n_class) "
                        "of the training labels (rare positives count more)")
    p.add_argument("--seeds", type=int_list, default=None,
                   help="comma-separated seeds, one unit each (default: --seed alone when "
                        "given, else 0,1,2)")
    p.add_argument("--model", choices=MODELS, default=model, help=f"default: {model}")
    p.add_argument("--readout", choices=READOUTS, default=None,
                   help="default atom-sum for builtin, sum for qm9 and gin, set2set otherwise")
    p.add_argument("--no-edge-features", action="store_true",
                   help="the models see no bond / edge features (a constant instead)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="message-passing rounds (GIN: layers)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-molecules", "--max-graphs", dest="max_molecules", type=int,
                   default=None, help="use only the first N molecules/graphs (tiny runs)")
    p.add_argument("--tune", type=int, default=0, metavar="N",
                   help="search steps, hidden, dropout, lr and epochs with Optuna: N trials per "
                        "unit on its validation split (pip install 'structrnn[tune]')")
    p.add_argument("--tune-timeout", type=float, default=None, metavar="SECONDS",
                   help="--tune: stop each unit's search after this long")
    p.add_argument("--tune-storage", default=None, metavar="URL",
                   help="--tune: Optuna's database storage (default sqlite:///RUN/tune.db; a "
                        "postgresql:// URL spreads a study over machines)")
    p.add_argument("--study", default=None, metavar="NAME",
                   help="--tune: the study name (one study per unit, NAME.UNIT); processes "
                        "given the same --tune-storage and --study share the trials")
    p.add_argument("--tuned", type=_json, default=None, help=argparse.SUPPRESS)
    add_run_arguments(p, out="runs/molecules", epochs=None, seed=None)
    p.set_defaults(clip_grad=10.0)
    for action in p._actions:  # the task's own defaults, in the shared flags' help
        if action.dest == "epochs":
            action.help = f"default: {epochs}; with --tune the most a trial may train"
        if action.dest == "out":
            action.default, action.help = None, "run folder (default runs/molecules-DATASET)"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``structrnn train molecules``: SMILES sets."""
    p.add_argument("--dataset", choices=data.DATASETS, default="builtin")
    p.add_argument("--target", default=None,
                   help="builtin: tpsa|logp|lipinski; qm9: comma-separated targets (default all "
                        "12); csv: comma-separated target columns")
    p.add_argument("--csv", default=None, help="--dataset csv: the CSV file")
    p.add_argument("--smiles-col", default="smiles")
    # dest "kind": the command line's own "task" is the sub-command
    p.add_argument("--task", dest="kind", choices=("classification", "regression"),
                   default=None, help="default: classification for targets of 0s and 1s only, "
                                      "regression otherwise (integer counts included)")
    p.add_argument("--split", choices=("random", "scaffold"), default=None,
                   help="default scaffold for a classification, random otherwise")
    p.add_argument("--global-features", choices=("none", "rdkit"), default=None,
                   help="rdkit: RDKit's 2-D descriptors of each molecule, CDF-normalised on the "
                        "training set, join the readout (Chemprop's rdkit_2d_normalized); "
                        "default rdkit, but none for builtin (its targets are descriptors)")
    p.add_argument("--ensemble", type=int, default=1, metavar="K",
                   help="K models per split (seed), each with its own initial weights and "
                        "batch order; the split's prediction is their mean (chemprop's "
                        "ensembles), its spread their standard deviation")
    p.add_argument("--conformal", type=float, default=None, metavar="LEVEL",
                   help="regression: split-conformal intervals of coverage LEVEL (e.g. 0.9) "
                        "calibrated on each split's validation molecules")
    p.add_argument("--conformal-scale", choices=SCALES, default="none",
                   help="--conformal scores: absolute residuals (none) or residuals divided by "
                        "the ensemble's spread (spread; needs --ensemble >= 2)")
    # the recipe chosen on the validation splits of ESOL (random, scaffold) and QM9: README
    _model_arguments(p, sets="esol/, qm9/ ...",
                     epochs="30 (builtin), 100 (esol), 60 (qm9), 100 (csv)", model="dmpnn")
    return p


class _DeprecatedName(argparse.Action):
    """``--tu-name``: the old spelling of ``--name``; warns once."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        warnings.warn("--tu-name is deprecated: use --name", FutureWarning, stacklevel=2)
        setattr(namespace, self.dest, values)


def add_tu_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``structrnn train tu``: TU graph sets."""
    p.add_argument("--name", dest="tu_name", default="MUTAG",
                   help="the TU set (MUTAG, PROTEINS ...): DATA/NAME or DATA itself")
    p.add_argument("--tu-name", dest="tu_name", action=_DeprecatedName, help=argparse.SUPPRESS)
    p.add_argument("--folds", type=int, default=10, help="k of the stratified k-fold")
    p.add_argument("--fold-models", type=int, default=1, metavar="K",
                   help="K models per fold, each selected on another ninth of the fold's "
                        "training part; the fold is tested on their mean probabilities")
    p.add_argument("--protocol", choices=("cv", "fair"), default="cv",
                   help="fair: Errica et al. (2020)'s model selection: per outer fold the --grid "
                        "setting best on an inner hold-out, retrained --fair-repeats times; "
                        "the fold's score is their mean test accuracy")
    p.add_argument("--grid", type=parse_grid, default=None, metavar="JSON",
                   help="--protocol fair: the settings tried, a JSON object of flag -> values "
                        f"(default {json.dumps(DEFAULT_GRID)})")
    p.add_argument("--fair-repeats", type=int, default=3, metavar="R",
                   help="--protocol fair: trainings of the chosen setting per fold")
    p.add_argument("--fair", type=_json, default=None, help=argparse.SUPPRESS)
    _model_arguments(p, sets="MUTAG/, PROTEINS/ ...", epochs="100")
    # what the molecule code reads of a TU run: graph labels are classes
    p.set_defaults(dataset="mutag", kind=None, split=None, global_features="none",
                   target=None, csv=None, smiles_col="smiles", ensemble=1, conformal=None,
                   conformal_scale="none")
    return p


# --- the run ------------------------------------------------------------------------------------
def resolve_defaults(args: argparse.Namespace) -> None:
    """The defaults that depend on the data set, and the seeds (``--seeds``, else ``--seed``,
    else 0, 1, 2)."""
    if args.epochs is None:
        args.epochs = EPOCHS[args.dataset]
    if args.global_features is None:  # builtin's targets are RDKit descriptors themselves
        args.global_features = "none" if args.dataset in ("builtin", "mutag") else "rdkit"
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
    if not 1 <= getattr(args, "fold_models", 1) <= 9:
        raise InputError(f"--fold-models: expected 1..9 (one per ninth of the training part), "
                         f"got {args.fold_models}")
    _check_results_options(args)
    if args.seeds is None:
        one = getattr(args, "protocol", "cv") == "fair"  # a fair run is costly: one k-fold
        args.seeds = ([args.seed] if args.seed is not None else [0] if one else [0, 1, 2])
    if not args.seeds:
        raise InputError("--seeds: expected at least one seed")
    args.seed = args.seeds[0]
    if args.out is None:
        args.out = f"runs/molecules-{args.dataset}"


def _check_results_options(args: argparse.Namespace) -> None:
    """``--ensemble``, ``--conformal`` and ``--protocol fair``: values and combinations."""
    if args.ensemble < 1:
        raise InputError(f"--ensemble: expected >= 1 models per split, got {args.ensemble}")
    if args.conformal is not None and not 0 < args.conformal < 1:
        raise InputError(f"--conformal: expected a coverage level in (0, 1), e.g. 0.9, got "
                         f"{args.conformal}")
    if args.conformal_scale == "spread" and (args.conformal is None or args.ensemble < 2):
        raise InputError(f"--conformal-scale spread: needs --conformal LEVEL and --ensemble "
                         f">= 2 (a spread), got --conformal {args.conformal} --ensemble "
                         f"{args.ensemble}")
    if getattr(args, "protocol", "cv") != "fair":
        return
    if args.tune or args.fold_models > 1:
        raise InputError(f"--protocol fair chooses the settings itself: drop --tune "
                         f"{args.tune} / --fold-models {args.fold_models}")
    if not 1 <= args.fair_repeats <= 9:
        raise InputError(f"--fair-repeats: expected 1..9 (one per ninth of the training part), "
                         f"got {args.fair_repeats}")
    if args.grid is None:
        args.grid = DEFAULT_GRID


def prepare_run(args: argparse.Namespace) -> Prepared:
    """Settle the defaults, load the data (settling ``--task`` and ``--split``); a resumed run
    keeps the settings its units were tuned (or fairly chosen) with."""
    resolve_defaults(args)
    if args.tuned is None:
        args.tuned = previous_config(args).get("tuned")
    if getattr(args, "fair", None) is None and getattr(args, "protocol", "cv") == "fair":
        args.fair = previous_config(args).get("fair")
    prep = prepare(args)
    if args.conformal is not None and prep.kind != "regression":
        raise InputError(f"--conformal {args.conformal}: intervals are for regression "
                         f"targets; this run is a {prep.kind}")
    return prep


def tuned_units(task: Task, args: argparse.Namespace, prep: Prepared) -> list[dict]:
    """The run's units, each with its tuned settings: those of ``args.tuned`` (a replayed or
    resumed run), else a fresh search with ``--tune N`` (saved to config.json at once)."""
    out, device = [], distributed.device_for_rank(args.device)
    config = run_config(args, task.config_keys, task.name)
    for unit in units(args, prep):
        # an ensemble's members share their split's search
        split = {**unit, "name": unit["name"].split("-ens", 1)[0]}
        tuned = (args.tuned or {}).get(split["name"])
        began = time.perf_counter()
        if tuned is None and args.tune:
            from structrnn.tasks.molecules.tune import search

            if distributed.is_distributed():  # each process would search on its own clock
                raise InputError("--tune runs in one process: tune without torchrun, then "
                                 "replay the run with --config RUN/config.json under torchrun")
            tuned = search(args, split, lambda settings, seen, folder, report: fit_unit(
                task, settings, prep, seen, folder, device, config, report).result)
            args.tuned = {**(args.tuned or {}), split["name"]: tuned}
            RunFolder(args.out).write_config(run_config(args, task.config_keys, task.name))
        settings = {k: tuned[k] for k in TUNED_KEYS if k in (tuned or {})}
        out.append({**unit, "settings": settings, "tune_seconds": time.perf_counter() - began})
    return out


TASK = Task("molecules", "graph networks on molecules (SMILES)",
            "structrnn.tasks.molecules.predictor", add_arguments, CONFIG_KEYS, prepare_run,
            build, finish, select="val_score", mode="min", prefix="",
            units=lambda args, prep: tuned_units(TASK, args, prep))


def tu_units(args: argparse.Namespace, prep: Prepared) -> list[dict]:
    """A TU run's units: those of :func:`tuned_units`, or under ``--protocol fair`` each fold's
    repeats with the setting :mod:`~structrnn.tasks.molecules.fair` chose on its inner
    hold-out."""
    if args.protocol != "fair":
        return tuned_units(TU, args, prep)
    device = distributed.device_for_rank(args.device)
    config = run_config(args, TU.config_keys, TU.name)
    return fair_units(
        args, units(args, prep),
        lambda settings, seen, folder: fit_unit(TU, settings, prep, seen, folder, device,
                                                config).result,
        lambda: RunFolder(args.out).write_config(run_config(args, TU.config_keys, TU.name)))


TU = Task("tu", "graph classification on a TU data set", "structrnn.tasks.molecules.predictor",
          add_tu_arguments, TU_KEYS, prepare_run, build, finish, select="val_score", mode="min",
          prefix="", units=tu_units)
