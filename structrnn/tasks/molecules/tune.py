"""``--tune N``: a hyper-parameter search with Optuna for one unit (a seed, or a fold of a TU
set), on that unit's validation split only.

Each trial trains the unit's model on its training split with the shared loop (the
``fit_trial`` it is given: :func:`structrnn.training.task.fit_unit`) in a temporary folder and
scores it by the best validation score of its epochs (what the run selects by); the unit's test
split is removed from the trial's unit, so no trial can see it. The space:

======== ============================================ ===================
setting  range                                        flag
======== ============================================ ===================
steps    2 .. 6 (message-passing rounds, GIN layers)  ``--steps``
hidden   32, 64, 128, 256                             ``--hidden``
dropout  0 .. 0.5 in steps of 0.05                    ``--dropout``
lr       1e-4 .. 1e-2, log scale                      ``--lr``
epochs   ``max(1, E // 5)`` .. ``E`` (``--epochs E``)  ``--epochs``
======== ============================================ ===================

The first trial is the command line's own settings (clipped into the space), so the search
never returns something that validated worse than them. TPE samples the rest (seeded by the
unit's seed); a trial whose validation score lags the median of the earlier trials at the same
epoch is stopped early (Optuna's median pruner). Optuna is imported only here, when asked for.

The trials are recorded in Optuna's database storage (``--tune-storage URL``: by default the
SQLite file ``RUN/tune.db``; a ``postgresql://`` URL spreads a study over machines), one study
per unit named ``STUDY.UNIT`` (``--study STUDY``, default the run folder's name). Several
``structrnn train ... --tune N --study STUDY`` processes given one storage share the studies:
each adds its N trials, and each then trains with the best trial finished so far. A shared
study's sampler is seeded per process (two processes would otherwise propose the same
settings), so only a study of one process is reproducible.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from structrnn._errors import InputError
from structrnn.training.logging import notice
from structrnn.training.loop import NonFiniteError
from structrnn.training.run_folder import RunFolder

__all__ = ["search", "space", "open_study", "storage_url", "HIDDEN", "TUNED_KEYS"]

# the settings --tune may change, per unit
TUNED_KEYS = ("steps", "hidden", "dropout", "lr", "epochs")
HIDDEN = (32, 64, 128, 256)
STEPS = (2, 6)
LR = (1e-4, 1e-2)


def _optuna():
    try:
        import optuna
    except ImportError as err:
        raise InputError("--tune needs Optuna: pip install 'structrnn[tune]' (or pip install "
                         "optuna)") from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def space(epochs: int) -> dict[str, tuple]:
    """The bounds of every tuned setting for a run of at most ``epochs`` epochs."""
    return {"steps": STEPS, "hidden": HIDDEN, "dropout": (0.0, 0.5), "lr": LR,
            "epochs": (max(1, epochs // 5), epochs)}


def storage_url(args: argparse.Namespace) -> str:
    """``--tune-storage``, else the SQLite file ``RUN/tune.db`` of the run folder."""
    if args.tune_storage:
        return args.tune_storage
    from pathlib import Path

    return f"sqlite:///{(Path(args.out) / 'tune.db').resolve()}"


def _storage(optuna, url: str, attempts: int = 8):
    """Optuna's ``RDBStorage`` at ``url``; SQLite waits up to 60 s for a lock (several
    processes write one file) and a creation that collides with another process's (both
    creating the tables) is retried."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except Exception as err:  # sqlalchemy's OperationalError, IntegrityError ...
            if attempt == attempts - 1:
                raise InputError(f"--tune-storage {_shown(url)}: cannot open the Optuna "
                                 f"storage ({err})") from err
            time.sleep(0.2 * 2 ** attempt)
    raise AssertionError("unreachable")


def _shown(url: str) -> str:
    """``url`` without its password (it may go to a log)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def open_study(args: argparse.Namespace, unit: dict, start: dict[str, Any] | None = None):
    """The unit's study ``STUDY.UNIT`` in ``--tune-storage``, created or joined: the process
    that creates it enqueues ``start`` (the command line's settings) as its first trial."""
    optuna = _optuna()
    storage = _storage(optuna, storage_url(args))
    name = f"{args.study or _default_study(args)}.{unit['name']}"
    seed = unit["seed"] * 1000 + unit.get("fold", 0)
    if args.study:  # shared: another process's sampler must not propose the same settings
        seed = seed * 100_003 + os.getpid()
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5)
    for attempt in range(8):
        try:  # the study's creator alone enqueues the start trial (no duplicate)
            study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                        sampler=sampler, pruner=pruner)
        except optuna.exceptions.DuplicatedStudyError:
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                                     pruner=pruner)
        except Exception:  # a lock held too long by another process's creation
            if attempt == 7:
                raise
            time.sleep(0.2 * 2 ** attempt)
            continue
        if start is not None:
            study.enqueue_trial(start)
        return study
    raise AssertionError("unreachable")


def _default_study(args: argparse.Namespace) -> str:
    from pathlib import Path

    return Path(args.out).resolve().name


def _suggest(trial, bounds: dict[str, tuple]) -> dict[str, Any]:
    return {"steps": trial.suggest_int("steps", *bounds["steps"]),
            "hidden": trial.suggest_categorical("hidden", list(bounds["hidden"])),
            # rounded: a step of 0.05 in floating point gives 0.35000000000000003
            "dropout": round(trial.suggest_float("dropout", *bounds["dropout"], step=0.05), 2),
            "lr": trial.suggest_float("lr", *bounds["lr"], log=True),
            "epochs": trial.suggest_int("epochs", *bounds["epochs"])}


def _start(args: argparse.Namespace, bounds: dict[str, tuple]) -> dict[str, Any]:
    """The command line's settings, clipped into the space (Optuna's first trial)."""
    def clip(value, lo, hi):
        return min(max(value, lo), hi)

    hidden = min(bounds["hidden"], key=lambda h: abs(h - args.hidden))
    return {"steps": clip(args.steps, *bounds["steps"]), "hidden": hidden,
            "dropout": round(clip(args.dropout, *bounds["dropout"]) / 0.05) * 0.05,
            "lr": clip(args.lr, *bounds["lr"]), "epochs": clip(args.epochs, *bounds["epochs"])}


def search(args: argparse.Namespace, unit: dict, fit_trial: Callable[..., Any]
           ) -> dict[str, Any]:
    """The best settings of ``args.tune`` trials (at most ``args.tune_timeout`` seconds) for
    ``unit``, scored on its validation split; ``{"steps", "hidden", "dropout", "lr", "epochs",
    "trials", "best_val_score", "seconds"}``. ``fit_trial(settings, unit, folder, report)``
    trains ``unit`` with the flags ``settings`` in ``folder`` and returns its ``FitResult``."""
    optuna = _optuna()
    bounds = space(args.epochs)
    # the trials never see the test split: it is not in their unit
    seen = {**unit, "test": np.zeros(0, dtype=np.int64)}
    began = time.perf_counter()

    def objective(trial) -> float:
        params = _suggest(trial, bounds)
        settings = argparse.Namespace(**{**vars(args), **params, "resume": False,
                                         "no_progress": True, "tensorboard": False})

        epochs = iter(range(1, params["epochs"] + 1))

        def report(figures: dict) -> None:
            trial.report(figures["val_score"], next(epochs))
            if trial.should_prune():
                raise optuna.TrialPruned()

        shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in params.items())
        trial.set_user_attr("process", f"{os.uname().nodename}:{os.getpid()}")
        where = f"{unit['name']}: trial {trial.number + 1} ({args.tune} in this process)"
        try:
            # a trial's per-epoch lines would drown the run's: one line per trial instead
            with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
                fitted = fit_trial(settings, seen, RunFolder(tmp), report)
        except optuna.TrialPruned:
            notice(f"{where}: stopped early, behind the median of the earlier trials ({shown})")
            raise
        notice(f"{where}: validation score {fitted.best_score:.4f} ({shown})")
        return fitted.best_score

    study = open_study(args, unit, _start(args, bounds))
    study.optimize(objective, n_trials=args.tune, timeout=args.tune_timeout,
                   catch=(NonFiniteError,))
    seconds = time.perf_counter() - began
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        notice(f"{unit['name']}: no trial finished in {seconds:.0f} s; the command line's "
               "settings are used")
        return {**_start(args, bounds), "trials": len(study.trials), "best_val_score": None,
                "seconds": seconds}
    best = study.best_trial
    notice(f"{unit['name']}: best of {len(study.trials)} trials ({len(done)} finished) in "
           f"{seconds:.0f} s: validation score {best.value:.4f}, {best.params}")
    return {**best.params, "dropout": round(best.params["dropout"], 2),
            "trials": len(study.trials), "best_val_score": best.value, "seconds": seconds,
            "study": study.study_name, "trial": best.number}
