"""A whole generation gathered from its deltas, for APIs that answer in one response."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable

from daemon.engine.generation import Delta, FinishReason, Usage


@dataclasses.dataclass
class ChoiceOutcome:
    text: str = ""
    finish_reason: FinishReason = "stop"
    stop_sequence: str | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
    choices: list[ChoiceOutcome]
    usage: Usage


async def collect(deltas: AsyncIterable[Delta], n: int) -> Outcome:
    """Read every delta of an `n`-choice generation; text is joined per choice."""
    parts: list[list[str]] = [[] for _ in range(n)]
    choices = [ChoiceOutcome() for _ in range(n)]
    usage = Usage(0, 0)
    async for delta in deltas:
        if delta.text:
            parts[delta.index].append(delta.text)
        if delta.finish_reason is not None:
            choices[delta.index].finish_reason = delta.finish_reason
            choices[delta.index].stop_sequence = delta.stop_sequence
        if delta.usage is not None:
            usage = delta.usage
    for choice, pieces in zip(choices, parts):
        choice.text = "".join(pieces)
    return Outcome(choices, usage)
