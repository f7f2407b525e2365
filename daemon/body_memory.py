"""The memory that request bodies may hold at once, read and parsed, across both transports.

A body larger than `request.SMALL_BODY_BYTES` takes its share before it is parsed: one that
has already arrived (a unary gRPC message) is measured (`codec.parsed_size_bound`) and
waits for that much; one that has to be read first reserves what it could cost at worst
(`codec.parsed_size_worst`, capped at the whole pool), and once read and measured keeps only
its measure. Either holds its share until its call ends. So the bodies being read, parsed
and served never hold more than runtime.max_body_memory_bytes together, and no reservation
ever has to grow (which could leave every holder waiting on the others). A body whose
measure alone exceeds the pool is refused (413) without being parsed.

Waiting is first come, first served: a large body is not passed over by a stream of small
ones. It ends when the call does (its client leaves, or its time limit passes).
"""

from __future__ import annotations

import asyncio
import collections

from daemon.errors import ClientError

MiB = 1024 * 1024


class BodyTooLargeToParse(ClientError):
    kind = "request_too_large"

    def __init__(self, need: int, capacity: int) -> None:
        super().__init__(
            f"this body would take ~{need / MiB:.0f} MiB of memory once parsed, more than "
            f"runtime.max_body_memory_bytes ({capacity / MiB:.0f} MiB); send a smaller or "
            "binary body", 413)


class BodyMemory:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    @property
    def held(self) -> int:
        return self.capacity - self._free

    async def reserve(self, size: int) -> int:
        """Take `size` bytes, waiting in line (BodyTooLargeToParse if that is more than the
        whole pool); returns `size`, for `release()`."""
        if size > self.capacity:
            raise BodyTooLargeToParse(size, self.capacity)
        if not self._waiters and size <= self._free:
            self._free -= size
            return size
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(size)  # granted just as the call ended
            else:
                try:
                    self._waiters.remove(entry)
                except ValueError:
                    pass  # its turn came after it was cancelled: _wake passed it over
                self._wake()  # those behind it may fit now
            raise
        return size

    def keep(self, reserved: int, need: int) -> int:
        """Shrink a reservation to what the body turned out to need (BodyTooLargeToParse if
        that is more than the pool); returns what is now held."""
        if need > self.capacity:
            self.release(reserved)
            raise BodyTooLargeToParse(need, self.capacity)
        need = min(need, reserved)  # the worst case was reserved: the need cannot be larger
        self.release(reserved - need)
        return need

    def release(self, size: int) -> None:
        self._free += size
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._waiters[0][0] <= self._free:
            size, waiter = self._waiters.popleft()
            if not waiter.done():
                self._free -= size
                waiter.set_result(None)
