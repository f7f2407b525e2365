"""A body's first bytes, taken in while its call waits for a slot.

A model that reads its own body holds its slot while it reads, so a stalled body is cut by
runtime.body_idle_timeout_s, counted from when the body last moved. But bytes that arrive
while the call is queued sit in the transport's buffer, and the transport does not say when
they came: a client that sent one byte and stalled would look fresh on getting its slot,
and each of a queue of such clients would hold a one-slot model for a whole idle timeout in
turn. So while a call waits, its body is read here, up to `LIMIT` bytes, noting when each
piece came; the model's reads take these pieces first. A body that stalls while its call still
waits (nothing for body_idle_timeout_s, or past body_timeout_s in all) is refused there, so
it never takes a slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

LIMIT = 64 * 1024
"""Bytes taken in per waiting call (one inflated piece of a compressed body may pass it).
With runtime.max_queue calls waiting, at most max_queue x LIMIT: 16 MiB at the default 256."""


class BodyPrefetch:
    """Reads `chunks` in a task of its own until `take()`, `LIMIT` bytes, or the end."""

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop,
                 started_at: float) -> None:
        self._chunks = chunks
        self._loop = loop
        self._pieces: list[bytes] = []
        self._size = 0
        self._started_at = started_at
        self._last_arrival: float | None = None
        self._end: BaseException | None = None  # StopAsyncIteration, or the source's error
        self._taken = False
        self._task = loop.create_task(self._take_in())
        self._timer: asyncio.TimerHandle | None = None

    def expire_if_stalled(self, idle_s: float, total_s: float | None,
                          expire: Callable[[bool], None]) -> None:
        """Call `expire(whole)` if, before `take()`, the body sends nothing for `idle_s` or
        runs past `total_s` from its start (`whole` True); one timer, moved as it looks."""

        def check() -> None:
            self._timer = None
            if self._taken or self._end is not None or self._size >= LIMIT:
                return  # in the model's hands, complete, or held back by us: not stalled
            now = self._loop.time()
            if total_s is not None and now >= self._started_at + total_s:
                expire(True)
                return
            last = self._started_at if self._last_arrival is None else self._last_arrival
            if now >= last + idle_s:
                expire(False)
                return
            at = last + idle_s
            if total_s is not None:
                at = min(at, self._started_at + total_s)
            self._timer = self._loop.call_at(at, check)

        check()

    def stop_expiring(self) -> None:
        """The call got its slot: from now on the model's reads apply the body's limits."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _take_in(self) -> None:
        while not self._taken and self._size < LIMIT:
            try:
                piece = await anext(self._chunks)
            except Exception as exc:  # the end (StopAsyncIteration) or an error, for rest()
                self._end = exc
                return
            self._pieces.append(piece)
            self._size += len(piece)
            self._last_arrival = self._loop.time()

    def take(self, started_at: float) -> tuple[list[bytes], float]:
        """Stop taking in; the pieces taken so far, and when the body last moved (loop time):
        its last arrival, or now if it was held back by `LIMIT` rather than idle."""
        self._taken = True
        if self._timer is not None:
            self._timer.cancel()
        pieces, self._pieces = self._pieces, []
        if self._size >= LIMIT:
            return pieces, self._loop.time()
        return pieces, self._last_arrival if self._last_arrival is not None else started_at

    async def rest(self) -> AsyncIterator[bytes]:
        """The body after what `take()` returned: the read in flight when it was called,
        then the rest from the source."""
        if not self._task.done():
            await self._task
        for piece in self._pieces:
            yield piece
        if self._end is not None:
            if isinstance(self._end, StopAsyncIteration):
                return
            raise self._end
        async for chunk in self._chunks:
            yield chunk

    def close(self) -> None:
        """The call is over: stop a read still in flight."""
        self._task.cancel()
        if self._timer is not None:
            self._timer.cancel()
