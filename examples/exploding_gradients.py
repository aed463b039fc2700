"""Exploding gradients: an Elman RNN whose recurrent matrix has a large spectral radius, trained
three times from the same start on the same batches: without clipping, with
``clip_grad_norm_`` and with ``clip_grad_value_``.

The partner of ``vanishing_gradients.py``. Back-propagation through time multiplies the
gradient by ``W_hh^T diag(1 - h_t^2)`` once per step; with ``W_hh = rho * Q`` (Q orthogonal) and
``rho`` well above 1 the product grows geometrically with the sequence length, so one step of
plain SGD can throw the weights anywhere. Clipping the gradient's norm (Pascanu et al. 2013)
keeps its direction and bounds its length; clipping each value bounds every component (and so
turns the direction). The picture shows the loss and the gradient norm (before clipping) at every
step of the three runs.

    python examples/exploding_gradients.py --out runs/exploding_gradients.png   # seconds
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a fresh clone

import structrnn as sr  # noqa: E402
from structrnn.training.checkpoint import seed_everything  # noqa: E402

RUNS = ("none", "norm", "value")
LABELS = {"none": "no clipping", "norm": "clip_grad_norm_", "value": "clip_grad_value_"}


class Regressor(nn.Module):
    """An Elman RNN read at its last step: (T, B, 1) -> (B,)."""

    def __init__(self, hidden: int, radius: float) -> None:
        super().__init__()
        self.rnn = sr.RNN(1, hidden)
        self.head = nn.Linear(hidden, 1)
        with torch.no_grad():  # W_hh = radius * a random orthogonal matrix: |eigenvalues| = radius
            q, _ = torch.linalg.qr(torch.randn(hidden, hidden))
            self.rnn.weight_hh_l0.copy_(radius * q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[-1]).squeeze(-1)


def grad_norm(model: nn.Module) -> float:
    """The 2-norm of all gradients together (what ``clip_grad_norm_`` bounds)."""
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))


def train(model: nn.Module, clip: str, args, batches: list) -> dict:
    """Plain SGD over ``batches``; per step the loss, the gradient norm before and after
    clipping and the largest gradient component after it. Stops at a non-finite loss."""
    optimiser = torch.optim.SGD(model.parameters(), lr=args.lr)
    log = {"loss": [], "grad_norm": [], "clipped_norm": [], "max_abs_grad": [],
           "diverged_at": None}
    for step, (x, y) in enumerate(batches):
        loss = nn.functional.mse_loss(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        before = grad_norm(model)
        if not (math.isfinite(loss.item()) and math.isfinite(before)):
            log["diverged_at"] = step
            break
        if clip == "norm":
            nn.utils.clip_grad_norm_(model.parameters(), args.max_norm)
        elif clip == "value":
            nn.utils.clip_grad_value_(model.parameters(), args.clip_value)
        log["loss"].append(loss.item())
        log["grad_norm"].append(before)
        log["clipped_norm"].append(grad_norm(model))
        log["max_abs_grad"].append(max(float(p.grad.abs().max()) for p in model.parameters()))
        optimiser.step()
    return log


def draw(logs: dict, args) -> Path:
    from structrnn.viz import pyplot

    plt = pyplot()
    fig, (ax_loss, ax_norm) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, log in logs.items():
        ax_loss.semilogy(log["loss"], label=LABELS[name])
        ax_norm.semilogy(log["grad_norm"], label=LABELS[name], alpha=0.8)
    ax_norm.axhline(args.max_norm, color="k", ls="--", lw=1, label=f"norm bound {args.max_norm}")
    ax_loss.set(xlabel="step", ylabel="training loss (MSE)", title="loss")
    ax_norm.set(xlabel="step", ylabel="|gradient| before clipping",
                title=f"gradient norm (spectral radius {args.radius}, T={args.steps})")
    ax_loss.legend()
    ax_norm.legend(fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="sequence length T")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--radius", type=float, default=3.0,
                        help="spectral radius of the initial recurrent matrix")
    parser.add_argument("--updates", type=int, default=300, help="SGD steps per run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--max-norm", type=float, default=1.0, help="clip_grad_norm_ bound")
    parser.add_argument("--clip-value", type=float, default=0.1, help="clip_grad_value_ bound")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/exploding_gradients.png")
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    start = Regressor(args.hidden, args.radius)
    gen = torch.Generator().manual_seed(args.seed)
    batches = []
    for _ in range(args.updates):  # the task: the mean of a sequence of small inputs
        x = 0.5 * torch.randn(args.steps, args.batch_size, 1, generator=gen)
        batches.append((x, x.mean(0).squeeze(-1) * 4))
    logs = {name: train(copy.deepcopy(start), name, args, batches) for name in RUNS}
    png = draw(logs, args)

    # what predicting 0 for every sequence scores: the targets' mean square
    baseline = sum(float(y.pow(2).mean()) for _, y in batches) / len(batches)
    metrics: dict = {"png": str(png), "predict_zero_loss": baseline}
    for name, log in logs.items():
        tail = log["loss"][-20:] or [float("nan")]
        metrics[name] = {
            "final_loss": sum(tail) / len(tail),
            "max_grad_norm": max(log["grad_norm"], default=float("nan")),
            "max_clipped_norm": max(log["clipped_norm"], default=float("nan")),
            "max_abs_grad": max(log["max_abs_grad"], default=float("nan")),
            "steps_over_bound": sum(n > args.max_norm for n in log["grad_norm"]),
            "diverged_at": log["diverged_at"],
        }
        m = metrics[name]
        print(f"{LABELS[name]:17s} loss (last 20 steps) {m['final_loss']:.4f}   largest "
              f"|grad| {m['max_grad_norm']:.3g} before, {m['max_clipped_norm']:.3g} after "
              f"clipping; {m['steps_over_bound']} steps over {args.max_norm}"
              + (f"; diverged at step {log['diverged_at']}" if log["diverged_at"] else ""))
    print(f"(predicting 0 for every sequence: loss {baseline:.4f}; in this chaotic regime the "
          "clipped runs stay put rather than learn: clipping stops the blow-up, it does not "
          "make the gradient informative)")
    print(f"wrote {png}")
    return metrics


if __name__ == "__main__":
    main()
