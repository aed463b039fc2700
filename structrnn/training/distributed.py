"""Data-parallel training with PyTorch's own ``DistributedDataParallel``, launched by ``torchrun``.

::

    torchrun --standalone --nproc_per_node=2 -m structrnn.cli train sst ...        # one machine
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv_backend=c10d \\
             --rdzv_endpoint=HOST:29500 -m structrnn.cli train sst ...            # two machines

Each process trains on its shard of every global batch; DDP averages the gradients. The pieces:
:func:`init_from_env` (reads torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; gloo on the
CPU, nccl on CUDA), :func:`wrap`, :func:`global_mean_loss` (the loss whose averaged gradient is
exactly the single-process gradient of the global batch) and :func:`cleanup`; the sharded
loader is :func:`structrnn.training.task.train_loader`. Without torchrun
(or with ``WORLD_SIZE=1``) every function falls back to the single-process behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["init_from_env", "is_distributed", "rank", "world_size", "is_main", "device_for_rank",
           "wrap", "unwrap", "global_mean_loss", "broadcast_object",
           "all_gather_object", "barrier", "cleanup", "process_group"]


def _env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    """True once a process group with more than one process is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that writes files, prints and evaluates (rank 0)."""
    return rank() == 0


def device_for_rank(name: str = "auto") -> torch.device:
    """The device of this process: under torchrun a CUDA request means ``cuda:LOCAL_RANK`` (one
    GPU per process); otherwise as :func:`structrnn.training.checkpoint.resolve_device`."""
    from structrnn.training.checkpoint import resolve_device

    device = resolve_device(name)
    if device.type == "cuda" and _env_world_size() > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def init_from_env(device: torch.device | str = "cpu", timeout_s: float | None = None) -> bool:
    """Join the process group that ``torchrun`` describes in the environment.

    Uses nccl when ``device`` is CUDA (and pins this process to ``cuda:LOCAL_RANK``), gloo on
    the CPU. Returns True when a group with more than one process is up, False when not launched
    by torchrun or with ``WORLD_SIZE=1`` (then nothing is initialised). Calling it again is a
    no-op.
    """
    if _env_world_size() <= 1:
        return False
    if is_distributed():
        return True
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={_env_world_size()} but {', '.join(missing)} not set: "
                         "launch with torchrun (e.g. torchrun --standalone --nproc_per_node=2)")
    device = torch.device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    kwargs: dict[str, Any] = {"backend": backend}
    if timeout_s is not None:
        from datetime import timedelta

        kwargs["timeout"] = timedelta(seconds=timeout_s)
    if device.type == "cuda":
        kwargs["device_id"] = device  # lets nccl set up eagerly, on the right GPU
    dist.init_process_group(**kwargs)
    return True


def wrap(model: nn.Module, device: torch.device, **ddp_kwargs: Any) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed (rank 0's weights are broadcast to
    every process here), else ``model`` unchanged. The model must already be on ``device``."""
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(device)
    if device.type == "cuda":
        ddp_kwargs.setdefault("device_ids", [device])
        ddp_kwargs.setdefault("output_device", device)
    return DistributedDataParallel(model, **ddp_kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DDP wrapper (for ``state_dict`` keys without ``module.``)."""
    return getattr(model, "module", model)


def global_mean_loss(loss_sum: Tensor, count: Tensor | int) -> tuple[Tensor, Tensor]:
    """The loss to back-propagate and its detached global mean, from this process's summed
    loss and its number of terms ``count`` (a count of 0 counts as 1).

    One process: ``loss_sum / count``. Under DDP, which averages gradients over the ``W``
    processes, ``loss_sum * W / global_count``: exactly the single-process gradient of the
    global batch, however unevenly the terms fall between the processes (one ``all_reduce`` of
    two numbers). The mean is the same on every process (a non-finite check stops all).
    """
    count = torch.as_tensor(count, device=loss_sum.device).clamp(min=1)
    if not is_distributed():
        mean = loss_sum / count
        return mean, mean.detach()
    stats = torch.stack([loss_sum.detach().double(), count.double()])
    dist.all_reduce(stats)
    return (loss_sum * world_size() / stats[1].to(loss_sum.dtype),
            (stats[0] / stats[1]).to(loss_sum.dtype))


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (``obj`` as given without a process group)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any) -> list:
    """Every process's ``obj``, in rank order (``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (no-op when none is up)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group(device: str = "auto") -> Iterator[torch.device]:
    """This process's device (:func:`device_for_rank`), inside the process group that
    ``torchrun`` describes when it started several processes (left again at the end)::

        with distributed.process_group(args.device) as device:
            return train(args, device)
    """
    chosen = device_for_rank(device)
    launched = init_from_env(chosen)
    try:
        yield chosen
    finally:
        if launched:
            cleanup()
