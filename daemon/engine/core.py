"""The engine core: one per process, shared by every transport.

`submit()` starts a generation as a task of its own that pushes deltas into the
`ResponseIterator` it returns. The backend is driven by that task, not by whoever reads the
iterator, so a cancel stops the backend even when no one reads any more (the reader was a
handler task that the transport just cancelled).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable

from daemon.admission import AdmissionController
from daemon.engine.backend import Backend
from daemon.engine.cancel import CancelSignal
from daemon.engine.generation import Delta, FinishReason, GenerationRequest, Usage
from daemon.engine.stop import StopMatcher
from daemon.errors import ModelError, NotReady, TwinserveError
from daemon.metrics import Metrics
from daemon.request import cancel_with_current_request, current_request

log = logging.getLogger("twinserve.engine")


class _End:
    """Queue marker: the iterator has nothing more to yield."""


_END = _End()
QueueItem = Delta | TwinserveError | _End


class ResponseIterator:
    """The deltas of one submitted generation: `async for delta in it`.

    Each choice ends with a delta carrying its finish_reason; the very last delta also
    carries `usage` (kept afterwards in `.usage`). Errors from the backend are raised from
    the iteration as TwinserveError.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, choices: int) -> None:
        self._queue: asyncio.Queue[QueueItem] = asyncio.Queue()
        self._signals = [CancelSignal(loop) for _ in range(choices)]
        self._cancel_requested = False
        self._task: asyncio.Task[None] | None = None
        self.usage: Usage | None = None
        self.submitted_at = 0.0

    def __aiter__(self) -> ResponseIterator:
        return self

    async def __anext__(self) -> Delta:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # stays ended for any later __anext__
            raise StopAsyncIteration
        if isinstance(item, TwinserveError):
            raise item
        return item

    def cancel(self) -> None:
        """Make the backend stop. Idempotent, thread-safe, never raises."""
        self._cancel_requested = True
        for signal in self._signals:
            signal.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel_requested

    async def aclose(self) -> None:
        """Cancel (if still running) and wait until the backend has stopped."""
        self.cancel()
        if self._task is not None:
            await asyncio.shield(self._task)


@dataclasses.dataclass
class _Progress:
    """What the choices of one generation share: how many still run, and the token counts."""

    remaining: int
    prompt_tokens: int = 0
    completion_tokens: int = 0


class EngineCore:
    """Admits generations, queues them to the backend's batch limit, and keeps the metrics."""

    def __init__(self, backend: Backend, metrics: Metrics, max_queue: int | None = None) -> None:
        self.backend = backend
        self._metrics = metrics
        self._max_queue = max_queue  # generations waiting for the backend; None: unbounded
        self._slots: AdmissionController | None = None
        self._closed = False
        self._live: set[ResponseIterator] = set()

    async def start(self) -> None:
        await self.backend.start()
        self._slots = AdmissionController(self.backend.max_batch_size, self._max_queue)
        self._metrics.engine_batch_size.set_function(self._batch_size)

    def _batch_size(self) -> int:
        reported = self.backend.batch_size()
        if reported is not None:
            return reported
        return self._slots.running if self._slots is not None else 0

    def unavailable(self) -> str | None:
        """Why the engine cannot take generations now (for readiness), else None."""
        if self._slots is None or self._closed:
            return "the engine is shutting down" if self._closed else "the engine has not started"
        return self.backend.unavailable()

    def submit(self, request: GenerationRequest) -> ResponseIterator:
        """Start `request`; call on the event-loop thread.

        The iterator is tied to the request being handled (if any): a client disconnect
        cancels it even if model code never checks.

        Raises:
            NotReady: the engine has not started, is shutting down or is recovering.
            InvalidInput: the backend cannot run the request (e.g. longer than the context).
        """
        reason = self.unavailable()
        if reason is not None:
            raise NotReady(reason)
        loop = asyncio.get_running_loop()
        if request.request_id is None:
            handling = current_request.get()
            if handling is not None:
                request = dataclasses.replace(request, request_id=handling.request_id)
        request = self.backend.prepare(request)
        iterator = ResponseIterator(loop, request.sampling.n)
        iterator.submitted_at = loop.time()
        self._live.add(iterator)
        self._metrics.engine_in_flight.inc()
        unregister = cancel_with_current_request(iterator.cancel)
        iterator._task = loop.create_task(self._run(iterator, request, unregister))
        return iterator

    async def close(self) -> None:
        """Cancel what still runs, wait for the backend to stop, and release it."""
        self._closed = True
        live = list(self._live)
        for iterator in live:
            iterator.cancel()
        tasks = [it._task for it in live if it._task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await self.backend.close()

    # -- one generation -----------------------------------------------------------------------

    async def _run(self, it: ResponseIterator, request: GenerationRequest,
                   unregister: Callable[[], None]) -> None:
        single = dataclasses.replace(request.sampling, n=1)
        progress = _Progress(remaining=len(it._signals))
        try:
            choices = [
                self._run_choice(it, index, dataclasses.replace(
                    request, sampling=dataclasses.replace(
                        single, seed=None if single.seed is None else single.seed + index)),
                    progress)
                for index in range(len(it._signals))
            ]
            finishes = await asyncio.gather(*choices)
            if it.cancelled and "cancelled" in finishes:
                self._metrics.engine_cancelled.inc()
            self._metrics.prompt_tokens.inc(progress.prompt_tokens)
            self._metrics.completion_tokens.inc(progress.completion_tokens)
        except TwinserveError as err:
            it.cancel()
            it._queue.put_nowait(err)
        except Exception as exc:
            it.cancel()
            log.error("%s backend failed on request %s", self.backend.name, request.request_id,
                      exc_info=exc)
            it._queue.put_nowait(ModelError.unexpected(f"the {self.backend.name} backend"))
        finally:
            unregister()
            self._live.discard(it)
            self._metrics.engine_in_flight.dec()
            it._queue.put_nowait(_END)

    async def _run_choice(self, it: ResponseIterator, index: int, request: GenerationRequest,
                          progress: _Progress) -> FinishReason:
        signal = it._signals[index]
        stopper = StopMatcher(request.sampling.stop)
        finish: FinishReason = "cancelled"
        stopped_by_sequence = False
        announced = False
        acquired = await self._acquire(signal)
        loop = asyncio.get_running_loop()
        if acquired:
            self._metrics.engine_queue_seconds.observe(loop.time() - it.submitted_at)
        last_at: float | None = None
        try:
            if acquired:
                async for delta in self.backend.generate(request, signal):
                    if delta.text or delta.token_ids:
                        now = loop.time()
                        if last_at is None:
                            self._metrics.time_to_first_token.observe(now - it.submitted_at)
                        else:
                            self._metrics.inter_token_latency.observe(now - last_at)
                        last_at = now
                    if delta.prompt_tokens is not None:
                        progress.prompt_tokens = max(progress.prompt_tokens, delta.prompt_tokens)
                    progress.completion_tokens += len(delta.token_ids)
                    self._metrics.engine_generated_tokens.inc(len(delta.token_ids))
                    if stopped_by_sequence:
                        continue  # draining a backend we told to stop
                    text, hit = stopper.feed(delta.text)
                    if hit:
                        stopped_by_sequence = True
                        signal.set()
                        finish = "stop"
                    elif delta.finish_reason is not None:
                        text += stopper.flush()
                        finish = delta.finish_reason
                    if text or delta.token_ids:
                        # The prompt's size rides on a choice's first delta, so a stream can
                        # announce it up front (Anthropic's message_start does).
                        it._queue.put_nowait(Delta(
                            text=text, token_ids=delta.token_ids, index=index,
                            prompt_tokens=None if announced else progress.prompt_tokens))
                        announced = True
        finally:
            if acquired:
                assert self._slots is not None
                self._slots.release()
            if signal.set_at is not None and not stopped_by_sequence:
                self._metrics.engine_cancel_seconds.observe(
                    asyncio.get_running_loop().time() - signal.set_at)
        progress.remaining -= 1
        if progress.remaining == 0:
            it.usage = Usage(progress.prompt_tokens, progress.completion_tokens)
        it._queue.put_nowait(Delta(finish_reason=finish, index=index,
                                   usage=it.usage if progress.remaining == 0 else None,
                                   stop_sequence=stopper.matched if stopped_by_sequence else None))
        return finish

    async def _acquire(self, signal: CancelSignal) -> bool:
        """Wait for a backend slot; False when cancelled while queued.

        Raises:
            Overloaded: the queue already holds runtime.max_queue generations.
        """
        assert self._slots is not None
        acquire = asyncio.ensure_future(self._slots.acquire())
        cancelled = asyncio.ensure_future(signal.sleep(math.inf))
        await asyncio.wait({acquire, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        cancelled.cancel()
        if not acquire.done():
            acquire.cancel()  # the controller hands on a slot granted meanwhile
            return False
        acquire.result()  # Overloaded propagates
        if signal.is_set():
            self._slots.release()
            return False
        return True
