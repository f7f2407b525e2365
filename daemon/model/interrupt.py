"""Ending a call from inside the server: its time limit ran out, or the drain did.

The call's task is cancelled (so whatever it awaits stops at once) after the request is
marked with the reason (so engine work tied to it stops, and sync code sees it). The code
that catches the CancelledError asks `error()` for what the client should get instead.
"""

from __future__ import annotations

import asyncio

from daemon.errors import DeadlineExceeded, NotReady, TwinserveError
from daemon.request import Request

_SERVER_REASONS = frozenset({"timeout", "drain"})


class Interrupt:
    """One per call, made in the call's task; the timer exists only when a limit is set."""

    __slots__ = ("_task", "_request", "_timer", "_timeout_s")

    def __init__(self, request: Request, timeout_s: float | None) -> None:
        task = asyncio.current_task()
        assert task is not None, "an Interrupt must be made inside the call's task"
        self._task = task
        self._request = request
        self._timeout_s = timeout_s
        self._timer = (asyncio.get_running_loop().call_later(timeout_s, self.fire, "timeout")
                       if timeout_s else None)

    @property
    def fired(self) -> bool:
        """Whether the server (not the client) ended the call."""
        return self._request.disconnect_reason in _SERVER_REASONS

    def fire(self, reason: str) -> None:
        if self._request.disconnect_reason is not None:
            return  # already over for the client; nothing to interrupt
        self._request.mark_disconnected(reason)
        self._task.cancel()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def error(self) -> TwinserveError:
        """The error to raise in place of the CancelledError this interrupt caused."""
        uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()
        if self._request.disconnect_reason == "timeout":
            return DeadlineExceeded(
                f"request exceeded runtime.request_timeout_s ({self._timeout_s:g}s)")
        return NotReady("server shut down before the call finished "
                        "(runtime.drain_timeout_s ran out)")
