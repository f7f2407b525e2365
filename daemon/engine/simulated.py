"""A backend with no model: deterministic tokens at a fixed per-token delay.

It is a real backend (the engine cannot tell it from another), so tests and benchmarks of
admission, streaming and cancellation run in milliseconds and without weights. It logs
the moment it observes an abort on the monotonic clock, which other processes on the
machine share, so a benchmark can time a client's disconnect to the backend stopping.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator

from daemon.engine.cancel import CancelSignal
from daemon.engine.generation import Delta, GenerationRequest

log = logging.getLogger("twinserve.engine.simulated")

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
          "juliet", "kilo", "lima", "mike", "november", "oscar", "papa")
ABORT_LOG_PREFIX = "simulated abort observed"


class SimulatedBackend:
    name = "simulated"

    def __init__(self, *, token_delay_ms: float = 20.0, max_batch_size: int = 64) -> None:
        self.max_batch_size = max_batch_size
        self._delay = token_delay_ms / 1000.0
        # (request id, monotonic time); bounded, since a daemon runs for long
        self.aborts_observed: deque[tuple[str | None, float]] = deque(maxlen=1024)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        return request

    def batch_size(self) -> None:
        return None  # the generations the core runs

    def unavailable(self) -> str | None:
        return None

    async def generate(self, request: GenerationRequest,
                       cancel: CancelSignal) -> AsyncIterator[Delta]:
        cancel.on_cancel(lambda: self._observe_abort(request.request_id))
        prompt = request.prompt if request.prompt is not None else " ".join(
            m.get("content", "") for m in request.messages or ())
        rng = random.Random(request.sampling.seed or 0)
        yield Delta(prompt_tokens=len(prompt.split()))
        for position in range(request.sampling.max_tokens):
            if await cancel.sleep(self._delay):
                yield Delta(finish_reason="cancelled")
                return
            token = rng.randrange(len(_WORDS))
            yield Delta(text=("" if position == 0 else " ") + _WORDS[token], token_ids=(token,))
        yield Delta(finish_reason="length")

    def _observe_abort(self, request_id: str | None) -> None:
        observed = time.monotonic()
        self.aborts_observed.append((request_id, observed))
        log.info("%s request_id=%s monotonic=%.6f", ABORT_LOG_PREFIX, request_id, observed)
