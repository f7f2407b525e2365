"""Soak test: many concurrent streaming clients, some leaving mid-stream, mixed with unary and
/v1 calls, over both transports, against one daemon on the simulated engine backend.

Passes when the only errors are the intended 429 / RESOURCE_EXHAUSTED refusals, nothing is
left in flight at the end, and the daemon's resident memory grew by less than 50 MiB.

    python scripts/soak.py --clients 200 --seconds 60
    python scripts/soak.py --sessions 200 --seconds 60

--sessions soaks sessions instead: that many clients, half over WebSocket and half over the
gRPC Session RPC, each opening sessions one after another with a model's `websocket` method
and exchanging text, binary and JSON frames; one session in five is dropped by its client
without a close. Then no error may be unintended, the sessions gauge and the calls in flight
must be back to 0, and the same memory bound holds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clients import (  # noqa: E402
    AsyncGrpcClient,
    AsyncHttpClient,
    AsyncSession,
    SessionClosed,
    TwinserveError,
)
from tests.harness import DaemonProcess, rss_mib  # noqa: E402

CONFIG = """\
model_name: soak
engine:
  backend: simulated
  token_delay_ms: 10
  max_batch_size: 256
runtime:
  predict_concurrency: 256
  max_queue: 32
server:
  access_log: false
"""
REFUSED = {"RESOURCE_EXHAUSTED"}
SESSION_CONFIG = """\
model_name: soak-sessions
runtime:
  predict_concurrency: 512
server:
  access_log: false
"""
SESSION_MODEL = """\
from daemon import WebSocket, WebSocketDisconnect


class Model:
    async def websocket(self, websocket: WebSocket) -> None:
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if "bytes" in message:
                    await websocket.send_bytes(message["bytes"])
                elif message["text"].startswith("{"):
                    await websocket.send_json({"echo": message["text"]})
                else:
                    await websocket.send_text(message["text"])
        except WebSocketDisconnect:
            pass
"""


class Tally:
    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.unexpected: list[str] = []

    def error(self, kind: str, err: BaseException) -> None:
        code = err.code if isinstance(err, TwinserveError) else type(err).__name__
        if code in REFUSED:
            self.counts[f"{kind}: refused (429)"] += 1
        else:
            self.counts[f"{kind}: unexpected error"] += 1
            if len(self.unexpected) < 10:
                self.unexpected.append(f"{kind}: {code}: {err}")


async def http_stream(http: httpx.AsyncClient, leave_after: int | None, tally: Tally) -> None:
    body = {"prompt": "soak", "max_tokens": 40, "stream": True}
    async with http.stream("POST", "/predict", json=body) as response:
        if response.status_code == 429:
            tally.counts["http stream: refused (429)"] += 1
            return
        if response.status_code != 200:
            await response.aread()
            raise TwinserveError(str(response.status_code), response.text)
        seen = 0
        async for _ in response.aiter_raw():
            seen += 1
            if leave_after is not None and seen >= leave_after:
                tally.counts["http stream: left early"] += 1
                return  # closing the response drops the connection mid-stream
    tally.counts["http stream: ok"] += 1


async def grpc_stream(rpc: AsyncGrpcClient, leave_after: int | None, tally: Tally) -> None:
    chunks = rpc.predict_stream({"prompt": "soak", "max_tokens": 40, "stream": True})
    seen = 0
    try:
        async for _ in chunks:
            seen += 1
            if leave_after is not None and seen >= leave_after:
                tally.counts["grpc stream: left early"] += 1
                return
    finally:
        await chunks.aclose()
    tally.counts["grpc stream: ok"] += 1


async def unary(http: httpx.AsyncClient, rpc: AsyncGrpcClient, tally: Tally) -> None:
    body = {"prompt": "soak", "max_tokens": 8}
    if random.random() < 0.5:
        response = await http.post("/predict", json=body)
        if response.status_code == 429:
            tally.counts["unary: refused (429)"] += 1
            return
        if response.status_code != 200:
            raise TwinserveError(str(response.status_code), response.text)
    else:
        await rpc.predict(body)
    tally.counts["unary: ok"] += 1


async def chat(http: httpx.AsyncClient, tally: Tally) -> None:
    body = {"model": "soak", "max_tokens": 8, "stream": True,
            "messages": [{"role": "user", "content": "soak"}]}
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        text = (await response.aread()).decode()
    if response.status_code == 429:
        tally.counts["v1 chat: refused (429)"] += 1
        return
    if response.status_code != 200 or not text.rstrip().endswith("data: [DONE]"):
        raise TwinserveError(str(response.status_code), text[-300:])
    tally.counts["v1 chat: ok"] += 1


async def client_loop(http: httpx.AsyncClient, rpc: AsyncGrpcClient, until: float,
                      tally: Tally) -> None:
    while time.monotonic() < until:
        roll = random.random()
        leave_after = random.randint(1, 20) if random.random() < 0.2 else None
        kind = ("http stream" if roll < 0.35 else "grpc stream" if roll < 0.7
                else "unary" if roll < 0.9 else "v1 chat")
        try:
            if kind == "http stream":
                await http_stream(http, leave_after, tally)
            elif kind == "grpc stream":
                await grpc_stream(rpc, leave_after, tally)
            elif kind == "unary":
                await unary(http, rpc, tally)
            else:
                await chat(http, tally)
        except (TwinserveError, httpx.HTTPError) as err:
            tally.error(kind, err)


async def soak(daemon: DaemonProcess, clients: int, seconds: float) -> Tally:
    tally = Tally()
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=daemon.http_url, limits=limits, timeout=60) as http, \
            AsyncGrpcClient(daemon.grpc_target, timeout=60) as rpc:
        until = time.monotonic() + seconds
        await asyncio.gather(*(client_loop(http, rpc, until, tally) for _ in range(clients)))
    return tally


async def one_session(session: AsyncSession, kind: str, tally: Tally) -> None:
    """A few frames each way, then a close, or (one time in five) a dropped connection."""
    for _ in range(random.randint(1, 20)):
        roll = random.random()
        if roll < 0.5:
            await session.send_text("hello")
            assert await session.receive_text() == "hello"
        elif roll < 0.8:
            data = random.randbytes(random.randint(1, 4096))
            await session.send_bytes(data)
            assert await session.receive_bytes() == data
        else:
            await session.send_json({"n": random.random()})
            assert "echo" in await session.receive_json()
        await asyncio.sleep(random.random() * 0.05)
    if random.random() < 0.2:
        session.abort()
        tally.counts[f"{kind} session: dropped"] += 1
    else:
        closed = await session.close()
        if closed.code != 1000:
            raise SessionClosed(*closed)
        tally.counts[f"{kind} session: ok"] += 1


async def session_loop(client: AsyncHttpClient | AsyncGrpcClient, kind: str, until: float,
                       tally: Tally) -> None:
    while time.monotonic() < until:
        try:
            session = await client.websocket()
            await one_session(session, kind, tally)
        except (TwinserveError, SessionClosed, AssertionError) as err:
            tally.error(f"{kind} session", err)


async def soak_sessions(daemon: DaemonProcess, clients: int, seconds: float) -> Tally:
    tally = Tally()
    async with AsyncHttpClient(daemon.http_url, timeout=30) as http, \
            AsyncGrpcClient(daemon.grpc_target, timeout=30) as rpc:
        until = time.monotonic() + seconds
        await asyncio.gather(*(session_loop(http if n % 2 else rpc,
                                            "http" if n % 2 else "grpc", until, tally)
                               for n in range(clients)))
    return tally


def in_flight(daemon: DaemonProcess) -> dict[str, float]:
    values = {}
    for line in httpx.get(f"{daemon.http_url}/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith(("twinserve_in_flight", "twinserve_engine_in_flight",
                            "twinserve_sessions{")):
            values[name] = float(value)
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--sessions", type=int, default=None, metavar="CLIENTS",
                        help="soak sessions (a websocket model) with this many clients instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.sessions is None:
            (Path(tmp) / "config.yaml").write_text(CONFIG)
            run, clients = soak, args.clients
        else:
            (Path(tmp) / "config.yaml").write_text(SESSION_CONFIG)
            (Path(tmp) / "model").mkdir()
            (Path(tmp) / "model" / "model.py").write_text(SESSION_MODEL)
            run, clients = soak_sessions, args.sessions
        with DaemonProcess(Path(tmp)) as daemon:
            daemon.wait_ready()
            asyncio.run(run(daemon, 20, 3))  # warm up: imports, pools, first allocations
            rss_before = rss_mib(daemon.proc.pid)
            tally = asyncio.run(run(daemon, clients, args.seconds))
            time.sleep(1)
            left = in_flight(daemon)
            rss_after = rss_mib(daemon.proc.pid)
    for key in sorted(tally.counts):
        print(f"{key:32s} {tally.counts[key]:8d}")
    for line in tally.unexpected:
        print("  unexpected:", line)
    grown = rss_after - rss_before
    print(f"in flight after: {json.dumps(left)}")
    print(f"daemon RSS (with any engine process): {rss_before:.1f} MiB -> "
          f"{rss_after:.1f} MiB ({grown:+.1f} MiB)")
    failed = bool(tally.unexpected) or any(left.values()) or grown >= 50
    print("FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
