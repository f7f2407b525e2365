"""Tokens/s through the daemon vs the hf backend called directly in this process.

Both use the embedded SmolLM2-135M-Instruct, greedy decoding and the same prompt, in
alternating rounds (direct, daemon, direct, ...) so machine noise hits both alike. The
daemon figure is end to end: HTTP request, pipeline, engine core, backend, JSON reply.

    python scripts/bench_engine.py --rounds 4 --tokens 48
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from daemon.config import default_cache_dir  # noqa: E402
from daemon.engine.cancel import CancelSignal  # noqa: E402
from daemon.engine.generation import GenerationRequest  # noqa: E402
from daemon.engine.hf import HfBackend  # noqa: E402
from daemon.engine.sampling import SamplingParams  # noqa: E402
from tests.harness import DaemonProcess  # noqa: E402

PROMPT = "Write a short story about a lighthouse keeper."


async def direct(backend: HfBackend, tokens: int) -> tuple[int, float]:
    request = GenerationRequest(messages=[{"role": "user", "content": PROMPT}],
                                sampling=SamplingParams(max_tokens=tokens, temperature=0.0))
    start = time.perf_counter()
    generated = 0
    async for delta in backend.generate(request, CancelSignal(asyncio.get_running_loop())):
        generated += len(delta.token_ids)
    return generated, time.perf_counter() - start


def through_daemon(url: str, tokens: int) -> tuple[int, float]:
    start = time.perf_counter()
    reply = httpx.post(f"{url}/predict", timeout=300, json={
        "prompt": PROMPT, "max_tokens": tokens, "temperature": 0})
    elapsed = time.perf_counter() - start
    reply.raise_for_status()
    return int(reply.json()["usage"]["completion_tokens"]), elapsed


async def main_async(rounds: int, tokens: int, pause: float) -> None:
    backend = HfBackend(model=None, cache_dir=default_cache_dir(os.environ))
    await backend.start()
    with DaemonProcess(None, env={"PYTHONWARNINGS": "ignore"}) as daemon:
        daemon.wait_ready(timeout=300)
        through_daemon(daemon.http_url, 4)  # warm-up, both sides
        await direct(backend, 4)
        rates: dict[str, list[float]] = {"direct": [], "daemon": []}
        for _ in range(rounds):
            # A pause before each side: on a 2-core machine the other process's OpenMP
            # threads keep spinning for a moment after their work, stealing a core.
            await asyncio.sleep(pause)
            n, seconds = await direct(backend, tokens)
            rates["direct"].append(n / seconds)
            await asyncio.sleep(pause)
            n, seconds = through_daemon(daemon.http_url, tokens)
            rates["daemon"].append(n / seconds)
        for name, values in rates.items():
            print(f"{name:6s} tokens/s median={statistics.median(values):.2f} "
                  f"all={[round(v, 2) for v in values]}")
        ratio = statistics.median(rates["daemon"]) / statistics.median(rates["direct"])
        print(f"daemon/direct = {ratio:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds idle before each run")
    args = parser.parse_args()
    asyncio.run(main_async(args.rounds, args.tokens, args.pause))
    return 0


if __name__ == "__main__":
    sys.exit(main())
