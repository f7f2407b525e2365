"""A body's first bytes, taken in while its call waits for a slot.

A model that reads its own body holds its slot while it reads, so a stalled body is cut by
runtime.body_idle_timeout_s, counted from when the body last moved. But bytes that arrive
while the call is queued sit in the transport's buffer, and the transport does not say when
they came: a client that sent one byte and stalled would look fresh on getting its slot,
and each of a queue of such clients would hold a one-slot model for a whole idle timeout in
turn. So while a call waits, its body is read here, up to `LIMIT` bytes, noting when each
piece came; the model's reads take these pieces first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

LIMIT = 64 * 1024
"""Bytes taken in per waiting call (one inflated piece of a compressed body may pass it).
With runtime.max_queue calls waiting, at most max_queue x LIMIT: 16 MiB at the default 256."""


class BodyPrefetch:
    """Reads `chunks` in a task of its own until `take()`, `LIMIT` bytes, or the end."""

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._chunks = chunks
        self._loop = loop
        self._pieces: list[bytes] = []
        self._size = 0
        self._last_arrival: float | None = None
        self._end: BaseException | None = None  # StopAsyncIteration, or the source's error
        self._taken = False
        self._task = loop.create_task(self._take_in())

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
