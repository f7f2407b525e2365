"""AdmissionController: slots, a bounded line, timeouts, and slots never leaked."""

from __future__ import annotations

import asyncio

import pytest

from daemon.errors import Overloaded
from daemon.admission import AdmissionController


async def test_runs_up_to_concurrency_then_queues_in_order() -> None:
    admission = AdmissionController(2)
    await admission.acquire()
    await admission.acquire()
    order: list[int] = []

    async def wait(i: int) -> None:
        await admission.acquire()
        order.append(i)

    waiters = [asyncio.create_task(wait(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert (admission.running, admission.waiting) == (2, 3)
    for _ in range(3):
        admission.release()
        await asyncio.sleep(0)
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2]
    assert (admission.running, admission.waiting) == (2, 0)


async def test_full_queue_is_refused_at_once() -> None:
    admission = AdmissionController(1, max_queue=1)
    await admission.acquire()
    queued = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0)
    with pytest.raises(Overloaded, match=r"runtime.max_queue=1"):
        await admission.acquire()
    admission.release()
    await queued
    assert admission.running == 1


async def test_max_queue_zero_means_no_waiting() -> None:
    admission = AdmissionController(1, max_queue=0)
    await admission.acquire()
    with pytest.raises(Overloaded):
        await admission.acquire()


async def test_queue_timeout_refuses_and_frees_its_place() -> None:
    admission = AdmissionController(1, queue_timeout_s=0.05)
    await admission.acquire()
    with pytest.raises(Overloaded, match="queue_timeout_s"):
        await admission.acquire()
    assert admission.waiting == 0
    admission.release()
    assert admission.running == 0


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    admission = AdmissionController(1)
    await admission.acquire()
    waiter = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0)
    admission.release()  # the slot is handed to the waiter ...
    waiter.cancel()  # ... which is cancelled before it runs: the slot must come back
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (admission.running, admission.waiting) == (0, 0)
    await asyncio.wait_for(admission.acquire(), 1)
