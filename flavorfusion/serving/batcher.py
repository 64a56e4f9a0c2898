"""Dynamic batching for one model: concurrent requests (and the instances inside one request) are merged into
one generation call of at most `max_batch_size` items, waiting at most `batch_timeout_ms` for more once the
first item is there. The queue of waiting items is bounded (`max_queue`): a request that would overflow it
is refused at once (`QueueFull`, answered 503 with Retry-After) instead of waiting without bound.

One worker task per batcher takes batches off the queue and runs the (blocking) generation in a thread
(`asyncio.to_thread`), so the event loop keeps accepting and answering requests meanwhile. One worker per
model also means one generate call at a time per model.

When a batch fails, its items are retried one at a time: only the item at fault gets the error. An item whose
request was cancelled (its client left) is dropped before generation if it is still waiting (`on_abandoned`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The batcher's queue has no room for the request's items."""


class Batcher:
    def __init__(self, process: Callable[[list[Any]], Sequence[Any]], max_batch_size: int, batch_timeout_ms: float,
                 max_queue: int, on_batch: Callable[[int], None] | None = None,
                 on_abandoned: Callable[[], None] | None = None):
        if max_batch_size < 1 or max_queue < 1 or batch_timeout_ms < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1 and batch_timeout_ms >= 0")
        self.process, self.max_batch_size, self.max_queue = process, max_batch_size, max_queue
        self.timeout = batch_timeout_ms / 1000
        self.on_batch, self.on_abandoned = on_batch, on_abandoned
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        """Items waiting to be taken into a batch."""
        return self._queue.qsize() if self._queue else 0

    def start(self) -> None:
        """Start the worker on the running loop."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        """The results of `items`, in order; they may be generated in one batch with other requests' items,
        or over several batches when there are more than `max_batch_size`. All of them are queued or none."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        if self.depth + len(items) > self.max_queue:
            raise QueueFull(f"{self.depth} items wait, room for {self.max_queue}")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures, strict=True):
            self._queue.put_nowait((item, future))
        return list(await asyncio.gather(*futures))

    async def _next_batch(self) -> list[tuple[Any, asyncio.Future]]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.timeout
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
            elif remaining <= 0:
                break
            else:
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:  # noqa: UP041  (not TimeoutError on Python 3.10)
                    break
        waiting = [(item, future) for item, future in batch if not future.done()]  # a cancelled request's items go
        if self.on_abandoned:
            for _ in range(len(batch) - len(waiting)):
                self.on_abandoned()
        return waiting

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            if self.on_batch:
                self.on_batch(len(batch))
            try:
                results = await asyncio.to_thread(self.process, [item for item, _ in batch])
            except Exception as err:
                if len(batch) == 1:
                    if not batch[0][1].done():
                        batch[0][1].set_exception(err)
                    continue
                log.warning("a batch of %d failed (%s: %s); retrying its items one at a time", len(batch),
                            type(err).__name__, err)
                await self._one_by_one(batch)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _one_by_one(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        for item, future in batch:
            if future.done():
                continue
            try:
                result = (await asyncio.to_thread(self.process, [item]))[0]
            except Exception as err:
                if not future.done():
                    future.set_exception(err)
            else:
                if not future.done():
                    future.set_result(result)
