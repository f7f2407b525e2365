"""BodyPrefetch's expiry while its call waits for a slot (daemon/body_prefetch.py), on a
body source whose pieces the test hands over; through a real daemon, tests/test_hostile.py
checks a stalled body refused in the queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from daemon.body_prefetch import LIMIT, BodyPrefetch


async def pieces(queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    while (piece := await queue.get()) is not None:
        yield piece


async def watched(queue: asyncio.Queue[bytes | None], idle_s: float,
                  total_s: float | None) -> tuple[BodyPrefetch, list[bool], float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    prefetch = BodyPrefetch(pieces(queue), loop, started)
    expired: list[bool] = []
    prefetch.expire_if_stalled(idle_s, total_s, expired.append)
    return prefetch, expired, started


async def test_a_body_idle_for_the_idle_limit_expires_counting_from_its_last_piece() -> None:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    prefetch, expired, started = await watched(queue, idle_s=0.2, total_s=None)
    await asyncio.sleep(0.15)
    queue.put_nowait(b"a")  # moves the idle clock
    await asyncio.sleep(0.15)
    assert expired == []  # 0.3 s since the start, but only 0.15 s since the piece
    while not expired:
        await asyncio.sleep(0.01)
    assert expired == [False]
    assert asyncio.get_running_loop().time() - started >= 0.35
    prefetch.close()


async def test_a_trickling_body_expires_at_the_total_limit() -> None:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    prefetch, expired, _ = await watched(queue, idle_s=0.2, total_s=0.35)
    for _ in range(5):  # never idle for 0.2 s
        await asyncio.sleep(0.1)
        queue.put_nowait(b"a")
    assert expired == [True]
    prefetch.close()


async def test_no_expiry_once_complete_held_back_or_stopped() -> None:
    for ending in ("complete", "limit", "stopped"):
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        prefetch, expired, _ = await watched(queue, idle_s=0.1, total_s=None)
        if ending == "complete":
            queue.put_nowait(b"all of it")
            queue.put_nowait(None)
        elif ending == "limit":
            queue.put_nowait(b"x" * LIMIT)  # held back by us from here: not the client's stall
        else:
            prefetch.stop_expiring()  # the call got its slot
        await asyncio.sleep(0.3)
        assert expired == [], ending
        prefetch.close()
