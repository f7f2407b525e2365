"""One session of a model's `websocket` method, from accept to close, for both transports.

The method runs in a task of its own, so that a client that goes away (its connection or
call drops, which cancels the transport's handler) does not cancel the model's code
mid-await: as with starlette, the model's next receive or send raises WebSocketDisconnect
(code 1006), and it gets runtime.cancel_grace_s to return before it is cancelled.

How a session ends, and the close the client gets:
- the method returns: 1000, unless it closed the session itself;
- the client closed: nothing more to send (the method sees WebSocketDisconnect);
- the client sent a frame the method cannot take (daemon/websocket.py BadFrame): its code;
- the method raised: 1011, and the traceback is logged; the daemon serves on;
- no frame either way for runtime.session_idle_timeout_s: 1001;
- the drain ran out (SIGTERM): 1001.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.config import RuntimeConfig
from daemon.model.interrupt import error_instead
from daemon.websocket import (
    GOING_AWAY,
    NORMAL,
    SERVER_ERROR,
    UNSUPPORTED_DATA,
    BadFrame,
    WebSocket,
    WebSocketDisconnect,
)

log = logging.getLogger("twinserve.model")

SessionMethod = Callable[[WebSocket], Awaitable[Any]]
NOT_IMPLEMENTED = "WebSocket is not implemented on this deployment."  # Truss's words


@dataclasses.dataclass(frozen=True)
class SessionLimits:
    """runtime.session_idle_timeout_s (None: none), runtime.max_frame_bytes, and the
    grace a method gets to return once its client has gone (runtime.cancel_grace_s)."""

    idle_timeout_s: float | None = 300.0
    max_frame_bytes: int = 16 * 1024 * 1024
    grace_s: float = 5.0

    @classmethod
    def of(cls, runtime: RuntimeConfig) -> SessionLimits:
        return cls(runtime.session_idle_timeout_s, runtime.max_frame_bytes,
                   runtime.cancel_grace_s)


async def not_implemented(ws: WebSocket) -> None:
    """What Truss does for a model without `websocket`: accept, then close with 1003 (a
    refused upgrade is hard for WebSocket clients to read)."""
    log.error(NOT_IMPLEMENTED)
    await ws.accept()
    await ws.end(UNSUPPORTED_DATA, NOT_IMPLEMENTED)


async def serve(method: SessionMethod, ws: WebSocket, limits: SessionLimits) -> None:
    """Accept the session, run `method` on it and close it. Returns once it is over;
    re-raises the cancel if the client went away."""
    await ws.accept()
    call = asyncio.ensure_future(_run(method, ws))
    idle = None if limits.idle_timeout_s is None else \
        asyncio.ensure_future(_close_when_idle(ws, call, limits.idle_timeout_s, limits.grace_s))
    try:
        await asyncio.wait([call])  # unlike awaiting `call`, a cancel here leaves it running
    except asyncio.CancelledError:
        error = error_instead(ws.request)
        if error is not None:
            # The server ended the session (the drain ran out): tell the client, then stop.
            await ws.end(GOING_AWAY, error.message)
            await _finish_within(call, limits.grace_s, ws, "the server closed the session")
            return
        if ws.open:  # the client went away
            ws.client_gone()
            ws.request.mark_disconnected()
            await _finish_within(call, limits.grace_s, ws, "its client left")
            raise
        # The connection dropped after the close handshake (aiohttp cancels the handler of
        # any connection that closes): the session ended as it should, news to nobody.
        _uncancel()
        await _finish_within(call, limits.grace_s, ws, "it was closed")
    finally:
        if idle is not None:
            idle.cancel()


async def _run(method: SessionMethod, ws: WebSocket) -> None:
    request_id = ws.request_id
    try:
        await method(ws)
    except WebSocketDisconnect as gone:
        log.info("session %s: client closed (%d)", request_id, gone.code)
        return
    except BadFrame as bad:
        log.info("session %s: %s; closing (%d)", request_id, bad.reason, bad.code)
        await ws.end(bad.code, bad.reason)
        return
    except Exception:
        log.exception("websocket raised while handling session %s", request_id)
        await ws.end(SERVER_ERROR, "websocket failed with an unexpected error; the server "
                                   f"log has the details (request id {request_id})")
        return
    await ws.end(NORMAL, "")  # a no-op if the session is over already


async def _close_when_idle(ws: WebSocket, call: asyncio.Future[None], idle_s: float,
                           grace_s: float) -> None:
    """Close the session once no frame has moved either way for `idle_s` (a client that
    stopped reading what the model sends counts as idle too: its send does not finish)."""
    while (left := ws.last_activity + idle_s - time.monotonic()) > 0:
        await asyncio.sleep(left)
    log.info("session %s: idle for %gs; closing", ws.request_id, idle_s)
    await ws.end(GOING_AWAY, f"session idle for {idle_s:g}s (runtime.session_idle_timeout_s)")
    await _finish_within(call, grace_s, ws, "it was closed for being idle")


async def _finish_within(call: asyncio.Future[None], grace_s: float, ws: WebSocket,
                         why: str) -> None:
    """Give the model's method `grace_s` to return (its receive and send now raise the
    disconnect), then cancel it."""
    done, _ = await asyncio.wait([call], timeout=grace_s)
    if not done:
        log.warning("session %s: websocket still running %gs after %s; cancelled "
                    "(runtime.cancel_grace_s)", ws.request_id, grace_s, why)
        call.cancel()
        await asyncio.wait([call])


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
