"""The built-in model's OpenAI routes through a real daemon, driven by the official `openai`
package (sync, async, streaming) and by raw HTTP for the SSE framing and error shapes.

The simulated backend (20 ms a token, words from a fixed list) keeps this fast; the real
model is exercised in test_embedded_api.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import StartDaemon
from tests.harness import MODELS, DaemonProcess
from tests.scrape import assert_backend_stopped, metric

USER: list[Any] = [{"role": "user", "content": "one two three"}]


@pytest.fixture(scope="module")
def daemon(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "engine_simulated")


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{daemon.http_url}/v1", api_key="any", max_retries=0) as c:
        yield c


def sse_events(text: str) -> list[str]:
    assert text.endswith("\n\n")
    return text[:-2].split("\n\n")


# -- chat completions ---------------------------------------------------------------------------


def test_chat_completion(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="whatever", messages=USER, max_tokens=3,
                                           n=2, seed=1)
    assert reply.object == "chat.completion" and reply.model == "engine-simulated"
    assert [c.index for c in reply.choices] == [0, 1]
    for choice in reply.choices:
        assert choice.message.role == "assistant"
        assert len((choice.message.content or "").split()) == 3
        assert choice.finish_reason == "length"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 6)


def test_chat_seed_makes_answers_repeatable(client: openai.OpenAI) -> None:
    def answer() -> str | None:
        return client.chat.completions.create(model="m", messages=USER, max_tokens=4,
                                              seed=42).choices[0].message.content
    assert answer() == answer()


def test_chat_stop_sequence(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="m", messages=USER, max_tokens=4, seed=7)
    words = (full.choices[0].message.content or "").split()
    cut = client.chat.completions.create(model="m", messages=USER, max_tokens=4, seed=7,
                                         stop=[" " + words[2]])
    assert cut.choices[0].message.content == " ".join(words[:2])
    assert cut.choices[0].finish_reason == "stop"


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="m", messages=USER, max_completion_tokens=3,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


async def test_chat_async_and_async_stream(daemon: DaemonProcess) -> None:
    async with openai.AsyncOpenAI(base_url=f"{daemon.http_url}/v1", api_key="any") as client:
        reply = await client.chat.completions.create(model="m", messages=USER, max_tokens=2)
        assert len((reply.choices[0].message.content or "").split()) == 2
        stream = await client.chat.completions.create(model="m", messages=USER, max_tokens=2,
                                                      stream=True)
        pieces = [c.choices[0].delta.content or "" async for c in stream]
        assert len("".join(pieces).split()) == 2


def test_chat_sse_framing(daemon: DaemonProcess) -> None:
    reply = httpx.post(f"{daemon.http_url}/v1/chat/completions", timeout=10, json={
        "messages": USER, "max_tokens": 2, "stream": True})
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply.text)
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(e.startswith("data: {") for e in events[:-1])
    assert {p["id"] for p in payloads} == {f"chatcmpl-{reply.headers['x-request-id']}"}
    assert [p["choices"][0]["finish_reason"] for p in payloads] == [None, None, None, "length"]


# -- completions --------------------------------------------------------------------------------


def test_completion_and_stream(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="m", prompt="once upon", max_tokens=3)
    assert reply.object == "text_completion" and len(reply.choices[0].text.split()) == 3
    assert reply.usage is not None and reply.usage.prompt_tokens == 2
    chunks = list(client.completions.create(model="m", prompt="once upon", max_tokens=2,
                                            stream=True))
    assert len("".join(c.choices[0].text for c in chunks).split()) == 2
    assert chunks[-1].choices[0].finish_reason == "length"


# -- responses ----------------------------------------------------------------------------------


def test_responses(client: openai.OpenAI) -> None:
    reply = client.responses.create(model="m", input="one two", instructions="be brief",
                                    max_output_tokens=3)
    assert reply.object == "response" and len(reply.output_text.split()) == 3
    assert reply.status == "incomplete"  # cut by max_output_tokens, as OpenAI reports it
    assert reply.usage is not None and reply.usage.output_tokens == 3


async def test_responses_async_stream(daemon: DaemonProcess) -> None:
    async with openai.AsyncOpenAI(base_url=f"{daemon.http_url}/v1", api_key="any") as client:
        stream = await client.responses.create(model="m", input="x", max_output_tokens=2,
                                               stream=True)
        events = [event async for event in stream]
    assert [e.type for e in events][:4] == ["response.created", "response.in_progress",
                                            "response.output_item.added",
                                            "response.content_part.added"]
    assert [e.type for e in events].count("response.output_text.delta") == 2
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_responses_sse_framing(daemon: DaemonProcess) -> None:
    reply = httpx.post(f"{daemon.http_url}/v1/responses", timeout=10, json={
        "input": "x", "max_output_tokens": 1, "stream": True})
    events = sse_events(reply.text)
    names = [e.split("\n")[0] for e in events]
    assert names[0] == "event: response.created"
    assert names[-1] == "event: response.incomplete"  # no [DONE] on this API
    for event in events:
        name, data = event.split("\n")
        assert json.loads(data.removeprefix("data: "))["type"] == name.removeprefix("event: ")


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/chat/completions", {"messages": USER, "temperature": 9}, "temperature"),
    ("/v1/chat/completions", {"messages": USER, "tools": [{"type": "function"}]}, "tools"),
    ("/v1/chat/completions", {"messages": "hi"}, "messages"),
    ("/v1/completions", {"prompt": "x", "echo": True}, "echo"),
    ("/v1/responses", {"input": "x", "max_output_tokens": -1}, "max_output_tokens"),
    ("/v1/embeddings", {"input": "x", "encoding_format": "int8"}, "encoding_format"),
])
def test_bad_parameter_is_400_naming_it(daemon: DaemonProcess, path: str,
                                        body: dict[str, Any], param: str) -> None:
    reply = httpx.post(f"{daemon.http_url}{path}", json=body, timeout=10)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param,
                                                              None)
    assert error["message"].startswith(param)
    assert error["request_id"] == reply.headers["x-request-id"]


def test_sdk_raises_bad_request_with_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=USER, n=100)
    assert caught.value.status_code == 400 and caught.value.param == "n"


def test_malformed_json_and_wrong_method(daemon: DaemonProcess) -> None:
    broken = httpx.post(f"{daemon.http_url}/v1/chat/completions", content=b"{nope", timeout=10)
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "invalid_request_error"
    not_json = httpx.post(f"{daemon.http_url}/v1/completions", json=[1], timeout=10)
    assert not_json.status_code == 400
    assert not_json.json()["error"]["message"].startswith("the request body: expected a JSON")
    wrong = httpx.get(f"{daemon.http_url}/v1/chat/completions", timeout=10)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["type"] == "invalid_request_error"


def test_error_in_a_stream_request_is_a_plain_400(daemon: DaemonProcess) -> None:
    reply = httpx.post(f"{daemon.http_url}/v1/chat/completions", timeout=10, json={
        "messages": USER, "stream": True, "top_p": 0})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "top_p"


# -- cancellation -------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"messages": USER, "max_tokens": 10_000, "stream": True}),
    ("/v1/completions", {"prompt": "x", "max_tokens": 10_000, "stream": True}),
    ("/v1/responses", {"input": "x", "max_output_tokens": 10_000, "stream": True}),
])
def test_leaving_a_stream_stops_the_generation(daemon: DaemonProcess, path: str,
                                               body: dict[str, Any]) -> None:
    cancelled = metric(daemon, "twinserve_engine_cancelled_total")
    with httpx.Client(timeout=10) as http:
        with http.stream("POST", f"{daemon.http_url}{path}", json=body) as reply:
            lines = reply.iter_lines()
            for _ in range(8):
                next(lines)
            assert metric(daemon, "twinserve_engine_in_flight") == 1
    assert_backend_stopped(daemon, cancelled)


def test_leaving_an_sdk_stream_stops_the_generation(client: openai.OpenAI,
                                                    daemon: DaemonProcess) -> None:
    cancelled = metric(daemon, "twinserve_engine_cancelled_total")
    stream = client.chat.completions.create(model="m", messages=USER, max_tokens=10_000,
                                            stream=True)
    for _, _chunk in zip(range(3), stream):
        pass
    stream.close()
    assert_backend_stopped(daemon, cancelled)


def test_daemon_still_serves_after_errors_and_disconnects(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="m", messages=USER, max_tokens=1)
    assert reply.choices[0].finish_reason == "length"
