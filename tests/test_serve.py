"""``structrnn serve`` (issue 25): the batcher joins concurrent requests and gives each caller its
own rows, a failing batch falls back to item by item, the JSON API answers what
``Predictor.predict`` answers in-process, bad requests get JSON errors and never stop the server,
readiness waits for the runs, and SIGTERM finishes the requests in flight. Servers bind to
127.0.0.1 on a free port and are stopped by the test that started them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import structrnn  # noqa: E402
from structrnn import cli  # noqa: E402
from structrnn.serve.app import STATIC, create_app  # noqa: E402
from structrnn.serve.batching import Batcher, predict_each  # noqa: E402
from structrnn.serve.models import ServeSettings  # noqa: E402
from tests.conftest import REPO  # noqa: E402

SENTIMENT = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8",
             "--embed-dim", "8", "--epochs", "1", "--no-progress"]
MOLECULES = ["--max-molecules", "60", "--epochs", "2", "--hidden", "8", "--steps", "2",
             "--seeds", "0,1", "--no-progress"]
# a guard against a hung server, not a measurement: the tests never time anything
PATIENCE_S = 120


# ------------------------------------------------------------------------------ fixtures
def train_runs(root: Path, sentiment: list[str] = SENTIMENT) -> dict[str, Path]:
    """A tiny synthetic sentiment run and a tiny two-seed TPSA ensemble under ``root``."""
    runs = {"sst": root / "sst", "tpsa": root / "tpsa"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRUCTRNN_CACHE", str(root / "cache"))
        assert cli.main(["train", "sst", *sentiment, "--out", str(runs["sst"])]) == 0
        if _has_rdkit():
            assert cli.main(["train", "molecules", *MOLECULES, "--out",
                             str(runs["tpsa"])]) == 0
        else:
            del runs["tpsa"]
    return runs


def _has_rdkit() -> bool:
    import importlib.util

    return importlib.util.find_spec("rdkit") is not None


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return train_runs(tmp_path_factory.mktemp("serve-runs"))


def need(runs: dict[str, Path], name: str) -> Path:
    if name not in runs:
        pytest.skip("RDKit is not installed: no molecule run")
    return runs[name]


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with contextlib.closing(free_socket()) as sock:
        return sock.getsockname()[1]


def wait_ready(base: str, process: subprocess.Popen | None = None) -> None:
    """Poll ``/ready`` until 200 (a hang guard of :data:`PATIENCE_S`)."""
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited {process.returncode}:\n"
                                 f"{process.stderr.read()}")
        try:
            if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base} not ready after {PATIENCE_S} s")


@contextlib.contextmanager
def live(app, ready: bool = True) -> Iterator[tuple[str, object]]:
    """``app`` under uvicorn in a thread on 127.0.0.1 (a free port); yields the base URL and
    the uvicorn server, and stops it on leaving."""
    import uvicorn

    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=30))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        deadline = time.monotonic() + PATIENCE_S
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if ready:
            wait_ready(base)
        yield base, server
    finally:
        server.should_exit = True
        thread.join(PATIENCE_S)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


# ------------------------------------------------------------------------------ batching
def echo(items: list) -> list[dict]:
    return [{"input": x, "twice": 2 * x, "error": None} for x in items]


def test_concurrent_requests_are_joined_into_one_batch_and_each_gets_its_rows():
    started, gate, calls = threading.Event(), threading.Event(), []

    def predict(items: list) -> list[dict]:
        calls.append(list(items))
        if len(calls) == 1:  # hold the first batch, so that the others queue behind it
            started.set()
            gate.wait(PATIENCE_S)
        return echo(items)

    async def main() -> list[list[dict]]:
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(predict, max_batch=100, max_wait_ms=0, executor=pool)
            first = asyncio.create_task(batcher.submit([-1]))
            await asyncio.to_thread(started.wait, PATIENCE_S)
            requests = [[10 * k + j for j in range(k + 1)] for k in range(8)]
            waiting = [asyncio.create_task(batcher.submit(r)) for r in requests]
            await asyncio.sleep(0)  # every submit queues its request
            gate.set()
            rows = await asyncio.gather(first, *waiting)
            assert batcher.batches == 2 and batcher.sizes == [1, sum(map(len, requests))]
            return requests, rows

    requests, rows = asyncio.run(main())
    assert calls[1] == [x for r in requests for x in r]  # one predict for all eight
    assert rows[0] == echo([-1])
    for request, got in zip(requests, rows[1:], strict=True):
        assert got == echo(request)


def test_max_batch_bounds_a_batch_and_one_turns_batching_off():
    calls: list[list] = []
    gate = threading.Event()

    def predict(items: list) -> list[dict]:
        calls.append(list(items))
        gate.wait(PATIENCE_S)
        return echo(items)

    async def main(max_batch: int) -> None:
        calls.clear()
        gate.clear()
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(predict, max_batch=max_batch, max_wait_ms=0, executor=pool)
            sizes = [3, 3, 1, 7, 2]
            tasks = [asyncio.create_task(batcher.submit(list(range(n)))) for n in sizes]
            await asyncio.sleep(0)
            gate.set()
            for n, rows in zip(sizes, await asyncio.gather(*tasks), strict=True):
                assert rows == echo(list(range(n)))

    asyncio.run(main(5))
    # whole requests in arrival order while they fit in 5; a request larger than max_batch goes
    # alone, unsplit
    assert [len(c) for c in calls] == [3, 4, 7, 2]
    asyncio.run(main(1))
    assert [len(c) for c in calls] == [3, 3, 1, 7, 2]


def test_a_batch_waits_only_while_other_requests_are_on_their_way():
    on_the_way = [1]

    async def main() -> list[int]:
        with ThreadPoolExecutor(1) as pool:
            # a wait far beyond the test's patience: only the count can end it
            batcher = Batcher(echo, 64, 1000 * PATIENCE_S * 10, pool,
                              incoming=lambda: on_the_way[0])
            first = asyncio.create_task(batcher.submit([1]))
            for _ in range(5):
                await asyncio.sleep(0)
            assert not first.done()  # one more is on its way: the batch waits for it
            on_the_way[0] = 0
            second = asyncio.create_task(batcher.submit([2]))
            rows = await asyncio.wait_for(asyncio.gather(first, second), PATIENCE_S)
            assert rows == [echo([1]), echo([2])]
            # alone: nothing on its way, so no wait at all
            assert await asyncio.wait_for(batcher.submit([3]), PATIENCE_S) == echo([3])
            return batcher.sizes

    assert asyncio.run(main()) == [2, 1]


def test_after_a_batch_the_queue_waits_for_its_callers_to_come_back():
    """Closed-loop callers (each sends again once answered) keep sharing one batch: the request
    queued behind a batch waits for that batch's callers rather than go alone, and they
    alternate no more; a caller that does not come back costs at most ``max_wait_ms``."""
    gate = threading.Event()
    calls: list[list] = []

    def predict(items: list) -> list[dict]:
        calls.append(list(items))
        if len(calls) == 1:
            gate.wait(PATIENCE_S)  # hold the first batch, so that "c" queues behind it
        return echo(items)

    async def main(come_back: bool) -> list[int]:
        calls.clear()
        gate.clear()
        with ThreadPoolExecutor(1) as pool:
            # nothing counted on its way: a batch waits only for the callers it answered
            batcher = Batcher(predict, 64, 1000 * PATIENCE_S if come_back else 20, pool,
                              incoming=lambda: 0)

            async def caller(item: str) -> list[list[dict]]:
                first = await batcher.submit([item])
                return [first, await batcher.submit([item + "2"])] if come_back else [first]

            callers = [asyncio.create_task(caller(x)) for x in "ab"]
            for _ in range(5):
                await asyncio.sleep(0)  # "a" and "b" form the first batch, held by the gate
            late = asyncio.create_task(batcher.submit(["c"]))
            await asyncio.sleep(0)
            gate.set()
            got = await asyncio.wait_for(asyncio.gather(late, *callers), PATIENCE_S)
            assert got[0] == echo(["c"]) and got[1][0] == echo(["a"])
            if come_back:
                assert got[2][1] == echo(["b2"])
            return batcher.sizes

    assert asyncio.run(main(True)) == [2, 3]  # "c" waited for "a2" and "b2"
    assert calls[1] == ["c", "a2", "b2"]
    assert asyncio.run(main(False)) == [2, 1]  # nobody came back: "c" went alone


def test_a_batch_that_raises_is_predicted_item_by_item_and_marks_the_bad_items():
    def predict(items: list) -> list[dict]:
        if "bad" in items:
            raise RuntimeError("cannot read 'bad'")
        return echo(items)

    rows = predict_each(predict, ["a", "bad", "c"])
    assert rows[0] == echo(["a"])[0] and rows[2] == echo(["c"])[0]
    assert rows[1] == {"input": "bad", "error": "RuntimeError: cannot read 'bad'"}

    async def main() -> list[list[dict]]:
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(predict, 64, 20, pool)
            return await asyncio.gather(batcher.submit(["x", "y"]), batcher.submit(["bad"]),
                                        batcher.submit(["z"]))

    good, bad, other = asyncio.run(main())
    assert good == echo(["x", "y"]) and other == echo(["z"])
    assert bad[0]["error"].startswith("RuntimeError")


def test_settings_refuse_nonsense():
    with pytest.raises(ValueError, match="max_batch: expected >= 1, got 0"):
        ServeSettings(max_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        ServeSettings(max_wait_ms=-1)


# ------------------------------------------------------------------------------ the API
def assert_rows_close(got, expected) -> None:
    """Rows equal but for the rounding of floats: a batch that holds other requests' inputs
    runs other matrix shapes, whose sums may round differently in the last bits."""
    if isinstance(expected, float) and isinstance(got, float):
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    elif isinstance(expected, dict) and isinstance(got, dict):
        assert got.keys() == expected.keys()
        for key in expected:
            assert_rows_close(got[key], expected[key])
    elif isinstance(expected, list) and isinstance(got, list):
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            assert_rows_close(a, b)
    else:
        assert got == expected


def post(base: str, name: str, body, **kwargs) -> httpx.Response:
    return httpx.post(f"{base}/v1/models/{name}/predict", json=body, timeout=PATIENCE_S,
                      **kwargs)


def test_the_api_answers_what_predict_answers_in_process(runs):
    sst, tpsa = runs["sst"], need(runs, "tpsa")
    sentences = ["a gorgeous , witty , seductive movie .", "(3 (2 It) (4 (3 works) (2 .)))",
                 "", "the script is not dull"]
    smiles = ["CCO", "c1ccccc1O", "not-a-smiles", ""]
    with live(create_app([sst, tpsa])) as (base, _):
        models = httpx.get(f"{base}/v1/models").json()["models"]
        assert [(m["name"], m["task"], m["format_version"]) for m in models] == \
            [("sst", "sst", 1), ("tpsa", "molecules", 1)]
        sentiment, molecules = structrnn.load(sst), structrnn.load(tpsa)
        assert models[0]["labels"] == list(sentiment.class_names)
        assert models[0]["tree"] == "balanced"
        assert models[1]["targets"] == ["tpsa"] and models[1]["units"] == {"tpsa": "Å²"}
        assert models[1]["ensemble"] == 2
        for path in ("/health", "/ready"):
            assert httpx.get(base + path).json()["status"] == "ok"
        # JSON carries floats exactly (shortest repr round-trips), so the rows are equal
        assert post(base, "sst", {"inputs": sentences}).json()["rows"] == \
            sentiment.predict(sentences)
        assert post(base, "sst", {"inputs": sentences, "nodes": True}).json()["rows"] == \
            sentiment.predict(sentences, nodes=True)
        assert post(base, "tpsa", {"inputs": smiles}).json()["rows"] == molecules.predict(smiles)
        svg = httpx.get(f"{base}/v1/models/tpsa/molecule.svg", params={"smiles": "CCO"})
        assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
        assert "<svg" in svg.text
        bad_svg = httpx.get(f"{base}/v1/models/tpsa/molecule.svg", params={"smiles": "C1CC("})
        assert bad_svg.status_code == 422 and "invalid SMILES" in bad_svg.json()["error"]
        missing = post(base, "nope", {"inputs": ["x"]})
        assert missing.status_code == 404 and "sst, tpsa" in missing.json()["error"]
        assert post(base, "tpsa", {"inputs": ["C"], "nodes": True}).status_code == 422
        assert "/v1/models/{name}/predict" in httpx.get(f"{base}/openapi.json").json()["paths"]


def test_the_page_loads_nothing_from_the_network(runs):
    page = (STATIC / "index.html").read_text()
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    assert links and not [u for u in links if re.match(r"(?i)\s*(https?:)?//", u)], links
    script = (STATIC / "app.js").read_text()
    assert not re.search(r"""fetch\(\s*["'`]\s*(https?:)?//""", script)
    with live(create_app([runs["sst"]])) as (base, _):
        for link in links:  # every file the page names is served by the package
            assert httpx.get(f"{base}/{link}").status_code == 200, link
        assert httpx.get(f"{base}/").text == page


def test_concurrent_clients_with_different_inputs_get_their_own_rows(runs):
    predictor = structrnn.load(runs["sst"])
    words = ["good", "bad", "dull", "witty", "movie", "script", "not", "very", "the", "awful"]
    requests = [[" ".join(words[(k + j) % 10] for j in range(3 + k % 5)) for _ in range(k % 3 + 1)]
                for k in range(24)]
    app = create_app([runs["sst"]], settings=ServeSettings(max_batch=32, max_wait_ms=50))
    with live(app) as (base, _):
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda r: post(base, "sst", {"inputs": r}), requests))
        batcher = app.state.serve.models["sst"].batcher(False, None)
    for request, answer in zip(requests, answers, strict=True):
        assert answer.status_code == 200
        assert_rows_close(answer.json()["rows"], predictor.predict(request))
    assert sum(batcher.sizes) == sum(map(len, requests))


def test_ready_answers_503_until_every_run_is_loaded(runs, monkeypatch):
    import structrnn.serve.app as app_module

    gate = threading.Event()
    real_load = app_module.load

    def slow_load(path, *args):
        gate.wait(PATIENCE_S)
        return real_load(path, *args)

    monkeypatch.setattr(app_module, "load", slow_load)
    with live(create_app([runs["sst"]]), ready=False) as (base, _):
        for path in ("/health", "/ready"):
            answer = httpx.get(base + path)
            assert answer.status_code == 503 and answer.json()["status"] == "loading"
        early = post(base, "sst", {"inputs": ["good"]})
        assert early.status_code == 503 and "loading" in early.json()["error"]
        gate.set()
        wait_ready(base)
        assert post(base, "sst", {"inputs": ["good"]}).status_code == 200


class SlowPredictor:
    """A stand-in predictor whose predictions wait for ``gate`` (the empty input, which the
    server predicts once at loading for the shape of an error row, does not)."""

    task = "slow"

    def __init__(self) -> None:
        self.started, self.gate = threading.Event(), threading.Event()

    def predict(self, inputs: list, **options) -> list[dict]:
        if inputs != [""]:
            self.started.set()
            self.gate.wait(PATIENCE_S)
        return [{"input": x, "value": len(x), "error": None} for x in inputs]


def test_shutdown_finishes_the_requests_in_flight():
    slow = SlowPredictor()
    with live(create_app({"slow": slow})) as (base, server):
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(post, base, "slow", {"inputs": ["abc", "de"]})
            assert slow.started.wait(PATIENCE_S)
            server.should_exit = True  # what uvicorn's SIGTERM handler does
            time.sleep(0.2)  # let the server begin its shutdown while the request is held
            slow.gate.set()
            done = answer.result(PATIENCE_S)
    assert done.status_code == 200
    assert done.json()["rows"] == [{"input": "abc", "value": 3, "error": None},
                                   {"input": "de", "value": 2, "error": None}]


# ------------------------------------------------------------------------------ the command
def serve_process(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                         if p)}
    return subprocess.Popen([sys.executable, "-m", "structrnn", "serve", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def raw_request(port: int, head: bytes, chunks: list[bytes]) -> tuple[int, dict]:
    """Send a request by hand (headers, then the body piece by piece, stopping when the server
    has answered) and read the status and the JSON answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S) as sock:
        sock.sendall(head)
        with contextlib.suppress(OSError):  # the server may answer and close early
            for chunk in chunks:
                sock.sendall(chunk)
        reply = b""
        while True:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            reply += part
    header, _, body = reply.partition(b"\r\n\r\n")
    return int(header.split()[1]), json.loads(body)


def test_the_server_holds_under_bad_input_then_answers_right_and_stops_on_sigterm(runs):
    sst, tpsa = runs["sst"], need(runs, "tpsa")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = serve_process(str(sst), str(tpsa), "--port", str(port), "--max-items", "1000")
    try:
        wait_ready(base, process)
        url = "/v1/models/tpsa/predict"
        big = json.dumps({"inputs": ["C" * 1000] * 1100}).encode()  # 1.1 MB
        assert len(big) > 1 << 20

        def healthy() -> None:
            assert httpx.get(f"{base}/health").status_code == 200

        # declared too large: refused on the headers, before any of the body is sent
        status, answer = raw_request(port, (f"POST {url} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                            f"application/json\r\nContent-Length: {len(big)}"
                                            "\r\n\r\n").encode(), [])
        assert status == 413 and "--max-body" in answer["error"]
        healthy()
        # no length declared (chunked): refused once more than 1 MiB has arrived
        chunked = [b"%x\r\n%s\r\n" % (len(big[i:i + 65536]), big[i:i + 65536])
                   for i in range(0, len(big), 65536)] + [b"0\r\n\r\n"]
        status, answer = raw_request(port, (f"POST {url} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                            "application/json\r\nTransfer-Encoding: chunked"
                                            "\r\n\r\n").encode(), chunked)
        assert status == 413 and "too large" in answer["error"]
        healthy()
        many = post(base, "tpsa", {"inputs": ["C"] * 1001})
        assert many.status_code == 413 and "--max-items" in many.json()["error"]
        healthy()
        for body in (b"{not json", b'{"inputs": "CCO"}', b'{"inputs": [1], "extra": 2}',
                     b'["CCO"]'):
            answer = httpx.post(base + url, content=body,
                                headers={"Content-Type": "application/json"})
            assert 400 <= answer.status_code < 500 and answer.json()["error"], body
            healthy()
        [row] = post(base, "sst", {"inputs": [" ".join(["good"] * 10_000)]}).json()["rows"]
        assert row["label"] is None and "10000 words" in row["error"]
        healthy()
        invalid = [f"C1CC({k}" for k in range(1000)]
        rows = post(base, "tpsa", {"inputs": invalid}).json()["rows"]
        assert len(rows) == 1000
        assert all(r["tpsa"] is None and "invalid SMILES" in r["error"] for r in rows)
        healthy()
        good = ["CCO", "c1ccccc1O", "CC(=O)O"]
        assert post(base, "tpsa", {"inputs": good}).json()["rows"] == \
            structrnn.load(tpsa).predict(good)
        sentences = ["a witty , moving film .", "dull"]
        assert post(base, "sst", {"inputs": sentences}).json()["rows"] == \
            structrnn.load(sst).predict(sentences)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=PATIENCE_S)
        finally:
            if process.poll() is None:
                process.kill()
    # uvicorn shuts down gracefully, then re-raises the signal it caught, so the parent sees
    # the process ended by SIGTERM (Python's default handler), as a process manager expects
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err and "Traceback" not in err


def test_a_run_that_does_not_load_stops_the_server_with_code_2(tmp_path):
    process = serve_process(str(tmp_path), "--port", str(free_port()))
    try:
        _, err = process.communicate(timeout=PATIENCE_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, err
    assert "no config.json" in err


def test_cli_serve_refuses_a_missing_run_or_two_runs_of_one_name(tmp_path, capsys):
    assert cli.main(["serve", str(tmp_path / "nope")]) == 2
    assert "nope: no such run folder or model file" in capsys.readouterr().err
    (tmp_path / "a" / "run").mkdir(parents=True)
    (tmp_path / "b" / "run").mkdir(parents=True)
    assert cli.main(["serve", str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")]) == 2
    assert "two runs named 'run'" in capsys.readouterr().err


def test_bench_serve_runs_a_bounded_load_and_reports_every_figure(runs, tmp_path, capsys):
    from structrnn.benchmarks import serve as bench

    assert bench.percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert bench.percentile([3.0, 1.0, 2.0, 4.0], 99) == 4.0
    texts = bench.sentences(5, 20)
    assert len(texts) == 5 and all(len(t.split()) == 20 for t in texts)
    out = tmp_path / "serve.json"
    record = bench.main(["--run", str(runs["sst"]), "--requests", "12", "--time-limit", "60",
                         "--warmup", "1", "--sentences", "16", "--rounds", "2", "--json",
                         str(out)])
    printed = capsys.readouterr().out
    assert "command:" in printed and "machine:" in printed and "load (1 min)" in printed
    for mode in ("batching", "no batching"):
        assert [r["clients"] for r in record["results"][mode]] == [1, 8, 64]
        assert all(r["failed"] == 0 and r["requests"] >= 12 for r in record["results"][mode])
    assert json.loads(out.read_text())["benchmark"] == "serve"
