"""BodyMemory: first come, first served, and never a byte leaked when a waiter leaves."""

from __future__ import annotations

import asyncio

import pytest

from daemon.body_memory import BodyMemory, BodyTooLargeToParse


async def test_waiters_are_served_in_order_and_not_passed_by_smaller_ones() -> None:
    memory = BodyMemory(10)
    assert await memory.reserve(8) == 8
    order: list[int] = []

    async def take(size: int) -> None:
        await memory.reserve(size)
        order.append(size)

    big, small = asyncio.create_task(take(6)), asyncio.create_task(take(1))
    await asyncio.sleep(0)
    assert order == []  # 1 would fit, but the 6 ahead of it waits
    memory.release(8)
    await asyncio.gather(big, small)
    assert order == [6, 1] and memory.held == 7


async def test_a_reservation_larger_than_the_pool_is_refused() -> None:
    with pytest.raises(BodyTooLargeToParse, match="runtime.max_body_memory_bytes"):
        await BodyMemory(10).reserve(11)


async def test_keep_shrinks_and_refuses_a_need_past_the_pool() -> None:
    memory = BodyMemory(10)
    assert memory.keep(await memory.reserve(10), 4) == 4 and memory.held == 4
    with pytest.raises(BodyTooLargeToParse):
        memory.keep(4, 11)
    assert memory.held == 0  # what it held is given back


async def test_a_waiter_cancelled_as_the_pool_frees_leaves_nothing_behind() -> None:
    memory = BodyMemory(10)
    await memory.reserve(10)
    waiter = asyncio.create_task(memory.reserve(5))
    await asyncio.sleep(0)
    waiter.cancel()  # cancelled; before it runs again, the pool frees and its turn comes
    memory.release(10)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert memory.held == 0
    assert await memory.reserve(10) == 10  # and the line is not stuck behind it
