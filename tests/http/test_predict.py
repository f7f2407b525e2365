"""POST /predict and Truss's routes through a real daemon."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from tests.conftest import StartDaemon
from tests.harness import EXAMPLES, MODELS, DaemonProcess


@pytest.fixture(scope="module")
def echo(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(EXAMPLES / "echo")


def test_echo_returns_its_input_as_json(echo: DaemonProcess) -> None:
    payload = {"text": "hi", "n": 12345678901234567, "nested": {"list": [1, 2.5, None, True]}}
    response = httpx.post(f"{echo.http_url}/predict", json=payload)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == payload


def test_request_id_is_generated_or_echoed(echo: DaemonProcess) -> None:
    generated = httpx.post(f"{echo.http_url}/predict", json={})
    assert len(generated.headers["x-request-id"]) >= 16
    given = httpx.post(f"{echo.http_url}/predict", json={}, headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"


def test_truss_routes_take_any_model_name(echo: DaemonProcess) -> None:
    """Truss ignores the name in its paths, and its clients call /v1/models/model:predict."""
    for name in ("echo", "model"):
        response = httpx.post(f"{echo.http_url}/v1/models/{name}:predict", json=[1, 2])
        assert response.status_code == 200 and response.json() == [1, 2]
        info = httpx.get(f"{echo.http_url}/v1/models/{name}")
        assert info.json() == {"name": "echo", "ready": True}
        assert httpx.get(f"{echo.http_url}/v1/models/{name}/loaded").status_code == 200
    assert httpx.post(f"{echo.http_url}/invocations", json=[3]).json() == [3]
    assert httpx.get(f"{echo.http_url}/ping").status_code == 200
    # Errors on Truss's routes keep Truss's shape, which its clients parse.
    bad = httpx.post(f"{echo.http_url}/v1/models/model:predict", content=b"{nope")
    assert bad.status_code == 400
    assert isinstance(bad.json()["error"], str) and "JSON" in bad.json()["error"]
    assert bad.headers["x-request-id"]


def test_health_and_root(echo: DaemonProcess) -> None:
    assert httpx.get(f"{echo.http_url}/health/live").status_code == 200
    assert httpx.get(f"{echo.http_url}/health/ready").json() == {"status": "ready"}
    assert httpx.get(f"{echo.http_url}/").status_code == 200


def test_pre_predict_post_run_in_order(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(MODELS / "prepost")
    response = httpx.post(f"{daemon.http_url}/predict", json={"x": 1})
    assert response.json() == {"x": 1, "steps": ["preprocess", "predict", "postprocess"]}


def test_request_only_predict_gets_the_body_unparsed(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(MODELS / "raw_request")
    response = httpx.post(f"{daemon.http_url}/predict?a=1", content=b"{not json at all",
                          headers={"x-test-header": "seen", "content-type": "text/plain"})
    assert response.status_code == 200
    assert response.json() == {"transport": "http", "length": 16, "prefix": "{not json at all",
                               "header": "seen", "query": {"a": "1"}}


def test_truss_model_runs_unchanged(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(MODELS / "truss_style", env={"TWINSERVE_SECRET_API_TOKEN": "from-env"})
    url = f"{daemon.http_url}/v1/models/truss-style:predict"
    answer = httpx.post(url, json={"secret": "api_token"}).json()
    assert answer == {"weights": "weights-v1", "owner": "tests", "secret": "from-env",
                      "has_request": True}
    forbidden = httpx.post(url, json={"forbidden": True})
    assert forbidden.status_code == 403
    assert forbidden.json() == {"error": "not allowed for you"}  # Truss's shape on its route
    unset = httpx.post(url, json={"secret": "unset_token"})
    assert unset.status_code == 500
    # Which secret is missing is for the operator's log, not for the client.
    assert "TWINSERVE_SECRET_UNSET_TOKEN" not in unset.text
    daemon.wait_for_log("TWINSERVE_SECRET_UNSET_TOKEN")


def test_predict_concurrency_bounds_parallel_calls_and_runs_in_threads(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(MODELS / "concurrency")
    url = f"{daemon.http_url}/predict"
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: httpx.post(url, json={"sleep": 0.2}, timeout=10).json(),
                                range(6)))
    assert all(a["thread"].startswith("twinserve-model") for a in answers)
    assert httpx.post(url, json={"report": True}).json() == {"peak": 2}
