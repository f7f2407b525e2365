"""Admission control: N calls running, a bounded queue waiting, the rest refused at once.

One controller serves both transports, so a burst on gRPC and one on HTTP share the limits.
"""

from __future__ import annotations

import asyncio
import collections

from daemon.errors import Overloaded


class AdmissionController:
    """`concurrency` slots; up to `max_queue` waiters (None: unbounded), each for at most
    `queue_timeout_s` (None: as long as it takes)."""

    def __init__(self, concurrency: int, max_queue: int | None = None,
                 queue_timeout_s: float | None = None) -> None:
        self._free = concurrency
        self._concurrency = concurrency
        self._max_queue = max_queue
        self._queue_timeout_s = queue_timeout_s
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def concurrency(self) -> int:
        return self._concurrency

    @property
    def running(self) -> int:
        return self._concurrency - self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a free slot if there is one and nobody is waiting for it; never waits."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    def check_room(self) -> None:
        """Overloaded now if a call could only be refused when it asks for a slot (every
        slot taken, the line full): lets the pipeline refuse before reading a body."""
        if self._free == 0 and self._line_full():
            raise self._full()

    async def acquire(self) -> None:
        """Take a slot, waiting in line if allowed; Overloaded when the line is full or slow."""
        if self.try_acquire():
            return
        if self._line_full():
            raise self._full()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            if self._queue_timeout_s is None:
                await waiter
            else:
                await asyncio.wait_for(asyncio.shield(waiter), self._queue_timeout_s)
        except asyncio.TimeoutError:
            self._abandon(waiter)
            raise Overloaded(
                f"request waited {self._queue_timeout_s:g}s in the queue without a free slot "
                "(runtime.queue_timeout_s); retry later"
            ) from None
        except BaseException:
            self._abandon(waiter)
            raise

    def _line_full(self) -> bool:
        return self._max_queue is not None and len(self._waiters) >= self._max_queue

    def _full(self) -> Overloaded:
        return Overloaded(
            f"server is at capacity: {self._concurrency} running and {len(self._waiters)} "
            f"queued (runtime.max_queue={self._max_queue}); retry later")

    def release(self) -> None:
        """Hand the slot to the first live waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; _free is unchanged
                return
        self._free += 1

    def _abandon(self, waiter: asyncio.Future[None]) -> None:
        """A waiter leaves the line; if it had already been handed a slot, pass that on."""
        if waiter.done() and not waiter.cancelled():
            self.release()
            return
        waiter.cancel()
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
