"""The /v1 routes give the same answers, events and errors over HTTP and gRPC.

The same body goes through the client library's HTTP client and its gRPC client, against
one daemon per model directory for the module (the simulated backend answers the same
words for the same request at temperature 0). Answers are compared whole, less what names
the call (ids) or its time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clients import (
    AsyncGrpcClient,
    AsyncHttpClient,
    GrpcClient,
    HttpClient,
    TwinserveError,
)
from tests.conftest import Daemons
from tests.harness import MODELS, DaemonProcess

USER = [{"role": "user", "content": "one two three"}]
CHAT = {"model": "m", "messages": USER, "max_tokens": 4, "temperature": 0}
COMPLETION = {"model": "m", "prompt": "once upon", "max_tokens": 3, "temperature": 0}
RESPONSE = {"model": "m", "input": "one two", "max_output_tokens": 3, "temperature": 0}
MESSAGE = {"model": "m", "messages": USER, "max_tokens": 3, "temperature": 0}

_CALL_KEYS = {"id", "created", "created_at", "item_id", "request_id"}

Pair = tuple[HttpClient, GrpcClient]


def content(value: Any) -> Any:
    """`value` without what differs from call to call: ids and timestamps."""
    if isinstance(value, dict):
        return {key: content(item) for key, item in value.items() if key not in _CALL_KEYS}
    if isinstance(value, list):
        return [content(item) for item in value]
    return value


@pytest.fixture(scope="module")
def simulated(daemons: Daemons) -> DaemonProcess:
    return daemons(MODELS / "engine_simulated")


def open_pair(daemon: DaemonProcess) -> Iterator[Pair]:
    with HttpClient(daemon.http_url, timeout=30) as http, \
            GrpcClient(daemon.grpc_target, timeout=30) as grpc:
        yield http, grpc


@pytest.fixture
def pair(simulated: DaemonProcess) -> Iterator[Pair]:
    yield from open_pair(simulated)


@pytest.fixture
def custom_pair(daemons: Daemons) -> Iterator[Pair]:
    yield from open_pair(daemons(MODELS / "api_custom"))


def same(pair: Pair, call: Callable[[HttpClient | GrpcClient], Any]) -> Any:
    """`call` on both transports; asserts the content matches and returns the HTTP one."""
    over_http, over_grpc = call(pair[0]), call(pair[1])
    assert content(over_grpc) == content(over_http)
    return over_http


def same_error(pair: Pair, call: Callable[[HttpClient | GrpcClient], Any]) -> TwinserveError:
    """`call` fails alike on both transports (code and message); returns the HTTP error."""
    errors = []
    for client in pair:
        with pytest.raises(TwinserveError) as info:
            call(client)
        errors.append(info.value)
    assert (errors[1].code, errors[1].message) == (errors[0].code, errors[0].message)
    assert errors[0].request_id and errors[1].request_id
    return errors[0]


# -- answers and events ------------------------------------------------------------------------


def test_chat_completion(pair: Pair) -> None:
    reply = same(pair, lambda c: c.chat_completions(CHAT))
    assert reply["object"] == "chat.completion"
    assert len(reply["choices"][0]["message"]["content"].split()) == 4
    assert reply["usage"]["completion_tokens"] == 4


def test_chat_stream_with_usage(pair: Pair) -> None:
    body = {**CHAT, "stream_options": {"include_usage": True}}
    events = same(pair, lambda c: list(c.chat_completions_stream(body)))
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == pair[0].chat_completions(CHAT)["choices"][0]["message"]["content"]
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 4


def test_chat_stream_without_usage(pair: Pair) -> None:
    events = same(pair, lambda c: list(c.chat_completions_stream(CHAT)))
    assert all(e.get("usage") is None for e in events)
    assert events[-1]["choices"][0]["finish_reason"] == "length"


def test_completion_and_stream(pair: Pair) -> None:
    reply = same(pair, lambda c: c.completions(COMPLETION))
    assert reply["object"] == "text_completion" and len(reply["choices"][0]["text"].split()) == 3
    events = same(pair, lambda c: list(c.completions_stream(COMPLETION)))
    assert "".join(e["choices"][0]["text"] for e in events) == reply["choices"][0]["text"]
    assert events[-1]["choices"][0]["finish_reason"] == "length"


def test_response(pair: Pair) -> None:
    reply = same(pair, lambda c: c.responses(RESPONSE))
    assert reply["object"] == "response" and reply["status"] == "incomplete"
    assert reply["usage"]["output_tokens"] == 3


@pytest.mark.parametrize("max_output_tokens", [1, 5])
def test_response_stream_ends_complete_or_incomplete(pair: Pair,
                                                     max_output_tokens: int) -> None:
    body = {**RESPONSE, "max_output_tokens": max_output_tokens}
    events = same(pair, lambda c: list(c.responses_stream(body)))
    types = [e["type"] for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types.count("response.output_text.delta") == max_output_tokens
    assert types[-1] in ("response.completed", "response.incomplete")
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_message(pair: Pair) -> None:
    reply = same(pair, lambda c: c.messages(MESSAGE))
    assert reply["type"] == "message" and reply["stop_reason"] == "max_tokens"
    assert len(reply["content"][0]["text"].split()) == 3


def test_message_stream_event_sequence(pair: Pair) -> None:
    events = same(pair, lambda c: list(c.messages_stream(MESSAGE)))
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]


async def test_async_clients(simulated: DaemonProcess) -> None:
    async with AsyncHttpClient(simulated.http_url, timeout=30) as http, \
            AsyncGrpcClient(simulated.grpc_target, timeout=30) as grpc:
        replies = [await client.messages(MESSAGE) for client in (http, grpc)]
        assert content(replies[0]) == content(replies[1])
        streams = []
        for client in (http, grpc):
            streams.append([e async for e in client.chat_completions_stream(CHAT)])
        assert content(streams[0]) == content(streams[1]) and len(streams[0]) == 6


async def test_async_stream_left_early_closes_the_call(simulated: DaemonProcess) -> None:
    async with AsyncGrpcClient(simulated.grpc_target, timeout=30) as grpc:
        events = grpc.completions_stream({**COMPLETION, "max_tokens": 10_000})
        assert (await anext(events))["object"] == "text_completion"
        await events.aclose()
        assert (await grpc.completions(COMPLETION))["choices"]


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("route", "body", "param"), [
    ("chat_completions", {"messages": USER, "temperature": 9}, "temperature"),
    ("chat_completions", {"messages": "hi"}, "messages"),
    ("completions", {"prompt": "x", "echo": True}, "echo"),
    ("responses", {"input": "x", "max_output_tokens": -1}, "max_output_tokens"),
    ("messages", {"model": "m", "messages": USER}, "max_tokens"),
    ("embeddings", {"input": "x", "encoding_format": "int8"}, "encoding_format"),
])
def test_bad_parameter_is_invalid_argument(pair: Pair, route: str, body: dict[str, Any],
                                           param: str) -> None:
    error = same_error(pair, lambda c: getattr(c, route)(body))
    assert error.code == "INVALID_ARGUMENT" and error.message.startswith(param)


def test_bad_parameter_on_a_stream_call(pair: Pair) -> None:
    error = same_error(pair, lambda c: list(c.chat_completions_stream({**CHAT, "top_p": 0})))
    assert error.code == "INVALID_ARGUMENT" and error.message.startswith("top_p")
    assert same(pair, lambda c: c.chat_completions(CHAT))["choices"]  # still serving


def test_missing_route_method_is_not_found(custom_pair: Pair) -> None:
    error = same_error(custom_pair, lambda c: c.responses(RESPONSE))
    assert error.code == "NOT_FOUND" and "responses" in error.message
    error = same_error(custom_pair, lambda c: list(c.responses_stream(RESPONSE)))
    assert error.code == "NOT_FOUND"


def test_custom_model_events(custom_pair: Pair) -> None:
    """A model's own dict events, and its own SSE text, read the same on both transports."""
    chunks = same(custom_pair, lambda c: list(c.chat_completions_stream({"model": "x"})))
    assert [e["choices"][0]["delta"]["content"] for e in chunks] == ["custom", " answer"]
    http, grpc = custom_pair
    assert list(http.completions_stream({})) == [{"via": "http"}]
    assert list(grpc.completions_stream({})) == [{"via": "grpc"}]


def test_failure_after_the_stream_started(custom_pair: Pair) -> None:
    for client in custom_pair:
        received: list[dict[str, Any]] = []
        with pytest.raises(TwinserveError) as info:
            received.extend(client.chat_completions_stream({"fail": True}))
        assert info.value.code == "INTERNAL" and info.value.request_id
        assert len(received) == 2
    assert same(custom_pair, lambda c: c.chat_completions({}))["choices"]  # still serving


# -- embeddings (loads the embedding model: torch, ~10 s) --------------------------------------


def test_embeddings(pair: Pair) -> None:
    pytest.importorskip("transformers", reason="the embedded embedding model needs `hf`")
    body = {"model": "m", "input": ["hello world", "twinserve"], "encoding_format": "float"}
    reply = same(pair, lambda c: c.embeddings(body))
    assert [len(d["embedding"]) for d in reply["data"]] == [384, 384]
    packed = same(pair, lambda c: c.embeddings({**body, "encoding_format": "base64"}))
    assert isinstance(packed["data"][0]["embedding"], str)
