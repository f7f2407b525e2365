"""The call pipeline both transports share: readiness, input, pre/predict/post, streaming.

A transport builds a `Request`, awaits `ModelPipeline.call(route, request)` and writes out
what comes back: a value, or a `ChunkStream` to iterate and close. Everything a model
author can observe (argument rules, concurrency, thread pool, errors, cancellation) is here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import enum
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar

from daemon import codec
from daemon.errors import (
    ClientError,
    ModelError,
    NotFound,
    NotReady,
    TwinserveError,
)
from daemon.admission import AdmissionController
from daemon.metrics import Metrics
from daemon.model.interrupt import error_instead, interrupt
from daemon.model.signature import ArgShape, MethodSpec
from daemon.request import Request, Response, current_request

log = logging.getLogger("twinserve.model")

T = TypeVar("T")
_DONE = object()


class State(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    DRAINING = "draining"


_NOT_READY_REASONS = {
    State.LOADING: "model is loading",
    State.FAILED: "model failed to load",
    State.DRAINING: "server is shutting down (draining); retry on another replica",
}


class ChunkStream:
    """The chunks of a streaming method, in order, as the model produces them.

    Holds the method's concurrency slot (and keeps the call in flight, under its time limit)
    until it ends or is closed. Closing it before the
    end (client gone, write failed) counts as a disconnect, so engine work tied to the
    request stops too. Always `await aclose()` when done.
    """

    def __init__(self, chunks: AsyncIterator[Any], request: Request, release: Callable[[], None],
                 method: str, timeout_s: float | None) -> None:
        self._chunks = chunks
        self._request = request
        self._release: Callable[[], None] | None = release
        self._method = method
        self._timeout_s = timeout_s
        self._finished = False

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            self._finished = True
            await self.aclose()
            raise
        except asyncio.CancelledError:
            self._request.mark_disconnected()
            await self.aclose()
            error = error_instead(self._request, self._timeout_s)
            if error is not None:
                raise error from None
            raise
        except Exception as exc:
            self._finished = True
            await self.aclose()
            raise model_error(self._method, exc, self._request) from exc

    async def aclose(self) -> None:
        """Stop the model's generator and free its slot. Never raises: this is cleanup."""
        release, self._release = self._release, None
        if release is None:
            return
        try:
            if not self._finished:
                self._request.mark_disconnected()
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        except Exception:
            log.exception("%s: error while closing the stream of request %s", self._method,
                          self._request.request_id)
        finally:
            release()


Start = Callable[[Any, Request], Awaitable[Any]]
"""(input, request) -> an awaitable of the method's result; an async generator method's
result is the generator."""


class _Method:
    """One of the model's methods, bound, with how to call it decided once: which arguments
    it takes, and whether it runs on the loop or in the pool. `pre` and `post` are
    predict's hooks."""

    __slots__ = ("name", "reads_body", "start", "pre", "post")

    def __init__(self, spec: MethodSpec, fn: Callable[..., Any],
                 run_sync: Callable[..., Awaitable[Any]]) -> None:
        self.name = spec.name
        self.reads_body = spec.shape is not ArgShape.REQUEST
        self.start = _starter(spec, fn, run_sync)
        self.pre: _Method | None = None
        self.post: _Method | None = None


def _starter(spec: MethodSpec, fn: Callable[..., Any],
             run_sync: Callable[..., Awaitable[Any]]) -> Start:
    """Decided here, once, rather than on every call: a coroutine method's own coroutine is
    what the call awaits, with no wrapper of ours between."""
    call: Callable[..., Awaitable[Any]]
    if spec.is_async_generator:
        def call(*args: Any) -> Awaitable[Any]:
            return _ready(fn(*args))
    elif spec.is_coroutine:
        call = fn
    else:
        call = functools.partial(run_sync, fn)  # sync code never runs on the loop
    if spec.shape is ArgShape.INPUT:
        return lambda inputs, request: call(inputs)
    if spec.shape is ArgShape.REQUEST:
        return lambda inputs, request: call(request)
    return call


async def _ready(value: T) -> T:
    return value


class ModelPipeline:
    """Runs one loaded model's methods for both transports."""

    def __init__(self, factory: Callable[[], Any], specs: Mapping[str, MethodSpec], *,
                 admission: AdmissionController, request_timeout_s: float | None = None,
                 metrics: Metrics | None = None,
                 engine_unavailable: Callable[[], str | None] | None = None) -> None:
        self._factory = factory  # builds the model instance; run in the pool by load()
        self._engine_unavailable = engine_unavailable  # the engine's readiness, if any
        self._request_timeout_s = request_timeout_s
        self._metrics = metrics
        # Calls in flight, streams included: the task to cancel, and the time limit's timer.
        self._live: dict[Request, tuple[asyncio.Task[Any], asyncio.TimerHandle | None]] = {}
        self._idle: asyncio.Future[None] | None = None  # made by wait_idle, set by _end
        self._specs = dict(specs)
        self._model: Any = None
        self._state = State.LOADING
        # The routes clients may call (every method but the predict hooks), bound to the
        # model; empty unless READY, so one lookup tells a call whether it may run.
        self._serving: dict[str, _Method] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # the one calls run on; set by load()
        self.admission = admission
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(16, admission.concurrency + 4), thread_name_prefix="twinserve-model"
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Construct the model and run its load(); the daemon is ready once this returns."""
        started = time.perf_counter()
        self._loop = asyncio.get_running_loop()
        try:
            self._model = await self.run_sync(self._factory)
            routes = self._bind(self._model)
            load = getattr(self._model, "load", None)
            if callable(load):
                if inspect.iscoroutinefunction(load):
                    await load()
                else:
                    await self.run_sync(load)
        except BaseException:
            self._state = State.FAILED
            raise
        if self._metrics is not None:
            self._metrics.model_load_seconds.set(time.perf_counter() - started)
        if self._state is State.LOADING:  # not if a drain began meanwhile
            self._state = State.READY
            self._serving = routes

    def _bind(self, model: Any) -> dict[str, _Method]:
        methods = {name: _Method(spec, getattr(model, name), self.run_sync)
                   for name, spec in self._specs.items()}
        predict = methods["predict"]
        predict.pre, predict.post = methods.get("preprocess"), methods.get("postprocess")
        return {route: method for route, method in methods.items()
                if route not in ("preprocess", "postprocess")}

    async def not_ready_reason(self) -> str | None:
        """None when ready to serve; otherwise why not (for readiness probes)."""
        if self._state is not State.READY:
            return _NOT_READY_REASONS[self._state]
        engine_reason = self._engine_unavailable() if self._engine_unavailable else None
        if engine_reason is not None:
            return engine_reason
        is_healthy = getattr(self._model, "is_healthy", None)
        if not callable(is_healthy):
            return None
        try:
            healthy = await is_healthy() if inspect.iscoroutinefunction(is_healthy) \
                else await self.run_sync(is_healthy)
        except Exception as exc:
            log.warning("is_healthy raised %s: %s", type(exc).__name__, exc)
            return f"is_healthy raised {type(exc).__name__}: {exc}"
        if healthy is False:
            return "model reports unhealthy (is_healthy returned False)"
        return None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- draining -----------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._live)

    def start_draining(self) -> None:
        """Refuse new calls (NotReady) and report not ready; calls in flight carry on."""
        if self._state in (State.READY, State.LOADING):
            self._state = State.DRAINING
            self._serving = {}

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

    def cancel_in_flight(self) -> None:
        """End every call still in flight as if its client had left (the drain ran out)."""
        for request, (task, _) in list(self._live.items()):
            interrupt(request, task, "drain")

    def _end(self, request: Request) -> None:
        _, timer = self._live.pop(request)
        if timer is not None:
            timer.cancel()
        if request.disconnect_reason is not None and self._metrics is not None:
            self._metrics.cancellations.labels(request.disconnect_reason).inc()
        if not self._live and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _stream_closed(self, request: Request) -> None:
        self.admission.release()
        self._end(request)

    # -- calls --------------------------------------------------------------------------------

    async def call(self, route: str, request: Request) -> Any:
        """Run `route` for `request`; returns the result or a ChunkStream.

        Raises TwinserveError subclasses only (model exceptions become ModelError).
        """
        method = self._serving.get(route)
        if method is None:
            raise self._refusal(route)
        # Left set for the rest of the handler's task, so engine work started anywhere while
        # handling this request (even from a stream) is tied to it.
        current_request.set(request)
        loop = self._loop
        assert loop is not None  # serving implies load() ran, on this loop
        task = asyncio.current_task(loop)  # with the loop given: no lookup (and no getpid(2))
        assert task is not None, "ModelPipeline.call must run in a task"
        timer = loop.call_later(self._request_timeout_s, interrupt, request, task, "timeout") \
            if self._request_timeout_s else None
        self._live[request] = (task, timer)
        streaming = False
        running: _Method | None = None  # the model method being awaited, named in its errors
        try:
            inputs = None
            binary = False
            if method.reads_body:
                # The input: msgpack for binary content types (Truss's convention), else JSON.
                data = request.received_body()
                if data is None:
                    data = await request.body()
                binary = codec.is_binary(request.content_type)
                inputs = codec.unpack(data) if binary else codec.loads(data)
            if method.pre is not None:
                running = method.pre
                inputs = await running.start(inputs, request)
                running = None
            if not self.admission.try_acquire():
                await self.admission.acquire()
            try:
                running = method
                result = await method.start(inputs, request)
                running = None
                # A plain value is by far the common answer; only other types can be streams.
                chunks = None if isinstance(result, _PLAIN) else \
                    _as_chunks(result, self._executor, request)
                if chunks is not None:
                    if method.post is not None:
                        await _close(chunks)
                        raise ModelError(
                            "predict returned a generator (streaming), but the model also "
                            "defines postprocess; streamed output cannot be post-processed: "
                            "remove postprocess or return a value"
                        )
                    streaming = True  # the stream holds the slot and the call until closed
                    return ChunkStream(chunks, request,
                                       functools.partial(self._stream_closed, request), route,
                                       self._request_timeout_s)
            finally:
                if not streaming:
                    self.admission.release()
            if method.post is not None:
                running = method.post
                result = await running.start(result, request)
                running = None
            if not binary and isinstance(result, _PLAIN):
                return result  # the common case, decided without probing attributes
            return _as_response(result, binary, route)
        except asyncio.CancelledError:
            request.mark_disconnected()
            error = error_instead(request, self._request_timeout_s)
            if error is not None:
                raise error from None
            raise
        except Exception as exc:
            if running is None or isinstance(exc, TwinserveError):
                raise
            raise model_error(running.name, exc, request) from exc
        finally:
            if not streaming:
                self._end(request)

    def _refusal(self, route: str) -> TwinserveError:
        """Why `route` cannot run now: the daemon is not ready, or the model lacks it."""
        if self._state is not State.READY:
            return NotReady(_NOT_READY_REASONS[self._state])
        return NotFound(f"this model does not implement {route} (define Model.{route} to serve "
                        "this route)")

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking model code in the pool, never on the event loop; context carried."""
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(ctx.run, fn, *args))


def _as_chunks(result: Any, executor: concurrent.futures.Executor,
               request: Request) -> AsyncIterator[Any] | None:
    if inspect.isasyncgen(result):
        return result
    if inspect.isgenerator(result):
        return _iterate_in_threads(result, executor, request)
    return None


async def _iterate_in_threads(gen: Generator[Any, Any, Any], executor: concurrent.futures.Executor,
                              request: Request) -> AsyncIterator[Any]:
    """A sync generator driven one item at a time in the pool."""
    ctx = contextvars.copy_context()
    pending: concurrent.futures.Future[Any] | None = None
    try:
        while True:
            pending = executor.submit(ctx.run, _next_or_done, gen)
            item = await asyncio.wrap_future(pending)
            pending = None
            if item is _DONE:
                return
            yield item
    except asyncio.CancelledError:
        request.mark_disconnected()  # before close(), so the generator's cleanup sees it
        raise
    finally:
        # A generator cannot be closed while next() still runs in a thread: wait for it.
        def close_after_pending(step: concurrent.futures.Future[Any] | None = pending) -> None:
            if step is not None:
                concurrent.futures.wait([step])
            gen.close()

        await asyncio.get_running_loop().run_in_executor(executor, close_after_pending)


_PLAIN = (dict, list, str, int, float, bool, type(None))


def _as_response(result: Any, binary: bool, method: str) -> Any:
    """Bytes and response objects go out as they are; a binary (msgpack) call gets msgpack."""
    if isinstance(result, Response):
        return result
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(bytes(result))
    body, status = getattr(result, "body", None), getattr(result, "status_code", None)
    if isinstance(body, bytes) and isinstance(status, int):
        # starlette/fastapi Response objects, so Truss models keep theirs.
        headers = {str(k): str(v) for k, v in dict(getattr(result, "headers", {})).items()}
        content_type = headers.pop("content-type", None) or getattr(result, "media_type", None)
        headers.pop("content-length", None)
        return Response(body, status, content_type or "application/octet-stream", headers)
    if binary:
        try:
            return Response(codec.pack(result))
        except TypeError as exc:
            raise ModelError(f"{method} returned a value that cannot be sent as msgpack: {exc}") \
                from exc
    return result


def _next_or_done(gen: Generator[Any, Any, Any]) -> Any:
    return next(gen, _DONE)


async def _close(chunks: AsyncIterator[Any]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def model_error(method: str, exc: BaseException, request: Request) -> TwinserveError:
    """Translate an exception from model code into the hierarchy; log real failures once."""
    if isinstance(exc, TwinserveError):
        return exc
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status <= 599:
        # fastapi.HTTPException and look-alikes, so Truss models keep their statuses.
        detail = getattr(exc, "detail", None) or str(exc) or "error"
        message = detail if isinstance(detail, str) else repr(detail)
        if status < 500:
            return ClientError(message, status)
        if status == 503:
            return NotReady(message)
        return ModelError(message)
    log.error("%s raised while handling request %s", method, request.request_id,
              exc_info=(type(exc), exc, exc.__traceback__))
    return ModelError(f"{method} raised {type(exc).__name__}: {exc}")
