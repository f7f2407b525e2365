"""The same calls give the same results and errors over HTTP and gRPC.

Each case runs once per transport against one daemon per model (shared by the module),
through the client library, and every error case checks the daemon keeps serving.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any

import pytest

from clients import AsyncGrpcClient, AsyncHttpClient, TwinserveError
from daemon.errors import ModelError
from tests.conftest import Daemons, StartDaemon
from tests.harness import EXAMPLES, MODELS
from tests.transports import TRANSPORTS, Client, connect, wait_until_calls_run_alone


def error_of(fn: Any, *args: Any) -> TwinserveError:
    with pytest.raises(TwinserveError) as info:
        result = fn(*args)
        if hasattr(result, "__next__"):
            list(result)
    return info.value


def assert_still_serving(client: Client) -> None:
    """After an error the daemon answers the next call normally."""
    chunks = list(client.predict_stream({"mode": "value"}))
    assert chunks and chunks[-1] is not None


# -- values -----------------------------------------------------------------------------------


def test_echo_round_trips_json_exactly(client_for: Any) -> None:
    client = client_for(EXAMPLES / "echo")
    payload = {"big": 2**63 - 1, "past_double": 2**53 + 1, "float": 0.5, "text": "héllo ✓",
               "nested": [1, {"a": None, "b": [True, False]}], "empty": {}}
    assert client.predict(payload) == payload
    assert client.predict([1, "two"]) == [1, "two"]
    assert client.predict(None) is None


def test_prepost_runs_all_three_steps(client_for: Any) -> None:
    client = client_for(MODELS / "prepost")
    assert client.predict({"x": 1}) == {"x": 1, "steps": ["preprocess", "predict", "postprocess"]}


@pytest.mark.parametrize("hook", ["preprocess", "postprocess"])  # sync, then async
def test_a_failing_hook_is_named_in_its_error(client_for: Any, hook: str) -> None:
    client = client_for(MODELS / "prepost")
    err = error_of(client.predict, {"fail": hook})
    # The exception's own words stay in the server's log: they may hold anything.
    assert (err.code, err.message) == ("INTERNAL", ModelError.unexpected(hook).message)
    assert client.predict({"x": 1})["steps"] == ["preprocess", "predict", "postprocess"]


def test_truss_style_model(client_for: Any) -> None:
    client = client_for(MODELS / "truss_style")
    result = client.predict({"secret": "api_token"})
    assert result == {"weights": result["weights"], "owner": "tests", "secret": "from-config",
                      "has_request": True}
    assert result["weights"]


def test_raw_request_sees_body_and_metadata(client_for: Any, transport: str) -> None:
    client = client_for(MODELS / "raw_request", headers={"X-Test-Header": "hello"})
    result = client.predict({"k": "v"})
    assert result == {"transport": transport, "length": len(b'{"k":"v"}'),
                      "prefix": '{"k":"v"}', "header": "hello", "query": {}}


def test_received_body_is_all_of_the_body_or_none(client_for: Any, tmp_path_factory: Any,
                                                  transport: str) -> None:
    model = _model_dir(tmp_path_factory, "received", '''
from daemon import Request

class Model:
    async def predict(self, request: Request) -> dict:
        early = request.received_body()
        body = await request.body()
        again = request.received_body()
        return {"early": early and early.decode(), "body": body.decode(), "again": again.decode()}
''')
    result = client_for(model).predict({"k": "v"})
    assert result["body"] == result["again"] == '{"k":"v"}'
    if transport == "grpc":
        assert result["early"] == result["body"]  # a unary message arrives whole
    else:
        assert result["early"] in (None, result["body"])  # never a part of it


def test_headers_and_api_key_reach_the_model(client_for: Any, tmp_path_factory: Any) -> None:
    model = _model_dir(tmp_path_factory, "headers", '''
from daemon import Request

class Model:
    async def predict(self, request: Request) -> dict:
        return {k: request.headers.get(k) for k in ("authorization", "x-custom")}
''')
    client = client_for(model, api_key="sekret", headers={"X-Custom": "yes"})
    assert client.predict({}) == {"authorization": "Bearer sekret", "x-custom": "yes"}


# -- streams ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stream_keeps_json_chunks(client_for: Any, mode: str) -> None:
    client = client_for(MODELS / "streaming")
    chunks = list(client.predict_stream({"mode": mode, "kind": "json", "n": 4}))
    assert chunks == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stream_keeps_text_and_bytes(client_for: Any, mode: str, transport: str) -> None:
    client = client_for(MODELS / "streaming")
    text = list(client.predict_stream({"mode": mode, "kind": "str", "delay": 0.01}))
    data = list(client.predict_stream({"mode": mode, "kind": "bytes", "delay": 0.01}))
    assert all(isinstance(c, str) for c in text) and all(isinstance(c, bytes) for c in data)
    assert "".join(text) == "chunk-0\nchunk-1\nchunk-2\n"
    assert b"".join(data) == b"b0;b1;b2;"
    if transport == "grpc":  # HTTP does not keep chunk boundaries; gRPC does
        assert text == ["chunk-0\n", "chunk-1\n", "chunk-2\n"]
        assert data == [b"b0;", b"b1;", b"b2;"]


def test_chunks_arrive_as_they_are_produced(client_for: Any) -> None:
    client = client_for(MODELS / "streaming")
    stream = client.predict_stream({"kind": "json", "n": 3, "delay": 0.4})
    started = time.monotonic()
    assert next(stream) == {"i": 0}
    assert time.monotonic() - started < 0.35
    stream.close()


def test_stream_of_a_value_is_one_json_chunk(client_for: Any) -> None:
    client = client_for(MODELS / "streaming")
    assert list(client.predict_stream({"mode": "value"})) == [{"not": "streamed"}]


def test_closing_a_stream_early_frees_its_slot(client_for: Any) -> None:
    # streaming allows 8 concurrent calls; leaked slots would block the call at the end.
    client = client_for(MODELS / "streaming", timeout=10)
    for _ in range(10):
        stream = client.predict_stream({"kind": "json", "n": 1000, "delay": 0.05})
        assert next(stream) == {"i": 0}
        stream.close()
    assert client.predict({"mode": "value"}) == {"not": "streamed"}


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_failure_mid_stream_ends_with_internal(client_for: Any, mode: str) -> None:
    client = client_for(MODELS / "streaming")
    got: list[Any] = []
    with pytest.raises(TwinserveError) as info:
        for chunk in client.predict_stream({"mode": mode, "fail_at": 2, "delay": 0.01}):
            got.append(chunk)
    assert got == [{"i": 0}, {"i": 1}]
    assert info.value.code == "INTERNAL"
    assert info.value.message == ModelError.unexpected("predict").message
    assert info.value.request_id
    assert_still_serving(client)


def test_client_error_mid_stream(client_for: Any) -> None:
    client = client_for(MODELS / "streaming")
    err = error_of(client.predict_stream, {"mode": "sync", "client_error_at": 1, "delay": 0.01})
    assert (err.code, err.message) == ("INVALID_ARGUMENT", "bad chunk 1")
    assert_still_serving(client)


def test_unary_call_on_a_streaming_route(client_for: Any) -> None:
    client = client_for(MODELS / "streaming")
    err = error_of(client.predict, {"kind": "json"})
    assert err.code == "FAILED_PRECONDITION"
    assert "predict streams its output" in err.message
    assert_still_serving(client)


@pytest.mark.parametrize(("spec", "code", "message"), [
    ({"raise": "value_error"}, "INTERNAL", ModelError.unexpected("predict").message),
    ({"raise": "client_error"}, "INVALID_ARGUMENT", "field 'x' must be positive"),
])
def test_model_errors(client_for: Any, spec: dict[str, str], code: str, message: str) -> None:
    client = client_for(MODELS / "errors")
    err = error_of(client.predict, spec)
    assert (err.code, err.message) == (code, message)
    assert err.request_id
    assert client.predict({}) == {"ok": True}


def test_unserialisable_result(client_for: Any) -> None:
    client = client_for(MODELS / "errors")
    err = error_of(client.predict, {"raise": "unserialisable"})
    assert err.code == "INTERNAL"
    assert err.message.startswith("predict returned a value that cannot be sent as JSON")
    assert client.predict({}) == {"ok": True}


def test_http_exception_status_maps_to_permission_denied(client_for: Any) -> None:
    client = client_for(MODELS / "truss_style")
    err = error_of(client.predict, {"forbidden": True})
    assert (err.code, err.message) == ("PERMISSION_DENIED", "not allowed for you")
    assert client.predict({})["owner"] == "tests"


def test_streaming_with_postprocess_is_a_model_error(client_for: Any) -> None:
    client = client_for(MODELS / "stream_post")
    err = error_of(client.predict_stream, {})
    assert err.code == "INTERNAL"
    assert "cannot be post-processed" in err.message
    assert error_of(client.predict, {}).code == "INTERNAL"  # and again: still serving


def test_unknown_route_is_not_found(client_for: Any) -> None:
    client = client_for(EXAMPLES / "echo")
    err = error_of(lambda: client.predict({}, route="embeddings"))
    assert err.code == "NOT_FOUND"
    assert client.predict({"a": 1}) == {"a": 1}


def test_body_over_max_request_bytes(client_for: Any, tmp_path_factory: Any) -> None:
    model = _model_dir(tmp_path_factory, "small", '''
class Model:
    async def predict(self, model_input):
        return len(model_input)
''', config="runtime:\n  max_request_bytes: 1024\n")
    client = client_for(model)
    err = error_of(client.predict, "x" * 2000)
    assert err.code == "RESOURCE_EXHAUSTED"
    assert err.message == "request body exceeds runtime.max_request_bytes (1024 bytes)"
    err = error_of(client.predict, "x" * 2_000_000)  # past gRPC's own message limit too
    assert err.code == "RESOURCE_EXHAUSTED"
    assert client.predict("x" * 1000) == 1000


def test_timeout_is_deadline_exceeded(client_for: Any) -> None:
    client = client_for(MODELS / "concurrency", timeout=0.3)
    err = error_of(client.predict, {"sleep": 1.0})
    assert err.code == "DEADLINE_EXCEEDED"
    # the abandoned sleep runs on in its thread: let it end before the next test counts overlaps
    wait_until_calls_run_alone(client)
    assert "thread" in client.predict({"sleep": 0})


# -- shared model, shared limits ----------------------------------------------------------------


def test_concurrency_limit_is_shared_by_both_transports(daemons: Daemons) -> None:
    daemon = daemons(MODELS / "concurrency")
    clients = [connect(daemon, t, timeout=10) for t in TRANSPORTS for _ in range(2)]
    try:
        clients[0].predict({"report": True})  # reset the peak
        with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
            results = list(pool.map(lambda c: c.predict({"sleep": 0.3}), clients))
        assert all("thread" in r for r in results)
        assert clients[1].predict({"report": True}) == {"peak": 2}
    finally:
        for client in clients:
            client.close()


def test_not_ready_while_loading(start_daemon_per_test: StartDaemon, transport: str,
                                 tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    daemon = start_daemon_per_test(MODELS / "lifecycle", wait="listening",
                                   env={"LIFECYCLE_LOAD_GATE": str(gate)})
    client = connect(daemon, transport)
    err = error_of(client.predict, {})
    assert (err.code, err.message) == ("UNAVAILABLE", "model is loading")
    gate.touch()
    daemon.wait_ready()
    assert client.predict({}) == {"healthy": True}
    client.close()


# -- async clients ----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_async_clients(daemons: Daemons, kind: str) -> None:
    daemon = daemons(MODELS / "streaming")
    client = (AsyncHttpClient(daemon.http_url) if kind == "http"
              else AsyncGrpcClient(daemon.grpc_target))
    async with client:
        assert await client.predict({"mode": "value"}) == {"not": "streamed"}
        chunks = [c async for c in client.predict_stream({"kind": "json"})]
        assert chunks == [{"i": 0}, {"i": 1}, {"i": 2}]
        stream = client.predict_stream({"kind": "json", "n": 1000, "delay": 0.05})
        assert await stream.__anext__() == {"i": 0}
        await stream.aclose()
        with pytest.raises(TwinserveError) as info:
            async for _ in client.predict_stream({"fail_at": 1}):
                pass
        assert info.value.code == "INTERNAL"
        with pytest.raises(TwinserveError) as info:
            await client.predict({"kind": "str"})
        assert info.value.code == "FAILED_PRECONDITION"
        assert await client.predict({"mode": "value"}) == {"not": "streamed"}


def _model_dir(tmp_path_factory: Any, name: str, source: str, config: str = "") -> Path:
    """A model directory made once per session, so both transports share its daemon."""
    root: Path = tmp_path_factory.getbasetemp() / f"model-{name}"
    if root.exists():
        return root
    (root / "model").mkdir(parents=True)
    (root / "model" / "model.py").write_text(source)
    (root / "config.yaml").write_text(f"model_name: {name}\n{config}")
    return root
