"""The /v1 routes served by a custom model's own methods: framing and error shapes."""

from __future__ import annotations

import json

import httpx
import pytest

from daemon.errors import ModelError
from tests.conftest import StartDaemon
from tests.harness import MODELS, DaemonProcess


@pytest.fixture(scope="module")
def api(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "api_custom")


def test_returned_dict_is_the_json_response(api: DaemonProcess) -> None:
    response = httpx.post(f"{api.http_url}/v1/chat/completions", json={"model": "m"})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "custom answer"


def test_dict_chunks_become_sse_events_ending_in_done(api: DaemonProcess) -> None:
    response = httpx.post(f"{api.http_url}/v1/chat/completions",
                          json={"model": "m", "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert [json.loads(e.removeprefix("data: "))["choices"][0]["delta"]["content"]
            for e in events[:2]] == ["custom", " answer"]
    assert events[2:] == ["data: [DONE]", ""]


def test_str_chunks_are_the_models_own_sse(api: DaemonProcess) -> None:
    response = httpx.post(f"{api.http_url}/v1/completions", json={"prompt": "x"})
    assert response.text == 'data: {"via": "http"}\n\ndata: [DONE]\n\n'


def test_anthropic_events_are_named(api: DaemonProcess) -> None:
    response = httpx.post(f"{api.http_url}/v1/messages", json={})
    assert response.text == ('event: message_start\ndata: {"type":"message_start","message":'
                             '{"id":"msg-1"}}\n\nevent: message_stop\ndata: '
                             '{"type":"message_stop"}\n\n')


def test_missing_method_is_404_in_openai_shape(api: DaemonProcess) -> None:
    response = httpx.post(f"{api.http_url}/v1/responses", json={})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["message"].startswith("this model does not implement responses")
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error",
                                                              "not_found", None)


def test_client_error_in_openai_and_anthropic_shapes(api: DaemonProcess) -> None:
    openai = httpx.post(f"{api.http_url}/v1/embeddings", json={"input": ""})
    assert openai.status_code == 400
    assert openai.json()["error"]["message"] == "'input' must not be empty"
    anthropic = httpx.post(f"{api.http_url}/v1/messages", content=b"{oops")
    assert anthropic.status_code == 400
    body = anthropic.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["request_id"] == anthropic.headers["x-request-id"]


def test_mid_stream_error_is_an_sse_error_event(api: DaemonProcess) -> None:
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", f"{api.http_url}/v1/chat/completions",
                          json={"stream": True, "fail": True}) as response:
            for chunk in response.iter_raw():
                received += chunk
    last = received.decode().strip().split("\n\n")[-1]
    assert json.loads(last.removeprefix("data: "))["error"]["message"] == (
        ModelError.unexpected("chat_completions").message)


def test_an_event_that_cannot_be_encoded_ends_the_stream_with_an_error_event(
        api: DaemonProcess) -> None:
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):  # cut: not a complete answer
        with httpx.stream("POST", f"{api.http_url}/v1/chat/completions",
                          json={"stream": True, "unencodable": True}) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                received += chunk
    events = received.decode().strip().split("\n\n")
    assert len(events) == 3 and "HTTP/1.1" not in received.decode()
    error = json.loads(events[-1].removeprefix("data: "))["error"]
    assert error["message"] == "internal server error"  # the cause is in the log only
    assert httpx.post(f"{api.http_url}/v1/chat/completions", json={}).status_code == 200


def test_models_list(api: DaemonProcess) -> None:
    listing = httpx.get(f"{api.http_url}/v1/models").json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["api-custom"]
