"""POST /v1/messages: Anthropic's Messages API as a GenerationRequest, deltas as its payloads.

A stream is Anthropic's event sequence: message_start, content_block_start,
content_block_delta..., content_block_stop, message_delta (stop_reason, output tokens),
message_stop. Anthropic names every field; errors carry the field's name in the message.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from daemon import fields
from daemon.engine.generation import Delta, FinishReason, GenerationRequest
from daemon.engine.outcome import Outcome
from daemon.openai.sampling import sampling_from_openai
from daemon.errors import InvalidInput

# Newer SDKs no longer offer temperature/top_p/top_k as arguments; send them in extra_body.
_ACCEPTED = {"model", "messages", "max_tokens", "system", "stop_sequences", "temperature",
             "top_p", "top_k", "stream", "tool_choice",
             # change nothing here: accepted and ignored
             "metadata", "service_tier", "cache_control", "inference_geo", "speed",
             "user_profile_id", "workspace_id", "diagnostics"}
_REFUSED = {
    "tools": "tool use is not supported by this model",
    "thinking": "extended thinking is not supported by this model",
    "mcp_servers": "MCP servers are not supported",
    "container": "containers are not supported",
    "output_config": "output configuration (structured output, effort) is not supported",
}
_ROLES = ("user", "assistant")
_TEXT_BLOCKS = frozenset({"text"})


@dataclasses.dataclass(frozen=True)
class MessagesCall:
    generation: GenerationRequest
    stream: bool


def parse_messages(body: Any) -> MessagesCall:
    body = fields.json_object(body)
    fields.check_keys(body, _ACCEPTED, _REFUSED)
    fields.required(body, "model")
    fields.required(body, "max_tokens")
    stream = fields.boolean(body, "stream")
    if body.get("tool_choice") not in (None, {"type": "none"}, {"type": "auto"}):
        raise InvalidInput("tool_choice: tool use is not supported by this model", "tool_choice")
    stop_sequences = body.get("stop_sequences")
    if stop_sequences is not None and not isinstance(stop_sequences, list):
        raise InvalidInput(f"stop_sequences: expected an array of strings, got "
                           f"{fields.kind(stop_sequences)}", "stop_sequences")
    temperature = body.get("temperature")
    if isinstance(temperature, (int, float)) and not 0 <= temperature <= 1:
        raise InvalidInput(f"temperature: must be between 0 and 1, got {temperature}",
                           "temperature")
    messages = _system(body.get("system")) + _messages(fields.required(body, "messages"))
    sampling = sampling_from_openai(
        {k: body.get(k) for k in ("max_tokens", "stop_sequences", "temperature", "top_p",
                                  "top_k")},
        renamed={"stop": "stop_sequences"})
    return MessagesCall(GenerationRequest(messages=messages, sampling=sampling), stream)


def _system(value: Any) -> list[dict[str, str]]:
    if value is None:
        return []
    text = fields.text_content(value, "system", _TEXT_BLOCKS)
    return [{"role": "system", "content": text}] if text else []


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("messages: expected a non-empty array of messages", "messages")
    messages = []
    for i, message in enumerate(value):
        where = f"messages.{i}"
        message = fields.json_object(message, where)
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidInput(f"{where}.role: expected 'user' or 'assistant', got {role!r}",
                               f"{where}.role")
        content = fields.text_content(message.get("content"), f"{where}.content", _TEXT_BLOCKS)
        messages.append({"role": role, "content": content})
    return messages


def stop_reason(reason: FinishReason, stop_sequence: str | None) -> str:
    if stop_sequence is not None:
        return "stop_sequence"
    return "max_tokens" if reason == "length" else "end_turn"


def message(outcome: Outcome, *, message_id: str, model: str) -> dict[str, Any]:
    choice = outcome.choices[0]
    return {
        "id": message_id, "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": choice.text}],
        "stop_reason": stop_reason(choice.finish_reason, choice.stop_sequence),
        "stop_sequence": choice.stop_sequence,
        "usage": {"input_tokens": outcome.usage.prompt_tokens,
                  "output_tokens": outcome.usage.completion_tokens},
    }


class MessageEvents:
    """Deltas as Anthropic stream events; message_start waits for the first delta, which
    carries the prompt's token count that message_start reports."""

    def __init__(self, *, message_id: str, model: str) -> None:
        self._id = message_id
        self._model = model
        self._started = False

    def start(self) -> list[dict[str, Any]]:
        return []

    def on_delta(self, delta: Delta) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if not self._started:
            self._started = True
            prompt_tokens = delta.prompt_tokens
            if prompt_tokens is None and delta.usage is not None:
                prompt_tokens = delta.usage.prompt_tokens
            events += self._opening(prompt_tokens or 0)
        if delta.text:
            events.append({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": delta.text}})
        if delta.finish_reason is not None:
            output_tokens = delta.usage.completion_tokens if delta.usage is not None else 0
            events += [
                {"type": "content_block_stop", "index": 0},
                {"type": "message_delta",
                 "delta": {"stop_reason": stop_reason(delta.finish_reason, delta.stop_sequence),
                           "stop_sequence": delta.stop_sequence},
                 "usage": {"output_tokens": output_tokens}},
                {"type": "message_stop"},
            ]
        return events

    def end(self) -> list[dict[str, Any]]:
        return []

    def _opening(self, prompt_tokens: int) -> list[dict[str, Any]]:
        return [
            {"type": "message_start", "message": {
                "id": self._id, "type": "message", "role": "assistant", "model": self._model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": 0}}},
            {"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}},
        ]
