"""The hf backend with the embedded SmolLM2 model (loaded once for the module, ~3 s)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator

import pytest

from daemon.config import default_cache_dir
from daemon.engine.core import EngineCore
from daemon.engine.generation import Delta, GenerationRequest
from daemon.engine.hf import HfBackend
from daemon.engine.sampling import SamplingParams
from daemon.metrics import Metrics

pytest.importorskip("transformers", reason="the hf backend needs the `hf` extra")


@pytest.fixture(scope="module")
def backend() -> HfBackend:
    hf = HfBackend(model=None, cache_dir=default_cache_dir(os.environ))
    asyncio.run(hf.start())
    return hf


@pytest.fixture
async def core(backend: HfBackend) -> AsyncIterator[EngineCore]:
    engine = EngineCore(backend, Metrics())
    await engine.start()
    yield engine


def greedy(tokens: int) -> SamplingParams:
    return SamplingParams(max_tokens=tokens, temperature=0.0)


async def test_chat_answer_through_the_template(core: EngineCore) -> None:
    deltas = [d async for d in core.submit(GenerationRequest(
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        sampling=greedy(6)))]
    text = "".join(d.text for d in deltas)
    assert "Paris" in text
    assert deltas[-1].finish_reason in ("length", "stop")
    assert deltas[-1].usage is not None and deltas[-1].usage.prompt_tokens > 10
    assert 0 < deltas[-1].usage.completion_tokens <= 6


async def test_cancel_stops_generation_and_joins_the_thread(core: EngineCore) -> None:
    it = core.submit(GenerationRequest(prompt="Count from one to one hundred:",
                                       sampling=greedy(200)))
    first: Delta = await it.__anext__()
    it.cancel()
    rest = [d async for d in it]
    assert rest[-1].finish_reason == "cancelled"
    assert rest[-1].usage is not None and rest[-1].usage.completion_tokens < 20
    assert first.text or first.token_ids
    assert not [t for t in threading.enumerate() if t.name == "twinserve-hf-generate"]


async def test_generations_run_one_at_a_time(core: EngineCore) -> None:
    requests = [GenerationRequest(prompt="Hi", sampling=greedy(2)) for _ in range(2)]
    results = await asyncio.gather(*[_collect(core.submit(r)) for r in requests])
    assert all(r[-1].finish_reason in ("length", "stop") for r in results)


async def _collect(it: object) -> list[Delta]:
    return [d async for d in it]  # type: ignore[attr-defined]
