"""Fakes shared by the unit tests (one place, as the style guide asks)."""

from __future__ import annotations


class FakeClock:
    """A clock the test moves by hand: ``clock()`` returns the current time."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
