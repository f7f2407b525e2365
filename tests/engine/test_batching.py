"""Continuous batching on the embedded model, through a real daemon and real clients.

Requests that run at the same time share the hf backend's batch; each keeps its own
settings, and one leaving does not disturb the others. Metrics are read from GET /metrics.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from clients import TwinserveError
from tests.conftest import StartDaemon
from tests.harness import DaemonProcess
from tests.transports import TRANSPORTS, connect

pytest.importorskip("transformers", reason="the hf backend needs the `hf` extra")

PROMPT = "The capital of France is"
WAIT_S = 60.0


@pytest.fixture(scope="module")
def daemon(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(None, timeout=300)


def sample(daemon: DaemonProcess, name: str) -> float:
    for line in httpx.get(f"{daemon.http_url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not exported")


def batch_size(daemon: DaemonProcess) -> float:
    return sample(daemon, "twinserve_engine_batch_size")


def wait_for_batch(daemon: DaemonProcess, size: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while batch_size(daemon) < size:
        assert time.monotonic() < deadline, f"the batch never reached {size} requests"
        time.sleep(0.01)


def complete(daemon: DaemonProcess, body: dict[str, Any],
             transport: str = "http") -> dict[str, Any]:
    client = connect(daemon, transport, timeout=WAIT_S)
    try:
        answer: dict[str, Any] = client.completions(body)  # type: ignore[attr-defined]
        return answer
    finally:
        client.close()


def concurrently(daemon: DaemonProcess, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answers to `bodies`, sent at once; checks that they ran in one batch."""
    answers: list[dict[str, Any] | BaseException] = [RuntimeError("no answer")] * len(bodies)

    def send(index: int) -> None:
        try:
            answers[index] = complete(daemon, bodies[index])
        except BaseException as exc:
            answers[index] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    wait_for_batch(daemon, len(bodies))
    for thread in threads:
        thread.join(WAIT_S)
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return answers  # type: ignore[return-value]


def text(answer: dict[str, Any]) -> str:
    value: str = answer["choices"][0]["text"]
    return value


def test_concurrent_requests_share_one_batch_and_keep_their_own_lengths(
        daemon: DaemonProcess) -> None:
    lengths = [24, 32, 40, 48]
    answers = concurrently(daemon, [
        {"prompt": f"{PROMPT} {i}", "max_tokens": n, "ignore_eos": True, "temperature": 0}
        for i, n in enumerate(lengths)])
    assert [a["usage"]["completion_tokens"] for a in answers] == lengths
    assert all(a["choices"][0]["finish_reason"] == "length" for a in answers)
    assert batch_size(daemon) == 0


def test_greedy_output_in_a_batch_equals_the_same_prompt_alone(daemon: DaemonProcess) -> None:
    greedy = {"prompt": PROMPT, "max_tokens": 24, "temperature": 0, "ignore_eos": True}
    alone = text(complete(daemon, greedy))
    others = [{"prompt": f"Tell me about the number {i}.", "max_tokens": 40, "temperature": 1.0,
               "top_p": 0.9, "top_k": 40, "ignore_eos": True} for i in range(3)]
    answers = concurrently(daemon, [greedy, *others])
    assert text(answers[0]) == alone


def test_a_seeded_sample_is_the_same_alone_and_in_a_batch(daemon: DaemonProcess) -> None:
    seeded = {"prompt": "Once upon a time", "max_tokens": 24, "temperature": 1.0, "seed": 7,
              "ignore_eos": True}
    alone = text(complete(daemon, seeded))
    assert text(complete(daemon, {**seeded, "seed": 8})) != alone
    answers = concurrently(daemon, [seeded, {**seeded, "seed": 8, "prompt": "Long ago"},
                                    {"prompt": PROMPT, "max_tokens": 40, "temperature": 0,
                                     "ignore_eos": True}])
    assert text(answers[0]) == alone


def test_stops_and_min_tokens_hold_per_request_in_one_batch(daemon: DaemonProcess) -> None:
    chat = [{"role": "user", "content": "Say hi."}]
    free = {"messages": chat, "max_tokens": 40, "temperature": 0}
    client = connect(daemon, "http", timeout=WAIT_S)
    try:
        natural = client.chat_completions(free)  # type: ignore[attr-defined]
    finally:
        client.close()
    natural_tokens = natural["usage"]["completion_tokens"]
    assert natural["choices"][0]["finish_reason"] == "stop" and natural_tokens < 40
    greedy = text(complete(daemon, {"prompt": PROMPT, "max_tokens": 8, "temperature": 0}))
    stop_word = greedy.split()[0]  # the first word the model says, cut off by a stop sequence
    answers = concurrently(daemon, [
        {"prompt": PROMPT, "max_tokens": 8, "temperature": 0, "stop": [stop_word]},
        {"prompt": "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n",
         "max_tokens": 40, "min_tokens": 40, "temperature": 0},
        {"prompt": "Count: one, two,", "max_tokens": 30, "temperature": 0, "ignore_eos": True},
    ])
    assert stop_word not in text(answers[0])
    assert answers[0]["choices"][0]["finish_reason"] == "stop"
    assert answers[1]["usage"]["completion_tokens"] == 40  # EOS held back until then
    assert answers[2]["usage"]["completion_tokens"] == 30


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancelling_one_request_leaves_the_rest_of_the_batch_running(
        daemon: DaemonProcess, transport: str) -> None:
    body = {"prompt": PROMPT, "max_tokens": 60, "ignore_eos": True, "temperature": 0}
    results: list[Any] = []
    cancelled = sample(daemon, "twinserve_engine_cancelled_total")

    def finish() -> None:
        results.append(complete(daemon, body, transport))

    others = [threading.Thread(target=finish) for _ in range(2)]
    for thread in others:
        thread.start()
    client = connect(daemon, transport, timeout=WAIT_S)
    leaving = client.completions_stream(body)  # type: ignore[attr-defined]
    next(leaving)
    wait_for_batch(daemon, 3)
    leaving.close()  # the client goes away mid-generation
    client.close()
    deadline = time.monotonic() + WAIT_S
    while batch_size(daemon) > 2:
        assert time.monotonic() < deadline, "the cancelled request stayed in the batch"
        time.sleep(0.01)
    for thread in others:
        thread.join(WAIT_S)
    assert [r["usage"]["completion_tokens"] for r in results] == [60, 60]
    assert sample(daemon, "twinserve_engine_cancelled_total") == cancelled + 1
    assert sample(daemon, "twinserve_engine_in_flight") == 0


LONG_PROMPT = "word " * 9000


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("change", "field"), [
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": 10**9}, "max_tokens"),
    ({"max_tokens": 8190}, "max_tokens"),  # fits no context once the prompt is in
    ({"min_tokens": 9, "max_tokens": 8}, "min_tokens"),
    ({"top_k": -1}, "top_k"),
    ({"stop_token_ids": ["x"]}, "stop_token_ids"),
    ({"ignore_eos": "yes"}, "ignore_eos"),
    ({"repetition_penalty": 1.2}, "repetition_penalty"),  # the hf backend cannot apply it
    ({"prompt": LONG_PROMPT}, "prompt"),
])
def test_bad_generation_input_is_refused_naming_the_field(
        daemon: DaemonProcess, transport: str, change: dict[str, Any], field: str) -> None:
    with pytest.raises(TwinserveError) as caught:
        complete(daemon, {"prompt": PROMPT, "max_tokens": 4, **change}, transport)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert caught.value.message.startswith(f"{field}: "), caught.value.message
    assert "/" not in caught.value.message.split(":", 1)[1]  # no paths or internals
    assert complete(daemon, {"prompt": PROMPT, "max_tokens": 2}, transport)["usage"][
        "completion_tokens"] == 2


def test_the_extras_are_accepted_on_predict_and_chat(daemon: DaemonProcess) -> None:
    extras = {"ignore_eos": True, "min_tokens": 3, "top_k": 5, "seed": 1,
              "stop_token_ids": [], "repetition_penalty": 1.0}
    reply = httpx.post(f"{daemon.http_url}/predict", timeout=WAIT_S,
                       json={"prompt": PROMPT, "max_tokens": 6, **extras})
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] == 6
    reply = httpx.post(f"{daemon.http_url}/v1/chat/completions", timeout=WAIT_S, json={
        "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, **extras})
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] == 6
    reply = httpx.post(f"{daemon.http_url}/v1/completions", timeout=WAIT_S,
                       json={"prompt": PROMPT, "max_tokens": 6, "best_of_n": 2})
    assert reply.status_code == 400 and "best_of_n" in reply.json()["error"]["message"]
