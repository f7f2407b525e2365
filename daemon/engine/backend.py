"""The interface every backend implements; the engine core is written against it alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from daemon.engine.cancel import CancelSignal
from daemon.engine.generation import Delta, GenerationRequest


class Backend(Protocol):
    """Turns one single-choice generation into deltas, and stops when told to.

    The core calls everything on the event-loop thread, runs at most `max_batch_size`
    generations at once, and queues the rest.
    """

    name: str
    max_batch_size: int

    async def start(self) -> None:
        """Load weights and the like; the daemon reports ready only after this returns."""
        ...

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        """Check `request` against this backend and model before anything starts.

        Called by `EngineCore.submit()`, so a client gets a plain 400 rather than a failed
        stream. May return the request with work done once (the prompt's token ids).

        Raises:
            InvalidInput: the prompt and `max_tokens` exceed the model's context, or the
                request asks for something this backend cannot do.
        """
        ...

    def batch_size(self) -> int | None:
        """Generations in the batch the backend's own scheduler runs now (for the metrics);
        None when that is simply the generations the core has handed it."""
        ...

    def unavailable(self) -> str | None:
        """Why the backend cannot take work now (recovering from a failure), else None."""
        ...

    def generate(self, request: GenerationRequest, cancel: CancelSignal) -> AsyncIterator[Delta]:
        """Yield the deltas of choice 0 (the core fans `n` out and sets `index`).

        The last delta has a finish_reason: "cancelled" once `cancel` was set, which the
        backend must notice promptly (within about one token) and stop working.
        `request.sampling.n` is always 1 here; `stop` is handled by the core.
        """
        ...

    async def close(self) -> None:
        """Release what start() took; called once no generation runs."""
        ...
