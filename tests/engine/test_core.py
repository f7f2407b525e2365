"""EngineCore and ResponseIterator against a scripted backend."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from daemon.engine.core import EngineCore
from daemon.engine.generation import Delta, GenerationRequest
from daemon.engine.sampling import SamplingParams
from daemon.errors import ModelError, NotReady, Overloaded
from daemon.metrics import Metrics
from daemon.request import BodyLimits, BytesBody, Request, current_request
from tests.fakes import ScriptedBackend


def sample(name: str, metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, f"no metric named {name}"
    return value


async def started(backend: ScriptedBackend) -> tuple[EngineCore, Metrics]:
    metrics = Metrics()
    core = EngineCore(backend, metrics)
    await core.start()
    return core, metrics


async def collect(deltas: object) -> list[Delta]:
    return [d async for d in deltas]  # type: ignore[attr-defined]


async def generating(backend: ScriptedBackend) -> None:
    """Until a generation is running on `backend`: how long that takes depends on the
    machine, so the tests wait for it rather than for a fixed time."""
    async def started() -> None:
        while not backend.running:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(started(), 5)


def prompt(**sampling: object) -> GenerationRequest:
    params = SamplingParams(**sampling)  # type: ignore[arg-type]
    return GenerationRequest(prompt="hi", sampling=params)


async def test_yields_text_then_finish_with_usage() -> None:
    core, metrics = await started(ScriptedBackend(["a", "b", "c"]))
    deltas = await collect(core.submit(prompt()))
    assert "".join(d.text for d in deltas) == "abc"
    assert [d.token_ids for d in deltas if d.token_ids] == [(0,), (1,), (2,)]
    last = deltas[-1]
    assert last.finish_reason == "stop"
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3, 3)
    assert sample("twinserve_engine_generated_tokens_total", metrics) == 3
    assert sample("twinserve_engine_in_flight", metrics) == 0


async def test_max_tokens_gives_length() -> None:
    core, _ = await started(ScriptedBackend(["a", "b", "c"]))
    deltas = await collect(core.submit(prompt(max_tokens=2)))
    assert "".join(d.text for d in deltas) == "ab" and deltas[-1].finish_reason == "length"


async def test_cancel_stops_backend_even_when_nobody_reads() -> None:
    backend = ScriptedBackend(["a", "b", "c"], gated=True)
    core, metrics = await started(backend)
    it = core.submit(prompt())
    await generating(backend)
    assert sample("twinserve_engine_in_flight", metrics) == 1
    it.cancel()
    it.cancel()  # idempotent
    await asyncio.wait_for(it._task, 1)  # type: ignore[arg-type]
    assert backend.saw_cancel == 1 and backend.running == 0
    assert sample("twinserve_engine_in_flight", metrics) == 0
    assert sample("twinserve_engine_cancelled_total", metrics) == 1
    assert sample("twinserve_engine_cancel_seconds_count", metrics) == 1
    deltas = await collect(it)
    assert deltas[-1].finish_reason == "cancelled"


async def test_cancel_from_another_thread() -> None:
    backend = ScriptedBackend(["a"] * 5, gated=True)
    core, _ = await started(backend)
    it = core.submit(prompt())
    await generating(backend)
    thread = threading.Thread(target=it.cancel)
    thread.start()
    thread.join()
    deltas = await asyncio.wait_for(collect(it), 1)
    assert deltas[-1].finish_reason == "cancelled"


async def test_cancel_after_finish_is_harmless() -> None:
    core, metrics = await started(ScriptedBackend(["a"]))
    it = core.submit(prompt())
    await collect(it)
    it.cancel()
    await it.aclose()
    assert sample("twinserve_engine_cancelled_total", metrics) == 0


async def test_disconnect_of_current_request_cancels() -> None:
    backend = ScriptedBackend(["a", "b"], gated=True)
    core, metrics = await started(backend)
    request = Request(transport="http", route="predict", body=BytesBody(b""),
                      limits=BodyLimits(10), request_id="req-1")
    token = current_request.set(request)
    try:
        it = core.submit(prompt())
    finally:
        current_request.reset(token)
    await generating(backend)
    request.mark_disconnected()
    deltas = await asyncio.wait_for(collect(it), 1)
    assert deltas[-1].finish_reason == "cancelled"
    assert backend.requests[0].request_id == "req-1"


async def test_finished_iterator_unregisters_from_request() -> None:
    core, _ = await started(ScriptedBackend(["a"]))
    request = Request(transport="http", route="predict", body=BytesBody(b""),
                      limits=BodyLimits(10), request_id="req-2")
    token = current_request.set(request)
    try:
        await collect(core.submit(prompt()))
    finally:
        current_request.reset(token)
    assert request._disconnect_callbacks == []


async def test_queued_to_capacity_and_cancel_while_queued() -> None:
    backend = ScriptedBackend(["a", "b"], max_batch_size=1, gated=True)
    core, metrics = await started(backend)
    first = core.submit(prompt())
    second = core.submit(prompt())
    await generating(backend)
    await asyncio.sleep(0.01)  # time for the second to start too, were max_batch_size not 1
    assert backend.max_running == 1 and len(backend.requests) == 1
    # The batch is what runs, not what waits: the backend reports none of its own.
    assert sample("twinserve_engine_batch_size", metrics) == 1
    second.cancel()
    deltas = await asyncio.wait_for(collect(second), 1)
    assert deltas[-1].finish_reason == "cancelled" and len(backend.requests) == 1
    first.cancel()
    await collect(first)
    assert sample("twinserve_engine_in_flight", metrics) == 0
    assert sample("twinserve_engine_batch_size", metrics) == 0


async def test_queue_is_bounded_by_max_queue() -> None:
    backend = ScriptedBackend(["a", "b"], max_batch_size=1, gated=True)
    metrics = Metrics()
    core = EngineCore(backend, metrics, max_queue=1)
    await core.start()
    running, queued, refused = (core.submit(prompt()) for _ in range(3))
    with pytest.raises(Overloaded, match="runtime.max_queue=1"):
        await asyncio.wait_for(collect(refused), 1)
    running.cancel()
    queued.cancel()
    await collect(running)
    await collect(queued)
    assert sample("twinserve_engine_in_flight", metrics) == 0


async def test_latency_and_token_metrics() -> None:
    core, metrics = await started(ScriptedBackend(["a", "b", "c"]))
    await collect(core.submit(prompt()))
    assert sample("twinserve_engine_time_to_first_token_seconds_count", metrics) == 1
    assert sample("twinserve_engine_inter_token_seconds_count", metrics) == 2
    assert sample("twinserve_engine_prompt_tokens_total", metrics) == 3
    assert sample("twinserve_engine_completion_tokens_total", metrics) == 3


async def test_stop_sequence_truncates_and_stops_backend() -> None:
    backend = ScriptedBackend(["he", "llo", " wor", "ld", "!"])
    core, metrics = await started(backend)
    deltas = await collect(core.submit(prompt(stop=["o w"])))
    assert "".join(d.text for d in deltas) == "hell"
    assert deltas[-1].finish_reason == "stop"
    assert sample("twinserve_engine_cancelled_total", metrics) == 0


async def test_n_choices_fan_out_with_indices_and_summed_usage() -> None:
    backend = ScriptedBackend(["a", "b"])
    core, _ = await started(backend)
    it = core.submit(prompt(n=2, seed=7))
    deltas = await collect(it)
    for index in (0, 1):
        assert "".join(d.text for d in deltas if d.index == index) == "ab"
    assert sorted(r.sampling.seed for r in backend.requests) == [7, 8]  # type: ignore[type-var]
    assert all(r.sampling.n == 1 for r in backend.requests)
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens == 4
    assert it.usage == deltas[-1].usage


async def test_backend_failure_is_a_model_error() -> None:
    core, metrics = await started(ScriptedBackend(["a", "b"], fail_after=1))
    with pytest.raises(ModelError, match="the scripted backend failed with an unexpected error"):
        await collect(core.submit(prompt()))
    assert sample("twinserve_engine_in_flight", metrics) == 0


async def test_submit_before_start_and_after_close() -> None:
    backend = ScriptedBackend(["a"], gated=True)
    core = EngineCore(backend, Metrics())
    with pytest.raises(NotReady, match="not started"):
        core.submit(prompt())
    await core.start()
    it = core.submit(prompt())
    await generating(backend)
    await core.close()
    assert backend.closed and backend.running == 0
    assert (await collect(it))[-1].finish_reason == "cancelled"
    with pytest.raises(NotReady, match="shutting down"):
        core.submit(prompt())


def test_engine_config_section_parses_with_errors_naming_the_key(tmp_path: Path) -> None:
    from daemon.config import parse_model_config
    from daemon.errors import ConfigError

    config = parse_model_config(tmp_path, {"engine": {"backend": "simulated", "token_delay_ms": 5}})
    assert config.engine is not None and config.engine.token_delay_ms == 5.0
    for raw, key in [({"backend": "onnx"}, "engine.backend"),
                     ({"backend": "hf", "colour": 1}, "engine.colour"),
                     ({"backend": "vllm", "model": ""}, "engine.model"),
                     ({"backend": "vllm", "enforce_eager": "yes"}, "engine.enforce_eager"),
                     ({"backend": "vllm", "gpu_memory_utilization": 1.5},
                      "engine.gpu_memory_utilization"),
                     ({"backend": "vllm", "max_model_len": 0}, "engine.max_model_len"),
                     ({"backend": "hf", "max_batch_size": 0}, "engine.max_batch_size"),
                     ({"backend": "hf", "dtype": "int4"}, "engine.dtype"),
                     ({"backend": "hf", "kv_cache_mib": 0}, "engine.kv_cache_mib"),
                     ({"backend": "simulated", "token_delay_ms": -1}, "engine.token_delay_ms")]:
        with pytest.raises(ConfigError, match=key):
            parse_model_config(tmp_path, {"engine": raw})


async def test_a_backend_that_is_recovering_refuses_work_as_not_ready() -> None:
    backend = ScriptedBackend()
    core, _ = await started(backend)
    backend.unavailable_reason = "restarting after a failure"
    assert core.unavailable() == "restarting after a failure"
    with pytest.raises(NotReady, match="restarting after a failure"):
        core.submit(prompt())
    assert backend.requests == []
    backend.unavailable_reason = None
    assert (await collect(core.submit(prompt())))[-1].finish_reason == "stop"
