"""The one training loop every task uses.

:func:`fit` trains a model for some epochs and keeps the epoch with the best validation score:
mixed precision (``amp``, CUDA only), an exponential moving average of the weights (``ema``: the
average is what is validated, selected and saved), gradient clipping by norm or by value,
DistributedDataParallel under ``torchrun``, atomic checkpoints every epoch and an exact resume
(weights, optimizer, scaler, EMA, scheduler and every random stream of every process). Losses
stay on the device: the host reads them once every ``check_every`` steps and at the end of an
epoch, which is also when a non-finite loss stops the run (naming the epoch and the first bad
step, the last good checkpoint kept).

A task supplies plain callables: ``train_batches(epoch)`` (this process's batches),
``loss(model, batch) -> (loss_to_backward, mean_loss_for_the_log)`` and ``validate(model) ->
dict`` (called on rank 0 only, it holds the ``select`` key).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from structrnn._errors import InputError
from structrnn.training import distributed
from structrnn.training.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from structrnn.training.logging import log_scalars, notice, open_tensorboard, progress
from structrnn.training.run_folder import RunFolder

__all__ = ["FitOptions", "FitResult", "fit", "NonFiniteError", "amp_enabled", "make_ema"]


class NonFiniteError(FloatingPointError):
    """A training loss turned NaN/Inf; the message names the epoch and the step."""


@dataclass
class FitOptions:
    """The run flags the loop reads (``structrnn train TASK --help`` documents them)."""

    epochs: int
    seed: int = 0
    amp: bool = False
    ema: float | None = None
    clip_grad: float | None = None
    clip_grad_value: float | None = None
    check_every: int = 50
    progress: bool = True
    tensorboard: bool = False

    @classmethod
    def from_args(cls, args: Any) -> FitOptions:
        """From the parsed run flags (``structrnn.training.options.add_run_arguments``)."""
        return cls(args.epochs, args.seed, args.amp, args.ema, args.clip_grad,
                   args.clip_grad_value, args.check_every, not args.no_progress,
                   args.tensorboard)


@dataclass
class FitResult:
    """``model``: the selected model (the EMA average with ``ema``) with the best epoch's
    weights loaded (on rank 0); ``history``: one record per epoch."""

    model: nn.Module
    best_epoch: int
    best_score: float | None
    history: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        """What every task's metrics.json holds of the training: ``epoch_seconds`` (one per
        epoch), ``best_epoch``, ``epochs``."""
        return {"epoch_seconds": [h["epoch_seconds"] for h in self.history],
                "best_epoch": self.best_epoch, "epochs": len(self.history)}

    def best_record(self) -> dict:
        """The best epoch's log record (``{}`` before one)."""
        return next((h for h in self.history if h["epoch"] == self.best_epoch), {})


def amp_enabled(requested: bool, device: torch.device) -> bool:
    """Mixed precision runs on CUDA only; elsewhere ``--amp`` is ignored with a notice."""
    if requested and device.type != "cuda":
        notice(f"warning: --amp needs a CUDA device; training on {device} in float32")
        return False
    return requested


def make_ema(model: nn.Module, decay: float | None):
    """An exponential moving average of ``model``'s weights (PyTorch's ``AveragedModel``), or
    None without ``decay``."""
    if decay is None:
        return None
    if not 0.0 < decay < 1.0:
        raise InputError(f"--ema: expected a decay in (0, 1), got {decay}")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _load_on_every_rank(path) -> dict:
    """Rank 0 reads the checkpoint and sends it to every process (no shared disk needed)."""
    state, error = None, None
    if distributed.is_main():
        try:
            state = load_checkpoint(path)
        except FileNotFoundError as err:
            error = str(err)
    state, error = distributed.broadcast_object((state, error))
    if error:
        raise FileNotFoundError(error)
    return state


class _Training:
    """The state one :func:`fit` call carries from epoch to epoch."""

    def __init__(self, model, optimizer, scheduler, options: FitOptions, device) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.options, self.device = options, device
        self.amp = amp_enabled(options.amp, device)
        self.ema = make_ema(model, options.ema)
        self.scored = self.ema.module if self.ema is not None else model
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        self.start_epoch, self.best_epoch, self.best_score = 1, 0, None
        self.global_step = 0  # steps of the finished epochs
        self.history: list[dict] = []

    def state(self, epoch: int, config: dict, rngs: list) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "epoch": epoch, "best": {"epoch": self.best_epoch, "score": self.best_score},
                "history": self.history, "config": config, "rng": rngs[0],
                "global_step": self.global_step,
                "rng_ranks": rngs if len(rngs) > 1 else None}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.amp and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch = state["epoch"] + 1
        self.best_epoch, self.best_score = state["best"]["epoch"], state["best"]["score"]
        self.history = state["history"]
        self.global_step = state.get("global_step", 0)
        ranks, world = state.get("rng_ranks"), distributed.world_size()
        set_rng_state(ranks[distributed.rank()] if ranks and len(ranks) == world
                      else state["rng"])

    def is_better(self, score: float, mode: str) -> bool:
        if score is None or math.isnan(score):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if mode == "max" else score < self.best_score

    def step(self, ddp_model, batch, loss_fn) -> tuple[Tensor, Tensor | None]:
        """One optimizer step; returns the logged loss and the gradient norm (device
        tensors, no host sync)."""
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss, shown = loss_fn(ddp_model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # the scaler is a no-op without amp
        norm = None
        if self.options.clip_grad or self.options.clip_grad_value:
            self.scaler.unscale_(self.optimizer)
            if self.options.clip_grad:
                norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                      self.options.clip_grad)
            if self.options.clip_grad_value:
                torch.nn.utils.clip_grad_value_(self.model.parameters(),
                                                self.options.clip_grad_value)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return shown.detach(), norm

    def epoch(self, ddp_model, batches: Iterable, loss_fn, epoch: int, desc: str,
              writer=None) -> dict:
        """Train one epoch; returns its log record (train loss, seconds, gradient norms)."""
        ddp_model.train()
        device, every = self.device, max(1, self.options.check_every)
        total = torch.zeros((), dtype=torch.float64, device=device)
        first_bad = torch.zeros((), dtype=torch.long, device=device)  # 0: none yet
        norms: list[Tensor] = []
        window: list[Tensor] = []  # the step losses since the last check (for TensorBoard)
        began, steps = time.perf_counter(), 0
        bar = progress(batches, enabled=self.options.progress, desc=f"{desc}epoch {epoch}")
        for step, batch in enumerate(bar, 1):
            batch = batch.to(device) if hasattr(batch, "to") else batch
            shown, norm = self.step(ddp_model, batch, loss_fn)
            total += shown.double()
            # the first non-finite step, remembered on the device: the host reads it below
            first_bad = torch.where((first_bad == 0) & ~torch.isfinite(shown), step, first_bad)
            if norm is not None:
                norms.append(norm.detach())
            steps = step
            if writer is not None:
                window.append(shown)
            if step % every == 0:
                self._check(first_bad, epoch, step)
                bar.set_postfix(loss=f"{float(total) / step:.4f}")
                self._log_steps(writer, window, step)
        self._check(first_bad, epoch, steps)
        self._log_steps(writer, window, steps)
        record = {"epoch": epoch, "train_loss": float(total) / max(steps, 1),
                  "epoch_seconds": time.perf_counter() - began, "steps": steps}
        if norms:
            stacked = torch.stack(norms).float()
            record["grad_norm_mean"] = float(stacked.mean())
            record["grad_norm_max"] = float(stacked.max())
        return record

    def _log_steps(self, writer, window: list[Tensor], last_step: int) -> None:
        """The window's step losses to TensorBoard, numbered on across epochs (one host
        read for the whole window)."""
        if writer is None or not window:
            return
        first = self.global_step + last_step - len(window) + 1
        for i, value in enumerate(torch.stack(window).float().tolist()):
            writer.add_scalar("train/step_loss", value, first + i)
        window.clear()

    @staticmethod
    def _check(first_bad: Tensor, epoch: int, step: int) -> None:
        bad = int(first_bad)  # the one host sync of a check window
        if bad:
            raise NonFiniteError(
                f"the training loss is not finite at epoch {epoch}, step {bad} (checked at step "
                f"{step}); the last good checkpoint is kept (try a smaller learning rate or "
                "--clip-grad)")


def _figure_name(key: str, prefix: str) -> str:
    """How the epoch line names a figure: ``val roc_auc`` for ``roc_auc`` under the prefix
    ``val``, or for a key that carries its split itself (``val_roc_auc``, no prefix)."""
    return f"{prefix} {key}" if prefix else key.replace("_", " ", 1)


def _shown(figures: dict, select: str, prefix: str = "",
           report: Sequence[str] | None = None) -> str:
    """The validation figures an epoch's notice shows, each under its own name: ``report``
    (default: the selection figure; where the epoch number itself selects, the last epoch being
    kept, what the validation measured)."""
    if report is None:
        report = [select]
        if select == "epoch":
            report = [k for k, v in figures.items()
                      if k != "epoch" and isinstance(v, float)] or report
    shown = []
    for key in report:
        value = figures.get(key)
        text = ("n/a" if value is None else str(value) if isinstance(value, int)
                else f"{value:.3g}")
        shown.append(f"{_figure_name(key, prefix)} {text}")
    return ", ".join(shown)


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, *,
        train_batches: Callable[[int], Iterable], loss: Callable[[nn.Module, Any], tuple],
        validate: Callable[[nn.Module], dict], folder: RunFolder, options: FitOptions,
        device: torch.device, config: dict, select: str, mode: str = "max",
        scheduler: Any = None, resume: bool = False,
        best_extra: Callable[[], dict] | None = None, desc: str = "",
        prefix: str = "val", report: Sequence[str] | None = None) -> FitResult:
    """Train ``model`` for ``options.epochs`` epochs and keep the best by ``validate``.

    Args:
        model: on ``device``; wrapped in DDP here when ``torchrun`` started several processes.
        train_batches: ``epoch -> iterable`` of this process's batches (seed the order by the
            epoch, e.g. :func:`structrnn.training.task.train_loader`, so a resumed
            run draws the same batches).
        loss: ``(model, batch) -> (loss to back-propagate, detached mean loss for the log)``;
            run under autocast with ``amp``.
        validate: ``model -> dict`` of figures on the validation data, run on rank 0 after every
            epoch; ``dict[select]`` chooses the best epoch (``mode`` "max" or "min"). A
            ``dict`` without ``select`` is a ValueError at the first epoch (naming the keys it
            has), rather than a run that never writes ``best.pt``.
        folder: where ``checkpoint.pt``, ``best.pt`` and ``metrics.jsonl`` go.
        config: saved in both checkpoints.
        resume: continue from ``folder.checkpoint`` when it exists (a finished run returns at
            once with its best model).
        best_extra: ``() -> dict`` saved in ``best.pt`` beside the weights (what predicting
            needs: scalers, vocabularies ...).
        desc: prefix of the progress bar and of the notices (e.g. the unit's name).
        prefix: of the validation figures in the log (``val_loss`` ...; SST says ``dev``).
        report: the keys of ``validate``'s figures that the epoch line shows, each named as
            the user reads it (``val roc_auc 0.695``, ``val rmse 1.07``); default ``select``.
            A task whose ``select`` is an internal score (a sign-flipped AUC) names here the
            figure it stands for.

    Returns:
        :class:`FitResult`; its ``model`` holds the best epoch's weights on rank 0.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode: expected 'max' or 'min', got {mode!r}")
    run = _Training(model, optimizer, scheduler, options, device)
    rank, main = distributed.rank(), distributed.is_main()
    if rank:  # the same initial weights everywhere (DDP broadcasts rank 0's), other dropout
        torch.manual_seed(options.seed * 1_000_003 + rank)
    # rank 0 decides, so that every process restores (or none does)
    if resume and distributed.broadcast_object(folder.checkpoint.is_file() if main else None):
        run.restore(_load_on_every_rank(folder.checkpoint))
        folder.rewrite_log(run.history)
        notice(f"{desc}resuming {folder.path} after epoch {run.start_epoch - 1}")
    writer = open_tensorboard(folder.path / "tensorboard", options.tensorboard)
    ddp_model = distributed.wrap(model, device)
    for epoch in range(run.start_epoch, options.epochs + 1):
        batches = train_batches(epoch)
        record = run.epoch(ddp_model, batches, loss, epoch, desc, writer)
        run.global_step += record.pop("steps")
        figures = validate(run.scored) if main else {}
        missing = None
        if main and select not in figures:
            missing = (f"fit: validate returned no {select!r} (the select key) after epoch "
                       f"{epoch}; it returned {sorted(figures)}")
        if scheduler is not None:
            scheduler.step()
        # after validating (its loaders may draw from the global generator), for an exact
        # resume; a collective: every process calls it (and so learns of rank 0's error)
        gathered = distributed.all_gather_object((rng_state(), missing))
        if gathered[0][1] is not None:
            raise ValueError(gathered[0][1])
        rngs = [state for state, _ in gathered]
        if not main:
            continue
        record.update({f"{prefix}_{k}" if prefix else k: v for k, v in figures.items()
                       if isinstance(v, int | float) and not isinstance(v, bool)})
        run.history.append(record)
        folder.append_log(record)
        log_scalars(writer, "epoch", record, epoch)
        score = figures.get(select)
        notice(f"{desc}epoch {epoch}: train loss {record['train_loss']:.4f}, "
               f"{_shown(figures, select, prefix, report)} ({record['epoch_seconds']:.1f} s)")
        if run.is_better(score, mode):
            run.best_epoch, run.best_score = epoch, score
            save_checkpoint(folder.best, model=run.scored.state_dict(), config=config,
                            epoch=epoch, **(best_extra() if best_extra else {}))
        save_checkpoint(folder.checkpoint, **run.state(epoch, config, rngs))
    if writer is not None:
        writer.close()
    if main and folder.best.is_file():
        run.scored.load_state_dict(load_checkpoint(folder.best, map_location=device)["model"])
    return FitResult(run.scored, run.best_epoch, run.best_score, run.history)
