"""The calls being handled, each with its task and its time limit's timer, so a drain can
wait for them to finish, or end them when it runs out of time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from daemon.errors import TwinserveError
from daemon.metrics import Metrics
from daemon.model.interrupt import interrupt
from daemon.request import Request


class InFlight:
    """The drain awaits a future that the last call to end sets, rather than polling."""

    def __init__(self, metrics: Metrics | None) -> None:
        self._metrics = metrics
        self._live: dict[Request, tuple[asyncio.Task[Any], asyncio.TimerHandle | None]] = {}
        self._idle: asyncio.Future[None] | None = None  # made by wait_idle, set by end

    def __len__(self) -> int:
        return len(self._live)

    def add(self, request: Request, task: asyncio.Task[Any],
            timer: asyncio.TimerHandle | None) -> None:
        self._live[request] = (task, timer)

    def end(self, request: Request) -> None:
        """The call is over: stop its timer, count why it ended early if it did."""
        _, timer = self._live.pop(request)
        if timer is not None:
            timer.cancel()
        request.release_body()
        if request.disconnect_reason is not None and self._metrics is not None:
            self._metrics.cancellations.labels(request.disconnect_reason).inc()
        if not self._live and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is in flight; False if some still are after `timeout` s."""
        if not self._live:
            return True
        if self._idle is None or self._idle.done():
            self._idle = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._idle), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def interrupt_all(self, reason: str, error: Callable[[], TwinserveError]) -> None:
        """End every call still in flight, telling its client `error()`."""
        for request, (task, _) in list(self._live.items()):
            interrupt(request, task, reason, error)
