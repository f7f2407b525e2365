"""Every error class in OpenAI's and Anthropic's shapes: unit-level for the whole table, and
through a real daemon for the limits a /v1 client can hit (413, 429 + Retry-After, 504)."""

from __future__ import annotations

import threading
from typing import Any

import anthropic
import httpx
import openai
import pytest

from daemon.errors import (
    ClientError,
    DeadlineExceeded,
    InvalidInput,
    ModelError,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    TwinserveError,
    Unauthenticated,
)
from daemon.http import formats
from daemon.http.errors import error_payload, status_for
from tests.conftest import StartDaemon
from tests.harness import DaemonProcess

# error, status, OpenAI (type, code), Anthropic type
TABLE: list[tuple[TwinserveError, int, tuple[str, str | None], str]] = [
    (InvalidInput("temperature: bad", "temperature"), 400, ("invalid_request_error", None),
     "invalid_request_error"),
    (Unauthenticated(), 401, ("authentication_error", "invalid_api_key"), "authentication_error"),
    (NotFound("no such thing"), 404, ("invalid_request_error", "not_found"), "not_found_error"),
    (ClientError("teapot", 418), 418, ("invalid_request_error", None), "invalid_request_error"),
    (PayloadTooLarge(10), 413, ("invalid_request_error", "request_too_large"),
     "request_too_large"),
    (Overloaded("busy"), 429, ("rate_limit_error", "rate_limit_exceeded"), "rate_limit_error"),
    (NotReady("loading"), 503, ("server_error", "unavailable"), "overloaded_error"),
    (DeadlineExceeded("too slow"), 504, ("timeout_error", "timeout"), "timeout_error"),
    (ModelError("boom"), 500, ("server_error", None), "api_error"),
]


@pytest.mark.parametrize(("err", "status", "openai_kind", "anthropic_kind"), TABLE)
def test_each_error_in_both_shapes(err: TwinserveError, status: int,
                                   openai_kind: tuple[str, str | None],
                                   anthropic_kind: str) -> None:
    assert status_for(err) == status
    body = error_payload(err, "rid", formats.OPENAI)["error"]
    assert (body["type"], body["code"]) == openai_kind
    assert body["message"] == err.message and body["request_id"] == "rid"
    assert body["param"] == ("temperature" if isinstance(err, InvalidInput) else None)
    shaped = error_payload(err, "rid", formats.ANTHROPIC)
    assert shaped == {"type": "error", "error": {"type": anthropic_kind, "message": err.message},
                      "request_id": "rid"}


# -- through a daemon with tight limits ---------------------------------------------------------

USER: list[Any] = [{"role": "user", "content": "x"}]
LONG = {"messages": USER, "max_tokens": 10_000}


@pytest.fixture(scope="module")
def tight(start_daemon: StartDaemon, tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    root = tmp_path_factory.mktemp("tight")
    (root / "config.yaml").write_text(
        "model_name: tight\nengine:\n  backend: simulated\n  token_delay_ms: 20\n"
        "runtime:\n  predict_concurrency: 1\n  max_queue: 0\n  request_timeout_s: 1\n"
        "  max_request_bytes: 4096\n")
    return start_daemon(root)


def test_body_over_the_limit_is_413(tight: DaemonProcess) -> None:
    big = [{"role": "user", "content": "x" * 5000}]
    reply = httpx.post(f"{tight.http_url}/v1/chat/completions", json={"messages": big},
                       timeout=10)
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "request_too_large"
    shaped = httpx.post(f"{tight.http_url}/v1/messages", timeout=10, json={
        "model": "m", "max_tokens": 1, "messages": big})
    assert shaped.status_code == 413
    assert shaped.json()["error"]["type"] == "request_too_large"


def test_deadline_is_504(tight: DaemonProcess) -> None:
    reply = httpx.post(f"{tight.http_url}/v1/chat/completions", json=LONG, timeout=10)
    assert reply.status_code == 504
    assert (reply.json()["error"]["type"], reply.json()["error"]["code"]) == ("timeout_error",
                                                                              "timeout")


def test_overload_is_429_with_retry_after(tight: DaemonProcess) -> None:
    holding = threading.Event()

    def hold_the_slot() -> None:
        # The deadline ends this stream with an error event and a cut-off body.
        with pytest.raises(httpx.RemoteProtocolError):
            with httpx.stream("POST", f"{tight.http_url}/v1/chat/completions", timeout=10,
                              json={**LONG, "stream": True}) as reply:
                for _ in reply.iter_lines():
                    holding.set()

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    try:
        assert holding.wait(5)
        with openai.OpenAI(base_url=f"{tight.http_url}/v1", api_key="k", max_retries=0) as oa:
            with pytest.raises(openai.RateLimitError) as refused:
                oa.chat.completions.create(model="m", messages=USER, max_tokens=1)
        assert refused.value.response.headers["retry-after"] == "1"
        assert refused.value.code == "rate_limit_exceeded"
        with anthropic.Anthropic(base_url=tight.http_url, api_key="k", max_retries=0) as an:
            with pytest.raises(anthropic.RateLimitError) as shaped:
                an.messages.create(model="m", max_tokens=1, messages=USER)
        body: Any = shaped.value.body
        assert body == {"type": "error", "error": {
            "type": "rate_limit_error", "message": body["error"]["message"]},
            "request_id": shaped.value.response.headers["x-request-id"]}
    finally:
        holder.join(10)
    # The slot is free again once the held stream hit its deadline.
    reply = httpx.post(f"{tight.http_url}/v1/chat/completions", timeout=10,
                       json={"messages": USER, "max_tokens": 1})
    assert reply.status_code == 200
