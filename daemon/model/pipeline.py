"""The call pipeline both transports share: readiness, input, pre/predict/post.

A transport builds a `Request`, awaits `ModelPipeline.call(route, request)` and writes out
what comes back: a value, or a `ChunkStream` (daemon/model/streams.py) to iterate and
close. What a model author can observe lives in this package: the lifecycle and the call
here, the methods' binding in method.py, streams in streams.py, the calls in flight and the
drain in inflight.py, Truss's result and exception conventions in truss_compat.py.
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
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from daemon import codec
from daemon.admission import AdmissionController
from daemon.errors import DeadlineExceeded, ModelError, NotFound, NotReady, TwinserveError
from daemon.metrics import Metrics
from daemon.model.inflight import InFlight
from daemon.model.interrupt import error_instead, interrupt
from daemon.model import session
from daemon.model.grace import chunks_with_grace
from daemon.model.method import BoundMethod
from daemon.model.session import SessionLimits, SessionMethod
from daemon.model.signature import SESSION_METHOD, MethodSpec
from daemon.model.streams import ChunkStream, as_chunks
from daemon.model.truss_compat import as_response, is_response, model_error, streaming_response
from daemon.model.typed_io import InputModel, Schema
from daemon.request import SMALL_BODY_BYTES, BodyLimits, Request, current_request
from daemon.websocket import ABNORMAL, Channel, WebSocket

log = logging.getLogger("twinserve.model")

T = TypeVar("T")


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


class ModelPipeline:
    """Runs one loaded model's methods for both transports."""

    def __init__(self, factory: Callable[[], Any], specs: Mapping[str, MethodSpec], *,
                 admission: AdmissionController, body_limits: BodyLimits,
                 request_timeout_s: float | None = None,
                 write_timeout_s: float | None = None,
                 stream_read_timeout_s: float | None = None,
                 cancel_grace_s: float = 0.0,
                 load_retries: int = 0,
                 session_limits: SessionLimits = SessionLimits(),
                 metrics: Metrics | None = None,
                 engine_unavailable: Callable[[], str | None] | None = None) -> None:
        self._factory = factory  # builds the model instance; run in the pool by load()
        self._engine_unavailable = engine_unavailable  # the engine's readiness, if any
        self.body_limits = body_limits  # what the front ends give every Request
        self._request_timeout_s = request_timeout_s
        self._timed_out = functools.partial(
            DeadlineExceeded,
            f"request exceeded runtime.request_timeout_s ({request_timeout_s or 0:g}s)")
        self._write_timeout_s = write_timeout_s
        self._stream_read_timeout_s = stream_read_timeout_s
        self._cancel_grace_s = cancel_grace_s
        self._load_retries = load_retries
        self._session_limits = session_limits
        self._session_method: SessionMethod | None = None  # the model's websocket, as _serving
        self._metrics = metrics
        # Calls in flight, streams included: the task to cancel, and the time limit's timer.
        self._calls = InFlight(metrics)  # with their tasks and time limits, for the drain
        self._specs = dict(specs)
        # Truss's schema: the typed input of what takes the body first (predict is given it
        # parsed into that class), and the output of what answers last.
        predict = specs.get("predict")  # absent from a model that serves sessions
        self.schema = None if predict is None else Schema.of(
            (specs.get("preprocess") or predict).input_annotation,
            (specs.get("postprocess") or predict).return_annotation)
        self._model: Any = None
        self._state = State.LOADING
        # The routes clients may call (every method but the predict hooks), bound to the
        # model; empty until READY and once the drain refuses calls (they are still served in
        # its grace), so one lookup tells a call whether it may run.
        self._serving: dict[str, BoundMethod] = {}
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
            session_method = getattr(self._model, SESSION_METHOD, None)
            load = getattr(self._model, "load", None)
            if callable(load):
                await self._run_load(load)
        except BaseException:
            self._state = State.FAILED
            raise
        if self._metrics is not None:
            self._metrics.model_load_seconds.set(time.perf_counter() - started)
        if self._state is State.LOADING:  # not if a drain began meanwhile
            self._state = State.READY
            self._serving = routes
            self._session_method = session_method

    async def _run_load(self, load: Callable[[], Any]) -> None:
        """The model's load(), tried again `load_retries` times a second apart, as Truss does
        (a flaky download, say); readiness says "loading" meanwhile."""
        for attempt in range(self._load_retries + 1):
            log.info("Executing model.load()...")
            started = time.perf_counter()
            try:
                if inspect.iscoroutinefunction(load):
                    await load()
                else:
                    await self.run_sync(load)
            except Exception:
                if attempt == self._load_retries:
                    raise
                log.warning("Failed to load model; retrying in 1 s (%d of %d)", attempt + 1,
                            self._load_retries, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            log.info("Completed model.load() execution in %d ms",
                     (time.perf_counter() - started) * 1000)
            return

    def _bind(self, model: Any) -> dict[str, BoundMethod]:
        methods = {name: BoundMethod(spec, getattr(model, name), self.run_sync,
                                     self._cancel_grace_s)
                   for name, spec in self._specs.items() if name != SESSION_METHOD}
        predict = methods.get("predict")
        if predict is None:
            return methods
        predict.pre, predict.post = methods.get("preprocess"), methods.get("postprocess")
        if predict.pre is not None:
            predict.parses_body = predict.pre.parses_body
        input_class = self.schema.input_type if self.schema is not None else None
        predict.input_model = None if input_class is None else InputModel(input_class)
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
        except Exception:
            # The exception's text may hold secrets, and readiness needs no key: the log
            # gets the traceback, the probe only the fact.
            log.exception("Exception while checking if model is healthy; reporting not ready")
            log.warning("Health check failed: is_healthy raised")
            return "model reports unhealthy (is_healthy raised; see the server log)"
        # As in Truss: None means "no opinion" (healthy once loaded); any other falsy value
        # (False, 0, "", {}) is unhealthy.
        if healthy is not None and not healthy:
            log.warning("Health check failed: is_healthy returned %r", healthy)
            return f"model reports unhealthy (is_healthy returned {healthy!r})"
        return None

    @property
    def loaded(self) -> bool:
        """The model's load() has finished and it serves calls (not draining)."""
        return self._state is State.READY

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- draining -----------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    def announce_draining(self) -> None:
        """Report not ready (draining) but go on serving calls: the drain's grace, in which
        load balancers learn to send calls elsewhere before the listeners close."""
        if self._state in (State.READY, State.LOADING):
            self._state = State.DRAINING

    def start_draining(self) -> None:
        """Refuse new calls (NotReady) and report not ready; calls in flight carry on."""
        if self._state is not State.FAILED:  # after announce_draining too
            self._state = State.DRAINING
            self._serving = {}
            self._session_method = None

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is in flight; False if some still are after `timeout` s."""
        return await self._calls.wait_idle(timeout)

    def cancel_in_flight(self) -> None:
        """End every call still in flight as if its client had left (the drain ran out)."""
        self._calls.interrupt_all("drain", _DRAINED)

    def _stream_of(self, result: Any, request: Request, route: str, producer: BoundMethod, *,
                   holds_slot: bool) -> ChunkStream | None:
        """`result` as a ChunkStream if it is a stream (a generator, or a starlette
        StreamingResponse), else None. It holds the call, and the slot if `holds_slot`,
        until closed."""
        head = None
        chunks = as_chunks(result, self._executor, request)
        if chunks is None:
            parts = streaming_response(result)
            if parts is None:
                return None
            chunks, head = parts
        if producer.takes_request and self._cancel_grace_s:
            chunks = chunks_with_grace(chunks, request, producer.name, self._cancel_grace_s)
        return ChunkStream(chunks, request,
                           functools.partial(self._stream_closed, request, holds_slot), route,
                           self._write_timeout_s, read_timeout_s=self._stream_read_timeout_s,
                           head=head)

    def _stream_closed(self, request: Request, holds_slot: bool) -> None:
        if holds_slot:
            self.admission.release()
        self._calls.end(request)

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
        timer = loop.call_later(self._request_timeout_s, interrupt, request, task, "timeout",
                                self._timed_out) if self._request_timeout_s else None
        self._calls.add(request, task, timer)
        streaming = False
        running: BoundMethod | None = None  # the model method being awaited, named in its errors
        try:
            inputs = None
            binary = False
            if method.parses_body:
                # The input: msgpack for binary content types (Truss's convention), else JSON.
                data = request.received_body()
                if data is None or len(data) > SMALL_BODY_BYTES:
                    self.admission.check_room()  # a call that would be refused reads nothing
                    data = await request.body()  # waits for its share of the body memory
                binary = codec.is_binary(request.content_type)
                if method.input_model is None:
                    inputs = codec.unpack(data) if binary else codec.loads(data)
                else:  # pydantic parses JSON itself, as in Truss
                    inputs = method.input_model.parse(data, binary)
            else:
                # The model reads the body itself, holding its slot: the body's time limits
                # count from now, not from when it gets the slot.
                request.started_at = loop.time()
            if method.pre is not None:
                running = method.pre
                inputs = await running.start(inputs, request)
                running = None
            if not self.admission.try_acquire():
                if method.parses_body:
                    await self.admission.acquire()
                else:
                    await request.while_waiting(self.admission.acquire())
            try:
                running = method
                result = await method.start(inputs, request)
                running = None
                # A plain value is by far the common answer; only other types can be streams.
                if not isinstance(result, _PLAIN):
                    stream = self._stream_of(result, request, route, method, holds_slot=True)
                    if stream is not None:
                        streaming = True  # the stream holds the slot and the call until closed
                        if method.post is not None:
                            await stream.aclose()
                            raise _model_definition_error(
                                "predict returned a generator (streaming), but the model also "
                                "defines postprocess; streamed output cannot be post-processed: "
                                "remove postprocess or return a value", request)
                        return stream
                    if method.post is not None and is_response(result):
                        raise _model_definition_error(
                            "predict returned a response object, but the model also defines "
                            "postprocess, which cannot apply to it: remove postprocess or "
                            "return a value", request)
            finally:
                if not streaming:
                    self.admission.release()
            if method.post is not None:
                running = method.post
                result = await running.start(result, request)
                running = None
                # A streaming postprocess streams after predict's slot is given back.
                stream = self._stream_of(result, request, route, method.post, holds_slot=False)
                if stream is not None:
                    streaming = True
                    return stream
            if not binary and isinstance(result, _PLAIN):
                return result  # the common case, decided without probing attributes
            return as_response(result, binary, route)
        except asyncio.CancelledError:
            request.mark_disconnected()
            error = error_instead(request)
            if error is not None:
                raise error from None
            raise
        except Exception as exc:
            if running is None or isinstance(exc, TwinserveError):
                raise
            raise model_error(running.name, exc, request) from exc
        finally:
            if not streaming:
                self._calls.end(request)

    async def session(self, request: Request, channel: Channel) -> WebSocket:
        """Serve one session of the model's `websocket` method over `channel`, from
        admission to close (daemon/model/session.py). Raises TwinserveError only before the
        session is accepted (not ready, overloaded); after that every outcome is a close,
        found on the returned WebSocket. Re-raises the cancel when the client went away."""
        method = self._session_method  # set while calls are served, as _serving is
        if method is None and (SESSION_METHOD in self._specs or not self._serving):
            raise NotReady(_NOT_READY_REASONS[self._state])
        limits = self._session_limits
        counters = None if self._metrics is None else \
            self._metrics.session_counters(request.transport)
        ws = WebSocket(channel, request, max_frame_bytes=limits.max_frame_bytes)
        if method is None:
            await session.not_implemented(ws)
            return ws
        current_request.set(request)  # engine work started in the session is tied to it
        task = asyncio.current_task()
        assert task is not None, "ModelPipeline.session must run in a task"
        self._calls.add(request, task, None)  # an open session is a call in flight
        try:
            try:
                await self.admission.acquire()  # and holds a slot, as in Truss
            except asyncio.CancelledError:
                error = error_instead(request)
                if error is not None:
                    raise error from None
                raise
            if counters is not None:
                counters.opened()
            try:
                await session.serve(method, ws, limits)
            finally:
                self.admission.release()
                if counters is not None:
                    counters.closed(ws.close_code or ABNORMAL)
                    counters.frames(ws.frames_received, ws.frames_sent)
        finally:
            self._calls.end(request)
        return ws

    def _refusal(self, route: str) -> TwinserveError:
        """Why `route` cannot run now: the daemon is not ready, or the model lacks it."""
        if self._state is not State.READY and not self._serving:
            return NotReady(_NOT_READY_REASONS[self._state])
        return NotFound(f"this model does not implement {route} (define Model.{route} to serve "
                        "this route)")

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking model code in the pool, never on the event loop; context carried."""
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(ctx.run, fn, *args))


_PLAIN = (dict, list, str, int, float, bool, type(None))


def _model_definition_error(message: str, request: Request) -> ModelError:
    """A model that breaks the contract only at request time: the client is told, and the
    operator too, since no client can fix it."""
    log.error("request %s: %s", request.request_id, message)
    return ModelError(message)


_DRAINED = functools.partial(
    NotReady, "server shut down before the call finished (runtime.drain_timeout_s ran out)")
