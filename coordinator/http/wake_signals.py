"""The gateway's one subscriber connection: wake-up signals for the lists and streams it waits on.

Whatever writes a reply list or a turn stream also publishes on the channel
named like it (:meth:`cluster.keys.Keyspace.wake_channel`). :class:`WakeSignals`
keeps one Redis pub/sub connection subscribed to the channels of exactly
what the gateway's callers wait on, and reports each signal, and each
subscription's confirmation (what was written before it would otherwise be
missed), to :class:`~coordinator.http.waiters.Waiters`, which then reads
the lists and streams. Subscribing and unsubscribing are batched: callers
ask, and the next :meth:`WakeSignals.flush` sends one ``SUBSCRIBE`` (or
``UNSUBSCRIBE``) for all of them.

A lost connection (a Redis restart, a failover) is replaced by a new one
subscribed to every channel again, and ``on_lost`` tells the waiters to
check everything once, since signals published meanwhile are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from cluster.redis_text import text
from coordinator.http.stopping import stop_task

__all__ = ["WakeSignals"]

log = logging.getLogger("coordinator.http.wake_signals")

# Most channels of one SUBSCRIBE or UNSUBSCRIBE command.
_CHUNK = 1000
# Seconds one read of the subscriber connection waits before it reads again.
_READ_TIMEOUT = 5.0
# Pause of the reader after a lost connection (the waiters' task reconnects).
_ERROR_PAUSE = 0.5
# Signals handled in a row before the reader lets the loop run others: a burst of them
# (a thousand turns ending at once) is already read, and would otherwise be handled in
# one go while a newcomer's request waits.
_YIELD_EVERY = 64
# Replies that wake a wait: a signal, and a subscription's confirmation.
_SIGNALS = (b"message", b"subscribe", "message", "subscribe")


class WakeSignals:
    """Subscriptions of one gateway process to the wake-up channels of its waits."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        on_signal: Callable[[str], None],
        on_lost: Callable[[], None],
    ) -> None:
        """Bind to the gateway's asyncio client (the subscriber takes one connection of its pool).

        Args:
            client: The asyncio Redis client.
            on_signal: Called with a channel that was signalled, or whose
                subscription was confirmed.
            on_lost: Called when the connection was lost (signals may have been missed).
        """
        self._client = client
        self._on_signal = on_signal
        self._on_lost = on_lost
        self._pubsub: PubSub = client.pubsub()
        self._subscribed: set[str] = set()
        self._to_subscribe: set[str] = set()
        self._to_unsubscribe: set[str] = set()
        self._connected: asyncio.Event | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[Any]] = set()

    @property
    def pending(self) -> bool:
        """Whether subscriptions wait to be sent."""
        return bool(self._to_subscribe)

    def start(self) -> None:
        """Start reading signals (in the running loop)."""
        if self._reader is None:
            self._connected = asyncio.Event()
            self._reader = asyncio.create_task(self._read(), name="gateway-wake-signals")

    async def close(self) -> None:
        """Stop reading and give the connection back."""
        if self._reader is not None:
            await stop_task(self._reader)
            self._reader = None
        with contextlib.suppress(redis.RedisError, OSError):
            await self._pubsub.aclose()
        for task in list(self._closing):
            with contextlib.suppress(BaseException):
                await task

    def subscribe(self, channel: str) -> bool:
        """Ask for ``channel``'s signals; ``True``: already subscribed (no confirmation comes)."""
        if channel in self._to_unsubscribe:
            self._to_unsubscribe.discard(channel)
            return True
        if channel in self._subscribed:
            return True
        self._to_subscribe.add(channel)
        return False

    def unsubscribe(self, channel: str) -> None:
        """Nobody waits on ``channel`` any more."""
        if channel in self._to_subscribe:
            self._to_subscribe.discard(channel)
        elif channel in self._subscribed:
            self._to_unsubscribe.add(channel)

    async def flush(self) -> None:
        """Send the subscriptions asked for since the last flush.

        Raises:
            redis.RedisError, OSError: Redis failed; the connection is replaced
                and every channel will be subscribed again at the next flush.
        """
        pubsub = self._pubsub
        try:
            if self._to_subscribe:
                channels = list(self._to_subscribe)
                self._to_subscribe.clear()
                self._subscribed.update(channels)
                for start in range(0, len(channels), _CHUNK):
                    await pubsub.subscribe(*channels[start : start + _CHUNK])
                if self._connected is not None:
                    self._connected.set()
            if self._to_unsubscribe:
                channels = list(self._to_unsubscribe)
                self._to_unsubscribe.clear()
                self._subscribed.difference_update(channels)
                for start in range(0, len(channels), _CHUNK):
                    await pubsub.unsubscribe(*channels[start : start + _CHUNK])
        except (redis.RedisError, OSError) as exc:
            if pubsub is self._pubsub:
                self._lost(exc)
            raise

    def _lost(self, exc: BaseException) -> None:
        """Replace the connection; every channel is subscribed again at the next flush."""
        log.warning("wake-up signals: connection lost (%s); subscribing again", exc)
        old = self._pubsub
        self._pubsub = self._client.pubsub()
        if self._connected is not None:
            self._connected.clear()
        self._to_subscribe |= self._subscribed - self._to_unsubscribe
        self._subscribed = set()
        self._to_unsubscribe = set()
        task = asyncio.create_task(self._close_quietly(old))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        self._on_lost()

    @staticmethod
    async def _close_quietly(pubsub: PubSub) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            await pubsub.aclose()

    async def _read(self) -> None:
        assert self._connected is not None
        in_a_row = 0
        while True:
            in_a_row += 1
            if in_a_row >= _YIELD_EVERY:
                in_a_row = 0
                await asyncio.sleep(0)
            if not self._connected.is_set():
                await self._connected.wait()
                continue
            pubsub = self._pubsub
            try:
                # The raw reply: a signal is handled without building redis-py's message dict
                # (one per turn event); the rest (unsubscribe confirmations) goes to redis-py.
                response = await pubsub.parse_response(block=False, timeout=_READ_TIMEOUT)
                if response and response[0] not in _SIGNALS:
                    await pubsub.handle_message(response)  # type: ignore[no-untyped-call]
            except (redis.RedisError, OSError, RuntimeError) as exc:
                if pubsub is self._pubsub:
                    self._lost(exc)
                await asyncio.sleep(_ERROR_PAUSE)
                continue
            if response and response[0] in _SIGNALS:
                try:
                    self._on_signal(text(response[1]))
                except Exception:  # a bug must not stop the signals: log, go on
                    log.exception("wake-up signals: handling %r failed", response)
