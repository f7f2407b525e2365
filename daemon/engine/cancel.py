"""The one-way "stop now" signal between whoever cancels and a backend's generation."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable

log = logging.getLogger("twinserve.engine")


class CancelSignal:
    """Set once, from any thread; observed by backends in whatever way suits them.

    Sync code (a generate() thread) polls `event`; loop code awaits `sleep()` or registers
    `on_cancel` callbacks, which always run on the event-loop thread, so an adapter may call
    loop-bound APIs (TensorRT-LLM's `abort()`) from them.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.event = threading.Event()
        self.set_at: float | None = None  # loop.time() when set; for the cancel-latency metric
        self._loop = loop
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self._waiters: set[asyncio.Future[bool]] = set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def set(self) -> None:
        """Idempotent, thread-safe, never raises."""
        with self._lock:
            if self.event.is_set():
                return
            self.event.set()
        try:
            if _running_loop() is self._loop:
                self._fire()
            else:
                self._loop.call_soon_threadsafe(self._fire)
        except RuntimeError:
            pass  # the loop is closed: nothing is left to stop

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the loop thread once the signal is set (soon, if it already is)."""
        self._callbacks.append(callback)
        if self.event.is_set() and self.set_at is not None:
            self._loop.call_soon(self._fire)

    async def sleep(self, delay: float) -> bool:
        """Sleep `delay` seconds (inf: until set); True at once if, or as soon as, it is set."""
        if self.event.is_set():
            return True
        waiter: asyncio.Future[bool] = self._loop.create_future()
        handle = (None if delay == math.inf
                  else self._loop.call_later(delay, _resolve, waiter, False))
        self._waiters.add(waiter)
        try:
            return await waiter
        finally:
            if handle is not None:
                handle.cancel()
            self._waiters.discard(waiter)

    def _fire(self) -> None:
        if self.set_at is None:
            self.set_at = self._loop.time()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a backend's abort hook must not stop the others
                log.exception("cancel callback failed")
        for waiter in list(self._waiters):
            _resolve(waiter, True)


def _resolve(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
