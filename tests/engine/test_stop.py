"""Stop sequences, applied by the core to any backend's text."""

from __future__ import annotations

from daemon.engine.stop import StopMatcher


def test_stop_matcher_holds_back_possible_prefixes() -> None:
    matcher = StopMatcher(("END",))
    assert matcher.feed("abc E") == ("abc ", False)
    assert matcher.feed("N") == ("", False)
    assert matcher.feed("x") == ("ENx", False)
    assert matcher.feed("yy EN") == ("yy ", False)
    assert matcher.feed("Dzz") == ("", True)
    assert StopMatcher(()).feed("END") == ("END", False)
    held = StopMatcher(("END",))
    held.feed("E")
    assert held.flush() == "E"
