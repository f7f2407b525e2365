"""CPU per HTTP request, in process and without sockets: the daemon's /predict against a bare
aiohttp echo handler, on the same aiohttp and uvloop.

Raw HTTP/1.1 requests are fed straight to each app's protocol object, one at a time on one
keep-alive connection, and the process's CPU time is divided by the number of requests.
With no sockets, no load generator and no second process, the figures move by a few
tenths of a microsecond between runs, where `bench_http.py`'s throughput ratios move by a
few percent; use this to see whether a change to the hot path helps, and `bench_http.py`
for the figure the issue's target is about (a socket round trip adds ~13 us to both sides
there, and under 16 connections the daemon's share roughly doubles, in user time, for
reasons not pinned down: a microsecond saved here is ~3 points of that ratio).

    python scripts/bench_http_cpu.py --rounds 3 --requests 50000
    python scripts/bench_http_cpu.py --profile      # cProfile of the daemon's side, top 40
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon import logs  # noqa: E402
from daemon.auth import auth_check  # noqa: E402
from daemon.config import ServerConfig, from_cli  # noqa: E402
from daemon.http.server import HttpServer  # noqa: E402
from daemon.metrics import Metrics  # noqa: E402
from daemon.model.loader import build_pipeline  # noqa: E402
from daemon.observe import CallObserver  # noqa: E402
from tests.harness import EXAMPLES, copy_model  # noqa: E402

BODY = b'{"text": "' + b"x" * 80 + b'", "n": 1}'  # 100 bytes, as bench_http.py sends
REQUEST = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))


class Transport(asyncio.Transport):
    """Swallows what the server writes; wakes the driver when an answer went out."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: asyncio.Future[None] | None = None

    def write(self, data: Any) -> None:
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(None)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def bare_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/predict", echo)
    return app


async def daemon_app(model_dir: Path) -> web.Application:
    config = from_cli(model_dir, ServerConfig(host="127.0.0.1", http_port=0, grpc_port=0))
    metrics = Metrics()
    pipeline = build_pipeline(config, metrics)
    await pipeline.load()
    return HttpServer(pipeline, config, metrics, CallObserver(metrics),
                      auth_check(config.server.api_key), close_grace_s=0).app()


async def cpu_per_request(app: web.Application, requests: int,
                          profile: cProfile.Profile | None = None) -> float:
    """Microseconds of process CPU per request, after a warm-up."""
    # The daemon's own runner settings (daemon/http/server.py), so both sides run alike.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    assert runner.server is not None
    protocol = runner.server()
    transport = Transport()
    protocol.connection_made(transport)
    loop = asyncio.get_running_loop()

    async def one() -> None:
        transport.answered = loop.create_future()
        protocol.data_received(REQUEST)
        await transport.answered

    for _ in range(2000):
        await one()
    if profile is not None:
        profile.enable()
    started = time.process_time()
    for _ in range(requests):
        await one()
    spent = time.process_time() - started
    if profile is not None:
        profile.disable()
    protocol.connection_lost(None)
    await runner.cleanup()
    return spent / requests * 1e6


async def main_async(args: argparse.Namespace) -> None:
    logs.configure("WARNING", "text", access=False)  # as bench_http.py: no access log
    with tempfile.TemporaryDirectory() as tmp:
        echo = EXAMPLES / "echo"
        model_dir = copy_model(Path(tmp), echo, (echo / "config.yaml").read_text())
        if args.profile:
            profile = cProfile.Profile()
            await cpu_per_request(await daemon_app(model_dir), args.requests, profile)
            pstats.Stats(profile).sort_stats("tottime").print_stats(40)
            return
        results: dict[str, list[float]] = {"bare": [], "daemon": []}
        for _ in range(args.rounds):
            results["bare"].append(await cpu_per_request(bare_app(), args.requests))
            results["daemon"].append(
                await cpu_per_request(await daemon_app(model_dir), args.requests))
    bare, daemon = (statistics.median(results[k]) for k in ("bare", "daemon"))
    for name, values in results.items():
        print(f"{name:6s} {statistics.median(values):6.2f} us/request  "
              f"all={[round(v, 2) for v in values]}")
    print(f"daemon adds {daemon - bare:.2f} us/request ({daemon / bare:.2f}x the bare "
          "handler's CPU)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--profile", action="store_true",
                        help="profile the daemon's side instead of comparing")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        pass
    else:
        uvloop.install()  # as the daemon and bench_http.py's bare server
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
