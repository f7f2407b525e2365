"""Truss's behaviours that apply beyond HTTP, over gRPC and over both transports: typed
inputs, Truss's streaming conventions, and the cancellation grace for models that watch
their request. Not a port (Truss has no gRPC); the HTTP side is also checked by the
ported tests, named after Truss's."""

from __future__ import annotations

import time

import httpx
import pytest

from clients import GrpcClient, TwinserveError
from tests.harness import DaemonProcess
from tests.scrape import wait_for_metric
from tests.truss.conftest import TrussServer

TYPED = """
import pydantic


class Prompt(pydantic.BaseModel):
    prompt: str
    n: int = 1


class Model:
    def predict(self, model_input: Prompt) -> dict:
        return {"echo": model_input.prompt * model_input.n, "type": type(model_input).__name__}
"""


def test_typed_input_over_grpc(truss_server: TrussServer) -> None:
    daemon = truss_server(TYPED)
    with GrpcClient(daemon.grpc_target) as client:
        assert client.predict({"prompt": "ab", "n": 2}) == {"echo": "abab", "type": "Prompt"}
        with pytest.raises(TwinserveError) as refused:
            client.predict({"n": "many"})
    assert refused.value.code == "INVALID_ARGUMENT"
    assert refused.value.message == ("Input Parsing Errors:\n  `prompt`: Field required.\n"
                                     "  `n`: Input should be a valid integer, unable to parse "
                                     "string as an integer.")


def test_schema_route(truss_server: TrussServer) -> None:
    daemon = truss_server(TYPED)
    schema = httpx.get(f"{daemon.http_url}/v1/models/model/schema").json()
    assert schema["input_schema"]["required"] == ["prompt"]
    assert schema["output_schema"] is None and schema["supports_streaming"] is None
    untyped = truss_server("class Model:\n    def predict(self, x):\n        return x\n")
    missing = httpx.get(f"{untyped.http_url}/v1/models/model/schema")
    assert missing.status_code == 404 and missing.json() == {"error": "No schema found"}


STREAMS = """
import asyncio
from starlette.responses import StreamingResponse


class Model:
    def predict(self, model_input):
        if model_input.get("starlette"):
            async def events():
                for i in range(3):
                    yield f"data: {i}\\n\\n"
            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"x-from": "model"})
        return [str(i) for i in range(3)]

    async def postprocess(self, items):
        for item in items:
            await asyncio.sleep(0)
            yield item + "!"
"""


def test_streaming_postprocess_and_starlette_streams_over_grpc(
        truss_server: TrussServer) -> None:
    daemon = truss_server(STREAMS)
    with GrpcClient(daemon.grpc_target) as client:
        assert list(client.predict_stream({})) == ["0!", "1!", "2!"]
    # predict's StreamingResponse, with postprocess defined: refused, as Truss does.
    with GrpcClient(daemon.grpc_target) as client, pytest.raises(TwinserveError) as refused:
        list(client.predict_stream({"starlette": True}))
    assert refused.value.code == "INTERNAL" and "postprocess" in refused.value.message


def test_a_starlette_stream_keeps_its_head(truss_server: TrussServer) -> None:
    daemon = truss_server(STREAMS.split("    async def postprocess")[0])
    answer = httpx.post(f"{daemon.http_url}/v1/models/model:predict", json={"starlette": True})
    assert answer.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert answer.headers["x-from"] == "model"
    assert answer.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    with GrpcClient(daemon.grpc_target) as client:
        assert "".join(client.predict_stream({"starlette": True})) == answer.text


WATCHER = """
import asyncio, logging
import fastapi

log = logging.getLogger("model")


class Model:
    async def predict(self, inputs, request: fastapi.Request):
        if inputs.get("ignore"):
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                log.warning("cancelled after the grace")
                raise
        for i in range(100):
            await asyncio.sleep(0.05)
            if await request.is_disconnected():
                log.warning("saw the disconnect at step %d; engine aborted", i)
                return None
        return "done"
"""

GRACE = """
runtime:
  cancel_grace_s: 1
"""


def _leave_grpc_call(daemon: DaemonProcess, body: dict[str, bool]) -> None:
    with GrpcClient(daemon.grpc_target, timeout=0.3) as client, \
            pytest.raises(TwinserveError) as gone:
        client.predict(body)
    assert gone.value.code == "DEADLINE_EXCEEDED"


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_a_model_that_watches_its_request_ends_its_own_work(truss_server: TrussServer,
                                                            transport: str) -> None:
    daemon = truss_server(WATCHER, GRACE)
    if transport == "http":
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{daemon.http_url}/v1/models/model:predict", json={}, timeout=0.3)
    else:
        _leave_grpc_call(daemon, {})
    daemon.wait_for_log("saw the disconnect at step", "engine aborted")


def test_a_model_that_ignores_the_disconnect_is_cancelled_after_the_grace(
        truss_server: TrussServer) -> None:
    daemon = truss_server(WATCHER, GRACE)
    left = time.monotonic()
    _leave_grpc_call(daemon, {"ignore": True})
    daemon.wait_for_log("cancelled after the grace", timeout=5)
    assert time.monotonic() - left >= 1.0  # not before runtime.cancel_grace_s
    daemon.wait_for_log("still running 1s after its client left", "cancel_grace_s")


def test_grace_zero_cancels_at_once(truss_server: TrussServer) -> None:
    daemon = truss_server(WATCHER, "runtime:\n  cancel_grace_s: 0\n")
    _leave_grpc_call(daemon, {"ignore": True})
    daemon.wait_for_log("cancelled after the grace", timeout=1)


FLOOD = """
import fastapi


class Model:
    def predict(self, inputs, request: fastapi.Request):
        async def flood():
            while True:  # never awaits, never looks at the request
                yield "x" * 1000
        return flood()
"""


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_a_stream_that_never_stops_is_closed_when_its_client_leaves(
        truss_server: TrussServer, transport: str) -> None:
    """The grace does not keep driving a stream that ignores the disconnect (one that never
    awaits would hold the event loop): it is closed after a few more chunks."""
    daemon = truss_server(FLOOD, GRACE)
    if transport == "http":
        with httpx.stream("POST", f"{daemon.http_url}/v1/models/model:predict", json={},
                          timeout=10) as response:
            next(response.iter_raw())
    else:
        with GrpcClient(daemon.grpc_target) as client:
            chunks = client.predict_stream({})
            next(chunks)
            chunks.close()
    # The call ends (closed after a few more chunks, or cancelled outright when grpc.aio
    # cancels the handler twice), and the loop is free to serve.
    wait_for_metric(daemon, "twinserve_in_flight", 0, 5)
    assert httpx.get(f"{daemon.http_url}/health/ready", timeout=2).status_code == 200
