"""When to check each waiting caller's reply next: pure policy, no Redis, no clock of its own.

A caller's first check comes :data:`FIRST_CHECK` seconds after it starts
waiting, and each check that finds nothing doubles the pause, up to the
schedule's cap (``gateway_reply_poll``). So a quick turn is answered within
milliseconds, and a caller that waits minutes for a slow model costs one
pipelined ``LPOP`` per cap interval. :class:`WaitSchedule` keeps the waits in
a heap by due time, so finding the due ones costs O(due * log n), whatever
the number of waiting callers.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["FIRST_CHECK", "WaitSchedule"]

T = TypeVar("T")

FIRST_CHECK = 0.01
"""Seconds between the start of a wait and its first check."""


@dataclass
class _Entry(Generic[T]):
    item: T
    pause: float
    live: bool = field(default=True)


class WaitSchedule(Generic[T]):
    """Waiting items ordered by their next check; the caller passes ``now`` to every call."""

    def __init__(self, *, cap: float, first: float = FIRST_CHECK) -> None:
        """Args: cap: longest pause between two checks; first: the first pause."""
        self._cap = cap
        self._first = min(first, cap)
        self._heap: list[tuple[float, int, _Entry[T]]] = []
        self._entries: dict[int, _Entry[T]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, item: T, now: float) -> None:
        """Start checking ``item`` (first check at ``now + first``)."""
        entry = _Entry(item, self._first)
        seq = next(self._seq)
        self._entries[id(item)] = entry
        heapq.heappush(self._heap, (now + entry.pause, seq, entry))

    def add_now(self, item: T, now: float) -> None:
        """Start checking ``item`` with a check due at once (a wait that resumes)."""
        self.add(item, now - self._first)

    def remove(self, item: T) -> None:
        """Stop checking ``item`` (it was answered, timed out or its caller left)."""
        entry = self._entries.pop(id(item), None)
        if entry is not None:
            entry.live = False

    def due(self, now: float) -> list[T]:
        """Items whose check is due at ``now``; each is rescheduled with a doubled pause."""
        found: list[T] = []
        while self._heap and self._heap[0][0] <= now:
            _due, _seq, entry = heapq.heappop(self._heap)
            if not entry.live:
                continue
            found.append(entry.item)
            entry.pause = min(self._cap, entry.pause * 2)
            heapq.heappush(self._heap, (now + entry.pause, next(self._seq), entry))
        return found

    def next_due(self) -> float | None:
        """When the earliest check is due (``None``: nothing waits)."""
        while self._heap and not self._heap[0][2].live:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def all_items(self) -> list[T]:
        """Every waiting item (to check them all at once, e.g. after Redis came back)."""
        return [entry.item for entry in self._entries.values()]
