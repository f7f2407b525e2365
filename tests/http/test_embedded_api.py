"""`twinserve serve` with no directory: the /v1 routes answered by the real embedded models
(SmolLM2-135M-Instruct for text, all-MiniLM-L6-v2 for embeddings), through the official SDKs.

The LLM makes ~10 tokens/s on 2 cores, so every request asks for a handful of tokens.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import StartDaemon
from tests.harness import DaemonProcess
from tests.scrape import wait_for_metric

pytest.importorskip("transformers", reason="the embedded models need the `hf` extra")

FRANCE: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def daemon(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(None)


@pytest.fixture(scope="module")
def client(daemon: DaemonProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{daemon.http_url}/v1", api_key="any", max_retries=0,
                       timeout=60) as c:
        yield c


def test_chat_answers_through_the_chat_template(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="smollm2", messages=FRANCE,
                                           max_tokens=8, temperature=0)
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.model == "smollm2-135m-instruct"
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8


def test_chat_stream(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="m", messages=FRANCE, max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert "Paris" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 5


def test_completion_continues_a_raw_prompt(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="m", prompt="One, two, three,", max_tokens=3,
                                      temperature=0)
    assert reply.choices[0].text.strip()
    assert reply.usage is not None and reply.usage.completion_tokens == 3


def test_responses_ends_completed(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="m", input="Say just: yes", max_output_tokens=8,
                                     temperature=0, stream=True)
    events = list(stream)
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text.strip()


def test_anthropic_messages(daemon: DaemonProcess) -> None:
    with anthropic.Anthropic(base_url=daemon.http_url, api_key="any", timeout=60) as client:
        # This SDK has no temperature argument; the API still takes it.
        reply = client.messages.create(model="m", max_tokens=8, extra_body={"temperature": 0},
                                       system="You are a helpful assistant.",
                                       messages=FRANCE)
        assert "Paris" in reply.content[0].text  # type: ignore[union-attr]
        with client.messages.stream(model="m", max_tokens=8, extra_body={"temperature": 0},
                                    messages=FRANCE,
                                    stop_sequences=["Paris"]) as stream:
            final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "Paris")
    assert "Paris" not in final.content[0].text  # type: ignore[union-attr]


def test_leaving_a_stream_stops_the_real_backend(daemon: DaemonProcess) -> None:
    with httpx.stream("POST", f"{daemon.http_url}/v1/chat/completions", timeout=60, json={
            "messages": FRANCE, "max_tokens": 200, "stream": True}) as reply:
        lines = reply.iter_lines()
        next(lines)
    wait_for_metric(daemon, "twinserve_engine_in_flight", 0, 5)


# -- embeddings ---------------------------------------------------------------------------------


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))  # the vectors are unit length


def test_embeddings_batch_float_and_base64(client: openai.OpenAI) -> None:
    texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell today."]
    floats = client.embeddings.create(model="m", input=texts, encoding_format="float")
    packed = client.embeddings.create(model="m", input=texts)  # the SDK asks for base64
    vectors = [d.embedding for d in floats.data]
    assert [len(v) for v in vectors] == [384] * 3
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)
    for a, b in zip(vectors, (d.embedding for d in packed.data)):
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-6  # float32 on the wire
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert floats.usage.prompt_tokens > 10


def test_single_embedding_and_dimensions(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model="m", input="hello", dimensions=384)
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="m", input="hello", dimensions=128)
    assert caught.value.param == "dimensions"
