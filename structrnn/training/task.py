"""The task protocol: a task is a declaration, :func:`run_task` runs every one of them.

A :class:`Task` says what is particular to it: its flags, how to prepare its data, how to build
one unit's model, optimizer, loss and validation (a :class:`Plan`), the key it selects on, the
figures it reports and its predictor. :func:`run_task` does the rest, the same for every
``structrnn train`` sub-command: threads, the process group under ``torchrun``, the batch-size
check, the run folder, seeding, loaders (collating in ``--workers`` processes), :func:`fit`,
``metrics.json`` then the pictures, and rank 0's metrics on every process.

Under ``torchrun`` (``WORLD_SIZE > 1``) each process trains on its shard of every global batch
with ``DistributedDataParallel``; ``--batch-size`` is the global batch size, and the weights
after each step equal those of one process on the same global batch, so a run's figures do not
depend on the number of processes (but for dropout masks, drawn per process). Rank 0 alone
validates and writes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from structrnn._env import load_1m, machine
from structrnn._errors import InputError
from structrnn.training import distributed
from structrnn.training.checkpoint import seed_everything
from structrnn.training.loop import FitOptions, FitResult, fit
from structrnn.training.options import (
    apply_config,
    explicit_dests,
    run_config,
    set_threads,
)
from structrnn.training.run_folder import RunFolder, open_run

__all__ = ["Task", "Plan", "Fitted", "run_task", "fit_unit", "parse_args", "train",
           "train_loader"]


@dataclass
class Plan:
    """How one unit trains (what :meth:`Task.build` returns).

    ``train_set`` is batched by :func:`train_loader` with ``loader_class`` (e.g. PyG's
    ``DataLoader`` or a ``TreeLoader``) and ``loader_kwargs``; a task with batches of its own
    gives ``batches(epoch)`` instead. ``loss``, ``validate``, ``scheduler``, ``best_extra`` and
    ``report`` (the figures the epoch line shows) are :func:`~structrnn.training.loop.fit`'s.
    ``context``: what :meth:`Task.finish` needs of the unit beyond its fitted model (data,
    scalers ...).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss: Callable[[nn.Module, Any], tuple]
    validate: Callable[[nn.Module], dict]
    train_set: Sequence | None = None
    loader_class: type[DataLoader] = DataLoader
    loader_kwargs: dict[str, Any] = field(default_factory=dict)
    batches: Callable[[int], Iterable] | None = None
    scheduler: Any = None
    best_extra: Callable[[], dict] | None = None
    context: Any = None
    report: Sequence[str] | None = None


@dataclass
class Fitted:
    """One trained unit: :func:`fit`'s result, the unit's plan, the unit and its settings."""

    result: FitResult
    plan: Plan
    unit: dict
    args: argparse.Namespace

    model = property(lambda self: self.result.model)
    history = property(lambda self: self.result.history)


Pictures = dict[str, Callable[[Any], Any]]


@dataclass(frozen=True)
class Task:
    """A ``structrnn train`` sub-command, declared.

    Attributes:
        name: the sub-command and config.json's ``"task"`` (what ``structrnn.load`` reads).
        help: its one-line help.
        predictor: the module whose ``PREDICTOR`` class loads its runs.
        add_arguments: ``parser -> None``: the task's flags and the shared run flags
            (:func:`~structrnn.training.options.add_run_arguments`).
        config_keys: the task's flags that go to config.json (with the shared ones).
        prepare: ``args -> data``: checks and settles the flags (config.json records them),
            loads the data. Runs before the run folder opens.
        build: ``(args, data, unit, device) -> Plan``, after seeding with the unit's
            ``"init_seed"``.
        finish: ``(args, data, [Fitted], device) -> (metrics, {picture name: draw(path)})``,
            on rank 0: the figures it reports.
        select: the validation figure that keeps the best epoch (or ``args -> key``);
            ``mode`` "max" or "min"; ``prefix`` of the validation figures in the log.
        units: ``(args, data) -> [unit]``: several trainings of one run (seeds, folds), each
            a dict with ``"name"`` (its folder ``units/NAME``), ``"init_seed"`` and optional
            ``"settings"`` (flags that differ for it). Default: one, in the run's own folder.
    """

    name: str
    help: str
    predictor: str
    add_arguments: Callable[[argparse.ArgumentParser], Any]
    config_keys: tuple[str, ...]
    prepare: Callable[[argparse.Namespace], Any]
    build: Callable[..., Plan]
    finish: Callable[..., tuple[dict, Pictures]]
    select: str | Callable[[argparse.Namespace], str]
    mode: str = "max"
    prefix: str = "val"
    units: Callable[[argparse.Namespace, Any], list[dict]] | None = None


def train_loader(dataset: Sequence, batch_size: int, seed: int, workers: int = 0,
                 loader_class: type[DataLoader] = DataLoader,
                 **kwargs: Any) -> Callable[[int], DataLoader]:
    """``epoch -> loader``: this process's shuffled batches of ``dataset``, the same loader
    every epoch (its ``workers`` processes persist and collate the next batches while the model
    steps). The order is a ``DistributedSampler`` permutation seeded by ``seed`` and the
    epoch, so one process and many see the same global batches and a resumed run draws the
    same ones; ``batch_size`` is the global size."""
    world = distributed.world_size()
    sampler = DistributedSampler(dataset, num_replicas=world, rank=distributed.rank(),
                                 shuffle=True, seed=seed)
    # the loader's own seed draw comes from here, not from the global stream (dropout)
    generator = torch.Generator()
    loader = loader_class(dataset, batch_size=batch_size // world, sampler=sampler,
                          generator=generator, num_workers=workers,
                          persistent_workers=workers > 0, **kwargs)

    def batches(epoch: int) -> DataLoader:
        sampler.set_epoch(epoch)
        generator.manual_seed(seed + epoch)
        return loader

    return batches


def fit_unit(task: Task, args: argparse.Namespace, data: Any, unit: dict, folder: RunFolder,
             device: torch.device, config: dict, report: Callable[[dict], Any] | None = None
             ) -> Fitted:
    """Seed, build and train one unit (in ``folder/units/NAME`` when it has a name).

    ``report``: called with the validation figures after every epoch (a tuner's pruning hook;
    it may raise to stop the training)."""
    args = argparse.Namespace(**{**vars(args), **unit.get("settings", {})})
    seed_everything(unit["init_seed"])
    plan = task.build(args, data, unit, device)
    batches = plan.batches
    if batches is None:
        batches = train_loader(plan.train_set, args.batch_size, unit["init_seed"] * 100_003,
                               args.workers, plan.loader_class,
                               pin_memory=device.type == "cuda", **plan.loader_kwargs)

    def validate(model: nn.Module) -> dict:
        figures = plan.validate(model)
        if report is not None:
            report(figures)
        return figures

    name = unit.get("name")
    result = fit(plan.model, plan.optimizer, train_batches=batches, loss=plan.loss,
                 validate=validate, folder=folder.unit(name) if name else folder,
                 options=FitOptions.from_args(args), device=device, config=config,
                 select=task.select(args) if callable(task.select) else task.select,
                 mode=task.mode, scheduler=plan.scheduler, resume=args.resume,
                 best_extra=plan.best_extra, desc=f"{name}: " if name else "",
                 prefix=task.prefix, report=plan.report)
    return Fitted(result, plan, unit, args)


def run_task(task: Task, args: argparse.Namespace) -> dict:
    """Train and evaluate ``task`` as ``args`` say; write the run folder and return the
    metrics. Under torchrun every process calls this; all of them return rank 0's metrics."""
    set_threads(args.threads)
    if args.workers < 0:
        raise InputError(f"--workers: expected >= 0, got {args.workers}")
    with distributed.process_group(args.device) as device:
        world = distributed.world_size()
        if args.batch_size < 1 or args.batch_size % world:
            raise InputError(f"--batch-size: the global batch size must be a positive multiple "
                             f"of the number of processes ({world}), got {args.batch_size}")
        started = machine(torch.get_num_threads())
        data = task.prepare(args)
        config = run_config(args, task.config_keys, task.name)
        folder = open_run(args.out, config, args.resume, args.overwrite, args.tensorboard)
        units = task.units(args, data) if task.units else [{"init_seed": args.seed}]
        fitted = []
        for unit in units:
            fitted.append(fit_unit(task, args, data, unit, folder, device, config))
            if unit.get("name"):  # the run's log: every unit's epochs so far, named
                folder.rewrite_log([{"unit": f.unit["name"], **line} for f in fitted
                                    for line in folder.unit(f.unit["name"]).read_log()])
        metrics = None
        if distributed.is_main():
            metrics, pictures = task.finish(args, data, fitted, device)
            # where the figures come from, for the README's tables (benchmarks.accuracy)
            metrics["machine"] = {**started, "load_1m_end": load_1m()}
            folder.write_metrics(metrics)  # first: a picture that fails must not lose it
            for name, draw in pictures.items():
                folder.picture(name, draw)
        return distributed.broadcast_object(metrics)


def parse_args(task: Task, argv: list[str]) -> argparse.Namespace:
    """The flags of ``structrnn train TASK argv`` (with ``--config``: the replayed run's values
    for every flag not typed)."""
    parser = argparse.ArgumentParser(prog=f"structrnn train {task.name}",
                                     description=task.help, allow_abbrev=False)
    task.add_arguments(parser)
    args = parser.parse_args(argv)
    return apply_config(args, explicit_dests(parser, argv)) if args.config else args


def train(task: Task, argv: list[str]) -> dict:
    """``structrnn train TASK argv`` in this process; returns the metrics."""
    return run_task(task, parse_args(task, list(argv)))


def previous_config(args: argparse.Namespace) -> dict:
    """The config.json of the run in ``--out`` when resuming it, else ``{}``."""
    path = RunFolder(args.out).config
    return json.loads(path.read_text()) if args.resume and path.is_file() else {}
