"""``--seeds S1,S2,...``: one run whose units are the same training under several seeds (an
ensemble), for the tasks whose units are seeds alone (``sst``, ``parser``).

A run given ``--seeds`` keeps one unit per seed in ``RUN/units/seedS/`` (its ``best.pt``,
``checkpoint.pt``, ``metrics.jsonl``); a run given ``--seed`` alone (config.json's ``"seeds"``
null) keeps today's layout, its weights in ``RUN/best.pt``, so older runs load as before.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from structrnn._errors import InputError

__all__ = ["int_list", "add_seeds_argument", "settle_seeds", "seed_units", "seed_unit_names",
           "seed_folders"]


def int_list(text: str) -> list[int]:
    """An argparse type: ``"0,1,2"`` -> ``[0, 1, 2]``."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from err


def add_seeds_argument(p: argparse.ArgumentParser) -> None:
    """The ``--seeds`` flag (default None: one model, ``--seed``)."""
    p.add_argument("--seeds", type=int_list, default=None, metavar="S1,S2,...",
                   help="train one model per seed in RUN/units/seedS and predict with their "
                        "ensemble (mean of the members' outputs); default: one model, --seed")


def settle_seeds(args: argparse.Namespace) -> None:
    """Check ``--seeds`` (at least one, no repeats); ``--seed`` becomes its first seed, so that
    whatever the data draw reads from ``--seed`` is the same for every unit."""
    if args.seeds is None:
        return
    if not args.seeds:
        raise InputError("--seeds: expected at least one seed, got none")
    if len(set(args.seeds)) != len(args.seeds):
        raise InputError(f"--seeds: expected distinct seeds, got {args.seeds}")
    args.seed = args.seeds[0]


def seed_units(args: argparse.Namespace, data: Any = None) -> list[dict]:
    """:attr:`~structrnn.training.task.Task.units`: one unit per seed, ``seedS``, seeded by
    S (its weights and its batch order: ``--seed`` is S inside the unit); without ``--seeds``
    one unnamed unit in the run's own folder."""
    if getattr(args, "seeds", None) is None:
        return [{"init_seed": args.seed}]
    return [{"name": f"seed{s}", "init_seed": s, "settings": {"seed": s}} for s in args.seeds]


def seed_unit_names(config: dict) -> list[str] | None:
    """The unit names of a run from its config.json (what :func:`seed_units` names), or None
    for a one-model run (its weights in the run folder itself)."""
    seeds = config.get("seeds")
    return None if seeds is None else [f"seed{s}" for s in seeds]


def seed_folders(folder: str | Path, config: dict) -> list[Path]:
    """The folders that hold the run's ``best.pt`` files, one per model, in seed order."""
    folder = Path(folder)
    names = seed_unit_names(config)
    return [folder] if names is None else [folder / "units" / n for n in names]
