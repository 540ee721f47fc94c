"""Blocking Redis reads cut into slices the client's socket timeout allows."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import redis

__all__ = ["blocking_read"]

T = TypeVar("T")

# The shortest server-side block we ask for (Redis treats a timeout that rounds
# to 0 ms as "forever"), the pause when a server answers a blocking call at once
# (fakeredis' BLMOVE does), and the socket-timeout headroom.
_MIN_BLOCK = 0.01
_POLL_INTERVAL = 0.02
_SOCKET_MARGIN = 1.0


def _socket_slice(client: redis.Redis) -> float | None:
    """Longest block that returns before the client's socket read times out."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if timeout is None:
        return None
    timeout = float(timeout)
    return max(timeout - _SOCKET_MARGIN, timeout / 2)


def blocking_read(
    client: redis.Redis, call: Callable[[float], T | None], timeout: float
) -> T | None:
    """Run a blocking command ``call(seconds)`` until it returns a value or ``timeout`` passes."""
    cap = _socket_slice(client)
    deadline = time.monotonic() + timeout
    first = True
    while True:
        remaining = deadline - time.monotonic()
        if remaining < _MIN_BLOCK and not first:
            return None
        first = False
        seconds = max(_MIN_BLOCK, remaining if cap is None else min(remaining, cap))
        started = time.monotonic()
        result = call(seconds)
        if result is not None:
            return result
        if time.monotonic() - started < seconds / 2:
            # The server answered at once instead of blocking (fakeredis'
            # BLMOVE does): wait a little rather than spin.
            time.sleep(max(0.0, min(_POLL_INTERVAL, deadline - time.monotonic())))
