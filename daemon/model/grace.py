"""A grace period for model code that watches its request, when its client goes away.

A method that takes no request cannot know its client left, so its call is cancelled at
once (and engine work tied to the request stops). A method that takes the request may poll
`await request.is_disconnected()` (or watch `request.disconnected`) and end its own work:
abort its engine's request, log, return. Cancelling it at once would skip that code, so
its call runs in a task of its own which the client's leaving does not reach. The request
is marked disconnected instead, and the code gets `runtime.cancel_grace_s` to finish; what
it still returns or yields is dropped. If it has not finished by then, or a stream has
yielded 8 more chunks, it is cancelled.
A call the server ends (time limit, drain, a client that stopped reading) is cancelled at
once, as is any call when the grace is 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from daemon.request import Request

log = logging.getLogger("twinserve.model")

Start = Callable[[Any, Request], Awaitable[Any]]
_MORE_CHUNKS = 8  # what a stream may still yield after its client left, besides the one due


def call_with_grace(start: Start, name: str, grace_s: float) -> Start:
    """`start`, run so that a client's leaving gives the call `grace_s` to end itself."""

    async def start_with_grace(inputs: Any, request: Request) -> Any:
        call = asyncio.ensure_future(start(inputs, request))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            await _finish(call, request, name, grace_s)
            raise

    return start_with_grace


async def chunks_with_grace(chunks: AsyncIterator[Any], request: Request, name: str,
                            grace_s: float) -> AsyncIterator[Any]:
    """`chunks`, each produced in a task of its own, so that a client's leaving gives the
    stream `grace_s` to end itself."""
    step: asyncio.Future[Any] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(chunks))
            try:
                chunk = await asyncio.shield(step)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                await _finish(step, request, name, grace_s, chunks)
                raise
            yield chunk
    finally:
        if step is not None and not step.done():
            step.cancel()
            await asyncio.wait([step])  # a generator cannot be closed while a step still runs
        if step is not None and not step.cancelled():
            step.exception()  # retrieved: what a dropped step raised is not an error to report
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _finish(step: asyncio.Future[Any], request: Request, name: str, grace_s: float,
                  rest: AsyncIterator[Any] | None = None) -> None:
    """Let `step` (then what `rest` still yields) finish within `grace_s`, dropping what it
    produces; cancel it if it does not, or at once if the server ended the call."""
    if request.interrupted_by is not None or grace_s <= 0:
        step.cancel()
        return
    request.mark_disconnected()
    try:
        async with asyncio.timeout(grace_s):
            await step
            if rest is not None:
                # A stream that watches its request ends within a chunk or two of seeing the
                # disconnect; one that goes on producing is not watching, and is closed (a
                # generator that never awaits would otherwise hold the loop for good).
                for _ in range(_MORE_CHUNKS):
                    await anext(rest)
                    await asyncio.sleep(0)
                log.warning("request %s: %s kept streaming after its client left; closed",
                            request.request_id, name)
    except (StopAsyncIteration, asyncio.CancelledError):
        pass
    except TimeoutError:
        log.warning("request %s: %s still running %gs after its client left; cancelled "
                    "(runtime.cancel_grace_s)", request.request_id, name, grace_s)
    except Exception:
        log.warning("request %s: %s raised after its client left", request.request_id, name,
                    exc_info=True)
    finally:
        step.cancel()  # a no-op once it is done
