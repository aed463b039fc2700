"""``structrnn serve`` under load: requests/s, sentences/s and p50/p99 latency at 1, 8 and 64
concurrent clients, with dynamic batching on and off, against ``Predictor.predict`` in-process.

Protocol: a sentiment run (``--run``, else one trained first on the synthetic treebank with the
task's default sizes) is served by ``structrnn serve`` in a subprocess on 127.0.0.1, once with
batching (``--max-batch``, ``--max-wait-ms``) and once without (``--max-batch 1``). Per number
of clients, after ``--warmup`` requests per client, the clients (coroutines, each with its own
keep-alive connection, waiting for its answer before sending again) send ``--requests``
requests in all, each one ``--words``-word sentence, and stop early after ``--time-limit``
seconds: the load is bounded. In-process: one ``predict`` call on 8 of the sentences (the median
of ``--rounds`` calls: the latency to compare the server's p99 at 8 clients with) and ``predict``
of all of them in batches of 256 (sentences/s). The load generator shares the machine with the
server: on 2 cores the figures are the server's and the client's together.

    structrnn bench serve [--run RUN] [--requests 600] [--time-limit 30] [--threads 1]
    python -m structrnn.benchmarks.serve ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from structrnn.benchmarks import package_pythonpath

__all__ = ["main", "sentences", "load_run", "percentile"]

CLIENTS = (1, 8, 64)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, by the nearest rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def sentences(count: int, words: int, seed: int = 1) -> list[str]:
    """``count`` sentences of exactly ``words`` words, cut from the synthetic treebank's text."""
    from structrnn.datasets.synthetic import generate_sentiment_trees

    stream: list[str] = []
    trees = 0
    while len(stream) < count * words:
        batch = generate_sentiment_trees(max(100, count), seed=seed + trees)
        trees += 1
        stream += [w for tree in batch for w in tree.leaves()]
    return [" ".join(stream[k * words:(k + 1) * words]) for k in range(count)]


def train_run(folder: Path) -> Path:
    """A sentiment run on the synthetic treebank with the task's default model sizes."""
    from structrnn import cli

    out = folder / "sentiment"
    code = cli.main(["train", "sst", "--dataset", "synthetic", "--synthetic-trees", "200",
                     "--epochs", "1", "--no-progress", "--out", str(out)])
    if code != 0:
        raise RuntimeError(f"training the benchmark's run failed (exit status {code})")
    return out


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server(run: Path, threads: int, flags: list[str], log: Path):
    """``structrnn serve RUN`` in a subprocess on 127.0.0.1; yields its base URL once ready and
    stops it (SIGTERM) on leaving."""
    import httpx

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": package_pythonpath()}
    with open(log, "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "structrnn", "serve", str(run),
                                    "--port", str(port), *flags], env=env,
                                   stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                    break
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1, written by hand: a load generator that
    takes little CPU from the server it measures (httpx costs about as much a request as the
    server does, on the same cores)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of one POST; reconnects once when the server closed the connection."""
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                self.writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                  b"application/json\r\nContent-Length: %d\r\n\r\n%s"
                                  % (path.encode(), len(body), body))
                await self.writer.drain()
                head = await self.reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                status = int(lines[0].split()[1])
                length = next(int(line.split(b":", 1)[1]) for line in lines
                              if line.lower().startswith(b"content-length:"))
                data = await self.reader.readexactly(length)
                if any(line.lower() == b"connection: close" for line in lines):
                    self.close()
                return status, data
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def load(base: str, name: str, texts: list[str], clients: int, requests: int,
               time_limit: float, warmup: int) -> dict:
    """``clients`` closed-loop clients (one connection each) sending one sentence a request;
    their figures."""
    port = int(base.rsplit(":", 1)[1])
    path = f"/v1/models/{name}/predict"
    bodies = [json.dumps({"inputs": [t]}).encode() for t in texts]
    latencies: list[float] = []
    failures: list[str] = []
    sent = 0
    connections = [Connection(port) for _ in range(clients)]

    async def one(connection: Connection, k: int, record: bool) -> None:
        start = time.perf_counter()
        try:
            status, data = await connection.post(path, bodies[k % len(bodies)])
            ok = status == 200 and json.loads(data)["rows"][0]["error"] is None
            reason = "" if ok else f"status {status}: {data[:200]!r}"
        except (OSError, asyncio.IncompleteReadError, ValueError) as err:
            ok, reason = False, f"{type(err).__name__}: {err}"
        if record:
            latencies.append(time.perf_counter() - start)
            if not ok:
                failures.append(reason)

    for _ in range(warmup):
        await asyncio.gather(*(one(c, k, False) for k, c in enumerate(connections)))
    deadline = time.perf_counter() + time_limit

    async def client(connection: Connection) -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() < deadline:
            k = sent
            sent += 1
            await one(connection, k, True)

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    elapsed = time.perf_counter() - start
    for c in connections:
        c.close()
    done = len(latencies)
    return {"clients": clients, "requests": done, "failed": len(failures),
            "failures": sorted(set(failures))[:5], "seconds": elapsed,
            "requests_per_s": done / elapsed, "sentences_per_s": done / elapsed,
            "p50_ms": 1000 * percentile(latencies, 50), "p99_ms": 1000 * percentile(latencies, 99),
            "stopped_by_time_limit": done < requests}


def load_run(args, run: Path, texts: list[str], log_dir: Path) -> dict:
    """Every mode at every number of clients."""
    modes = {"batching": ["--max-batch", str(args.max_batch), "--max-wait-ms",
                          str(args.max_wait_ms)],
             "no batching": ["--max-batch", "1"]}
    name = run.stem if run.is_file() else run.resolve().name
    results: dict = {}
    for mode, flags in modes.items():
        with server(run, args.threads, flags, log_dir / f"{mode}.log") as base:
            results[mode] = [asyncio.run(load(base, name, texts, c, args.requests,
                                              args.time_limit, args.warmup))
                             for c in CLIENTS]
            for r in results[mode]:
                print(f"  {mode:<12} {r['clients']:>3} clients  {r['requests']:>5} requests "
                      f"({r['failed']} failed)  {r['requests_per_s']:8.1f} requests/s "
                      f"{r['sentences_per_s']:8.1f} sentences/s  p50 {r['p50_ms']:7.2f} ms  "
                      f"p99 {r['p99_ms']:7.2f} ms", flush=True)
                for reason in r["failures"]:
                    print(f"    failed: {reason}")
    return results


def predict_8_times(predictor, texts: list[str], rounds: int) -> list[float]:
    """``rounds`` timings (s) of one ``predict`` call on 8 of the sentences, after a warm-up."""
    eight = texts[:8]
    predictor.predict(eight, progress=False)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        predictor.predict(eight, progress=False)
        times.append(time.perf_counter() - start)
    return times


def in_process(predictor, texts: list[str], rounds: int) -> dict:
    """The latency of one predict on 8 sentences and the throughput of predict on all."""
    times = predict_8_times(predictor, texts, rounds)
    start = time.perf_counter()
    predictor.predict(texts, batch_size=256, progress=False)
    rate = len(texts) / (time.perf_counter() - start)
    return {"predict_8_ms": 1000 * statistics.median(times), "predict_sentences_per_s": rate,
            "model": repr(predictor), "times": times}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=None, help="a sentiment run folder or model file (default: "
                                               "train one on the synthetic treebank first)")
    p.add_argument("--requests", type=int, default=600, help="requests per measurement")
    p.add_argument("--time-limit", type=float, default=30.0,
                   help="seconds per measurement at most (then it stops early)")
    p.add_argument("--warmup", type=int, default=2, help="untimed requests per client first")
    p.add_argument("--words", type=int, default=20, help="words per sentence")
    p.add_argument("--sentences", type=int, default=512, help="distinct sentences")
    p.add_argument("--max-batch", type=int, default=64, help="the server's --max-batch")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="the server's --max-wait-ms")
    p.add_argument("--rounds", type=int, default=50, help="in-process predict calls to time")
    p.add_argument("--threads", type=int, default=1, help="torch threads, server and in-process")
    p.add_argument("--json", default=None, help="write the machine, the load and the figures")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run from a command line (``argv``, default ``sys.argv[1:]``); prints and returns the
    figures (and writes them to ``--json``)."""
    import torch

    from structrnn.benchmarks.trees import announce, bench_record, write_json

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = announce(args.threads)
    texts = sentences(args.sentences, args.words)
    with tempfile.TemporaryDirectory(prefix="structrnn-bench-serve-") as tmp:
        from structrnn.tasks.predictor import load as load_predictor

        run = Path(args.run) if args.run else train_run(Path(tmp))
        predictor = load_predictor(run)
        local = in_process(predictor, texts, args.rounds)
        print(f"run: {run if args.run else 'synthetic treebank, default sizes'}; "
              f"{local['model']}; {len(texts)} sentences of {args.words} words")
        print(f"  in-process   predict(8 sentences) {local['predict_8_ms']:.2f} ms (median); "
              f"predict(all, batch 256) {local['predict_sentences_per_s']:.1f} sentences/s")
        results = load_run(args, run, texts, Path(tmp))
        # timed again after the load, so that the reference spans the same minutes of a shared
        # machine as the server's figures: the median of both sets of calls
        times = local.pop("times") + predict_8_times(predictor, texts, args.rounds)
        local["predict_8_ms"] = 1000 * statistics.median(times)
        print(f"  in-process   predict(8 sentences) {local['predict_8_ms']:.2f} ms (median of "
              f"{len(times)} calls, before and after the load)")
    on, off = results["batching"], results["no batching"]
    speedup = on[-1]["sentences_per_s"] / off[-1]["sentences_per_s"]
    p99_ratio = on[1]["p99_ms"] / local["predict_8_ms"]
    failed = sum(r["failed"] for rs in results.values() for r in rs)
    print(f"64 clients: batching gives {speedup:.2f}x the sentences/s of no batching "
          f"(goal >= 3x)")
    print(f"8 clients: p99 {on[1]['p99_ms']:.2f} ms = {p99_ratio:.2f}x one in-process predict on "
          f"8 sentences ({local['predict_8_ms']:.2f} ms; goal <= 2x)")
    print(f"failed requests: {failed} (goal 0)")
    summary = [{"what": "structrnn serve, 64 clients, one sentence a request: batching on/off",
                "figure": f"{speedup:.2f}x the sentences/s"},
               {"what": "structrnn serve, 8 clients: p99 latency / one in-process predict of 8",
                "figure": f"{p99_ratio:.2f}x"},
               {"what": "failed requests", "figure": str(failed)}]
    record = bench_record("serve", argv, info, summary, results=results, in_process=local)
    print(f"load (1 min): {info['load_1m']} before, {record['load_after']} after"
          + ("" if record["quiet"] else " -- not a quiet machine: the figures are upper bounds"))
    write_json(args.json, record)
    return record


if __name__ == "__main__":
    main()
