"""POST /v1/chat/completions: the request as a GenerationRequest, deltas as OpenAI's payloads.

Pure functions and a small stream encoder; the built-in model glues them to the engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from daemon import fields
from daemon.engine.generation import Delta, GenerationRequest, Usage
from daemon.engine.outcome import Outcome
from daemon.openai.sampling import SAMPLING_KEYS, sampling_from_openai
from daemon.errors import InvalidInput
from daemon.openai.wire import IGNORED_KEYS, finish_reason, usage_payload

_ACCEPTED = SAMPLING_KEYS | IGNORED_KEYS | {
    "messages", "stream", "stream_options", "max_completion_tokens", "response_format",
    "tool_choice",
}
_REFUSED = {
    "tools": "tool calling is not supported by this model",
    "functions": "function calling is not supported by this model",
    "function_call": "function calling is not supported by this model",
    "logprobs": "log probabilities are not supported",
    "top_logprobs": "log probabilities are not supported",
    "logit_bias": "logit_bias is not supported",
    "frequency_penalty": "only 0 is supported",
    "presence_penalty": "only 0 is supported",
    "audio": "audio output is not supported",
    "modalities": "only text output is supported",
    "prediction": "predicted outputs are not supported",
    "reasoning_effort": "this model does not reason",
    "web_search_options": "web search is not supported",
}
# OpenAI's roles -> the chat template's ("developer" is the newer name for "system").
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
TEXT_PARTS = frozenset({"text"})


@dataclasses.dataclass(frozen=True)
class ChatCall:
    generation: GenerationRequest
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with usage, no choices


def parse_chat(body: Any) -> ChatCall:
    """Validate a chat completion request; InvalidInput names the offending field."""
    body = fields.json_object(body)
    fields.check_keys(body, _ACCEPTED, _REFUSED)
    stream = fields.boolean(body, "stream")
    include_usage = read_include_usage(body, stream)
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, Mapping)
                                        or response_format.get("type") != "text"):
        raise InvalidInput("response_format: only {\"type\": \"text\"} is supported",
                           "response_format")
    if body.get("tool_choice") not in (None, "none", "auto"):
        raise InvalidInput("tool_choice: tool calling is not supported by this model",
                           "tool_choice")
    messages = parse_messages(fields.required(body, "messages"))
    sampling = sampling_from_openai(body)
    return ChatCall(GenerationRequest(messages=messages, sampling=sampling), stream,
                    include_usage)


def parse_messages(value: Any) -> list[dict[str, str]]:
    """Chat messages as the chat template takes them: role and text content."""
    if not isinstance(value, list) or not value:
        raise InvalidInput("messages: expected a non-empty array of messages", "messages")
    messages: list[dict[str, str]] = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        message = fields.json_object(message, where)
        role = message.get("role")
        if role not in ROLES:
            raise InvalidInput(f"{where}.role: expected one of {', '.join(ROLES)}, got {role!r} "
                               "(tool messages are not supported)", f"{where}.role")
        if message.get("tool_calls") or message.get("function_call"):
            raise InvalidInput(f"{where}.tool_calls: tool calling is not supported by this model",
                               f"{where}.tool_calls")
        content = fields.text_content(message.get("content"), f"{where}.content", TEXT_PARTS)
        messages.append({"role": ROLES[role], "content": content})
    return messages


def read_include_usage(body: Mapping[str, Any], stream: bool) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not stream:
        raise InvalidInput("stream_options: only allowed when stream is true", "stream_options")
    options = fields.json_object(options, "stream_options")
    fields.check_keys(options, {"include_usage", "include_obfuscation"})
    return fields.boolean(options, "include_usage")


def chat_completion(outcome: Outcome, *, completion_id: str, created: int,
                    model: str) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {"index": index,
             "message": {"role": "assistant", "content": choice.text, "refusal": None},
             "logprobs": None,
             "finish_reason": finish_reason(choice.finish_reason)}
            for index, choice in enumerate(outcome.choices)
        ],
        "usage": usage_payload(outcome.usage),
    }


class ChatChunks:
    """Turns deltas into `chat.completion.chunk` payloads, as OpenAI streams them.

    Each choice opens with a chunk carrying the role and closes with one carrying its
    finish_reason; with include_usage every chunk has `"usage": null` and one last chunk
    with no choices carries the totals.
    """

    def __init__(self, *, completion_id: str, created: int, model: str,
                 include_usage: bool) -> None:
        self._base = {"id": completion_id, "object": "chat.completion.chunk",
                      "created": created, "model": model, "system_fingerprint": None}
        self._include_usage = include_usage
        self._opened: set[int] = set()

    def start(self) -> list[dict[str, Any]]:
        return []

    def on_delta(self, delta: Delta) -> list[dict[str, Any]]:
        chunks = []
        if delta.index not in self._opened:
            self._opened.add(delta.index)
            chunks.append(self._chunk(delta.index, {"role": "assistant", "content": "",
                                                    "refusal": None}))
        if delta.text:
            chunks.append(self._chunk(delta.index, {"content": delta.text}))
        if delta.finish_reason is not None:
            chunks.append(self._chunk(delta.index, {}, finish_reason(delta.finish_reason)))
        if delta.usage is not None and self._include_usage:
            chunks.append(self._usage_chunk(delta.usage))
        return chunks

    def end(self) -> list[dict[str, Any]]:
        return []

    def _chunk(self, index: int, content: dict[str, Any],
               finish: str | None = None) -> dict[str, Any]:
        chunk = {**self._base, "choices": [{"index": index, "delta": content, "logprobs": None,
                                            "finish_reason": finish}]}
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def _usage_chunk(self, usage: Usage) -> dict[str, Any]:
        return {**self._base, "choices": [], "usage": usage_payload(usage)}
