"""sr.LSTM against torch.nn.LSTM: forward + backward, side by side in one run.

Three contenders with the same weights: ``torch.nn.LSTM`` (the peer), ``sr.LSTM`` on its fused
path (target: within 1.05x of the peer) and ``sr.LSTM`` on the generic cell loop
(``force_generic=True``, what a user's own cell or recurrent dropout runs on). Rounds are
interleaved (peer, fused, generic, peer, ...) after a warm-up; the figure is the median.

    structrnn bench sequence            # or: python -m structrnn.benchmarks.sequence
    python benchmarks/bench_sequence.py --batch 64 --seq 50 --hidden 256 --input 256 --repeats 20
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from structrnn.sequence import LSTM


def step(model, x) -> None:
    out, (h, c) = model(x)
    (out.sum() + h.sum() + c.sum()).backward()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    """Run from a command line (``argv``, default ``sys.argv[1:]``); prints the figures (and
    writes them to ``--json``)."""
    from structrnn.benchmarks.trees import bench_record, machine, write_json

    args = parse_args(argv)
    info = machine(args.threads or torch.get_num_threads())
    result = compare(args)
    what = (f"sr.LSTM vs torch.nn.LSTM, forward + backward (batch {args.batch}, seq "
            f"{args.seq}, input {args.input}, hidden {args.hidden}, layers {args.layers}, "
            f"{info['threads']} thread(s))")
    figure = (f"fused path {result['sr.LSTM fused']['ratio']:.2f}x torch's time; the generic "
              f"cell loop (a user's cell) {result['sr.LSTM generic']['ratio']:.2f}x")
    write_json(args.json, bench_record("sequence", argv, info,
                                       [{"what": what, "figure": figure}], results=result))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--input", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the figures as JSON")
    return parser.parse_args(argv)


def compare(args: argparse.Namespace) -> dict:
    """Time the three contenders; returns ``{name: {"ms": median, "ratio": to the peer}}``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print("command:", shlex.join([Path(sys.executable).name] + sys.argv))
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"cpus={torch.multiprocessing.cpu_count()}, torch {torch.__version__}, "
          f"threads={torch.get_num_threads()}, device={device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"workload: LSTM input {args.input}, hidden {args.hidden}, layers {args.layers}, "
          f"batch {args.batch}, seq {args.seq}, float32, forward + backward")

    torch.manual_seed(0)
    peer = torch.nn.LSTM(args.input, args.hidden, args.layers).to(device)
    fused = LSTM(args.input, args.hidden, args.layers).to(device)
    generic = LSTM(args.input, args.hidden, args.layers, force_generic=True).to(device)
    fused.load_state_dict(peer.state_dict())
    generic.load_state_dict(peer.state_dict())
    x = torch.randn(args.seq, args.batch, args.input, device=device)
    contenders = {"torch.nn.LSTM": peer, "sr.LSTM fused": fused, "sr.LSTM generic": generic}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(args.warmup + args.repeats):
        for name, model in contenders.items():
            model.zero_grad(set_to_none=True)
            sync(device)
            start = time.perf_counter()
            step(model, x)
            sync(device)
            if round_ >= args.warmup:
                times[name].append(time.perf_counter() - start)

    peer_ms = statistics.median(times["torch.nn.LSTM"]) * 1e3
    result = {}
    print(f"{'':18s} {'median ms':>10s} {'vs torch.nn.LSTM':>17s}")
    for name, ts in times.items():
        ms = statistics.median(ts) * 1e3
        result[name] = {"ms": ms, "ratio": ms / peer_ms}
        print(f"{name:18s} {ms:10.2f} {ms / peer_ms:16.3f}x")
    ok = result["sr.LSTM fused"]["ratio"] <= 1.05
    print(f"fused path within 1.05x of torch.nn.LSTM: {'yes' if ok else 'NO'}; generic path "
          f"{result['sr.LSTM generic']['ratio']:.2f}x (a Python time loop over the cell)")
    return result


if __name__ == "__main__":
    sys.exit(main())
