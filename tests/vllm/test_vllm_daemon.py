"""The vllm backend for real: vLLM's CPU build serving the embedded model in a real daemon,
over both transports. These need `.venv-vllm` (`scripts/install.sh --vllm`) and run with
`scripts/test.sh --vllm`; elsewhere the module is skipped, saying so.

What vLLM itself holds is read from its own gauges, which the daemon exports at /metrics
(`vllm:num_requests_running`, `vllm:num_requests_waiting`), so a cancel is checked where
it matters: the request is gone from vLLM's scheduler, not only from ours.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm is not installed here: run scripts/test.sh --vllm (scripts/install.sh "
                "--vllm makes .venv-vllm)", allow_module_level=True)

from clients import GrpcClient, TwinserveError  # noqa: E402
from tests.conftest import StartDaemon  # noqa: E402
from tests.harness import MODELS, DaemonProcess  # noqa: E402
from tests.scrape import metric  # noqa: E402

LONG = {"prompt": "Count from one to a thousand:", "max_tokens": 1500, "ignore_eos": True}
GONE_BOUND_S = 2.0  # vLLM drops an aborted request within a step (~25 ms here); CI is slow


@pytest.fixture(scope="module")
def vllm(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "engine_vllm", timeout=240)


def vllm_gauge(daemon: DaemonProcess, name: str) -> float:
    """vLLM's own gauge, e.g. vllm:num_requests_running (labelled by engine and model)."""
    text = httpx.get(f"{daemon.http_url}/metrics", timeout=5).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name + "{")]
    assert values, f"the daemon exports no {name}"
    return sum(values)


def wait_until_vllm_idle(daemon: DaemonProcess, bound: float = GONE_BOUND_S) -> float:
    """Seconds until vLLM runs and queues nothing, and our engine has nothing in flight."""
    started = time.monotonic()
    while (vllm_gauge(daemon, "vllm:num_requests_running")
           + vllm_gauge(daemon, "vllm:num_requests_waiting")
           + metric(daemon, "twinserve_engine_in_flight")):
        if time.monotonic() - started > bound:
            raise AssertionError(f"vLLM still holds the request after {bound}s")
        time.sleep(0.01)
    return time.monotonic() - started


def wait_until_vllm_runs(daemon: DaemonProcess) -> None:
    deadline = time.monotonic() + 30
    while vllm_gauge(daemon, "vllm:num_requests_running") < 1:
        assert time.monotonic() < deadline, "vLLM never started the request"
        time.sleep(0.01)


def transformers_greedy(prompt: str, tokens: int) -> str:
    """The same model's greedy continuation from transformers, in this process."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from daemon.config import default_cache_dir
    from daemon.engine.embedded import converted_dir

    source = converted_dir(default_cache_dir(os.environ))
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=tokens, do_sample=False)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert isinstance(text, str)
    return text


def test_greedy_output_matches_transformers(vllm: DaemonProcess) -> None:
    prompt = "The capital of France is"
    expected = transformers_greedy(prompt, 8)
    body = {"model": "m", "prompt": prompt, "max_tokens": 8, "temperature": 0}
    answer = httpx.post(f"{vllm.http_url}/v1/completions", json=body, timeout=60).json()
    assert answer["choices"][0]["text"] == expected
    assert answer["usage"]["completion_tokens"] == 8
    with GrpcClient(vllm.grpc_target) as client:
        assert client.predict(body, route="completions")["choices"][0]["text"] == expected


def test_chat_streams_over_both_transports(vllm: DaemonProcess) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": 12, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{vllm.http_url}/v1/chat/completions", json=body,
                      timeout=60) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) > 3
    with GrpcClient(vllm.grpc_target) as client:
        chunks = list(client.predict_stream(body, route="chat_completions"))
    assert len(chunks) > 2
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_an_http_client_leaving_mid_stream_aborts_the_vllm_request(
        vllm: DaemonProcess) -> None:
    cancelled = metric(vllm, "twinserve_engine_cancelled_total")
    with httpx.stream("POST", f"{vllm.http_url}/predict", json={**LONG, "stream": True},
                      timeout=60) as response:
        next(response.iter_raw())
        wait_until_vllm_runs(vllm)
    wait_until_vllm_idle(vllm)
    assert metric(vllm, "twinserve_engine_cancelled_total") == cancelled + 1


def test_a_grpc_cancel_mid_stream_aborts_the_vllm_request(vllm: DaemonProcess) -> None:
    cancelled = metric(vllm, "twinserve_engine_cancelled_total")
    with GrpcClient(vllm.grpc_target) as client:
        chunks = client.predict_stream({**LONG, "stream": True})
        next(chunks)
        wait_until_vllm_runs(vllm)
        chunks.close()  # cancels the call
    wait_until_vllm_idle(vllm)
    assert metric(vllm, "twinserve_engine_cancelled_total") == cancelled + 1


def test_a_grpc_deadline_aborts_the_vllm_request(vllm: DaemonProcess) -> None:
    cancelled = metric(vllm, "twinserve_engine_cancelled_total")
    with GrpcClient(vllm.grpc_target, timeout=1.0) as client, \
            pytest.raises(TwinserveError) as info:
        client.predict(LONG)
    assert info.value.code == "DEADLINE_EXCEEDED"
    wait_until_vllm_idle(vllm)
    assert metric(vllm, "twinserve_engine_cancelled_total") == cancelled + 1


def test_a_unary_http_client_leaving_aborts_the_vllm_request(vllm: DaemonProcess) -> None:
    cancelled = metric(vllm, "twinserve_engine_cancelled_total")
    body = b'{"prompt": "Count:", "max_tokens": 1500, "ignore_eos": true}'
    with socket.create_connection(("127.0.0.1", vllm.http_port)) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        wait_until_vllm_runs(vllm)
    wait_until_vllm_idle(vllm)
    assert metric(vllm, "twinserve_engine_cancelled_total") == cancelled + 1


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_bad_input_is_invalid_argument(vllm: DaemonProcess, transport: str) -> None:
    too_long = {"prompt": "word " * 3000, "max_tokens": 4}
    too_many = {"prompt": "hi", "max_tokens": 5000}
    for body, field in ((too_long, "prompt"), (too_many, "max_tokens")):
        if transport == "http":
            answer = httpx.post(f"{vllm.http_url}/predict", json=body, timeout=30)
            assert answer.status_code == 400 and field in answer.json()["error"]["message"]
        else:
            with GrpcClient(vllm.grpc_target) as client, \
                    pytest.raises(TwinserveError) as info:
                client.predict(body)
            assert info.value.code == "INVALID_ARGUMENT" and field in info.value.message
    assert wait_until_vllm_idle(vllm) >= 0  # nothing was left running


def test_the_embedded_model_serves_with_backend_vllm(
        start_daemon_per_test: StartDaemon) -> None:
    """The README's `twinserve serve --backend vllm`: the built-in config, no model dir."""
    daemon = start_daemon_per_test(None, args=["--backend", "vllm"], timeout=240)
    prompt = "The capital of France is"
    body = {"model": "m", "prompt": prompt, "max_tokens": 8, "temperature": 0}
    answer = httpx.post(f"{daemon.http_url}/v1/completions", json=body, timeout=60).json()
    assert answer["choices"][0]["text"] == transformers_greedy(prompt, 8)
    daemon.wait_for_log("vllm engine ready")


def _stream_until_cut(daemon: DaemonProcess) -> Iterator[bytes]:
    with httpx.stream("POST", f"{daemon.http_url}/predict", json={**LONG, "stream": True},
                      timeout=60) as response:
        yield from response.iter_raw()


def test_the_drain_aborts_vllm_requests_and_the_engine_shuts_down(
        start_daemon_per_test: StartDaemon) -> None:
    """On SIGTERM a stream still running after runtime.drain_timeout_s (1 s) is cut, its vLLM
    request aborted: vLLM's shutdown would otherwise hang on it."""
    daemon = start_daemon_per_test(MODELS / "engine_vllm", timeout=240)
    chunks = _stream_until_cut(daemon)
    next(chunks)
    wait_until_vllm_runs(daemon)
    daemon.proc.send_signal(signal.SIGTERM)
    with pytest.raises(httpx.HTTPError):
        for _ in chunks:
            pass
    assert daemon.wait_exit(timeout=30) == 0
