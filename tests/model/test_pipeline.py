"""The pipeline's state machine in process, with hand-written models: load failure, not
ready, drain, time limit, admission and the end of a stream. No server, no transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from daemon.admission import AdmissionController
from daemon.errors import DeadlineExceeded, NotReady, Overloaded
from daemon.model.pipeline import ModelPipeline
from daemon.model.streams import ChunkStream
from daemon.model.signature import check_model_class
from daemon.request import BodyLimits, BytesBody, Request


class Sleeper:
    """Answers after `{"sleep": s}` seconds; streams `{"stream": n}` chunks."""

    def __init__(self) -> None:
        self.closed_streams = 0

    async def predict(self, model_input: Any) -> Any:
        if "stream" in model_input:
            return self._chunks(model_input["stream"])
        await asyncio.sleep(model_input.get("sleep", 0))
        return {"slept": model_input.get("sleep", 0)}

    async def _chunks(self, count: int) -> AsyncIterator[int]:
        try:
            for i in range(count):
                yield i
                await asyncio.sleep(0.01)
        finally:
            self.closed_streams += 1


class FailsToLoad:
    def load(self) -> None:
        raise RuntimeError("weights missing")

    def predict(self, model_input: Any) -> Any:
        return model_input


LIMITS = BodyLimits(1 << 20)


def pipeline(model: Any, *, concurrency: int = 4, max_queue: int | None = None,
             timeout: float | None = None) -> ModelPipeline:
    return ModelPipeline(lambda: model, check_model_class(type(model)),
                         admission=AdmissionController(concurrency, max_queue),
                         body_limits=LIMITS, request_timeout_s=timeout)


def request(body: bytes) -> Request:
    return Request(transport="http", route="predict", request_id="test-request",
                   body=BytesBody(body), limits=LIMITS)


async def call(pipe: ModelPipeline, body: bytes) -> Any:
    """As a transport calls it: in a task of its own."""
    return await asyncio.ensure_future(pipe.call("predict", request(body)))


async def test_calls_before_load_are_not_ready() -> None:
    pipe = pipeline(Sleeper())
    assert await pipe.not_ready_reason() is not None
    with pytest.raises(NotReady):
        await call(pipe, b"{}")
    await pipe.load()
    assert await pipe.not_ready_reason() is None
    assert await call(pipe, b"{}") == {"slept": 0}
    pipe.close()


async def test_a_failed_load_stays_not_ready() -> None:
    pipe = pipeline(FailsToLoad())
    with pytest.raises(RuntimeError, match="weights missing"):
        await pipe.load()
    assert await pipe.not_ready_reason() is not None
    with pytest.raises(NotReady):
        await call(pipe, b"{}")
    pipe.close()


async def test_drain_refuses_new_calls_and_waits_for_the_running_one() -> None:
    pipe = pipeline(Sleeper())
    await pipe.load()
    running = asyncio.ensure_future(pipe.call("predict", request(b'{"sleep": 0.2}')))
    await asyncio.sleep(0)  # it has started
    assert pipe.in_flight == 1
    pipe.start_draining()
    assert await pipe.not_ready_reason() is not None
    with pytest.raises(NotReady):
        await call(pipe, b"{}")
    assert not await pipe.wait_idle(0.01)  # still running
    assert await pipe.wait_idle(5)
    assert await running == {"slept": 0.2}
    pipe.close()


async def test_a_drain_that_runs_out_cancels_what_is_left() -> None:
    pipe = pipeline(Sleeper())
    await pipe.load()
    running = asyncio.ensure_future(pipe.call("predict", request(b'{"sleep": 30}')))
    await asyncio.sleep(0)
    pipe.start_draining()
    pipe.cancel_in_flight()
    with pytest.raises(NotReady, match="drain_timeout_s ran out"):
        await running
    assert await pipe.wait_idle(1)
    pipe.close()


async def test_the_time_limit_ends_a_call() -> None:
    pipe = pipeline(Sleeper(), timeout=0.05)
    await pipe.load()
    with pytest.raises(DeadlineExceeded):
        await call(pipe, b'{"sleep": 5}')
    assert pipe.in_flight == 0
    pipe.close()


async def test_admission_refuses_beyond_the_queue_and_frees_the_slot() -> None:
    pipe = pipeline(Sleeper(), concurrency=1, max_queue=0)
    await pipe.load()
    first = asyncio.ensure_future(pipe.call("predict", request(b'{"sleep": 0.1}')))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await call(pipe, b"{}")
    await first
    assert await call(pipe, b"{}") == {"slept": 0}  # the slot came back
    pipe.close()


async def test_a_stream_holds_its_slot_until_closed_and_closes_the_generator() -> None:
    model = Sleeper()
    pipe = pipeline(model, concurrency=1, max_queue=0)
    await pipe.load()
    stream = await call(pipe, b'{"stream": 100}')
    assert isinstance(stream, ChunkStream)
    assert await stream.__anext__() == 0
    with pytest.raises(Overloaded):  # the stream still holds the one slot
        await call(pipe, b"{}")
    await stream.aclose()  # the client went away
    assert model.closed_streams == 1
    assert pipe.in_flight == 0
    assert await call(pipe, b"{}") == {"slept": 0}
    pipe.close()
