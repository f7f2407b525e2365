"""A model's streamed output: its generator adapted to one async iterator that holds the
call's slot until it ends or is closed, with sync generators driven in the thread pool."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

from daemon.errors import DeadlineExceeded
from daemon.model.interrupt import error_instead, interrupt
from daemon.model.truss_compat import model_error
from daemon.request import Request, Response

log = logging.getLogger("twinserve.model")

_DONE = object()


class ChunkStream:
    """The chunks of a streaming method, in order, as the model produces them.

    Holds the method's concurrency slot (and keeps the call in flight, under its time limit)
    until it ends or is closed. Closing it before the
    end (client gone, write failed) counts as a disconnect, so engine work tied to the
    request stops too. Always `await aclose()` when done.
    """

    def __init__(self, chunks: AsyncIterator[Any], request: Request, release: Callable[[], None],
                 method: str, write_timeout_s: float | None, *,
                 read_timeout_s: float | None = None, head: Response | None = None) -> None:
        self._chunks = chunks
        self._request = request
        self._release: Callable[[], None] | None = release
        self._method = method
        self._finished = False
        # The status, content type and headers the model chose (a starlette
        # StreamingResponse), or None: the transport's defaults. Its body is unused.
        self.head = head
        # The write watchdog: whether a chunk is out with the transport (until it comes back
        # for the next), and how many went out. One timer per stream checks every
        # write_timeout_s whether the same chunk is still out: no clock read per chunk.
        self._write_timeout_s = write_timeout_s
        self._out = False
        self._handed = 0
        self._watchdog: asyncio.TimerHandle | None = None
        # The read watchdog (runtime.streaming_read_timeout): when the model was last asked
        # for a chunk, and one timer that ends the stream once it has waited that long.
        self._read_timeout_s = read_timeout_s
        self._loop = asyncio.get_running_loop()
        self._asked_at = 0.0
        self._read_watchdog: asyncio.TimerHandle | None = None

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> Any:
        self._out = False
        if self._read_timeout_s is not None:
            self._asked_at = self._loop.time()
            if self._read_watchdog is None:
                self._start_read_watchdog()
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._finished = True
            await self.aclose()
            raise
        except asyncio.CancelledError:
            self._request.mark_disconnected()
            await self.aclose()
            error = error_instead(self._request)
            if error is not None:
                raise error from None
            raise
        except Exception as exc:
            self._finished = True
            await self.aclose()
            raise model_error(self._method, exc, self._request) from exc
        self._out = True
        self._handed += 1
        if self._watchdog is None and self._write_timeout_s is not None:
            task = asyncio.current_task()  # the transport's, which writes what we hand out
            assert task is not None
            self._watchdog = asyncio.get_running_loop().call_later(
                self._write_timeout_s, self._check_writing, task, self._handed)
        return chunk

    def _start_read_watchdog(self) -> None:
        assert self._read_timeout_s is not None
        task = asyncio.current_task()  # the transport's, which asks for the chunks
        assert task is not None
        self._read_watchdog = self._loop.call_at(self._asked_at + self._read_timeout_s,
                                                 self._check_reading, task)

    def _check_reading(self, task: asyncio.Task[Any]) -> None:
        """End the stream if the model has been asked for a chunk for read_timeout_s without
        producing it (Truss's runtime.streaming_read_timeout); else look again when that
        could next be true."""
        assert self._read_timeout_s is not None
        loop = self._loop
        if not self._out and loop.time() - self._asked_at >= self._read_timeout_s:
            log.error("request %s: %s produced nothing for %gs; ending its stream "
                      "(runtime.streaming_read_timeout)", self._request.request_id,
                      self._method, self._read_timeout_s)
            self._read_watchdog = None
            interrupt(self._request, task, "stream_timeout", functools.partial(
                DeadlineExceeded, f"the model produced nothing for {self._read_timeout_s:g}s "
                "(runtime.streaming_read_timeout)"))
            return
        at = (loop.time() if self._out else self._asked_at) + self._read_timeout_s
        self._read_watchdog = loop.call_at(at, self._check_reading, task)

    def _check_writing(self, task: asyncio.Task[Any], handed: int) -> None:
        """End the call if the chunk that was out at the last check still is: the client
        stopped reading (it has waited write_timeout_s, at most twice that), and its call must
        not hold a slot and a generation forever."""
        assert self._write_timeout_s is not None
        if self._out and self._handed == handed:
            log.warning("request %s: the client read nothing for %gs; ending its stream "
                        "(runtime.write_timeout_s)", self._request.request_id,
                        self._write_timeout_s)
            self._watchdog = None
            interrupt(self._request, task, "write_timeout", functools.partial(
                DeadlineExceeded, f"the client read nothing of its stream for "
                f"{self._write_timeout_s:g}s (runtime.write_timeout_s)"))
            return
        self._watchdog = asyncio.get_running_loop().call_later(
            self._write_timeout_s, self._check_writing, task, self._handed)

    async def aclose(self) -> None:
        """Stop the model's generator and free its slot. Never raises: this is cleanup."""
        release, self._release = self._release, None
        if release is None:
            return
        for watchdog in (self._watchdog, self._read_watchdog):
            if watchdog is not None:
                watchdog.cancel()
        self._watchdog = self._read_watchdog = None
        try:
            if not self._finished:
                self._request.mark_disconnected()
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        except Exception:
            log.exception("%s: error while closing the stream of request %s", self._method,
                          self._request.request_id)
        finally:
            release()


def as_chunks(result: Any, executor: concurrent.futures.Executor,
               request: Request) -> AsyncIterator[Any] | None:
    if inspect.isasyncgen(result):
        return result
    if inspect.isgenerator(result):
        return _iterate_in_threads(result, executor, request)
    return None


async def _iterate_in_threads(gen: Generator[Any, Any, Any], executor: concurrent.futures.Executor,
                              request: Request) -> AsyncIterator[Any]:
    """A sync generator driven one item at a time in the pool."""
    ctx = contextvars.copy_context()
    pending: concurrent.futures.Future[Any] | None = None
    try:
        while True:
            pending = executor.submit(ctx.run, _next_or_done, gen)
            item = await asyncio.wrap_future(pending)
            pending = None
            if item is _DONE:
                return
            yield item
    except asyncio.CancelledError:
        request.mark_disconnected()  # before close(), so the generator's cleanup sees it
        raise
    finally:
        # A generator cannot be closed while next() still runs in a thread: wait for it.
        def close_after_pending(step: concurrent.futures.Future[Any] | None = pending) -> None:
            if step is not None:
                concurrent.futures.wait([step])
            gen.close()

        await asyncio.get_running_loop().run_in_executor(executor, close_after_pending)


def _next_or_done(gen: Generator[Any, Any, Any]) -> Any:
    return next(gen, _DONE)
