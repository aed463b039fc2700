"""Dynamic batching: requests that arrive within a few milliseconds of each other share one
``predict`` call, run on a worker thread so that the event loop keeps answering.

::

    batcher = Batcher(lambda items: predictor.predict(items), max_batch=64, max_wait_ms=5,
                      executor=ThreadPoolExecutor(1))
    rows = await batcher.submit(["a fine film .", "dull ."])   # exactly these two rows

A batch starts with the oldest waiting request and takes the next ones while their items fit in
``max_batch`` (a request larger than ``max_batch`` goes alone: it is never split). While one batch
runs, new requests queue, so under load each batch picks up everything that arrived meanwhile;
when the queue is short the batcher waits up to ``max_wait_ms`` for more, but only while other
requests are on their way (``incoming``: the server counts those it is still reading), so that
a lone client pays no wait. Right after a batch, the requests queued behind it also wait (up to
``max_wait_ms``) for as many requests as that batch answered: callers that send again once
answered keep sharing one batch instead of settling into two halves that alternate, each
waiting for the other's batch as well as its own. ``max_batch=1`` turns batching off: one
request, one ``predict`` call.

When a batched ``predict`` raises (one bad item should not, but may), every item of the batch is
predicted alone, and an item that still raises gets its own error row; the others are unharmed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batcher", "predict_each"]

POLL_S = 0.0005  # how often a waiting batch looks again at the requests on their way
PredictFn = Callable[[list[Any]], list[dict]]
ErrorRow = Callable[[Any, str], dict]


def _plain_error_row(item: Any, message: str) -> dict:
    return {"input": item if isinstance(item, str) else repr(item), "error": message}


def predict_each(predict: PredictFn, items: Sequence[Any],
                 error_row: ErrorRow = _plain_error_row) -> list[dict]:
    """``predict(items)``; when it raises, ``predict([item])`` for each item, and
    ``error_row(item, reason)`` for an item that raises alone. One row per item, in order."""
    items = list(items)
    try:
        rows = predict(items)
        if len(rows) == len(items):
            return rows
    except Exception:  # noqa: BLE001 - any failure of the batch: find the items that fail
        pass
    out = []
    for item in items:
        try:
            [row] = predict([item])
        except Exception as err:  # noqa: BLE001 - the reason goes into the item's own row
            row = error_row(item, f"{type(err).__name__}: {err}")
        out.append(row)
    return out


@dataclass
class _Request:
    items: list[Any]
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    """Joins concurrent :meth:`submit` calls into batched ``predict`` calls.

    Args:
        predict: items -> one row per item (a ``Predictor.predict`` with its options bound).
        max_batch: the most items one ``predict`` call takes (1: no batching).
        max_wait_ms: how long a batch that is not full waits for more requests.
        executor: where ``predict`` runs (one worker thread: the models run one batch at a
            time, and the event loop stays free).
        error_row: the row of an item that fails alone (item, reason) -> dict.
        incoming: the number of requests on their way that may join (None: always wait the
            whole ``max_wait_ms`` for a batch that is not full).

    Attributes:
        batches: the number of ``predict`` calls made; ``items``: the items they took;
            ``sizes``: their item counts (the last 1000).
    """

    def __init__(self, predict: PredictFn, max_batch: int, max_wait_ms: float,
                 executor: Executor, error_row: ErrorRow = _plain_error_row,
                 incoming: Callable[[], int] | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms: expected >= 0, got {max_wait_ms}")
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait_ms / 1000
        self.executor, self.error_row, self.incoming = executor, error_row, incoming
        self.batches = self.items = self.holding = 0
        self.sizes: list[int] = []
        self._queue: list[_Request] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    async def submit(self, items: Sequence[Any]) -> list[dict]:
        """The rows of ``items``, in order, once the batch holding them has run."""
        loop = asyncio.get_running_loop()
        request = _Request(list(items), loop.create_future())
        if not request.items:
            return []
        self._queue.append(request)
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())
        self._wake.set()
        self.holding += 1
        try:
            return await request.future
        finally:
            self.holding -= 1

    def _take(self) -> list[_Request]:
        """The oldest request and those after it whose items still fit in ``max_batch``."""
        batch = [self._queue.pop(0)]
        size = len(batch[0].items)
        while self._queue and size + len(self._queue[0].items) <= self.max_batch:
            size += len(self._queue[0].items)
            batch.append(self._queue.pop(0))
        return batch

    def _queued(self) -> int:
        return sum(len(r.items) for r in self._queue)

    async def _regroup(self, answered: int) -> None:
        """Right after a batch of ``answered`` items: wait up to ``max_wait`` for as many more
        requests (their callers, answered, send again within a round trip), so that callers
        who wait on each other keep sharing one batch rather than settle into halves that
        alternate, each waiting for the other's batch as well as its own."""
        want = min(self.max_batch, self._queued() + answered)
        deadline = time.perf_counter() + self.max_wait
        while self._queued() < want and (left := deadline - time.perf_counter()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except asyncio.TimeoutError:  # noqa: UP041 - Python 3.10's is another class
                pass

    async def _wait_for_more(self) -> None:
        """Wait until the batch is full, ``max_wait`` has passed since its oldest request
        arrived, or (with ``incoming``) no other request is on its way."""
        deadline = self._queue[0].arrived + self.max_wait
        while self._queued() < self.max_batch:
            left = deadline - time.perf_counter()
            if left <= 0 or (self.incoming is not None and self.incoming() <= 0):
                return
            self._wake.clear()
            # a submit wakes us; a request that ends without one does not, hence the slices
            step = left if self.incoming is None else min(left, POLL_S)
            try:
                await asyncio.wait_for(self._wake.wait(), step)
            except asyncio.TimeoutError:  # noqa: UP041 - Python 3.10's is another class
                pass

    async def _run(self) -> None:
        """Form and run batches while requests wait; ends when the queue is empty."""
        loop = asyncio.get_running_loop()
        answered = 0  # the items of the batch that has just run
        while self._queue:
            if self.max_batch > 1 and self._queued() < self.max_batch and self.max_wait > 0:
                if answered:
                    await self._regroup(answered)
                await self._wait_for_more()
            batch = self._take()
            items = [item for r in batch for item in r.items]
            self.batches += 1
            self.items += len(items)
            self.sizes = [*self.sizes[-999:], len(items)]
            try:
                rows = await loop.run_in_executor(self.executor, predict_each, self.predict,
                                                  items, self.error_row)
            except Exception as err:  # noqa: BLE001 - e.g. the executor shut down
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(err)
                continue
            start = 0
            for r in batch:  # each caller gets exactly its own rows
                if not r.future.done():
                    r.future.set_result(rows[start:start + len(r.items)])
                start += len(r.items)
            answered = len(items)
