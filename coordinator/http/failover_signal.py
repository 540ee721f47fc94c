"""One watch per gateway process for a change of Redis primary, shared by every waiting caller.

:class:`~coordinator.http.failover_watch.PrimaryWatch` reads the primary's
replication id; :class:`FailoverSignal` reads it on one task, every
``interval`` seconds, and resolves one shared future when it changes. A
waiting caller awaits that future instead of polling, so ten thousand
waiting callers cost one ``INFO`` a second, not ten thousand wake-ups.
"""

from __future__ import annotations

import asyncio
import contextlib

from coordinator.http.failover_watch import CHECK_INTERVAL, PrimaryWatch

__all__ = ["FailoverSignal"]


class FailoverSignal:
    """Resolves a shared future at each change of primary the process sees."""

    def __init__(self, primary: PrimaryWatch, *, interval: float = CHECK_INTERVAL) -> None:
        """Watch ``primary`` every ``interval`` seconds once a caller waits on a change."""
        self._primary = primary
        self._interval = interval
        self._changed: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def next_change(self) -> None:
        """Return at the next change of primary (the watch starts with the first caller)."""
        if self._task is None or self._task.done():
            seen = await self._primary.current()
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._watch(seen), name="failover-signal")
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._changed)

    async def close(self) -> None:
        """Stop the watch."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self, seen: str) -> None:
        while True:
            await asyncio.sleep(self._interval)
            primary = await self._primary.current()
            if primary == seen:
                continue
            seen = primary
            changed, self._changed = self._changed, None
            if changed is not None and not changed.done():
                changed.set_result(None)
