"""Ending a call from inside the server: its time limit ran out, or the drain did.

The call's task is cancelled (so whatever it awaits stops at once) after the request is
marked with the reason (so engine work tied to it stops, and sync code sees it). The code
that catches the CancelledError asks `error()` for what the client should get instead.
"""

from __future__ import annotations

import asyncio

from daemon.errors import DeadlineExceeded, NotReady, TwinserveError
from daemon.request import Request


class Interrupt:
    def __init__(self, request: Request) -> None:
        task = asyncio.current_task()
        assert task is not None, "an Interrupt must be made inside the call's task"
        self._task = task
        self._request = request
        self._timer: asyncio.TimerHandle | None = None
        self._timeout_s = 0.0
        self.fired = False

    def after(self, seconds: float) -> None:
        """Fire with reason "timeout" once `seconds` have passed (runtime.request_timeout_s)."""
        self._timeout_s = seconds
        self._timer = asyncio.get_running_loop().call_later(seconds, self.fire, "timeout")

    def fire(self, reason: str) -> None:
        if self.fired or self._request.disconnect_reason is not None:
            return  # already over for the client; nothing to interrupt
        self.fired = True
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
