"""Benchmark sessions: echo round trips over open sessions, the daemon against bare servers.

    python scripts/bench_session.py [--rounds 5] [--duration 3] [--sessions 1,16]

The daemon serves a model whose `websocket` method echoes each text frame; the bare servers
do the same with nothing around it: an aiohttp WebSocket handler, and a
grpc.aio bidirectional servicer on the same Session RPC. One client per transport drives
both (aiohttp's WebSocket client; a grpc.aio stream): each of N sessions sends a small text
frame and waits for its echo, over and over, for --duration seconds. Servers are pinned to
CPU 0 and the client to CPU 1 (taskset); runs alternate bare/daemon, swapping who goes
first each round, because these machines are noisy. Reported: round trips per second and
the round trip's p50/p99 per transport and session count, and the daemon's ratio to bare
(round trips/s, median of the same-round ratios).

    python scripts/bench_session.py --bare-server   (internal: run both bare servers)
    python scripts/bench_session.py --client ...    (internal: drive one server)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import grpc.aio
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import start_pinned  # noqa: E402
from twinserve_wire import service  # noqa: E402
from twinserve_wire.proto.v1.model_pb2 import SessionFrame  # noqa: E402

FRAME = "x" * 64  # a small text frame
MODEL = """
from daemon import WebSocket, WebSocketDisconnect


class Model:
    async def websocket(self, websocket: WebSocket) -> None:
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            pass
"""


# -- the bare servers -----------------------------------------------------------------------


async def _bare_websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type is aiohttp.WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws


async def _bare_session(frames: Any, context: Any) -> Any:
    async for frame in frames:
        yield frame


async def _serve_bare() -> None:
    app = web.Application()
    app.router.add_get("/v1/websocket", _bare_websocket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    http_port = runner.addresses[0][1]
    server = grpc.aio.server()
    handlers = {service.SESSION: grpc.stream_stream_rpc_method_handler(
        _bare_session, SessionFrame.FromString, SessionFrame.SerializeToString)}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.SERVICE_NAME, handlers),))
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"bare http=127.0.0.1:{http_port} grpc=127.0.0.1:{grpc_port}", flush=True)
    await server.wait_for_termination()


# -- the client -------------------------------------------------------------------------------


async def _websocket_session(port: int, until: float, times: list[float]) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"ws://127.0.0.1:{port}/v1/websocket") as ws:
            while (started := time.perf_counter()) < until:
                await ws.send_str(FRAME)
                answer = await ws.receive()
                assert answer.data == FRAME, answer
                times.append(time.perf_counter() - started)


async def _grpc_session(port: int, until: float, times: list[float]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        session = channel.stream_stream(service.method_path(service.SESSION),
                                        request_serializer=SessionFrame.SerializeToString,
                                        response_deserializer=SessionFrame.FromString)
        call = session()
        frame = SessionFrame(text=FRAME)
        while (started := time.perf_counter()) < until:
            await call.write(frame)
            answer = await call.read()
            assert isinstance(answer, SessionFrame) and answer.text == FRAME, answer
            times.append(time.perf_counter() - started)
        await call.done_writing()
        call.cancel()


async def _drive(transport: str, port: int, sessions: int, duration: float) -> dict[str, float]:
    one = _websocket_session if transport == "http" else _grpc_session
    warm: list[float] = []
    await asyncio.gather(*(one(port, time.perf_counter() + 0.5, warm) for _ in range(sessions)))
    times: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(one(port, started + duration, times) for _ in range(sessions)))
    elapsed = time.perf_counter() - started
    times.sort()
    return {"rate": len(times) / elapsed, "p50_ms": times[len(times) // 2] * 1000,
            "p99_ms": times[int(len(times) * 0.99)] * 1000}


# -- running it -------------------------------------------------------------------------------


def _measure(transport: str, port: int, sessions: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        ["taskset", "-c", "1", sys.executable, __file__, "--client", transport, str(port),
         str(sessions), str(duration)], capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--sessions", default="1,16", help="session counts, comma-separated")
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop  # the daemon runs on uvloop; so do the bare servers and the client

    if args.bare_server:
        uvloop.run(_serve_bare())
        return 0
    if args.client:
        transport, port, sessions, duration = args.client
        print(json.dumps(uvloop.run(_drive(transport, int(port), int(sessions),
                                           float(duration)))))
        return 0

    model_dir = Path(tempfile.mkdtemp()) / "echo"
    (model_dir / "model").mkdir(parents=True)
    (model_dir / "model" / "model.py").write_text(MODEL)
    (model_dir / "config.yaml").write_text("runtime:\n  predict_concurrency: 64\n")
    daemon, listening = start_pinned(
        [sys.executable, "-m", "daemon", "serve", str(model_dir),
         "--http-port", "0", "--grpc-port", "0"], r"listening http=\S+:(\d+) grpc=\S+:(\d+)")
    bare, bare_ports = start_pinned([sys.executable, __file__, "--bare-server"],
                              r"bare http=\S+:(\d+) grpc=\S+:(\d+)")
    ports = {("daemon", "http"): int(listening.group(1)),
             ("daemon", "grpc"): int(listening.group(2)),
             ("bare", "http"): int(bare_ports.group(1)), ("bare", "grpc"): int(bare_ports.group(2))}
    time.sleep(1.0)  # the daemon logs "listening" before its model has loaded
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    try:
        for round_no in range(1, args.rounds + 1):
            for sessions in (int(n) for n in args.sessions.split(",")):
                for transport in ("http", "grpc"):
                    pair = ["bare", "daemon"] if round_no % 2 else ["daemon", "bare"]
                    for server in pair:
                        result = _measure(transport, ports[(server, transport)], sessions,
                                          args.duration)
                        results.setdefault((server, transport, sessions), []).append(result)
                        print(f"round {round_no} {transport} {sessions:3} sessions {server:6} "
                              f"{result['rate']:8.0f} round trips/s  p50 "
                              f"{result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms",
                              flush=True)
    finally:
        for proc in (daemon, bare):
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(model_dir.parent)
    print()
    for (server, transport, sessions), runs in results.items():
        if server != "daemon":
            continue
        bare_runs = results[("bare", transport, sessions)]
        ratios = [d["rate"] / b["rate"] for d, b in zip(runs, bare_runs)]

        def median(runs: list[dict[str, float]], key: str) -> float:
            return statistics.median(run[key] for run in runs)

        print(f"{transport:4} {sessions:3} sessions: bare {median(bare_runs, 'rate'):7.0f}/s "
              f"(p50 {median(bare_runs, 'p50_ms'):.3f} ms, p99 {median(bare_runs, 'p99_ms'):.3f}"
              f" ms), daemon {median(runs, 'rate'):7.0f}/s (p50 {median(runs, 'p50_ms'):.3f} "
              f"ms, p99 {median(runs, 'p99_ms'):.3f} ms): ratio "
              f"{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
