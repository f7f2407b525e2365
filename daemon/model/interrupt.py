"""Ending a call from inside the server: its time limit ran out, or the drain did.

The call's task is cancelled (so whatever it awaits stops at once) after the request is
marked with the reason (so engine work tied to it stops, and sync code sees it). The code
in that task that catches the CancelledError asks `error_instead()` what the client should
get in its place.
"""

from __future__ import annotations

import asyncio
from typing import Any

from daemon.errors import DeadlineExceeded, NotReady, TwinserveError
from daemon.request import Request

_SERVER_REASONS = frozenset({"timeout", "drain"})


def interrupt(request: Request, task: asyncio.Task[Any], reason: str) -> None:
    """End the call with `reason` ("timeout" or "drain"), unless it is already over."""
    if request.disconnect_reason is None:
        request.mark_disconnected(reason)
        task.cancel()


def error_instead(request: Request, timeout_s: float | None) -> TwinserveError | None:
    """Called on a CancelledError in the call's task: the error to raise in its place when
    the server ended the call (the cancel is then taken back), None when the client did."""
    reason = request.disconnect_reason
    if reason not in _SERVER_REASONS:
        return None
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    if reason == "timeout":
        return DeadlineExceeded(f"request exceeded runtime.request_timeout_s ({timeout_s:g}s)")
    return NotReady("server shut down before the call finished "
                    "(runtime.drain_timeout_s ran out)")
