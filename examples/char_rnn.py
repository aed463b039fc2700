"""A character-level LSTM (after Karpathy's char-rnn) trained on your own text, or by default on
text that ships with Python: the source code of a few standard-library modules. It then writes
some text of its own.

    python examples/char_rnn.py                       # about a minute on a CPU
    python examples/char_rnn.py --text notes.txt --out-dir runs/notes   # any UTF-8 text
    python examples/char_rnn.py --steps 20 --hidden 32 --sample-chars 50   # a smoke test
    python examples/char_rnn.py --resume              # continue from runs/char_rnn/checkpoint.pt
    python examples/char_rnn.py --steps 0 --resume --temperature 0.3 --prime "def "  # sample

Truncated back-propagation through time: the training text is cut into ``--batch-size``
contiguous streams read side by side, ``--seq-len`` characters per step; the LSTM's state at the
end of one window is the start of the next (so the model sees context far beyond a window), but
it is detached, so gradients flow back ``--seq-len`` steps only. A stream that reaches its end
starts again from its beginning with a zero state.

Sampling divides the logits by ``--temperature``: 1 samples the model's distribution, lower is
more conservative, 0 always takes the most likely character.

Checkpoints are written atomically every ``--checkpoint-every`` steps and at the end, with the
optimiser, the random-generator states, the stream position and the carried state, so
``--resume`` continues exactly.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import sys
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a fresh clone

from structrnn.sequence import LSTM  # noqa: E402
from structrnn.training.checkpoint import (  # noqa: E402
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)


def load_text(modules: list[str], max_chars: int) -> str:
    """The source of the given standard-library modules, concatenated."""
    text = "\n".join(inspect.getsource(importlib.import_module(m)) for m in modules)
    return text[:max_chars] if max_chars > 0 else text


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.lstm = LSTM(hidden, hidden, num_layers=layers, batch_first=True,
                         dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor, state=None):
        """ids (B, T) -> logits (B, T, vocab), state."""
        h, state = self.lstm(self.embed(ids), state)
        return self.out(h), state


class Streams:
    """The training text as ``batch`` contiguous streams, read ``length`` characters a step."""

    def __init__(self, data: torch.Tensor, batch: int, length: int) -> None:
        per_stream = len(data) // batch
        if per_stream < length + 1:
            raise ValueError(f"the training text ({len(data)} characters) is too short for "
                             f"--batch-size {batch} streams of --seq-len {length} + 1 characters")
        self.data = data[: batch * per_stream].view(batch, per_stream)
        self.length = length
        self.position = 0  # the column the next window starts at

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(inputs, targets) (batch, length) and whether the streams started over (the carried
        state no longer continues the text)."""
        restart = self.position + self.length + 1 > self.data.size(1)
        if restart:
            self.position = 0
        window = self.data[:, self.position:self.position + self.length + 1]
        self.position += self.length
        return window[:, :-1], window[:, 1:], restart


def detach(state):
    """The carried state cut from the graph of the previous window (truncated BPTT)."""
    return None if state is None else tuple(s.detach() for s in state)


@torch.no_grad()
def evaluate(model: CharLSTM, data: torch.Tensor, length: int) -> float:
    """Mean cross-entropy (nats per character) of ``data`` read as one stream, windows of
    ``length`` characters with the state carried across them."""
    model.eval()
    total, count, state = 0.0, 0, None
    for start in range(0, len(data) - 1, length):
        x = data[start:start + length + 1]
        logits, state = model(x[:-1].unsqueeze(0), state)
        total += nn.functional.cross_entropy(logits[0], x[1:], reduction="sum").item()
        count += len(x) - 1
    model.train()
    return total / max(count, 1)


@torch.no_grad()
def sample(model: CharLSTM, chars: str, prime: str, n: int, temperature: float,
           gen: torch.Generator) -> str:
    """``prime`` and ``n`` characters drawn one at a time from softmax(logits / temperature);
    ``temperature=0`` takes the argmax."""
    model.eval()
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([[index[c] for c in prime if c in index] or [0]])
    logits, state = model(ids)
    out = []
    for _ in range(n):
        last = logits[0, -1]
        if temperature > 0:
            nxt = torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=gen)
        else:
            nxt = last.argmax().view(1)
        out.append(chars[nxt.item()])
        logits, state = model(nxt.view(1, 1), state)
    model.train()
    return prime + "".join(out)


def read_text(args) -> str:
    """``--text FILE`` (UTF-8), else the standard-library modules' source; ``--max-chars``."""
    if args.text:
        path = Path(args.text)
        if not path.is_file():
            raise SystemExit(f"--text: no file {path}")
        text = path.read_text(encoding="utf-8", errors="replace")
        if len(text) < 2:
            raise SystemExit(f"--text: {path} holds {len(text)} characters; it needs text")
        return text[: args.max_chars] if args.max_chars > 0 else text
    return load_text(args.modules.split(","), args.max_chars)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", default=None, metavar="FILE",
                        help="train on this UTF-8 text file (default: Python's own source)")
    parser.add_argument("--modules", default="textwrap,string,fnmatch,shlex,glob",
                        help="without --text: comma-separated standard-library modules whose "
                             "source is the text")
    parser.add_argument("--max-chars", type=int, default=0, help="truncate the text (0: all)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32, help="parallel text streams")
    parser.add_argument("--seq-len", type=int, default=64,
                        help="characters per window: how far back gradients flow")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (small models run fastest on one)")
    parser.add_argument("--sample-chars", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.7,
                        help="sampling temperature (0: always the most likely character)")
    parser.add_argument("--prime", default=None,
                        help="the text a sample starts from (default: 'def ', or the first "
                             "characters of --text)")
    parser.add_argument("--out-dir", default="runs/char_rnn")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    text = read_text(args)
    chars = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text])
    cut = int(0.9 * len(data))
    train, val = data[:cut], data[cut:]
    streams = Streams(train, args.batch_size, args.seq_len)
    model = CharLSTM(len(chars), args.hidden, args.layers, args.dropout)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    ckpt_path = Path(args.out_dir) / "checkpoint.pt"

    start, state = 0, None
    if args.resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["chars"] != chars:
            raise ValueError(f"--resume: {ckpt_path} was trained on another text (its "
                             "character set differs); use the same --text/--modules/--max-chars")
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        set_rng_state(ckpt["rng"])
        gen.set_state(ckpt["batch_rng"])
        start, streams.position = ckpt["step"], ckpt["position"]
        state = tuple(ckpt["state"]) if ckpt["state"] else None
        print(f"resumed from {ckpt_path} at step {start}")

    def checkpoint(step: int) -> None:
        save_checkpoint(ckpt_path, model=model.state_dict(), optimiser=optimiser.state_dict(),
                        rng=rng_state(), batch_rng=gen.get_state(), step=step, chars=chars,
                        position=streams.position, state=list(state) if state else [])

    source = args.text or args.modules
    print(f"char-rnn: {len(text)} characters ({len(chars)} distinct) from {source}; "
          f"LSTM {args.layers}x{args.hidden}, {args.batch_size} streams, windows of "
          f"{args.seq_len}")
    loss = torch.tensor(float("nan"))
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, disable=args.quiet,
               desc="training", dynamic_ncols=True)
    for step in bar:
        x, y, restart = streams.next()
        logits, state = model(x, None if restart else state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        state = detach(state)  # carried on, but gradients stop at the window's start
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % args.checkpoint_every == 0:
            checkpoint(step + 1)
    checkpoint(max(args.steps, start))

    val_loss = evaluate(model, val, args.seq_len)
    prime = args.prime if args.prime is not None else ("def " if not args.text else text[:4])
    text_out = sample(model, chars, prime, args.sample_chars, args.temperature, gen)
    print(f"validation: {val_loss:.3f} nats/char = {val_loss / math.log(2):.3f} bits/char "
          f"(uniform guessing: {math.log2(len(chars)):.2f} bits/char)")
    print("sample:\n" + text_out)
    return {"start_step": start, "steps": args.steps, "train_loss": loss.item(),
            "val_loss": val_loss, "val_bits_per_char": val_loss / math.log(2),
            "uniform_bits_per_char": math.log2(len(chars)), "sample": text_out,
            "checkpoint": str(ckpt_path), "position": streams.position}


if __name__ == "__main__":
    main()
