"""Streamed chat completion: time to first token and total time, through the daemon's
/v1/chat/completions vs the same backend called directly in this process.

Two backends, each in alternating rounds (direct, daemon, direct, ...) so machine noise
hits both sides alike:
- hf: the embedded SmolLM2-135M-Instruct, greedy, the same messages and token count. The
  real thing, but its own jitter (tens of ms on 2 shared cores) hides a 2 ms difference
  unless many rounds are run.
- simulated: a backend that only sleeps `--delay-ms` per token, so what the daemon adds
  (HTTP, pipeline, engine core, OpenAI chunk encoding, SSE parsing in this process) is
  all that differs, measured without a model's noise on top. A third side, "bare", is a
  bare aiohttp handler in its own process that sleeps the same way and writes the same
  chunks: the cost of any HTTP server at all, which the daemon cannot go below.

The HTTP sides are driven by a minimal keep-alive client on asyncio streams (`--client raw`),
so the figures are the servers' rather than a client library's; `--client httpx` shows what
httpx adds on top (about 1.5 ms of time to first token on these machines).

    python scripts/bench_api.py --rounds 12 --tokens 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from daemon.config import default_cache_dir  # noqa: E402
from daemon.engine.cancel import CancelSignal  # noqa: E402
from daemon.engine.generation import GenerationRequest  # noqa: E402
from daemon.engine.backend import Backend  # noqa: E402
from daemon.engine.hf import HfBackend  # noqa: E402
from daemon.engine.sampling import SamplingParams  # noqa: E402
from daemon.engine.simulated import SimulatedBackend  # noqa: E402
from tests.harness import DaemonProcess  # noqa: E402

MESSAGES = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


class Run:
    """One streamed generation: seconds to the first text, seconds in all, tokens."""

    def __init__(self, first: float, total: float, tokens: int) -> None:
        self.first, self.total, self.tokens = first, total, tokens


async def direct(backend: Backend, tokens: int) -> Run:
    request = GenerationRequest(messages=MESSAGES,
                                sampling=SamplingParams(max_tokens=tokens, temperature=0.0))
    start = time.perf_counter()
    first = 0.0
    generated = 0
    async for delta in backend.generate(request, CancelSignal(asyncio.get_running_loop())):
        if delta.text and not first:
            first = time.perf_counter() - start
        generated += len(delta.token_ids)
    return Run(first, time.perf_counter() - start, generated)


def _chat_body(tokens: int) -> dict[str, Any]:
    return {"model": "m", "messages": MESSAGES, "max_tokens": tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}


class _Timing:
    """Reads SSE lines as they come and notes the first content and the usage."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first = 0.0
        self.generated = 0

    def line(self, line: str) -> None:
        if not line.startswith("data: {"):
            return
        chunk = json.loads(line[6:])
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content") and not self.first:
            self.first = time.perf_counter() - self.start
        if chunk.get("usage"):
            self.generated = chunk["usage"]["completion_tokens"]

    def run(self) -> Run:
        return Run(self.first, time.perf_counter() - self.start, self.generated)


def through_httpx(client: httpx.Client, url: str, tokens: int) -> Run:
    timing = _Timing()
    with client.stream("POST", f"{url}/v1/chat/completions", json=_chat_body(tokens)) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            timing.line(line)
    return timing.run()


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: a request, then the chunked
    SSE answer read as it arrives. It costs a fraction of httpx's per-request Python, so
    what it measures is the server's time rather than a client library's."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def chat(self, tokens: int) -> Run:
        if self._conn is None:
            self._conn = await asyncio.open_connection("127.0.0.1", self._port)
            self._conn[1].get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader, writer = self._conn
        body = json.dumps(_chat_body(tokens)).encode()
        timing = _Timing()
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"daemon answered {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # headers: the body is chunked (streams always are)
        pending = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                return timing.run()
            pending += data[:-2]
            *lines, pending = pending.split(b"\n")
            for line in lines:
                timing.line(line.decode())


Side = Callable[[int], Awaitable[Run]]


async def compare(sides: dict[str, Side], rounds: int, tokens: int, pause: float) -> None:
    for _ in range(2):  # warm-up, every side
        for side in sides.values():
            await side(4)
    runs: dict[str, list[Run]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, side in sides.items():
            # A pause before each side: on a 2-core machine the other process's OpenMP
            # threads keep spinning for a moment after their work, stealing a core.
            await asyncio.sleep(pause)
            runs[name].append(await side(tokens))
    report(runs)


def http_side(url: str, client: str, httpx_client: httpx.Client) -> Side:
    """`client` "raw": RawClient; "httpx": httpx, blocking the loop (nothing else runs)."""
    raw = RawClient(int(url.rsplit(":", 1)[1]))

    async def side(tokens: int) -> Run:
        if client == "raw":
            return await raw.chat(tokens)
        return through_httpx(httpx_client, url, tokens)
    return side


def direct_side(backend: Backend) -> Side:
    async def side(tokens: int) -> Run:
        return await direct(backend, tokens)
    return side


async def simulated(args: argparse.Namespace) -> None:
    backend = SimulatedBackend(token_delay_ms=args.delay_ms)
    await backend.start()
    port = _free_port()
    bare = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(port),
                             "--delay-ms", str(args.delay_ms)])
    try:
        with tempfile.TemporaryDirectory() as folder, httpx.Client(timeout=300) as client:
            (Path(folder) / "config.yaml").write_text(
                "model_name: bench-simulated\nengine:\n  backend: simulated\n"
                f"  token_delay_ms: {args.delay_ms}\n")
            with DaemonProcess(Path(folder), env={"PYTHONWARNINGS": "ignore"}) as daemon:
                daemon.wait_ready(timeout=60)
                _wait_port(port)
                await compare({"direct": direct_side(backend),
                               "daemon": http_side(daemon.http_url, args.client, client),
                               "bare": http_side(f"http://127.0.0.1:{port}", args.client,
                                                 client)},
                              args.rounds, args.sim_tokens, 0.0)
    finally:
        bare.terminate()
        bare.wait()


async def hf(args: argparse.Namespace) -> None:
    backend = HfBackend(model=None, cache_dir=default_cache_dir(os.environ))
    await backend.start()
    with DaemonProcess(None, env={"PYTHONWARNINGS": "ignore"}) as daemon, \
            httpx.Client(timeout=300) as client:
        daemon.wait_ready(timeout=300)
        await compare({"direct": direct_side(backend),
                       "daemon": http_side(daemon.http_url, args.client, client)},
                      args.rounds, args.tokens, args.pause)
    await backend.close()


async def main_async(args: argparse.Namespace) -> None:
    if args.backend in ("simulated", "both"):
        print(f"== simulated backend, {args.delay_ms} ms a token, {args.sim_tokens} tokens")
        await simulated(args)
    if args.backend in ("hf", "both"):
        print(f"== hf backend, embedded SmolLM2-135M-Instruct, {args.tokens} tokens")
        await hf(args)


def serve_bare(port: int, delay_ms: float) -> None:
    """A bare aiohttp handler streaming chat chunks at the simulated backend's pace."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        response.enable_chunked_encoding()
        chunk: dict[str, Any] = {"id": "x", "object": "chat.completion.chunk", "created": 0,
                                 "model": "bare", "choices": [
                                     {"index": 0, "delta": {"content": "word"},
                                      "finish_reason": None}]}
        for position in range(body["max_tokens"]):
            await asyncio.sleep(delay_ms / 1000)
            if position == 0:
                await response.prepare(request)
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        usage = {"completion_tokens": body["max_tokens"]}
        await response.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode()
                             + b"\n\ndata: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"bare server not listening on {port}")


def report(runs: dict[str, list[Run]]) -> None:
    for name, values in runs.items():
        print(f"{name:6s} tokens={sorted({r.tokens for r in values})} "
              f"ttft_ms median={statistics.median(r.first for r in values) * 1e3:.1f} "
              f"total_ms median={statistics.median(r.total for r in values) * 1e3:.1f} "
              f"ttft_ms all={[round(r.first * 1e3, 1) for r in values]}")
    # Paired differences: each run against the baseline run of the same round.
    for side, base in (("daemon", "direct"), ("daemon", "bare"), ("bare", "direct")):
        if side not in runs or base not in runs:
            continue
        pairs = list(zip(runs[base], runs[side]))
        ttft = [(b.first - a.first) * 1e3 for a, b in pairs]
        total = [b.total / a.total - 1 for a, b in pairs]
        per_token = [(b.total - a.total) * 1e3 / max(a.tokens, 1) for a, b in pairs]
        print(f"{side} vs {base}: ttft {statistics.median(ttft):+.2f} ms, total time "
              f"{statistics.median(total) * 100:+.2f} % ({statistics.median(per_token):+.3f} "
              f"ms a token) [medians of paired differences]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("hf", "simulated", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=32, help="tokens per hf generation")
    parser.add_argument("--sim-tokens", type=int, default=100,
                        help="tokens per simulated generation")
    parser.add_argument("--delay-ms", type=float, default=5.0,
                        help="simulated backend: milliseconds a token")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds idle before each "
                        "hf run")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="HTTP client: a minimal one on asyncio streams (default), or "
                        "httpx, whose own per-request cost then counts against the servers")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    try:
        # The daemon runs on uvloop, whose timers tick in whole milliseconds; the direct side
        # runs on it too, or the simulated backend's sleeps would differ between the sides.
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare, args.delay_ms)
        return 0
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
