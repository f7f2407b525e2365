"""Truss's integration tests (basetenlabs/truss `truss/tests/test_model_inference.py`), run
against a real twinserve daemon instead of a Truss container.

Each test keeps Truss's name, model source and assertions. Inline models go through the
`truss_server` fixture, with `server: log_format: json` added to their config.yaml so the
daemon logs JSON lines as Truss's container does; Truss's test_data trusses are copied
unchanged into tests/truss/models/ and log in twinserve's default text format (the
helpers below read both). Adaptations, each also noted where it is made:

- Clients are httpx, not requests: `stream=True` + `iter_content()` is `httpx.stream` +
  `iter_bytes(chunk_size=1)`; `ChunkedEncodingError` is `httpx.RemoteProtocolError`.
- `time.sleep(N)  # wait for logs` and waits for the server to come up are waits for a log
  line or a condition. Model-side sleeps of 10-20 s are shortened (test_slow_truss serves a
  copy of server_conformance_test_truss with only its two sleeps shortened).
- Truss's async tests (test_graceful_shutdown, test_raise_no_endpoint) run synchronously,
  with threads for concurrent requests, except the WebSocket ones, whose client (the
  `websockets` library, as in Truss) is asyncio.
- Truss's JSON logs name the level `levelname`, twinserve's `level`; tracebacks name the
  model directory's real path, not the container's /app and /packages.
- Where twinserve's wording legitimately differs, the test asserts twinserve's text and says
  so: start-up errors name the method and its signature; a model exception is logged as
  "<method> raised while handling request <id>" (Truss: "Internal Server Error"), and its
  error body, in Truss's `{"error": "..."}` shape, says "<method> failed with an unexpected
  error; ..." (Truss: "Internal Server Error").
- Truss's `x-baseten-error-source` / `x-baseten-error-code` response headers are Baseten
  platform details: not asserted anywhere.
- No config key was dropped; twinserve accepts Truss's build keys and ignores them. The
  copied trusses leave out only the root __init__.py that marks them as part of Truss's test
  package.
- test_graceful_shutdown: twinserve's `runtime.drain_timeout_s: 3` replaces patching
  TIMEOUT_GRACEFUL_SHUTDOWN into the container's truss_server.py, and a second daemon
  replaces the container restart.

Differs from Truss on purpose (README, "Coming from Truss"), so these assert twinserve's
behaviour:
- test_streaming_with_error_and_stacktrace: a generator that raises after its first chunks
  ends the body with an error line and no terminating chunk; Truss ends it as if complete.
- test_async_streaming_timeout: a stream whose model produces nothing for
  runtime.streaming_read_timeout before its first chunk is a whole 504; Truss has sent 200
  headers and cuts the body.

Not ported:
- test_predict_python_versions: the Docker image's Python version (`python_version`).
- test_requirements_file_truss: installs torch from the truss's requirements.txt at build.
- test_requirements_pydantic[1], [2]: installs pydantic<2 / >=2 from requirements.txt at
  build; twinserve runs in the environment it is installed in.
- test_setup_environment: Baseten's dynamic config file /etc/b10_dynamic_config/environment,
  written into the running container; platform-only.
- test_health_check_configuration: asserts only on Truss's parsed config object
  (`runtime.health_checks`, Baseten's restart/stop-traffic policy); nothing the server does.
- test_streaming_truss_with_user_tracing[True], [False]: OpenTelemetry trace files
  (/tmp/otel_traces.ndjson) written for Baseten's tracing.
- test_build_commands_on_model_files: `build_commands` run at image build.
- test_switch_build_context_to_root: a non-root custom base image.
- test_system_managed_python: the system Python of a custom base image.
- test_server_deps_oldest_floors, test_server_deps_newest_ceilings,
  test_server_deps_requirements_file, test_server_deps_out_of_bounds_requirements,
  test_server_deps_out_of_bounds_requirements_file,
  test_server_deps_uv_lock_silently_overridden: the server's dependency pins in the image.
- test_numpy1x_compat, test_numpy2x_compat: the numpy version pinned in the image.

Ported in part:
- test_init_environment_parameter: the first half's "staging" environment comes from
  Baseten's dynamic config (`LocalConfigHandler.set_dynamic_config`), platform-only; the
  no-environment half is ported.
- test_instrument_metrics: the second half's OpenTelemetry PrometheusMetricReader model needs
  `requirements: opentelemetry-exporter-prometheus` installed at image build; the
  prometheus_client half is ported.
- test_is_healthy_returns_503_on_load_failure: Truss ends by finding Baseten's crash marker
  /root/inference_server_crashed.txt in the container's diff; here the daemon must have
  exited instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StartDaemon
from tests.harness import DaemonProcess
from tests.truss.conftest import TrussServer

MODELS = Path(__file__).resolve().parent / "models"

# Truss logs a model's exception as "Internal Server Error" (its DEFAULT_LOG_ERROR), with the
# traceback; twinserve as "<method> raised while handling request <id>", with the traceback.
DEFAULT_LOG_ERROR = "raised while handling request"
# Truss answers a model's exception with {"error": "Internal Server Error"}; twinserve with
# {"error": "<method> failed with an unexpected error; the server log has the details ..."}.
DEFAULT_BODY_ERROR = "failed with an unexpected error"
# Twinserve's log line once load() has returned: where Truss's tests sleep past the load.
LOADED = "loaded; ready"
# Truss logs "Health check failed."; twinserve "Health check failed: is_healthy returned False".
HEALTH_CHECK_FAILED = "Health check failed"

Record = dict[str, str]

_TEXT_RECORD = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} (?P<level>[A-Z]+) \S+: (?P<message>.*)$")
_REQUEST_ID = re.compile(r" \[request_id=[^\]]*\]$")


def _predict_url(daemon: DaemonProcess) -> str:
    return f"{daemon.http_url}/v1/models/model:predict"


def _model_url(daemon: DaemonProcess) -> str:
    return f"{daemon.http_url}/v1/models/model"


def _json_logs(config_src: str = "") -> str:
    """Truss's config.yaml with JSON log lines, as Truss's container writes them."""
    config = textwrap.dedent(config_src).rstrip()
    return (config + "\n" if config else "") + "server:\n  log_format: json\n"


def _log_records(daemon: DaemonProcess) -> list[Record]:
    """The daemon's log as Truss's JSON log records: `levelname`, `message`, `exc_info`.

    JSON lines (`server.log_format: json`) are parsed; a text record (the default) is its
    first line, the lines after it (a traceback) its exc_info."""
    records: list[Record] = []
    text = False
    for line in list(daemon.log_lines):
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if isinstance(entry, dict) and "level" in entry:
                records.append({"levelname": str(entry["level"]),
                                "message": str(entry.get("message", "")),
                                "exc_info": str(entry.get("exc_info", ""))})
                text = False
                continue
        match = _TEXT_RECORD.match(line)
        if match:
            records.append({"levelname": match["level"],
                            "message": _REQUEST_ID.sub("", match["message"]), "exc_info": ""})
            text = True
        elif text:
            last = records[-1]
            last["exc_info"] += ("\n" if last["exc_info"] else "") + _REQUEST_ID.sub("", line)
        else:
            records.append({"levelname": "", "message": line, "exc_info": ""})
    return records


def _log_contains_line(line: Record, message: str, level: str,
                       error: str | None = None) -> bool:
    return (line["levelname"] == level and message in line["message"]
            and (error is None or error in line["exc_info"]))


def _wait_for_record(daemon: DaemonProcess, matches: Callable[[Record], bool],
                     expected: str, timeout: float = 3.0) -> Record:
    """The first log record that `matches`, once there is one: the daemon writes its log on
    its own schedule, so a record may land after the answer that caused it."""
    deadline = time.monotonic() + timeout
    while True:
        for record in _log_records(daemon):
            if matches(record):
                return record
        if time.monotonic() > deadline:
            raise AssertionError(f"Did not find expected logs after {timeout}s.\n{expected}\n"
                                 f"Actual logs:\n{daemon.log}")
        time.sleep(0.02)


def _assert_logs_contain_error(daemon: DaemonProcess, error: str | None,
                               message: str = DEFAULT_LOG_ERROR) -> Record:
    return _wait_for_record(
        daemon, lambda line: _log_contains_line(line, message, "ERROR", error),
        f"Expected error: {error}\nExpected message: {message}")


def _assert_logs_contain(daemon: DaemonProcess, message: str, level: str = "INFO") -> Record:
    return _wait_for_record(daemon, lambda line: _log_contains_line(line, message, level),
                            f"Expected message: {message} ({level})")


def _wait_for_count(daemon: DaemonProcess, text: str, count: int) -> int:
    """How often `text` is in the log, once it is there at least `count` times."""
    deadline = time.monotonic() + 3.0
    while daemon.log.count(text) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return daemon.log.count(text)


def _chunks(response: httpx.Response) -> list[str]:
    """requests' `[b.decode() for b in response.iter_content()]`: one byte at a time."""
    return [byte_string.decode() for byte_string in response.iter_bytes(chunk_size=1)]


# Test Cases ###########################################################################


def test_model_load_logs(truss_server: TrussServer) -> None:
    model = """
    from typing import Optional
    import logging
    class Model:
        def load(self):
            logging.info(f"User Load Message")

        def predict(self, model_input):
            return self.environment_name
    """
    config = "model_name: init-environment-truss"
    daemon = truss_server(model, _json_logs(config))
    _assert_logs_contain(daemon, message="Executing model.load()")
    _assert_logs_contain(daemon, message="Loading truss model from file")
    # Truss: "Completed model.load() execution in N ms"; twinserve: "model <name> loaded; ready".
    _assert_logs_contain(daemon, message=LOADED)
    _assert_logs_contain(daemon, message="User Load Message")


def test_model_load_failure_truss(start_daemon_per_test: StartDaemon) -> None:
    daemon = start_daemon_per_test(MODELS / "model_load_failure_test", wait="none")
    # Truss sleeps 10 s to give the server time to come up and fail; here: until it is gone.
    daemon.wait_exit(timeout=10)
    assert daemon.http_port, f"the daemon never listened:\n{daemon.log}"
    truss_server_addr = daemon.http_url

    def _responds(method: str, path: str, expected_code: int) -> bool:
        """Truss's probes: False when the request fails (nothing answers)."""
        try:
            response = httpx.request(method, f"{truss_server_addr}{path}",
                                     json={} if method == "POST" else None)
        except httpx.HTTPError:
            return False
        assert response.status_code == expected_code
        return True

    # The server should be completely down so all requests should fail.
    assert not _responds("GET", "/", expected_code=200)
    assert not _responds("GET", "/v1/models/model", expected_code=200)
    assert not _responds("GET", "/v1/models/model/loaded", expected_code=200)
    assert not _responds("GET", "/ping", expected_code=200)
    assert not _responds("POST", "/v1/models/model:predict", expected_code=200)


def test_concurrency_truss(start_daemon_per_test: StartDaemon) -> None:
    # Tests that concurrency limits work correctly
    daemon = start_daemon_per_test(MODELS / "test_concurrency_truss")
    url = _predict_url(daemon)

    # Each request takes 2 seconds, for this thread, we allow
    # a concurrency of 2. This means the first two requests will
    # succeed within the 2 seconds, and the third will fail, since
    # it cannot start until the first two have completed.
    def make_request() -> None:
        httpx.post(url, json={}, timeout=3)

    with ThreadPoolExecutor(3) as executor:
        successful_1 = executor.submit(make_request)
        successful_2 = executor.submit(make_request)
        # Ensure that the request to fail starts a little after the others
        time.sleep(0.2)
        failed = executor.submit(make_request)

        successful_1.result()
        successful_2.result()
        with pytest.raises(httpx.ReadTimeout):
            failed.result()


def test_async_truss(start_daemon_per_test: StartDaemon) -> None:
    daemon = start_daemon_per_test(MODELS / "test_async_truss")
    response = httpx.post(_predict_url(daemon), json={})
    assert response.json() == {
        "preprocess_value": "value",
        "postprocess_value": "value",
    }


def test_async_streaming(start_daemon_per_test: StartDaemon) -> None:
    daemon = start_daemon_per_test(MODELS / "test_streaming_async_generator_truss")
    with httpx.stream("POST", _predict_url(daemon), json={}) as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        assert _chunks(response) == ["0", "1", "2", "3", "4"]

    predict_non_stream_response = httpx.post(
        _predict_url(daemon), json={}, headers={"accept": "application/json"})
    assert "transfer-encoding" not in predict_non_stream_response.headers
    assert predict_non_stream_response.json() == "01234"


def test_async_streaming_timeout(start_daemon_per_test: StartDaemon) -> None:
    daemon = start_daemon_per_test(MODELS / "test_streaming_read_timeout")
    # The model takes 2 s before its first chunk and 3 s between the others, each over the
    # 1 s runtime.streaming_read_timeout. Truss has sent its 200 headers by then and cuts the
    # body (requests' ChunkedEncodingError). Differs, deliberately (README, "Coming from
    # Truss"): twinserve sends its headers with the first chunk, so a stream that times out
    # before it is a whole 504, in Truss's error shape; one that times out later is cut
    # off after an error line, as in test_streaming_with_error_and_stacktrace.
    response = httpx.post(_predict_url(daemon), json={}, timeout=10)
    assert response.status_code == 504
    assert response.json() == {
        "error": "the model produced nothing for 1s (runtime.streaming_read_timeout) "
                 f"(request id {response.headers['x-request-id']})"}
    # Truss logs uvicorn's "Exception in ASGI application" with the TimeoutError (or
    # CancelledError) as exc_info; twinserve has no ASGI layer and logs the timeout itself.
    _wait_for_record(
        daemon, lambda line: line["levelname"] == "ERROR"
        and "runtime.streaming_read_timeout" in line["message"],
        "Expected an ERROR naming runtime.streaming_read_timeout")


def test_streaming_with_error_and_stacktrace(start_daemon_per_test: StartDaemon) -> None:
    truss_dir = MODELS / "test_streaming_truss_with_error"
    daemon = start_daemon_per_test(truss_dir)
    url = _predict_url(daemon)

    # In error cases, the response will return whatever the stream returned,
    # in this case, the first 3 items. We timeout after 2 seconds to ensure that
    # stream finishes reading and releases the predict semaphore.
    # Differs from Truss, deliberately (README, "Coming from Truss"): Truss ends the body as
    # if complete; twinserve writes the error line after the 3 items and cuts the body, so
    # no client takes the partial answer for a whole one.
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", url, json={"throw_error": True}, timeout=2) as response:
            for piece in response.iter_bytes(chunk_size=1):
                received.append(piece.decode())
    text = "".join(received)
    assert text.startswith("012") and json.loads(text[3:]) == {
        "error": "predict failed with an unexpected error; the server log has the details "
                 f"under this request's id (request id {response.headers['x-request-id']})"}

    # Test that we are able to continue to make requests successfully
    with httpx.stream("POST", url, json={"throw_error": False}, timeout=2) as response:
        assert _chunks(response) == ["0", "1", "2", "3", "4"]

    # Check key traceback lines individually rather than as one multiline
    # string, because Python's traceback format varies across versions.
    # Truss's paths are the container's /app/model and /packages; here, the directory's own.
    root = truss_dir.resolve()
    expected_lines = [
        "Traceback (most recent call last):",
        f'File "{root}/model/model.py", line 12, in inner',
        "helpers_1.foo(123)",
        f'File "{root}/packages/helpers_1.py", line 5, in foo',
        "return helpers_2.bar(x)",
        f'File "{root}/packages/helpers_2.py", line 2, in bar',
        'raise Exception("Crashed in `bar`.")',
        "Exception: Crashed in `bar`.",
    ]
    # Truss: "Exception while generating streamed response: Crashed in `bar`."; twinserve logs
    # "predict raised while handling request <id>" with the traceback.
    error_log = _assert_logs_contain_error(daemon, error=None, message=DEFAULT_LOG_ERROR)
    for expected in expected_lines:
        assert expected in error_log["exc_info"], f"Missing expected traceback line: {expected!r}"


def test_secrets_truss(truss_server: TrussServer) -> None:
    model = """
    class Model:
        def __init__(self, **kwargs):
            self._secrets = kwargs["secrets"]

        def predict(self, request):
            return self._secrets["secret"]
    """
    config = """model_name: secrets-truss
secrets:
    secret: null
    """
    config_with_no_secret = "model_name: secrets-truss"
    # Truss's LocalConfigHandler.set_secret("secret", "secret_value"):
    secret_env = {"TWINSERVE_SECRET_SECRET": "secret_value"}

    daemon = truss_server(model, _json_logs(config), env=secret_env)
    response = httpx.post(_predict_url(daemon), json={})
    assert response.json() == "secret_value"

    # Case where the secret is not specified in the config.
    # Truss: "Secret 'secret' not found. Please ensure that: ..."; twinserve's KeyError says:
    daemon = truss_server(model, _json_logs(config_with_no_secret), env=secret_env)
    response = httpx.post(_predict_url(daemon), json={})
    assert "error" in response.json()
    _assert_logs_contain_error(
        daemon, "secret 'secret' is not declared under `secrets` in config.yaml")
    assert DEFAULT_BODY_ERROR in response.json()["error"]

    # Case where the secret is not mounted
    daemon = truss_server(model, _json_logs(config))
    response = httpx.post(_predict_url(daemon), json={})
    assert response.status_code == 500
    _assert_logs_contain_error(
        daemon, "secret 'secret' has no value: set TWINSERVE_SECRET_SECRET")
    assert DEFAULT_BODY_ERROR in response.json()["error"]


def test_postprocess_with_streaming_predict(truss_server: TrussServer) -> None:
    """
    Test a Truss that has streaming response from both predict and postprocess.
    In this case, the postprocess step continues to happen within the predict lock,
    so we don't bother testing the lock scenario, just the behavior that the postprocess
    function is applied.
    """
    model = """
    import time

    class Model:
        def postprocess(self, response):
            for item in response:
                time.sleep(1)
                yield item + " modified"

        def predict(self, request):
            for i in range(2):
                yield str(i)
    """
    daemon = truss_server(model, _json_logs())
    with httpx.stream("POST", _predict_url(daemon), json={}) as response:
        response.read()
    # Truss: "ModelDefinitionError: If the predict function returns a generator (streaming),
    # you cannot use postprocessing."; twinserve's wording:
    refusal = "predict returned a generator (streaming), but the model also defines postprocess"
    _assert_logs_contain_error(daemon, error=None, message=refusal)
    assert response.status_code == 500
    assert refusal in response.json()["error"]


def test_streaming_postprocess(truss_server: TrussServer) -> None:
    """
    Tests a Truss where predict returns non-streaming, but postprocess is streamed, and
    ensures that the postprocess step does not happen within the predict lock. To do this,
    we sleep for two seconds during the postprocess streaming process, and fire off two
    requests with a total timeout of 3 seconds, ensuring that if they were serialized
    the test would fail.
    """
    model = """
    import time

    class Model:
        def postprocess(self, response):
            for item in response:
                time.sleep(1)
                yield item + " modified"

        def predict(self, request):
            return ["0", "1"]
    """
    daemon = truss_server(model, _json_logs())

    def make_request(delay: float) -> None:
        time.sleep(delay)
        with httpx.stream("POST", _predict_url(daemon), json={}, timeout=10) as response:
            assert response.status_code == 200
            assert response.read() == b"0 modified1 modified"

    with ThreadPoolExecutor() as e:
        # We use concurrent.futures.wait instead of the client's timeout, which has a complex
        # interaction with streaming.
        first_request = e.submit(make_request, 0)
        second_request = e.submit(make_request, 0.2)
        futures = [first_request, second_request]
        done, _ = concurrent.futures.wait(futures, timeout=3)
        # Ensure that both requests complete within the 3 second timeout,
        # as the predict lock is not held through the postprocess step
        assert first_request in done
        assert second_request in done

        for future in done:
            # Ensure that both futures completed without error
            future.result()


def test_postprocess(truss_server: TrussServer) -> None:
    """
    Tests a Truss that has a postprocess step defined, and ensures that the
    postprocess does not happen within the predict lock. To do this, we sleep
    for two seconds during the postprocess, and fire off two requests with a total
    timeout of 3 seconds, ensureing that if they were serialized the test would fail.
    """
    model = """
    import time

    class Model:
        def postprocess(self, response):
            updated_items = []
            for item in response:
                time.sleep(1)
                updated_items.append(item + " modified")
            return updated_items

        def predict(self, request):
            return ["0", "1"]

    """
    daemon = truss_server(model, _json_logs())

    def make_request(delay: float) -> None:
        time.sleep(delay)
        response = httpx.post(_predict_url(daemon), json={}, timeout=10)
        assert response.status_code == 200
        assert response.json() == ["0 modified", "1 modified"]

    with ThreadPoolExecutor() as e:
        first_request = e.submit(make_request, 0)
        second_request = e.submit(make_request, 0.2)
        futures = [first_request, second_request]
        done, _ = concurrent.futures.wait(futures, timeout=3)
        # Ensure that both requests complete within the 3 second timeout,
        # as the predict lock is not held through the postprocess step
        assert first_request in done
        assert second_request in done

        for future in done:
            # Ensure that both futures completed without error
            future.result()


def test_truss_with_errors(truss_server: TrussServer) -> None:
    model = """
    class Model:
        def predict(self, request):
            raise ValueError("error")
    """
    daemon = truss_server(model, _json_logs())
    response = httpx.post(_predict_url(daemon), json={})
    assert response.status_code == 500
    assert "error" in response.json()
    _assert_logs_contain_error(daemon, "ValueError: error")
    assert DEFAULT_BODY_ERROR in response.json()["error"]

    model_preprocess_error = """
    class Model:
        def preprocess(self, request):
            raise ValueError("error")

        def predict(self, request):
            return {"a": "b"}
    """
    daemon = truss_server(model_preprocess_error, _json_logs())
    response = httpx.post(_predict_url(daemon), json={})
    assert response.status_code == 500
    assert "error" in response.json()
    _assert_logs_contain_error(daemon, "ValueError: error")
    assert DEFAULT_BODY_ERROR in response.json()["error"]

    model_postprocess_error = """
    class Model:
        def predict(self, request):
            return {"a": "b"}

        def postprocess(self, response):
            raise ValueError("error")
    """
    daemon = truss_server(model_postprocess_error, _json_logs())
    response = httpx.post(_predict_url(daemon), json={})
    assert response.status_code == 500
    assert "error" in response.json()
    _assert_logs_contain_error(daemon, "ValueError: error")
    assert DEFAULT_BODY_ERROR in response.json()["error"]

    model_async = """
    class Model:
        async def predict(self, request):
            raise ValueError("error")
    """
    daemon = truss_server(model_async, _json_logs())
    response = httpx.post(_predict_url(daemon), json={})
    assert response.status_code == 500
    assert "error" in response.json()
    _assert_logs_contain_error(daemon, "ValueError: error")
    assert DEFAULT_BODY_ERROR in response.json()["error"]


def test_truss_with_user_errors(truss_server: TrussServer) -> None:
    """Test that user-code raised `fastapi.HTTPExceptions` are passed through as is."""
    model = """
    import fastapi

    class Model:
        def predict(self, request):
            raise fastapi.HTTPException(status_code=500, detail="My custom message.")
    """
    daemon = truss_server(model, _json_logs())
    response = httpx.post(_predict_url(daemon), json={})
    assert response.status_code == 500
    assert "error" in response.json()
    # Truss's message: "Model raised HTTPException"; twinserve's for a model's exception:
    # "predict raised while handling request <id>".
    _assert_logs_contain_error(daemon, "HTTPException: 500: My custom message.",
                               DEFAULT_LOG_ERROR)
    assert "My custom message." in response.json()["error"]


def test_truss_with_error_stacktrace(start_daemon_per_test: StartDaemon) -> None:
    truss_dir = MODELS / "test_truss_with_error"
    daemon = start_daemon_per_test(truss_dir)
    response = httpx.post(_predict_url(daemon), json={})
    assert response.status_code == 500
    assert "error" in response.json()
    assert DEFAULT_BODY_ERROR in response.json()["error"]

    # Check key traceback lines individually rather than as one multiline
    # string, because Python's traceback format varies across versions.
    # Truss's paths are the container's /app/model and /packages; here, the directory's own.
    root = truss_dir.resolve()
    expected_lines = [
        "Traceback (most recent call last):",
        f'File "{root}/model/model.py", line 8, in predict',
        "return helpers_1.foo(123)",
        f'File "{root}/packages/helpers_1.py", line 5, in foo',
        "return helpers_2.bar(x)",
        f'File "{root}/packages/helpers_2.py", line 2, in bar',
        'raise Exception("Crashed in `bar`.")',
        "Exception: Crashed in `bar`.",
    ]
    error_log = _assert_logs_contain_error(daemon, error=None, message=DEFAULT_LOG_ERROR)
    for expected in expected_lines:
        assert expected in error_log["exc_info"], f"Missing expected traceback line: {expected!r}"


def test_slow_truss(start_daemon_per_test: StartDaemon, tmp_path: Path) -> None:
    # Truss's server_conformance_test_truss sleeps 20 s in load() and 20 s in predict(), and
    # the test probes for 12 s and 15 s of them. Here load() takes 3 s and predict() 2 s, and
    # the probes run in those windows; the truss is otherwise unchanged.
    source = MODELS / "server_conformance_test_truss"
    model_src = (source / "model" / "model.py").read_text()
    assert model_src.count("time.sleep(20)") == 2
    model_src = model_src.replace("time.sleep(20)", "time.sleep(3)", 1)
    model_src = model_src.replace("time.sleep(20)", "time.sleep(2)", 1)
    truss_dir = tmp_path / "server_conformance_test_truss"
    (truss_dir / "model").mkdir(parents=True)
    (truss_dir / "model" / "model.py").write_text(model_src)
    (truss_dir / "config.yaml").write_text((source / "config.yaml").read_text())

    daemon = start_daemon_per_test(truss_dir, wait="listening")
    truss_server_addr = daemon.http_url

    def _test_liveness_probe(expected_code: int) -> None:
        live = httpx.get(f"{truss_server_addr}/")
        assert live.status_code == expected_code

    def _test_readiness_probe(expected_code: int) -> None:
        ready = httpx.get(f"{truss_server_addr}/v1/models/model")
        assert ready.status_code == expected_code

    def _test_is_loaded(expected_code: int) -> None:
        ready = httpx.get(f"{truss_server_addr}/v1/models/model/loaded")
        assert ready.status_code == expected_code

    def _test_ping(expected_code: int) -> None:
        ping = httpx.get(f"{truss_server_addr}/ping")
        assert ping.status_code == expected_code

    def _test_invocations(expected_code: int) -> None:
        invocations = httpx.post(f"{truss_server_addr}/invocations", json={}, timeout=10)
        assert invocations.status_code == expected_code

    # The truss takes 3 s to load: make sure that it's not ready for that time.
    for _ in range(4):
        _test_liveness_probe(200)
        _test_readiness_probe(503)
        _test_is_loaded(503)
        _test_ping(503)
        _test_invocations(503)
        time.sleep(0.25)

    daemon.wait_ready(timeout=10)  # Truss sleeps LOAD_BUFFER_TIME past the load
    _test_liveness_probe(200)
    _test_readiness_probe(200)
    _test_is_loaded(200)
    _test_ping(200)

    with ThreadPoolExecutor(1) as executor:
        predict_call = executor.submit(
            httpx.post, f"{truss_server_addr}/v1/models/model:predict", json={}, timeout=10)
        # The probes answer while predict() runs (2 s).
        for _ in range(4):
            _test_liveness_probe(200)
            _test_readiness_probe(200)
            _test_is_loaded(200)
            _test_ping(200)
            time.sleep(0.25)
        predict_call.result()

    _test_invocations(200)


def test_init_environment_parameter(truss_server: TrussServer) -> None:
    # Truss's first half (a deployment in Baseten's "staging" environment, set through its
    # dynamic config) is Baseten-only; this is the half with no associated environment.
    model = """
    from typing import Optional
    class Model:
        def __init__(self, **kwargs):
            self._config = kwargs["config"]
            self._environment = kwargs["environment"]
            self.environment_name = self._environment.get("name") if self._environment else None

        def load(self):
            print(f"Executing model.load with environment: {self.environment_name}")

        def predict(self, model_input):
            return self.environment_name
    """
    config = "model_name: init-no-environment-truss"
    daemon = truss_server(model, _json_logs(config))
    daemon.wait_for_log("Executing model.load with environment: None", timeout=3)
    response = httpx.post(_predict_url(daemon), json={})
    assert response.json() is None
    assert response.status_code == 200


def test_is_healthy_returns_503_on_load_failure(truss_server: TrussServer) -> None:
    model = """
    class Model:
        def load(self):
            raise Exception("not loaded")

        def is_healthy(self) -> bool:
            return True

        def predict(self, model_input):
            return model_input
    """
    # Truss sleeps 1 s "to allow for the model to come up": twinserve listens before load().
    daemon = truss_server(model, _json_logs(), wait="listening")
    healthy = httpx.get(_model_url(daemon))
    assert healthy.status_code == 503
    for _ in range(10):
        time.sleep(0.5)
        try:
            healthy = httpx.get(_model_url(daemon))
        except httpx.HTTPError:
            # when the model goes down, this will throw an exception
            break
    # Truss then finds its crash marker /root/inference_server_crashed.txt in the container's
    # diff; what a daemon shows instead is that it exits with a failure status. Its ports
    # close before its teardown ends, so the exit is waited for, not polled once.
    assert daemon.wait_exit(timeout=10) == 1
    assert "model load failed; exiting" in daemon.log


def test_container_logs_contain_error_when_is_healthy_has_wrong_signature(
        truss_server: TrussServer) -> None:
    model = """
    class Model:
        def is_healthy(self, argument) -> bool:
            pass

        def predict(self, model_input):
            return model_input
    """
    daemon = truss_server(model, _json_logs(), wait="none")
    # Truss logs "Exception while loading model" with the error as exc_info; twinserve logs
    # its start-up errors as the message, naming the method and its signature first.
    _assert_logs_contain_error(
        daemon, error=None,
        message="is_healthy(self, argument) -> bool: `is_healthy` must have only one "
                "argument: `self`")


def test_container_logs_contain_error_when_is_healthy_raises_exception(
        truss_server: TrussServer) -> None:
    model = """
    class Model:
        def is_healthy(self) -> bool:
            raise Exception("not healthy")

        def predict(self, model_input):
            return model_input
    """
    daemon = truss_server(model, _json_logs(), wait="listening")
    daemon.wait_for_log(LOADED)  # Truss sleeps 10 s for the server to come up
    healthy = httpx.get(_model_url(daemon))
    assert healthy.status_code == 503
    # Truss: "Exception while checking if model is healthy: not healthy"; twinserve keeps the
    # exception's text out of the message ("...; reporting not ready"), in the traceback.
    _assert_logs_contain_error(daemon, error="Exception: not healthy",
                               message="Exception while checking if model is healthy")
    # Truss: "Health check failed."; twinserve: "Health check failed: is_healthy returned ...".
    daemon.wait_for_log(HEALTH_CHECK_FAILED, timeout=3)


def test_health_check_returns_503_when_not_healthy(truss_server: TrussServer) -> None:
    model = """
    import time

    class Model:
        def load(self):
            time.sleep(1)

        def is_healthy(self) -> bool:
            return False

        def predict(self, model_input):
            return model_input
    """
    # Truss's load() sleeps 10 s; 1 s here.
    daemon = truss_server(model, _json_logs(), wait="listening")
    healthy = httpx.get(_model_url(daemon))
    assert healthy.status_code == 503
    # Ensure we only log after model.load is complete
    assert HEALTH_CHECK_FAILED not in daemon.log

    daemon.wait_for_log(LOADED)  # Truss sleeps 10 s, past the load
    healthy = httpx.get(_model_url(daemon))
    assert healthy.status_code == 503
    assert _wait_for_count(daemon, HEALTH_CHECK_FAILED, 1) == 1
    healthy = httpx.get(_model_url(daemon))
    assert healthy.status_code == 503
    assert _wait_for_count(daemon, HEALTH_CHECK_FAILED, 2) == 2


def test_health_check_returns_200_when_healthy(truss_server: TrussServer) -> None:
    model = """
    import time

    class Model:
        def __init__(self, **kwargs):
            self._healthy = False

        def load(self):
            time.sleep(1)
            self._healthy = True

        def is_healthy(self):
            return self._healthy

        def predict(self, model_input):
            self._healthy = model_input["healthy"]
            return model_input
    """
    # Truss's load() sleeps 10 s; 1 s here.
    daemon = truss_server(model, _json_logs(), wait="listening")
    healthy = httpx.get(_model_url(daemon))
    assert healthy.status_code == 503
    daemon.wait_for_log(LOADED)  # Truss sleeps 10 s, past the load
    healthy = httpx.get(_model_url(daemon))
    assert healthy.status_code == 200

    healthy_responses: list[Any] = [True, "yessss", 34, {"woo": "hoo"}]
    for response in healthy_responses:
        predict_response = httpx.post(_predict_url(daemon), json={"healthy": response})
        assert predict_response.status_code == 200
        healthy = httpx.get(_model_url(daemon))
        assert healthy.status_code == 200

    not_healthy_responses: list[Any] = [False, "", 0, {}]
    for response in not_healthy_responses:
        predict_response = httpx.post(_predict_url(daemon), json={"healthy": response})
        assert predict_response.status_code == 200
        healthy = httpx.get(_model_url(daemon))
        assert healthy.status_code == 503, f"is_healthy returned {response!r}"


def test_is_healthy_returns_503_during_model_load(truss_server: TrussServer) -> None:
    """Test that health checks don't run until model.load() completes.

    This test verifies that health checks are not performed while the model
    is still loading, ensuring that the loading process isn't interrupted
    by premature health check failures.
    """
    model = """
    import time

    class Model:
        def load(self):
            time.sleep(1)

        def is_healthy(self) -> bool:
            return True

        def predict(self, model_input):
            return model_input
    """
    # Truss's load() sleeps 10 s and the test probes after 5 s; 1 s here, probed at once.
    daemon = truss_server(model, _json_logs(), wait="listening")
    healthy = httpx.get(_model_url(daemon))
    assert healthy.status_code == 503
    assert HEALTH_CHECK_FAILED not in daemon.log


def test_instrument_metrics(truss_server: TrussServer) -> None:
    # Truss's second half (OpenTelemetry metrics) needs a package installed at build time.
    model = """
    from prometheus_client import Counter
    class Model:
        def __init__(self):
            self.counter = Counter('my_really_cool_metric', 'my really cool metric description')
        def predict(self, model_input):
            self.counter.inc(10)
            return model_input
    """
    daemon = truss_server(model, _json_logs())
    httpx.post(_predict_url(daemon), json={})
    resp = httpx.get(f"{daemon.http_url}/metrics")
    assert resp.status_code == 200
    metric_names = [family.name for family in text_string_to_metric_families(resp.text)]
    # Truss: == ["my_really_cool_metric"]; twinserve's /metrics also has its own twinserve_*.
    assert "my_really_cool_metric" in metric_names
    assert "my_really_cool_metric_total 10.0" in resp.text
    # The log has caught up with the scrape once it has the access line of a later call.
    later = httpx.post(_predict_url(daemon), json={})
    daemon.wait_for_log(later.headers["x-request-id"])
    assert "/metrics" not in daemon.log


def test_graceful_shutdown(truss_server: TrussServer) -> None:
    model = """
    import time
    class Model:
        def predict(self, request):
            print(f"Received {request}")
            time.sleep(request["seconds"])
            print(f"Done {request}")
            return request
    """
    daemon = truss_server(model, _json_logs())

    def predict_request(data: dict[str, int]) -> Any:
        response = httpx.post(_predict_url(daemon), json=data, timeout=20)
        response.raise_for_status()
        return response.json()

    predict_request({"seconds": 0, "task": 0})  # Warm up server.

    # Test starting two requests, each taking 2 seconds, then terminating server.
    # They should both finish successfully since the server's grace period
    # (runtime.drain_timeout_s, 30 s by default) is longer than they take.
    with ThreadPoolExecutor(2) as executor:
        task_0 = executor.submit(predict_request, {"seconds": 2, "task": 0})
        time.sleep(0.1)  # Let the above request reach the server first.
        task_1 = executor.submit(predict_request, {"seconds": 2, "task": 1})
        time.sleep(0.1)

        t0 = time.perf_counter()
        daemon.stop()  # SIGINT: the drain, without SIGTERM's grace for load balancers
        stop_time = time.perf_counter() - t0

        assert 3 < stop_time < 5
        assert task_0.result() == {"seconds": 2, "task": 0}
        assert task_1.result() == {"seconds": 2, "task": 1}

    # Truss patches TIMEOUT_GRACEFUL_SHUTDOWN = 3 into the container's server and restarts
    # it; twinserve's grace period is runtime.drain_timeout_s. Now only one request should
    # complete.
    daemon = truss_server(model, _json_logs("runtime:\n  drain_timeout_s: 3"))
    predict_request({"seconds": 0, "task": 0})  # Warm up server.

    with ThreadPoolExecutor(2) as executor:
        task_2 = executor.submit(predict_request, {"seconds": 2, "task": 2})
        time.sleep(0.1)
        task_3 = executor.submit(predict_request, {"seconds": 2, "task": 3})
        time.sleep(0.1)
        t0 = time.perf_counter()
        daemon.stop()
        stop_time = time.perf_counter() - t0
        assert 3 < stop_time < 5
        assert task_2.result() == {"seconds": 2, "task": 2}
        with pytest.raises(httpx.HTTPStatusError):
            task_3.result()


# Returning Response Objects ###########################################################


def test_truss_with_response(truss_server: TrussServer) -> None:
    """Test that user-code can set a custom status code."""
    model = """
    from fastapi.responses import Response

    class Model:
        def predict(self, inputs):
            return Response(status_code=inputs["code"])
    """
    from fastapi import status

    daemon = truss_server(model, _json_logs())
    response = httpx.post(_predict_url(daemon), json={"code": status.HTTP_204_NO_CONTENT})
    assert response.status_code == 204

    response = httpx.post(_predict_url(daemon),
                          json={"code": status.HTTP_500_INTERNAL_SERVER_ERROR})
    assert response.status_code == 500


def test_truss_with_streaming_response(truss_server: TrussServer) -> None:
    model = """from starlette.responses import StreamingResponse
class Model:
    def predict(self, model_input):
        def text_generator():
            for i in range(3):
                yield f"data: {i}\\n\\n"
        return StreamingResponse(text_generator(), media_type="text/event-stream")
    """
    daemon = truss_server(model, _json_logs())

    # A request for which response is not completely read.
    with httpx.stream("POST", _predict_url(daemon), json={}) as predict_response:
        assert predict_response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        lines = predict_response.read().decode().strip().split("\n")
        assert lines == ["data: 0", "", "data: 1", "", "data: 2"]


# Using Request in Model ###############################################################


def test_truss_with_request(truss_server: TrussServer) -> None:
    model = """
    import fastapi
    class Model:
        async def preprocess(self, request: fastapi.Request):
            return await request.json()

        async def predict(self, inputs, request: fastapi.Request):
            inputs["request_size"] = len(await request.body())
            return inputs

        def postprocess(self, inputs):
             return {**inputs, "postprocess": "was here"}
    """
    daemon = truss_server(model, _json_logs())
    # requests' `json=` sends '{"test": 123}' (13 bytes); httpx's is compact, so send that.
    response = httpx.post(_predict_url(daemon), content=json.dumps({"test": 123}),
                          headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json() == {
        "test": 123,
        "request_size": 13,
        "postprocess": "was here",
    }


def test_truss_with_requests_and_invalid_signatures(truss_server: TrussServer) -> None:
    # Truss logs "Exception while loading model" with its own rule text; twinserve's start-up
    # errors name the method and its signature, then the rule.
    model = """
    class Model:
        def predict(self, inputs, invalid_arg): ...
    """
    daemon = truss_server(model, _json_logs(), wait="none")
    # Truss: "`predict` method with two arguments must have request as second argument"
    _assert_logs_contain_error(
        daemon, error=None,
        message="predict(self, inputs, invalid_arg): with two arguments the second must be "
                "the request")

    model = """
    import fastapi

    class Model:
        def predict(self, request: fastapi.Request, invalid_arg): ...
    """
    daemon = truss_server(model, _json_logs(), wait="none")
    # Truss: "`predict` method with two arguments is not allowed to have request as first
    # argument"
    _assert_logs_contain_error(
        daemon, error=None,
        message="predict(self, request: starlette.requests.Request, invalid_arg): with two "
                "arguments the second must be the request")

    model = """
    import fastapi

    class Model:
        def predict(self, inputs, request: fastapi.Request, something): ...
    """
    daemon = truss_server(model, _json_logs(), wait="none")
    # Truss: "`predict` method cannot have more than two arguments"
    _assert_logs_contain_error(
        daemon, error=None,
        message="predict(self, inputs, request: starlette.requests.Request, something): takes "
                "3 arguments; at most 2 are allowed")


def test_truss_with_requests_and_invalid_argument_combinations(
        truss_server: TrussServer) -> None:
    model = """
    import fastapi
    class Model:
        async def preprocess(self, inputs): ...

        def predict(self, request: fastapi.Request): ...
    """
    daemon = truss_server(model, _json_logs(), wait="none")
    # Truss: "When using `preprocess`, the predict method cannot only have the request
    # argument"; twinserve's wording:
    _assert_logs_contain_error(
        daemon, error=None,
        message="predict(self, request: starlette.requests.Request): a predict that takes "
                "only the request gets the raw request, so it cannot be combined with "
                "preprocess")

    model = """
    import fastapi
    class Model:
        def preprocess(self, inputs): ...

        async def predict(self, inputs, request: fastapi.Request): ...

        def postprocess(self, request: fastapi.Request): ...
    """
    daemon = truss_server(model, _json_logs(), wait="none")
    # Truss: "The `postprocess` method cannot only have the request argument"
    _assert_logs_contain_error(
        daemon, error=None,
        message="postprocess(self, request: starlette.requests.Request): postprocess must "
                "take predict's result (and optionally the request), not only the request")

    model = """
    import fastapi
    class Model:
        def preprocess(self, inputs): ...
    """
    daemon = truss_server(model, _json_logs(), wait="none")
    # Truss: "Truss model must have a `predict` or `websocket` method"
    _assert_logs_contain_error(daemon, error=None, message="Model must define a predict method")


def test_truss_forbid_postprocessing_with_response(truss_server: TrussServer) -> None:
    model = """
    import fastapi, json
    class Model:
        def predict(self, inputs):
            return fastapi.Response(content=json.dumps(inputs), status_code=200)

        def postprocess(self, inputs):
             return inputs
    """
    daemon = truss_server(model, _json_logs())
    response = httpx.post(_predict_url(daemon), json={})
    assert response.status_code == 500
    # Truss: "If the predict function returns a response object, you cannot use
    # postprocessing."; twinserve's wording:
    _assert_logs_contain_error(
        daemon, error=None,
        message="predict returned a response object, but the model also defines postprocess")


def test_async_streaming_with_cancellation(truss_server: TrussServer) -> None:
    model = """
    import fastapi, asyncio, logging

    class Model:
        async def predict(self, inputs, request: fastapi.Request):
            await asyncio.sleep(1)
            if await request.is_disconnected():
                logging.warning("Cancelled (before gen).")
                return

            for i in range(5):
                await asyncio.sleep(1.0)
                logging.warning(i)
                yield str(i)
                if await request.is_disconnected():
                    logging.warning("Cancelled (during gen).")
                    return
    """
    daemon = truss_server(model, _json_logs())
    # Truss's client gives up after 1.0 s, the moment the model's first check runs, so which
    # of its two lines is logged is a race (CI saw "before gen"); 1.5 s puts the client's
    # leaving half a second clear of both checks, as the test means.
    with pytest.raises(httpx.ReadTimeout):
        with httpx.Client(timeout=httpx.Timeout(1.5, connect=1.5, read=1.5)) as client:
            response = client.post(_predict_url(daemon), json={}, timeout=1.5)
            response.raise_for_status()

    daemon.wait_for_log("Cancelled (during gen).", timeout=4)  # Truss: time.sleep(2) for the logs


def test_async_non_streaming_with_cancellation(truss_server: TrussServer) -> None:
    model = """
    import fastapi, asyncio, logging

    class Model:
        async def predict(self, inputs, request: fastapi.Request):
            logging.info("Start sleep")
            await asyncio.sleep(2)
            logging.info("done sleep, check request.")
            if await request.is_disconnected():
                logging.warning("Cancelled (before gen).")
                return
            logging.info("Not cancelled.")
            return "Done"
    """
    daemon = truss_server(model, _json_logs())
    with pytest.raises(httpx.ReadTimeout):
        with httpx.Client(timeout=httpx.Timeout(1.0, connect=1.0, read=1.0)) as client:
            response = client.post(_predict_url(daemon), json={}, timeout=1.0)
            response.raise_for_status()

    daemon.wait_for_log("Cancelled (before gen).", timeout=4)  # Truss: time.sleep(2) for the logs


def test_limit_concurrency_with_sse(truss_server: TrussServer) -> None:
    # For testing we need to have actually slow generation to keep the server busy.
    model = """
    import asyncio

    class Model:
        async def predict(self, request):
            print(f"Starting {request}")
            for i in range(5):
                await asyncio.sleep(0.1)
                yield str(i)
            print(f"Done {request}")

    """

    config = """runtime:
  predict_concurrency: 2"""

    daemon = truss_server(model, _json_logs(config))
    url = _predict_url(daemon)

    def make_request(consume_chunks: bool, timeout: float, task_id: int) -> list[str] | None:
        t0 = time.time()
        with httpx.Client() as client:
            with client.stream("POST", url, json={"task_id": task_id}) as response:
                assert response.status_code == 200
                if consume_chunks:
                    chunks = [chunk for chunk in response.iter_text()]
                    assert len(chunks) > 0
                    t1 = time.time()
                    if t1 - t0 > timeout:
                        raise httpx.ReadTimeout("Timeout")
                    return chunks
                time.sleep(0.5)  # Hold the connection.
        return None

    # Processing full request takes 0.5s.
    make_request(consume_chunks=True, timeout=0.55, task_id=0)

    with ThreadPoolExecutor() as executor:
        # Start two requests and hold them without consuming all chunks
        # Each takes for 0.5 s. Semaphore should be claimed, with 0 remaining.
        task1 = executor.submit(make_request, False, 0.55, 1)
        task2 = executor.submit(make_request, False, 0.55, 2)
        time.sleep(0.05)  # Wait for tasks to start.
        # Make a request while server is busy.
        with pytest.raises(httpx.ReadTimeout):
            make_request(True, timeout=0.55, task_id=3)

        task1.result()
        task2.result()

    # Task 1 and 2 completed. Server should be free again.
    make_request(True, timeout=0.55, task_id=4)


def test_custom_openai_endpoints(truss_server: TrussServer) -> None:
    """
    Test a Truss that exposes an OpenAI compatible endpoint.
    """
    model = """
    class Model:
        def load(self):
            self._predict_count = 0
            self._completions_count = 0
            self._embeddings_count = 0
            self._messages_count = 0
            self._responses_count = 0

        async def predict(self, inputs) -> int:
            self._predict_count += inputs["increment"]
            return self._predict_count

        async def completions(self, inputs) -> int:
            self._completions_count += inputs["increment"]
            return self._completions_count

        async def embeddings(self, inputs) -> int:
            self._embeddings_count += inputs["increment"]
            return self._embeddings_count

        async def messages(self, inputs) -> int:
            self._messages_count += inputs["increment"]
            return self._messages_count

        async def responses(self, inputs) -> int:
            self._responses_count += inputs["increment"]
            return self._responses_count
    """
    daemon = truss_server(model, _json_logs())
    base_url = daemon.http_url

    response = httpx.post(_predict_url(daemon), json={"increment": 1})
    assert response.status_code == 200
    assert response.json() == 1

    response = httpx.post(f"{base_url}/v1/completions", json={"increment": 2})
    assert response.status_code == 200
    assert response.json() == 2

    response = httpx.post(f"{base_url}/v1/embeddings", json={"increment": 3})
    assert response.status_code == 200
    assert response.json() == 3

    response = httpx.post(f"{base_url}/v1/messages", json={"increment": 4})
    assert response.status_code == 200
    assert response.json() == 4

    response = httpx.post(f"{base_url}/v1/responses", json={"increment": 5})
    assert response.status_code == 200
    assert response.json() == 5

    response = httpx.post(f"{base_url}/v1/chat/completions", json={"increment": 6})
    assert response.status_code == 404


def test_postprocess_async_generator_streaming(truss_server: TrussServer) -> None:
    model = """
    from typing import List, Generator

    class Model:
        async def predict(self, inputs) -> List[str]:
            nums: List[int] = inputs["nums"]
            return nums

        async def postprocess(self, nums: List[str]) -> Generator[str, None, None]:
            for num in nums:
                yield num
    """
    daemon = truss_server(model, _json_logs())
    with httpx.stream("POST", _predict_url(daemon), json={"nums": ["1", "2"]}) as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        assert _chunks(response) == ["1", "2"]


def test_preprocess_async_generator(truss_server: TrussServer) -> None:
    model = """
    from typing import List, AsyncGenerator

    class Model:
        async def preprocess(self, inputs) -> AsyncGenerator[str, None]:
            for num in inputs["nums"]:
                yield num

        async def predict(self, nums: AsyncGenerator[str, None]) -> List[str]:
            return [num async for num in nums]
    """
    daemon = truss_server(model, _json_logs())
    response = httpx.post(_predict_url(daemon), json={"nums": ["1", "2"]})
    assert response.status_code == 200
    assert response.json() == ["1", "2"]


def test_openai_client_streaming(truss_server: TrussServer) -> None:
    model = """
    from typing import AsyncGenerator

    class Model:
        async def chat_completions(self, inputs) -> AsyncGenerator[str, None]:
            for num in inputs["nums"]:
                yield num

        async def predict(self, inputs):
            pass
    """
    daemon = truss_server(model, _json_logs())
    with httpx.stream(
        "POST",
        f"{daemon.http_url}/v1/chat/completions",
        json={"nums": ["1", "2"]},
        # Despite requesting json, we should still stream results back.
        headers={
            "accept": "application/json",
            "user-agent": "OpenAI/Python 1.61.0",
        },
    ) as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        assert _chunks(response) == ["1", "2"]


def test_messages_streaming(truss_server: TrussServer) -> None:
    """
    Test a Truss that exposes a messages endpoint with streaming.
    """
    model = """
    from typing import AsyncGenerator

    class Model:
        async def messages(self, inputs) -> AsyncGenerator[str, None]:
            for num in inputs["nums"]:
                yield num

        async def predict(self, inputs):
            pass
    """
    daemon = truss_server(model, _json_logs())
    with httpx.stream(
        "POST",
        f"{daemon.http_url}/v1/messages",
        json={"nums": ["1", "2"]},
        headers={
            "accept": "application/json",
            "user-agent": "OpenAI/Python 1.61.0",
        },
    ) as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        assert _chunks(response) == ["1", "2"]


def test_raise_no_endpoint(truss_server: TrussServer) -> None:
    model = """
    class Model:
       pass
    """
    daemon = truss_server(model, _json_logs(), wait="none")
    # Truss: "Exception while loading model" with "must have a `predict` or `websocket`
    # method"; twinserve's wording:
    _assert_logs_contain_error(daemon, error=None, message="Model must define a predict method")


def test_raise_predict_and_websocket_endpoint(truss_server: TrussServer) -> None:
    model = """
    class Model:
        async def websocket(self, websocket):
            pass

        async def predict(self, inputs):
            pass
    """
    daemon = truss_server(model, _json_logs(), wait="none")
    # Truss: "Exception while loading model" with "cannot have both"; twinserve's message
    # names the methods in the same words.
    _assert_logs_contain_error(daemon, error=None, message="cannot have both")


def test_raise_preprocess_and_websocket_endpoint(truss_server: TrussServer) -> None:
    model = """
    class Model:
        async def websocket(self, websocket):
            pass

        async def preprocess(self, inputs):
            pass
    """
    daemon = truss_server(model, _json_logs(), wait="none")
    _assert_logs_contain_error(daemon, error=None, message="cannot have both")


def _websockets_url(daemon: DaemonProcess) -> str:
    return f"ws://{daemon.http_url.removeprefix('http://')}/v1/websocket"


async def test_websocket_endpoint(truss_server: TrussServer) -> None:
    model = """
    import fastapi

    class Model:
        async def websocket(self, websocket: fastapi.WebSocket):
            try:
                while True:
                    text = await websocket.receive_text()
                    if text == "done":
                        print("done")
                        return

                    await websocket.send_text(text + " pong")
            except fastapi.WebSocketDisconnect:
                pass
    """
    daemon = truss_server(model)
    async with websockets.connect(_websockets_url(daemon)) as websocket:
        # Send "hello" and verify response
        await websocket.send("hello")
        response = await websocket.recv()
        assert response == "hello pong"

        # Send "world" and verify response
        await websocket.send("world")
        response = await websocket.recv()
        assert response == "world pong"

        await websocket.send("done")

        with pytest.raises(websockets.exceptions.ConnectionClosed) as exc_info:
            await websocket.recv()

        assert exc_info.value.rcvd is not None
        assert exc_info.value.rcvd.code == 1000
        assert exc_info.value.rcvd.reason == ""


async def test_websocket_endpoint_error_logs(truss_server: TrussServer) -> None:
    model = """
    import fastapi

    class Model:
        async def websocket(self, websocket: fastapi.WebSocket):
            try:
                while True:
                    text = await websocket.receive_text()
                    if text == "raise":
                        raise ValueError("This is test error.")
                    await websocket.send_text(text + " pong")
            except fastapi.WebSocketDisconnect:
                pass
    """
    daemon = truss_server(model, _json_logs())
    async with websockets.connect(_websockets_url(daemon)) as websocket:
        # Send "hello" and verify response
        await websocket.send("hello")
        response = await websocket.recv()
        assert response == "hello pong"

        # Send "raise" to raise a test error.
        await websocket.send("raise")
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as exc_info:
            await websocket.recv()

        assert exc_info.value.rcvd is not None
        assert exc_info.value.rcvd.code == 1011
        # Truss: "Internal Server Error (in model/chainlet)."; twinserve's reason is its HTTP
        # error's words, with the request id to find the traceback by.
        assert exc_info.value.rcvd.reason.startswith(
            "websocket failed with an unexpected error; the server log has the details")

        # Truss's message "Internal Server Error (in model/chainlet)."; twinserve's is below.
        # Truss's traceback holds the model's frames only, at the container's /app; here it
        # starts in twinserve's session runner, so its key lines are checked one by one.
        record = _assert_logs_contain_error(daemon, error="ValueError: This is test error.",
                                            message="websocket raised while handling session")
        for line in ("Traceback (most recent call last):",
                     'model/model.py", line 10, in websocket',
                     'raise ValueError("This is test error.")'):
            assert line in record["exc_info"]


async def test_nonexistent_websocket_endpoint(truss_server: TrussServer) -> None:
    model = """
    class Model:

        async def predict(self, inputs):
            pass
    """
    daemon = truss_server(model, _json_logs())
    with pytest.raises(websockets.ConnectionClosedError) as exc_info:
        async with websockets.connect(_websockets_url(daemon)) as ws:
            await ws.recv()

    assert exc_info.value.rcvd is not None
    assert exc_info.value.rcvd.code == 1003
    assert (
        exc_info.value.rcvd.reason
        == "WebSocket is not implemented on this deployment."
    )
    _assert_logs_contain_error(
        daemon,
        error=None,
        message="WebSocket is not implemented on this deployment.",
    )


async def test_websocket_ping_timeout_behavior(truss_server: TrussServer,
                                               caplog: pytest.LogCaptureFixture) -> None:
    # Truss runs this through its control server; twinserve has none to customise.
    model = """
    import fastapi

    class Model:
        async def websocket(self, websocket: fastapi.WebSocket):
            try:
                while True:
                    text = await websocket.receive_text()
                    await websocket.send_text(text)
            except fastapi.WebSocketDisconnect:
                pass
    """

    no_ping_config = """
    runtime:
      transport:
        kind: websocket
    """

    daemon = truss_server(model, no_ping_config)

    with caplog.at_level(logging.DEBUG, logger="websockets.client"):
        async with websockets.connect(_websockets_url(daemon)) as websocket:
            await websocket.send("hello")
            assert await websocket.recv() == "hello"
            await asyncio.sleep(3)

    # Default is 20 seconds, so we don't expect any PING/PONG in this case.
    assert "PING" not in caplog.text

    ping_config = """
    runtime:
      transport:
        kind: websocket
        ping_interval_seconds: 1
        ping_timeout_seconds: 1
    """

    daemon = truss_server(model, ping_config)
    caplog.clear()

    with caplog.at_level(logging.DEBUG, logger="websockets.client"):
        async with websockets.connect(_websockets_url(daemon)) as websocket:
            await websocket.send("hello")
            assert await websocket.recv() == "hello"
            await asyncio.sleep(3)

    # We wait 3 seconds, so there should be ~3 PING/PONGS
    assert 2 <= caplog.text.count("PING") <= 4
