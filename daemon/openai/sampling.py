"""Sampling parameters read from an OpenAI-style request body (and the APIs that rename
some of them), into the engine's `SamplingParams`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from daemon.engine.sampling import SamplingParams
from daemon.errors import InvalidInput

SAMPLING_KEYS = frozenset(f.name for f in dataclasses.fields(SamplingParams))


def sampling_from_openai(body: Mapping[str, Any],
                         renamed: Mapping[str, str] | None = None) -> SamplingParams:
    """Read the sampling keys of an OpenAI-style body; other keys are left to the caller.

    `null` means "our default", as in OpenAI's API. `max_completion_tokens` is accepted as
    the newer name for `max_tokens`. `renamed` maps our names to the ones an API uses
    instead (Responses' `max_output_tokens`, Anthropic's `stop_sequences`), so values are
    read, and errors name the field, as that API's clients know it.
    """
    names = {key: key for key in SAMPLING_KEYS}
    names.update(renamed or {})
    values: dict[str, Any] = {k: body[n] for k, n in names.items() if body.get(n) is not None}
    newer = body.get("max_completion_tokens")
    if newer is not None and "max_tokens" not in values:
        values["max_tokens"] = newer
        names["max_tokens"] = "max_completion_tokens"
    if "stop" in values:
        stop = values["stop"]
        if isinstance(stop, str):
            values["stop"] = (stop,)
        elif isinstance(stop, list):
            values["stop"] = tuple(stop)
        else:
            raise InvalidInput(f"{names['stop']}: expected a string or a list of strings, "
                               f"got {_kind(stop)}", names["stop"])
    if "stop_token_ids" in values:
        ids = values["stop_token_ids"]
        if not isinstance(ids, list):
            raise InvalidInput(f"stop_token_ids: expected a list of integers, got {_kind(ids)}",
                               "stop_token_ids")
        values["stop_token_ids"] = tuple(ids)
    for name in ("temperature", "top_p", "repetition_penalty"):
        if name in values and isinstance(values[name], int) and not isinstance(values[name], bool):
            values[name] = float(values[name])
    try:
        return SamplingParams(**values)
    except InvalidInput as err:
        client_name = names.get(err.param or "", err.param)
        if client_name is None or client_name == err.param:
            raise
        message = client_name + err.message.removeprefix(err.param or "")
        raise InvalidInput(message, client_name) from None


def _kind(value: Any) -> str:
    return type(value).__name__
