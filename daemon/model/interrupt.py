"""Ending a call from inside the server: its time limit ran out, the drain did, or its client
stopped reading its stream.

The call's task is cancelled (so whatever it awaits stops at once) after the request is
marked with the reason (so engine work tied to it stops, and sync code sees it) and with
what the client is to be told instead. The code in that task that catches the
CancelledError, wherever it lands (in the model's call, in a stream, in a transport's
write), asks `error_instead()` for that error and answers with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from daemon.errors import TwinserveError
from daemon.request import Request


def interrupt(request: Request, task: asyncio.Task[Any], reason: str,
              error: Callable[[], TwinserveError]) -> None:
    """End the call with `reason` ("timeout", "drain", "write_timeout"), unless it is already
    over; its client is told `error()` instead of a result."""
    if request.disconnect_reason is None:
        request.mark_disconnected(reason)
        request.interrupted_by = error
        task.cancel()


def error_instead(request: Request) -> TwinserveError | None:
    """Called on a CancelledError in the call's task: the error to answer with when the
    server ended the call (the cancel is then taken back), None when the client did."""
    if request.interrupted_by is None:
        return None
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    return request.interrupted_by()
