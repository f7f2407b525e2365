"""runtime.request_timeout_s: a time limit on a whole call, streaming included."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from daemon.errors import DeadlineExceeded


class Deadline:
    """Cancels the current task once `seconds` pass, and tells that cancellation apart from
    a client's (asyncio.timeout does the same, but only from Python 3.11)."""

    def __init__(self, seconds: float, on_expire: Callable[[], None]) -> None:
        task = asyncio.current_task()
        assert task is not None, "a Deadline must be made inside a task"
        self.seconds = seconds
        self.expired = False
        self._task = task
        self._on_expire = on_expire
        self._handle = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self._on_expire()  # first, so whatever the cancellation wakes already knows why
        self._task.cancel()

    def stop(self) -> None:
        self._handle.cancel()

    def error(self) -> DeadlineExceeded:
        """The error to raise in place of the CancelledError this deadline caused."""
        uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()
        return DeadlineExceeded(
            f"request exceeded runtime.request_timeout_s ({self.seconds:g}s)"
        )
