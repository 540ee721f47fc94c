"""Waiting for a pub/sub subscriber to be live, as Redis sees it."""

from __future__ import annotations

import time

import redis


def wait_subscribed(client: redis.Redis, channel: str, timeout: float) -> bool:
    """Wait until ``channel`` has a subscriber (``PUBSUB NUMSUB``); ``False`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        [(_, count)] = client.pubsub_numsub(channel)
        if int(count) > 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
