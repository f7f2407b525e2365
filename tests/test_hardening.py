"""Production behaviour that must hold the same on both transports: admission control,
time limits, API keys, request ids, logs, metrics, header limits and the drain on SIGTERM."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from clients import GrpcClient, HttpClient, TwinserveError
from tests.conftest import StartDaemon
from tests.grpc.test_health import Health
from tests.harness import MODELS, DaemonProcess, copy_model
from tests.scrape import metric, wait_for_metric
from tests.transports import TRANSPORTS, connect, wait_until_calls_run_alone

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def limited(start_daemon: StartDaemon, tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    """One slot, one queue place, 1.5 s per call, an API key, and a 2 KiB header limit."""
    root = copy_model(tmp_path_factory.mktemp("limited"), MODELS / "concurrency",
                     "model_name: limited\nruntime:\n  predict_concurrency: 1\n  max_queue: 1\n"
                     "  request_timeout_s: 1.5\n  max_header_bytes: 2048\n")
    return start_daemon(root, env={"TWINSERVE_API_KEY": KEY})


@pytest.fixture
def client() -> Iterator[Any]:
    """Open clients (with the API key, unless told otherwise), closed after the test."""
    opened: list[Any] = []

    def open_client(daemon: DaemonProcess, transport: str, **options: Any) -> Any:
        opened.append(connect(daemon, transport, **{"api_key": KEY, "timeout": 10, **options}))
        return opened[-1]

    yield open_client
    for c in opened:
        c.close()


def error_of(fn: Any, *args: Any) -> TwinserveError:
    with pytest.raises(TwinserveError) as info:
        fn(*args)
    return info.value


# -- admission ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_beyond_the_queue_is_refused_at_once(limited: DaemonProcess, transport: str,
                                             client: Any) -> None:
    calls = [client(limited, transport) for _ in range(3)]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        running = pool.submit(calls[0].predict, {"sleep": 0.6})
        wait_for_metric(limited, "twinserve_in_flight", 1, 5)
        queued = pool.submit(calls[1].predict, {"sleep": 0.1})
        wait_for_metric(limited, "twinserve_queue_depth", 1, 5)
        started = time.monotonic()
        err = error_of(calls[2].predict, {"sleep": 0.1})
        refused_in = time.monotonic() - started
        assert "thread" in running.result() and "thread" in queued.result()
    assert err.code == "RESOURCE_EXHAUSTED" and "runtime.max_queue=1" in err.message
    assert refused_in < 0.3


def test_http_overload_is_429_with_retry_after(limited: DaemonProcess) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(httpx.post, f"{limited.http_url}/predict", json={"sleep": 0.5},
                            headers=headers, timeout=10) for _ in range(2)]
        wait_for_metric(limited, "twinserve_queue_depth", 1, 5)  # one runs, one waits
        refused = httpx.post(f"{limited.http_url}/predict", json={}, headers=headers)
        assert all(f.result().status_code == 200 for f in busy)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["type"] == "overloaded_error"


def test_grpc_overload_carries_retry_after(limited: DaemonProcess, client: Any) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(client(limited, "grpc").predict, {"sleep": 0.5}) for _ in range(2)]
        wait_for_metric(limited, "twinserve_queue_depth", 1, 5)  # one runs, one waits
        with grpc.insecure_channel(limited.grpc_target) as channel:
            call: Any = channel.unary_unary("/twinserve.v1.ModelService/Predict")
            with pytest.raises(grpc.RpcError) as info:
                call(b"\x12\x02{}", metadata=(("authorization", f"Bearer {KEY}"),))
        for f in busy:
            f.result()
    error: Any = info.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(error.trailing_metadata())["retry-after"] == "1"


# -- time limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_request_timeout_is_deadline_exceeded(limited: DaemonProcess, transport: str,
                                              client: Any) -> None:
    started = time.monotonic()
    err = error_of(client(limited, transport).predict, {"sleep": 3})
    assert err.code == "DEADLINE_EXCEEDED"
    assert err.message == "request exceeded runtime.request_timeout_s (1.5s)"
    assert time.monotonic() - started < 2.5
    # the sync predict's thread runs on; let it end and free the slot
    wait_until_calls_run_alone(client(limited, transport))


def test_request_timeout_is_504_over_http(limited: DaemonProcess, client: Any) -> None:
    response = httpx.post(f"{limited.http_url}/predict", json={"sleep": 3},
                          headers={"x-api-key": KEY}, timeout=10)
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout_error"
    wait_until_calls_run_alone(client(limited, "http"))


@pytest.fixture(scope="module")
def engine(start_daemon: StartDaemon, tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    root = tmp_path_factory.mktemp("engine")
    (root / "config.yaml").write_text(
        "model_name: engine\nengine:\n  backend: simulated\n  token_delay_ms: 20\n"
        "runtime:\n  predict_concurrency: 8\n  request_timeout_s: 0.5\n")
    return start_daemon(root)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("stream", [False, True])
def test_timeout_cancels_the_engine_work(engine: DaemonProcess, transport: str,
                                         stream: bool, client: Any) -> None:
    timeouts = metric(engine, 'twinserve_cancellations_total{reason="timeout"}')
    c = client(engine, transport)
    body = {"prompt": "x", "max_tokens": 10_000, "stream": stream}
    err = error_of(lambda: list(c.predict_stream(body)) if stream else c.predict(body))
    assert err.code == "DEADLINE_EXCEEDED"
    wait_for_metric(engine, "twinserve_engine_in_flight", 0, 1.0)
    assert metric(engine, 'twinserve_cancellations_total{reason="timeout"}') == timeouts + 1


# -- API keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("key", [None, "wrong"])
def test_calls_need_the_api_key(limited: DaemonProcess, transport: str, key: str | None,
                                client: Any) -> None:
    err = error_of(client(limited, transport, api_key=key).predict, {"sleep": 0})
    assert err.code == "UNAUTHENTICATED"
    assert err.message == ("invalid API key" if key else
                           "missing API key: send 'Authorization: Bearer <key>' or "
                           "'x-api-key: <key>'")
    assert "thread" in client(limited, transport).predict({"sleep": 0})


def test_api_key_errors_in_each_wire_shape(limited: DaemonProcess) -> None:
    predict = httpx.post(f"{limited.http_url}/predict", json={})
    assert predict.status_code == 401
    assert predict.json()["error"]["type"] == "authentication_error"
    openai = httpx.post(f"{limited.http_url}/v1/chat/completions", json={})
    assert openai.status_code == 401 and openai.json()["error"]["code"] == "invalid_api_key"
    anthropic = httpx.post(f"{limited.http_url}/v1/messages", json={},
                           headers={"x-api-key": "nope"})
    assert anthropic.status_code == 401
    assert anthropic.json()["error"] == {"type": "authentication_error",
                                         "message": "invalid API key"}


def test_unknown_paths_need_the_key_too(limited: DaemonProcess) -> None:
    """Without the key nothing is told about which paths exist; with it, 404 and 405."""
    assert httpx.get(f"{limited.http_url}/nope").status_code == 401
    assert httpx.get(f"{limited.http_url}/v1/chat/completions").json()["error"]["code"] == \
        "invalid_api_key"
    keyed = {"x-api-key": KEY}
    assert httpx.get(f"{limited.http_url}/nope", headers=keyed).status_code == 404
    wrong = httpx.post(f"{limited.http_url}/metrics", headers=keyed)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET,HEAD"


def test_health_and_metrics_stay_open(limited: DaemonProcess) -> None:
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert httpx.get(f"{limited.http_url}{path}").status_code == 200, path
    health = Health(limited.grpc_target)
    assert health.check() == health_pb2.HealthCheckResponse.SERVING
    health.channel.close()


# -- request ids, logs and metrics ------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_request_id_reaches_error_and_log(limited: DaemonProcess, transport: str,
                                          client: Any) -> None:
    rid = f"trace-{transport}-0001"
    err = error_of(client(limited, transport, headers={"x-request-id": rid}).predict, "oops")
    assert err.code == "INTERNAL" and err.request_id == rid
    limited.wait_for_log(rid, "twinserve.access")
    limited.wait_for_log(rid, "ERROR")


def test_request_metrics_by_transport_route_and_code(limited: DaemonProcess, client: Any) -> None:
    ok_http = 'twinserve_requests_total{code="200",route="predict",transport="http"}'
    ok_grpc = 'twinserve_requests_total{code="OK",route="predict",transport="grpc"}'
    before = metric(limited, ok_http), metric(limited, ok_grpc)
    client(limited, "http").predict({"sleep": 0})
    client(limited, "grpc").predict({"sleep": 0})
    assert (metric(limited, ok_http), metric(limited, ok_grpc)) == (before[0] + 1, before[1] + 1)
    text = httpx.get(f"{limited.http_url}/metrics").text
    for name in ("twinserve_request_duration_seconds_bucket", "twinserve_queue_depth",
                 "twinserve_in_flight", "twinserve_model_load_seconds",
                 "twinserve_engine_time_to_first_token_seconds",
                 "twinserve_engine_inter_token_seconds", "twinserve_engine_queue_seconds",
                 "twinserve_engine_batch_size", "twinserve_engine_prompt_tokens_total",
                 "twinserve_engine_completion_tokens_total",
                 "twinserve_cancellations_total"):
        assert name in text, name


def test_invented_routes_and_paths_share_one_metric_label(limited: DaemonProcess,
                                                         client: Any) -> None:
    """Whatever routes or paths clients make up, the metric's labels stay few."""
    unmatched = 'twinserve_requests_total{code="%s",route="unmatched",transport="%s"}'
    before = metric(limited, unmatched % ("NOT_FOUND", "grpc"))
    for n in range(3):
        made_up = client(limited, "grpc").predict
        with pytest.raises(TwinserveError) as info:
            made_up({}, route=f"made-up-{n}")
        assert info.value.code == "NOT_FOUND"
        httpx.get(f"{limited.http_url}/made-up-{n}", headers={"x-api-key": KEY})
    assert metric(limited, unmatched % ("NOT_FOUND", "grpc")) == before + 3
    text = httpx.get(f"{limited.http_url}/metrics").text
    assert metric(limited, unmatched % ("404", "http")) >= 3
    assert "made-up" not in text


def test_json_logs_without_access_log(start_daemon_per_test: StartDaemon,
                                      tmp_path: Path) -> None:
    root = copy_model(tmp_path, MODELS / "errors",
                      "server:\n  log_format: json\n  access_log: false\n")
    daemon = start_daemon_per_test(root)
    httpx.post(f"{daemon.http_url}/predict", json={"raise": "value_error"},
               headers={"x-request-id": "json-1"})
    daemon.stop()
    entries = [json.loads(line) for line in daemon.log_lines if line.startswith("{")]
    assert entries and len(entries) == len([line for line in daemon.log_lines if line.strip()
                                            and not line.startswith((" ", "Traceback"))])
    failure = next(e for e in entries if e.get("request_id") == "json-1")
    assert failure["level"] == "ERROR" and "ValueError" in failure["exc_info"]
    assert not any(e["logger"] == "twinserve.access" for e in entries)


def test_json_access_log_in_order_on_both_transports(start_daemon_per_test: StartDaemon,
                                                     tmp_path: Path) -> None:
    """Access lines are batched, yet each comes after what its call logged, and all are
    written by the time the daemon exits."""
    root = copy_model(tmp_path, MODELS / "errors", "server:\n  log_format: json\n")
    daemon = start_daemon_per_test(root)
    httpx.post(f"{daemon.http_url}/predict", json={"raise": "value_error"},
               headers={"x-request-id": "json-http"})
    with GrpcClient(daemon.grpc_target, headers={"x-request-id": "json-grpc"}) as grpc_client:
        for n in range(50):
            assert grpc_client.predict({"n": n}) == {"ok": True}
    daemon.wait_for_log('"json-grpc"', "twinserve.access")
    daemon.stop()
    entries = [json.loads(line) for line in daemon.log_lines if line.startswith("{")]
    access = [e for e in entries if e["logger"] == "twinserve.access"]
    http_line = next(e for e in access if e["request_id"] == "json-http")
    assert (http_line["transport"], http_line["route"], http_line["code"]) == \
        ("http", "predict", 500)
    assert http_line["message"].startswith("http predict 500 ") and http_line["duration_ms"] >= 0
    assert [e["code"] for e in access if e["request_id"] == "json-grpc"] == ["OK"] * 50
    error_at = next(i for i, e in enumerate(entries) if e["level"] == "ERROR")
    assert entries.index(http_line) > error_at  # the model's error, then its access line


# -- header limits ----------------------------------------------------------------------------


def test_oversized_headers_are_refused(limited: DaemonProcess, client: Any) -> None:
    big = "x" * 4096
    response = httpx.post(f"{limited.http_url}/predict", json={}, headers={"x-big": big})
    assert response.status_code in (400, 431)
    err = error_of(client(limited, "grpc", headers={"x-big": big}).predict, {})
    assert err.code in ("RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE")
    assert "thread" in client(limited, "grpc").predict({"sleep": 0})


# -- drain ------------------------------------------------------------------------------------


def _stream_model(tmp_path: Path, drain_timeout: float) -> Path:
    """No drain grace: the ports close as soon as the drain begins (tests/test_drain.py
    covers the grace)."""
    return copy_model(tmp_path, MODELS / "streaming",
                      f"runtime:\n  predict_concurrency: 4\n  drain_grace_s: 0\n"
                      f"  drain_timeout_s: {drain_timeout}\n")


def test_sigterm_drains_in_flight_calls_and_refuses_new_ones(
        start_daemon_per_test: StartDaemon, tmp_path: Path) -> None:
    daemon = start_daemon_per_test(_stream_model(tmp_path, 10))
    http, rpc = HttpClient(daemon.http_url), GrpcClient(daemon.grpc_target)
    try:
        in_flight = http.predict_stream({"mode": "async", "kind": "json", "n": 8, "delay": 0.1})
        assert next(in_flight) == {"i": 0}
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.wait_for_log("draining: ports closed")  # new connections are refused now
        assert error_of(http.predict, {"mode": "value"}).code == "UNAVAILABLE"
        assert error_of(rpc.predict, {"mode": "value"}).code == "UNAVAILABLE"
        assert [chunk["i"] for chunk in in_flight] == list(range(1, 8))  # finished in full
        assert daemon.wait_exit(10) == 0
    finally:
        http.close()
        rpc.close()


def test_drain_timeout_cancels_what_is_left(start_daemon_per_test: StartDaemon,
                                            tmp_path: Path) -> None:
    daemon = start_daemon_per_test(_stream_model(tmp_path, 0.5))
    rpc = GrpcClient(daemon.grpc_target)
    try:
        endless = rpc.predict_stream({"mode": "async", "kind": "json", "n": 1000, "delay": 0.05})
        assert next(endless) == {"i": 0}
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        with pytest.raises(TwinserveError):
            list(endless)
        assert daemon.wait_exit(10) == 0
        assert time.monotonic() - started < 5
        assert "drain timeout: cancelling 1 call(s)" in daemon.log
    finally:
        rpc.close()


def test_reading_a_metric_that_does_not_exist_fails(limited: DaemonProcess) -> None:
    """The helper every metric check goes through: a renamed metric must not read as 0."""
    with pytest.raises(AssertionError, match="no metric"):
        metric(limited, "twinserve_no_such_metric_total")
    with pytest.raises(AssertionError, match="no metric"):
        metric(limited, 'twinserve_no_such_metric_total{route="predict"}')
    assert metric(limited, 'twinserve_cancellations_total{reason="never-seen"}') == 0.0
