"""``structrnn train tu --protocol fair``: the model selection of Errica et al. (ICLR 2020), "A
fair comparison of graph neural networks for graph classification".

Per outer fold of a stratified k-fold (``--folds``), every setting of a small grid (``--grid``,
8 settings by default) trains on the fold's training part less a stratified ninth held out
(the inner hold-out) and is scored on that hold-out; the best setting (ties: the first in grid
order) is then trained ``--fair-repeats`` times (3) on the training part, each repeat choosing
its epoch on another ninth of it, and the fold's test score is the mean of the repeats' test
accuracies. Nothing of the test fold is in any of these trainings (the selection's units carry
no test indices), so the test fold chooses neither the setting nor an epoch.

The selection is recorded in config.json (``fair``): ``--config RUN/config.json`` and
``--resume`` replay it without searching again.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from structrnn._errors import InputError
from structrnn.tasks.molecules.tune import TUNED_KEYS
from structrnn.training.logging import notice
from structrnn.training.run_folder import RunFolder

__all__ = ["DEFAULT_GRID", "GRID_KEYS", "parse_grid", "settings_grid", "select", "fair_units"]

# Errica et al. search hidden sizes, depths and dropout among others; 2 x 2 x 2 settings
DEFAULT_GRID = {"hidden": [32, 64], "steps": [2, 4], "dropout": [0.0, 0.5]}
GRID_KEYS = (*TUNED_KEYS, "weight_decay")


def parse_grid(text: str) -> dict[str, list]:
    """``--grid``: a JSON object of setting -> list of values, e.g.
    ``'{"hidden": [32, 64], "lr": [0.01, 0.001]}'``."""
    try:
        grid = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}") from err
    if not isinstance(grid, dict) or not grid:
        raise argparse.ArgumentTypeError(f"expected a JSON object of setting -> [values], got "
                                         f"{text!r}")
    for key, values in grid.items():
        if key not in GRID_KEYS:
            raise argparse.ArgumentTypeError(f"{key!r}: expected a setting among "
                                             f"{', '.join(GRID_KEYS)}")
        if not isinstance(values, list) or not values:
            raise argparse.ArgumentTypeError(f"{key}: expected a non-empty list of values, got "
                                             f"{values!r}")
    return grid


def settings_grid(grid: dict[str, list] | None) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in order (the last key varying fastest)."""
    grid = grid or DEFAULT_GRID
    keys = list(grid)
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(grid[k] for k in keys))]


def _inner_figures(result) -> tuple[float, float | None]:
    """The best validation score of a training and its validation accuracy at that epoch."""
    line = next((h for h in result.history if h.get("epoch") == result.best_epoch),
                result.history[result.best_epoch - 1] if result.history else {})
    return float(result.best_score), line.get("val_accuracy")


def select(args: argparse.Namespace, unit: dict, grid: list[dict[str, Any]],
           fit: Callable[[argparse.Namespace, dict, RunFolder], Any]) -> dict[str, Any]:
    """The grid's best setting for ``unit`` (an outer fold's training part split into
    ``train`` and the inner hold-out ``val``; its ``test`` is dropped here): ``{"chosen",
    "inner_score", "inner_accuracy", "epoch", "grid": [per setting its score, accuracy and
    epoch]}``. ``fit(settings, unit, folder)`` trains and returns a ``FitResult``."""
    seen = {**unit, "test": np.zeros(0, dtype=np.int64)}
    tried = []
    for k, setting in enumerate(grid):
        flags = argparse.Namespace(**{**vars(args), **setting, "resume": False,
                                      "no_progress": True, "tensorboard": False})
        # a setting's per-epoch lines would drown the run's: one line per setting instead
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
            result = fit(flags, seen, RunFolder(tmp))
        score, accuracy = _inner_figures(result)
        tried.append({"settings": setting, "inner_score": score, "inner_accuracy": accuracy,
                      "epoch": result.best_epoch})
        notice(f"{unit['name']}: setting {k + 1}/{len(grid)} {setting}: inner hold-out "
               f"accuracy {accuracy:.4f} (epoch {result.best_epoch})")
    best = min(range(len(tried)), key=lambda i: tried[i]["inner_score"])
    return {"chosen": tried[best]["settings"], "inner_score": tried[best]["inner_score"],
            "inner_accuracy": tried[best]["inner_accuracy"], "epoch": tried[best]["epoch"],
            "grid": tried}


def fair_units(args: argparse.Namespace, base: list[dict],
               fit: Callable[[argparse.Namespace, dict, RunFolder], Any],
               save: Callable[[], Any]) -> list[dict]:
    """The units of a fair run: ``base`` (per seed, fold and repeat, repeat 0's inner hold-out
    being the one the grid is chosen on), each with its fold's chosen setting. The selection of
    a fold comes from ``args.fair`` when recorded there (a replayed or resumed run), else from
    :func:`select`, recorded in ``args.fair`` and saved (``save()``) at once."""
    grid = settings_grid(args.grid)
    args.fair = dict(args.fair or {})
    out = []
    for unit in base:
        fold = unit["name"].rsplit("-rep", 1)[0]
        if fold not in args.fair:
            if unit["member"] != 0:
                raise InputError(f"{fold}: no recorded selection for repeat {unit['member']}")
            args.fair[fold] = select(args, {**unit, "name": fold}, grid, fit)
            save()
        chosen = args.fair[fold]["chosen"]
        out.append({**unit, "settings": dict(chosen)})
    return out
