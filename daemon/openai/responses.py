"""POST /v1/responses: OpenAI's Responses API, text in and text out, stored nowhere.

A stream is the documented event sequence: response.created, response.in_progress,
response.output_item.added, response.content_part.added, response.output_text.delta...,
response.output_text.done, response.content_part.done, response.output_item.done,
response.completed (or response.incomplete when max_output_tokens cut the text).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from daemon import fields
from daemon.engine.generation import Delta, FinishReason, GenerationRequest, Usage
from daemon.engine.outcome import Outcome
from daemon.openai.sampling import sampling_from_openai
from daemon.errors import InvalidInput
from daemon.openai.chat import ROLES
from daemon.openai.wire import IGNORED_KEYS

_ACCEPTED = IGNORED_KEYS | {"input", "instructions", "max_output_tokens", "temperature",
                            "top_p", "stream", "text", "tool_choice", "truncation", "include"}
_REFUSED = {
    "tools": "tools are not supported by this model",
    "previous_response_id": "responses are not stored, so they cannot be continued",
    "conversation": "conversations are not stored",
    "reasoning": "this model does not reason",
    "background": "background responses are not supported",
    "prompt": "stored prompts are not supported",
    "top_logprobs": "log probabilities are not supported",
    "max_tool_calls": "tools are not supported by this model",
}
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


@dataclasses.dataclass(frozen=True)
class ResponsesCall:
    generation: GenerationRequest
    stream: bool
    instructions: str | None
    max_output_tokens: int | None
    temperature: float
    top_p: float


def parse_responses(body: Any) -> ResponsesCall:
    body = fields.json_object(body)
    fields.check_keys(body, _ACCEPTED, _REFUSED)
    stream = fields.boolean(body, "stream")
    instructions = fields.optional_string(body, "instructions")
    if body.get("tool_choice") not in (None, "none", "auto"):
        raise InvalidInput("tool_choice: tools are not supported by this model", "tool_choice")
    text = body.get("text")
    if text is not None:
        fmt = fields.json_object(text, "text").get("format")
        if fmt is not None and (not isinstance(fmt, Mapping) or fmt.get("type") != "text"):
            raise InvalidInput("text.format: only {\"type\": \"text\"} is supported",
                               "text.format")
    messages = ([{"role": "system", "content": instructions}] if instructions else [])
    messages += _input_messages(fields.required(body, "input"))
    sampling = sampling_from_openai(
        {k: body.get(k) for k in ("max_output_tokens", "temperature", "top_p")},
        renamed={"max_tokens": "max_output_tokens"})
    max_output = body.get("max_output_tokens")
    return ResponsesCall(GenerationRequest(messages=messages, sampling=sampling), stream,
                         instructions, max_output if isinstance(max_output, int) else None,
                         sampling.temperature, sampling.top_p)


def _input_messages(value: Any) -> list[dict[str, str]]:
    if isinstance(value, str):
        if not value:
            raise InvalidInput("input: must not be empty", "input")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise InvalidInput("input: expected a string or a non-empty array of messages", "input")
    messages = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        item = fields.json_object(item, where)
        if item.get("type", "message") != "message":
            raise InvalidInput(f"{where}.type: only message items are supported, got "
                               f"{item.get('type')!r}", f"{where}.type")
        role = item.get("role")
        if role not in ROLES:
            raise InvalidInput(f"{where}.role: expected one of {', '.join(ROLES)}, got {role!r}",
                               f"{where}.role")
        content = fields.text_content(item.get("content"), f"{where}.content", _TEXT_PARTS)
        messages.append({"role": ROLES[role], "content": content})
    return messages


class ResponseEvents:
    """Builds the Response object and its stream events for one call."""

    def __init__(self, call: ResponsesCall, *, response_id: str, created: int,
                 model: str) -> None:
        self._call = call
        self._id = response_id
        self._item_id = "msg_" + response_id.removeprefix("resp_")
        self._created = created
        self._model = model
        self._sequence = 0
        self._parts: list[str] = []

    # -- whole responses ----------------------------------------------------------------------

    def response(self, outcome: Outcome) -> dict[str, Any]:
        choice = outcome.choices[0]
        return self._response(choice.text, choice.finish_reason, outcome.usage)

    def _response(self, text: str | None, finish: FinishReason | None,
                  usage: Usage | None) -> dict[str, Any]:
        if text is None:
            status, output = "in_progress", []
        else:
            status = "incomplete" if finish == "length" else "completed"
            output = [self._item(text, "completed" if status == "completed" else "incomplete")]
        call = self._call
        return {
            "id": self._id, "object": "response", "created_at": self._created,
            "status": status, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if finish == "length" else None,
            "instructions": call.instructions, "max_output_tokens": call.max_output_tokens,
            "model": self._model, "output": output, "parallel_tool_calls": False,
            "previous_response_id": None, "reasoning": None, "store": False,
            "temperature": call.temperature, "top_p": call.top_p,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
            "truncation": "disabled", "metadata": {},
            "usage": None if usage is None else {
                "input_tokens": usage.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": usage.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage.total_tokens,
            },
        }

    def _item(self, text: str | None, status: str) -> dict[str, Any]:
        content = [] if text is None else [self._part(text)]
        return {"type": "message", "id": self._item_id, "status": status, "role": "assistant",
                "content": content}

    @staticmethod
    def _part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    # -- streams ------------------------------------------------------------------------------

    def start(self) -> list[dict[str, Any]]:
        pending = self._response(None, None, None)
        return [
            self._event("response.created", response=pending),
            self._event("response.in_progress", response=pending),
            self._event("response.output_item.added", output_index=0,
                        item=self._item(None, "in_progress")),
            self._event("response.content_part.added", item_id=self._item_id, output_index=0,
                        content_index=0, part=self._part("")),
        ]

    def on_delta(self, delta: Delta) -> list[dict[str, Any]]:
        events = []
        if delta.text:
            self._parts.append(delta.text)
            events.append(self._event("response.output_text.delta", item_id=self._item_id,
                                      output_index=0, content_index=0, delta=delta.text,
                                      logprobs=[]))
        if delta.finish_reason is not None:
            text = "".join(self._parts)
            final = self._response(text, delta.finish_reason, delta.usage)
            events += [
                self._event("response.output_text.done", item_id=self._item_id, output_index=0,
                            content_index=0, text=text, logprobs=[]),
                self._event("response.content_part.done", item_id=self._item_id,
                            output_index=0, content_index=0, part=self._part(text)),
                self._event("response.output_item.done", output_index=0,
                            item=final["output"][0]),
                self._event("response.completed" if final["status"] == "completed"
                            else "response.incomplete", response=final),
            ]
        return events

    def end(self) -> list[dict[str, Any]]:
        return []

    def _event(self, event_type: str, **payload: Any) -> dict[str, Any]:
        event = {"type": event_type, "sequence_number": self._sequence, **payload}
        self._sequence += 1
        return event
