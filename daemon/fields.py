"""Typed reads of a parsed JSON request body for the /v1 adapters.

Every error is an InvalidInput naming the field (OpenAI's `param`), in the notation the
API's own docs use (`messages[1].content`), so a client can tell what to fix.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from daemon.errors import InvalidInput


def kind(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def json_object(body: Any, what: str = "the request body") -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidInput(f"{what}: expected a JSON object, got {kind(body)}")
    return body


def check_keys(body: Mapping[str, Any], accepted: Collection[str],
               refused: Mapping[str, str] | None = None) -> None:
    """Refuse unknown keys, and known ones this server does not implement.

    A refused key is still accepted when its value asks for nothing (null, false, 0, [],
    {}), as SDKs and proxies often send such defaults.
    """
    for key, value in body.items():
        if refused and key in refused and _asks_for_something(value):
            raise InvalidInput(f"{key}: {refused[key]}", key)
        if key not in accepted and not (refused and key in refused):
            raise InvalidInput(f"{key}: unrecognized request argument", key)


def boolean(body: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInput(f"{key}: expected true or false, got {kind(value)}", key)
    return value


def optional_string(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{key}: expected a string, got {kind(value)}", key)
    return value


def required(body: Mapping[str, Any], key: str) -> Any:
    if body.get(key) is None:
        raise InvalidInput(f"{key}: this field is required", key)
    return body[key]


def text_content(content: Any, param: str, part_types: Collection[str]) -> str:
    """A message's text: a string, or a list of text parts (`{"type": "text", "text": ...}`).

    Other parts (images, audio, tool calls) are refused: a text-only model would otherwise
    answer as if they had not been sent.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidInput(f"{param}: expected a string or an array of text parts, "
                           f"got {kind(content)}", param)
    texts: list[str] = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        if not isinstance(part, Mapping):
            raise InvalidInput(f"{where}: expected an object, got {kind(part)}", where)
        part_type = part.get("type")
        if part_type not in part_types:
            raise InvalidInput(f"{where}.type: only text parts ({', '.join(sorted(part_types))}) "
                               f"are supported, got {part_type!r}", f"{where}.type")
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidInput(f"{where}.text: expected a string, got {kind(text)}",
                               f"{where}.text")
        texts.append(text)
    return "\n".join(texts)


def _asks_for_something(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, (list, dict, str)):
        return len(value) > 0
    return True
