"""HTTP overhead benchmark: twinserve /predict against a bare aiohttp handler, alternated.

Each round starts the server pinned to one core and drives it with wrk pinned to the other,
16 connections, first a 100-byte JSON echo, then a 100-chunk stream. Servers alternate
(twinserve, bare, twinserve, ...) so both see the same machine noise; the report gives the
median of each and the ratios the issue targets.

    python scripts/bench_http.py --rounds 3 --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import EXAMPLES, DaemonProcess  # noqa: E402

PAYLOAD = json.dumps({"text": "x" * 80, "n": 1}).encode()  # 100 bytes (with the stream's n)
STREAM_PAYLOAD = b'{"n": 100}'

BARE_SERVER = r'''
import asyncio, sys
import uvloop
from aiohttp import web

async def echo(request):
    return web.Response(body=await request.read(), content_type="application/json")

async def stream(request):
    spec = await request.json()
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for i in range(int(spec["n"])):
        await response.write(f"chunk {i:04d}\n".encode())
    await response.write_eof()
    return response

app = web.Application()
app.router.add_post("/predict", echo)
app.router.add_post("/stream", stream)
uvloop.install()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
'''


def wrk(url: str, body: bytes, duration: int, connections: int = 16) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s",
         script.name, "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return {"rps": rps, "latency_ms": 1000 * connections / rps}


def start_bare(port: int) -> subprocess.Popen[bytes]:
    # stderr dropped: aiohttp logs every connection wrk cuts off at the end of a run.
    proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", BARE_SERVER, str(port)],
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            httpx.post(f"http://127.0.0.1:{port}/predict", content=b"{}")
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("bare server did not start")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def model_copy(model: str, access_log: bool, root: Path) -> Path:
    """examples/<model> with the access log as asked (the bare handler writes none)."""
    target = root / model
    if not target.exists():
        shutil.copytree(EXAMPLES / model, target)
        config = (target / "config.yaml").read_text()
        (target / "config.yaml").write_text(
            f"{config}\nserver:\n  access_log: {'true' if access_log else 'false'}\n")
    return target


def run_round(duration: int, models: Path, access_log: bool) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for name, model in (("echo", "echo"), ("stream", "streaming")):
        with DaemonProcess(model_copy(model, access_log, models)) as daemon:
            daemon.wait_ready()
            subprocess.run(["taskset", "-a", "-p", "-c", "0", str(daemon.proc.pid)], check=True,
                           capture_output=True)
            body = PAYLOAD if name == "echo" else STREAM_PAYLOAD
            results[f"twinserve_{name}"] = wrk(f"{daemon.http_url}/predict", body, duration)
        port = free_port()
        bare = start_bare(port)
        try:
            path = "/predict" if name == "echo" else "/stream"
            body = PAYLOAD if name == "echo" else STREAM_PAYLOAD
            results[f"bare_{name}"] = wrk(f"http://127.0.0.1:{port}{path}", body, duration)
        finally:
            bare.terminate()
            bare.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--access-log", action="store_true",
                        help="keep the daemon's access log on (default off, like the bare handler)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as models:
        rounds = [run_round(args.duration, Path(models), args.access_log)
                  for _ in range(args.rounds)]
    median = {key: {m: statistics.median(r[key][m] for r in rounds) for m in ("rps", "latency_ms")}
              for key in rounds[0]}
    echo_ratio = median["twinserve_echo"]["rps"] / median["bare_echo"]["rps"]
    stream_ratio = median["twinserve_stream"]["latency_ms"] / median["bare_stream"]["latency_ms"]
    for key, value in median.items():
        print(f"{key:18s} {value['rps']:9.0f} req/s  {value['latency_ms']:7.2f} ms/request")
    print(f"echo throughput: {echo_ratio:.2f}x bare aiohttp (target >= 0.80)")
    print(f"100-chunk stream time: {stream_ratio:.2f}x bare aiohttp (target <= 1.25)")


if __name__ == "__main__":
    main()
