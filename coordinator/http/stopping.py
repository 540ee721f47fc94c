"""Stopping a background task of the gateway for sure."""

from __future__ import annotations

import asyncio
import logging

__all__ = ["stop_task"]

log = logging.getLogger(__name__)

_STOP_RETRY = 1.0
"""Seconds between two cancellations of a task being stopped."""


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it ended, cancelling again if it swallowed one.

    A cancellation that lands while redis-py waits for a connection of a
    bounded pool, or reads a reply, can be consumed there (seen after a
    failover: the serving task went on to its next pause, and the gateway's
    shutdown hung), so one ``cancel()`` is not proof of an end.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_STOP_RETRY)
    if not task.cancelled() and task.exception() is not None:
        log.warning("a gateway task ended with %r", task.exception())
