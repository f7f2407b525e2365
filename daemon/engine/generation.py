"""What a generation is asked for and what it yields, independent of any backend."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

from daemon.engine.sampling import SamplingParams

# OpenAI's reasons, plus "cancelled": the generation was stopped from outside (client gone or
# `ResponseIterator.cancel()`); a disconnected client never sees it, model code may.
FinishReason = Literal["stop", "length", "cancelled"]


@dataclasses.dataclass(frozen=True)
class GenerationRequest:
    """One generation: a raw `prompt`, or chat `messages` rendered by the model's template."""

    prompt: str | None = None
    messages: Sequence[Mapping[str, str]] | None = None
    sampling: SamplingParams = dataclasses.field(default_factory=SamplingParams)
    request_id: str | None = None  # filled from the request being handled when left out
    prompt_token_ids: tuple[int, ...] | None = None  # the rendered prompt, once a backend's
    # prepare() has tokenized it

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("GenerationRequest needs exactly one of prompt or messages")


@dataclasses.dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclasses.dataclass(frozen=True)
class Delta:
    """A piece of one choice's output.

    The last delta of a choice has `finish_reason`; the last delta of the whole iterator
    also carries `usage`, summed over all choices.
    """

    text: str = ""
    token_ids: tuple[int, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    index: int = 0
    prompt_tokens: int | None = None  # backends report it once, on any delta; the core
    # passes it on with each choice's first delta
    stop_sequence: str | None = None  # on a finish delta: the stop sequence that ended it


def output_deltas(text: str, token_ids: Sequence[int], prompt_tokens: int | None,
                  finish_reason: str | None,
                  reasons: Mapping[str, FinishReason]) -> Iterator[Delta]:
    """An engine's output (what is new in it) as our deltas: its text and tokens, if any or
    if it is the first (`prompt_tokens`), then its finish, through `reasons` ("stop" for a
    reason not in it)."""
    if text or token_ids or prompt_tokens is not None:
        yield Delta(text=text, token_ids=tuple(token_ids), prompt_tokens=prompt_tokens)
    if finish_reason is not None:
        yield Delta(finish_reason=reasons.get(finish_reason, "stop"))
