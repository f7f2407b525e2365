"""Read a running daemon's /metrics from outside, as a Prometheus scraper would."""

from __future__ import annotations

import time

import httpx

from tests.harness import DaemonProcess

STOP_BOUND_S = 1.0  # generous for loaded CI machines; typical is a few milliseconds


_SUFFIXES = ("_total", "_count", "_sum", "_bucket", "_created")


def metric(daemon: DaemonProcess, name: str) -> float:
    """The value of one sample line, `name` including any labels.

    A labelled series that has not been exported yet reads 0 (a counter with labels appears
    with its first increment), but the metric itself must exist: a renamed or missing metric
    fails the test instead of reading as a harmless 0.
    """
    text = httpx.get(f"{daemon.http_url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    family = name.split("{", 1)[0]
    declared = {family} | {family.removesuffix(s) for s in _SUFFIXES}
    if "{" in name and any(line.startswith("# TYPE ") and line.split()[2] in declared
                           for line in text.splitlines()):
        return 0.0
    raise AssertionError(f"the daemon exports no metric {name}")


def wait_for_metric(daemon: DaemonProcess, name: str, value: float, bound: float) -> float:
    start = time.monotonic()
    while metric(daemon, name) != value:
        if time.monotonic() - start > bound:
            raise AssertionError(f"{name} still {metric(daemon, name)} after {bound}s")
        time.sleep(0.005)
    return time.monotonic() - start


def assert_backend_stopped(daemon: DaemonProcess, cancelled_before: float) -> None:
    """The engine has nothing in flight, stopped producing tokens, and counted one cancel."""
    wait_for_metric(daemon, "twinserve_engine_in_flight", 0, STOP_BOUND_S)
    tokens = metric(daemon, "twinserve_engine_generated_tokens_total")
    time.sleep(0.2)  # ten token delays: a backend still running would have moved the counter
    assert metric(daemon, "twinserve_engine_generated_tokens_total") == tokens
    assert metric(daemon, "twinserve_engine_cancelled_total") == cancelled_before + 1
