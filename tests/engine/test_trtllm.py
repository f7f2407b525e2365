"""The TensorRT-LLM adapter against a double of its LLM API, and against the real package
wherever it imports (an NVIDIA GPU machine; see docs/engine.md)."""

from __future__ import annotations

import asyncio
import os

import pytest

from daemon.engine.core import EngineCore
from daemon.engine.generation import Delta, GenerationRequest
from daemon.engine.sampling import SamplingParams
from daemon.engine.trtllm import TrtllmBackend
from daemon.metrics import Metrics
from tests.fakes import FakeLLM, FakeTrtSamplingParams


async def engine_over(llm: FakeLLM, abort_timeout_s: float = 5.0) -> EngineCore:
    core = EngineCore(TrtllmBackend(lambda: llm, FakeTrtSamplingParams,
                                    abort_timeout_s=abort_timeout_s), Metrics())
    await core.start()
    return core


async def collect(core: EngineCore, request: GenerationRequest) -> list[Delta]:
    return [d async for d in core.submit(request)]


async def test_streams_diffs_and_maps_finish_reason() -> None:
    llm = FakeLLM(words=["hello", "world"])
    core = await engine_over(llm)
    deltas = await collect(core, GenerationRequest(prompt="a b c",
                                                   sampling=SamplingParams(max_tokens=3)))
    assert "".join(d.text for d in deltas) == "hello world hello"
    assert [d.token_ids for d in deltas if d.token_ids] == [(0,), (1,), (2,)]
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].usage is not None and deltas[-1].usage.prompt_tokens == 3


async def test_every_sampling_value_is_set_explicitly() -> None:
    llm = FakeLLM()
    core = await engine_over(llm)
    await collect(core, GenerationRequest(prompt="x"))  # our defaults, not SamplingParams'
    await collect(core, GenerationRequest(prompt="x", sampling=SamplingParams(
        max_tokens=2, temperature=0.0, seed=5)))
    sampled, greedy = (params for _, params in llm.calls)
    assert sampled == FakeTrtSamplingParams(max_tokens=256, temperature=1.0, top_p=1.0, n=1)
    assert greedy == FakeTrtSamplingParams(max_tokens=2, seed=5, n=1)


async def test_vllm_extensions_pass_through_under_their_names() -> None:
    llm = FakeLLM()
    core = await engine_over(llm)
    await collect(core, GenerationRequest(prompt="x", sampling=SamplingParams(
        max_tokens=4, temperature=0.0, ignore_eos=True, min_tokens=2, repetition_penalty=1.1,
        stop_token_ids=(7, 9))))
    (_, params), = llm.calls
    assert params == FakeTrtSamplingParams(max_tokens=4, n=1, ignore_eos=True, min_tokens=2,
                                           repetition_penalty=1.1, stop_token_ids=[7, 9])


async def test_chat_messages_use_the_tokenizer_template() -> None:
    llm = FakeLLM()
    core = await engine_over(llm)
    await collect(core, GenerationRequest(messages=[{"role": "user", "content": "hi"}],
                                          sampling=SamplingParams(max_tokens=1)))
    assert llm.calls[0][0] == "<user>hi<assistant>"


async def test_cancel_aborts_and_drains_to_the_cancelled_item() -> None:
    llm = FakeLLM(token_delay=0.01)
    core = await engine_over(llm)
    it = core.submit(GenerationRequest(prompt="x", sampling=SamplingParams(max_tokens=1000)))
    first = await it.__anext__()
    it.cancel()
    rest = [d async for d in it]
    assert first.text == "tok" and rest[-1].finish_reason == "cancelled"
    output = llm.outputs[0]
    assert output.aborted == 1 and output.finished
    assert output.outputs[0].finish_reason == "cancelled"


async def test_abort_that_never_completes_gives_up_after_the_timeout() -> None:
    llm = FakeLLM(token_delay=0.005, ignore_abort=True)
    core = await engine_over(llm, abort_timeout_s=0.05)
    it = core.submit(GenerationRequest(prompt="x", sampling=SamplingParams(max_tokens=1000)))
    await it.__anext__()
    it.cancel()
    rest = await asyncio.wait_for(asyncio.ensure_future(_drain(it)), 2)
    assert rest[-1].finish_reason == "cancelled"


async def _drain(it: object) -> list[Delta]:
    return [d async for d in it]  # type: ignore[attr-defined]


async def test_close_shuts_the_llm_down() -> None:
    llm = FakeLLM()
    core = await engine_over(llm)
    await core.close()
    assert llm.shut_down


async def test_real_tensorrt_llm() -> None:
    pytest.importorskip("tensorrt_llm", reason="tensorrt_llm imports only on NVIDIA GPU "
                        "machines with its wheel (Python 3.10/3.12); see docs/engine.md")
    model = os.environ.get("TWINSERVE_TRTLLM_MODEL", "TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    core = EngineCore(TrtllmBackend.from_model(model, abort_timeout_s=10), Metrics())
    await core.start()
    try:
        deltas = [d async for d in core.submit(GenerationRequest(
            prompt="The capital of France is", sampling=SamplingParams(max_tokens=8,
                                                                      temperature=0.0)))]
        assert deltas[-1].finish_reason in ("stop", "length")
        assert "".join(d.text for d in deltas).strip()
        it = core.submit(GenerationRequest(prompt="Count to a thousand:",
                                           sampling=SamplingParams(max_tokens=2000)))
        await it.__anext__()
        it.cancel()
        rest = await asyncio.wait_for(_drain(it), 15)
        assert rest[-1].finish_reason == "cancelled"
    finally:
        await core.close()
