"""An RNN learns to add 8-bit binary numbers (after Andrew Trask's "Anyone can learn to code an
LSTM-RNN in Python").

The two numbers arrive as a stream of bit pairs, least significant bit first; at every step the
network emits one bit of the sum, so it has to learn to carry. Pairs are split into a training
set and a held-out set that the network never sees; the score is the fraction of held-out sums
with all 8 bits right.

    python examples/binary_addition.py            # a few seconds on a CPU
    python examples/binary_addition.py --steps 300 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a fresh clone

from structrnn.sequence import RNN  # noqa: E402
from structrnn.training.checkpoint import seed_everything  # noqa: E402

BITS = 8


def to_bits(n: torch.Tensor) -> torch.Tensor:
    """(N,) integers -> (BITS, N) bits, least significant first (the time axis)."""
    return (n.unsqueeze(0) >> torch.arange(BITS).unsqueeze(1)) & 1


def from_bits(bits: torch.Tensor) -> torch.Tensor:
    """(BITS, N) bits -> (N,) integers."""
    return (bits.long() << torch.arange(BITS).unsqueeze(1)).sum(0)


class Adder(nn.Module):
    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.rnn = RNN(2, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b (N,) integers < 2**(BITS-1) -> logits (BITS, N), one per bit of a + b."""
        x = torch.stack([to_bits(a), to_bits(b)], -1).float()  # (BITS, N, 2)
        return self.out(self.rnn(x)[0]).squeeze(-1)


def split_pairs(seed: int, train_fraction: float = 0.5):
    """All pairs (a, b) with a, b < 128, shuffled and split into training and held-out sets."""
    half = 2 ** (BITS - 1)
    a, b = torch.meshgrid(torch.arange(half), torch.arange(half), indexing="ij")
    pairs = torch.stack([a.flatten(), b.flatten()], 1)
    pairs = pairs[torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))]
    cut = int(train_fraction * len(pairs))
    return pairs[:cut], pairs[cut:]


@torch.no_grad()
def accuracy(model: Adder, pairs: torch.Tensor) -> float:
    predicted = from_bits(model(pairs[:, 0], pairs[:, 1]) > 0)
    return (predicted == pairs.sum(1)).float().mean().item()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps (batches)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.02)
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead
    train, held_out = split_pairs(args.seed)
    model = Adder(args.hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    print(f"binary addition: {len(train)} training pairs, {len(held_out)} held out; "
          f"sr.RNN(2, {args.hidden}), {args.steps} steps")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = train[torch.randint(len(train), (args.batch_size,))]
        logits = model(batch[:, 0], batch[:, 1])
        loss = loss_fn(logits, to_bits(batch.sum(1)).float())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % max(1, args.steps // 6) == 0 or step == args.steps:
            print(f"  step {step:5d}  loss {loss.item():.4f}  "
                  f"held-out accuracy {accuracy(model, held_out):6.1%}")
    seconds = time.perf_counter() - start

    acc = accuracy(model, held_out)
    sample = held_out[:3]
    with torch.no_grad():
        guesses = from_bits(model(sample[:, 0], sample[:, 1]) > 0)
    for (a, b), guess in zip(sample.tolist(), guesses.tolist()):
        bits = "".join(str(int(v)) for v in reversed(to_bits(torch.tensor([guess]))[:, 0]))
        print(f"  {a:3d} + {b:3d} = {guess:3d}  ({bits})  {'ok' if a + b == guess else 'WRONG'}")
    print(f"held-out accuracy {acc:.1%} ({len(held_out)} unseen pairs) in {seconds:.1f} s")
    return {"heldout_accuracy": acc, "steps": args.steps, "seconds": seconds,
            "final_loss": loss.item()}


if __name__ == "__main__":
    main()
