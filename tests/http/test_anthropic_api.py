"""The built-in model's /v1/messages through a real daemon, driven by the official
`anthropic` package (sync, async, streaming) and by raw HTTP for framing and errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import StartDaemon
from tests.harness import MODELS, DaemonProcess
from tests.scrape import assert_backend_stopped, metric

USER: list[Any] = [{"role": "user", "content": "one two three"}]


@pytest.fixture(scope="module")
def daemon(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "engine_simulated")


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=daemon.http_url, api_key="any", max_retries=0) as c:
        yield c


def test_message_with_system_prompt(client: anthropic.Anthropic) -> None:
    reply = client.messages.create(model="any", max_tokens=3, system="be brief",
                                   messages=USER)
    assert (reply.type, reply.role, reply.model) == ("message", "assistant", "engine-simulated")
    assert reply.content[0].type == "text" and len(reply.content[0].text.split()) == 3
    assert reply.stop_reason == "max_tokens" and reply.stop_sequence is None
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (5, 3)


def test_stop_sequence_is_reported(client: anthropic.Anthropic) -> None:
    full = client.messages.create(model="m", max_tokens=4, messages=USER)
    text = full.content[0].text  # type: ignore[union-attr]
    # The simulated backend seeds from 0 when no seed is given: the same words every time.
    stop = " " + text.split()[1]
    cut = client.messages.create(model="m", max_tokens=4, messages=USER, stop_sequences=[stop])
    assert cut.content[0].text == text.split()[0]  # type: ignore[union-attr]
    assert (cut.stop_reason, cut.stop_sequence) == ("stop_sequence", stop)


def test_stream_helper(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="m", max_tokens=3, messages=USER) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert len(final.content[0].text.split()) == 3  # type: ignore[union-attr]
    assert final.usage.input_tokens == 3 and final.usage.output_tokens == 3


async def test_async_and_async_stream(daemon: DaemonProcess) -> None:
    async with anthropic.AsyncAnthropic(base_url=daemon.http_url, api_key="any") as client:
        reply = await client.messages.create(model="m", max_tokens=2, messages=USER)
        assert len(reply.content[0].text.split()) == 2  # type: ignore[union-attr]
        stream = await client.messages.create(model="m", max_tokens=2, messages=USER,
                                              stream=True)
        texts = [e.delta.text async for e in stream if e.type == "content_block_delta"
                 and e.delta.type == "text_delta"]
    assert len("".join(texts).split()) == 2


def test_sse_framing(daemon: DaemonProcess) -> None:
    reply = httpx.post(f"{daemon.http_url}/v1/messages", timeout=10, json={
        "model": "m", "max_tokens": 2, "messages": USER, "stream": True})
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = reply.text.removesuffix("\n\n").split("\n\n")
    names = []
    for event in events:
        name, data = event.split("\n")
        names.append(name.removeprefix("event: "))
        assert json.loads(data.removeprefix("data: "))["type"] == names[-1]
    assert names == ["message_start", "content_block_start", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta",
                     "message_stop"]


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "m", "messages": USER}, "max_tokens"),
    ({"model": "m", "max_tokens": 2, "messages": USER, "temperature": 1.5}, "temperature"),
    ({"model": "m", "max_tokens": 2, "messages": [{"role": "system", "content": "x"}]},
     "messages.0.role"),
    ({"model": "m", "max_tokens": 2, "messages": USER, "thinking": {"type": "enabled"}},
     "thinking"),
])
def test_bad_request_in_anthropic_shape(daemon: DaemonProcess, body: dict[str, Any],
                                        field: str) -> None:
    reply = httpx.post(f"{daemon.http_url}/v1/messages", json=body, timeout=10)
    assert reply.status_code == 400
    payload = reply.json()
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["message"].startswith(field + ":")


def test_sdk_raises_bad_request(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="m", max_tokens=0, messages=USER)
    assert caught.value.status_code == 400
    assert "max_tokens" in caught.value.message


def test_leaving_a_stream_stops_the_generation(client: anthropic.Anthropic,
                                               daemon: DaemonProcess) -> None:
    cancelled = metric(daemon, "twinserve_engine_cancelled_total")
    with client.messages.stream(model="m", max_tokens=10_000, messages=USER) as stream:
        for _, _event in zip(range(4), stream):
            pass
        assert metric(daemon, "twinserve_engine_in_flight") == 1
    assert_backend_stopped(daemon, cancelled)
    reply = client.messages.create(model="m", max_tokens=1, messages=USER)
    assert reply.usage.output_tokens == 1
