"""Cluster events over Redis pub/sub: config changes, registry bumps, drains.

Events are JSON objects with a ``type`` (``"config"``, ``"registry"``,
``"drain"``, ...) published on the namespace's one channel. Pub/sub is
fire-and-forget: a worker that was disconnected misses events, which is why
workers also compare versions at every turn start, and why
:class:`Subscriber` calls ``on_reconnect`` after every re-subscription so the
worker can re-check versions right away.

:class:`Subscriber` is a daemon thread that calls a callback per event. It
survives Redis going away (reconnects with capped exponential backoff),
malformed events (logged and skipped) and callback exceptions (logged), and
stops cleanly with :meth:`Subscriber.stop`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import redis

from cluster.errors import InvalidMessage
from cluster.keys import Keyspace

__all__ = ["EventBus", "Subscriber", "decode_event", "encode_event"]

log = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], None]


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Encode an event as compact JSON.

    Raises:
        InvalidMessage: not a mapping, no non-empty string ``type``, or not JSON-safe.
    """
    if not isinstance(event, Mapping):
        raise InvalidMessage(f"an event must be a mapping, got {type(event).__name__}")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidMessage(f"an event needs a non-empty string 'type', got {kind!r}")
    try:
        return json.dumps(dict(event), separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidMessage(f"event {kind!r} is not JSON-safe: {exc}") from None


def decode_event(data: bytes | str) -> dict[str, Any] | None:
    """Decode an event; ``None`` (never an exception) for anything malformed."""
    try:
        event = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str) or not event["type"]:
        return None
    return event


class EventBus:
    """Publishes events on the namespace's channel and creates subscribers."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace) -> None:
        """Create the bus on ``client`` (the subscriber gets its own connection from it)."""
        self._client = client
        self._keys = keyspace

    @property
    def channel(self) -> str:
        """The pub/sub channel name."""
        return self._keys.events_channel()

    def publish(self, event: Mapping[str, Any]) -> int:
        """Publish ``event``; returns how many subscribers received it."""
        return int(self._client.publish(self.channel, encode_event(event)))

    def subscribe(
        self,
        callback: EventCallback,
        *,
        on_reconnect: Callable[[], None] | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
    ) -> Subscriber:
        """Start a :class:`Subscriber` thread calling ``callback`` per event."""
        subscriber = Subscriber(
            self._client,
            self.channel,
            callback,
            on_reconnect=on_reconnect,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )
        subscriber.start()
        return subscriber


class Subscriber:
    """A background thread delivering the events of one channel to a callback."""

    def __init__(
        self,
        client: redis.Redis,
        channel: str,
        callback: EventCallback,
        *,
        on_reconnect: Callable[[], None] | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        poll_interval: float = 0.2,
    ) -> None:
        """Prepare the subscriber (call :meth:`start`).

        Args:
            client: The Redis client to take a pub/sub connection from.
            channel: The channel (``Keyspace.events_channel()``).
            callback: Called on the subscriber thread with each decoded event.
            on_reconnect: Called after every re-subscription (events may have
                been missed: re-check versions).
            backoff_initial: First wait after a connection failure, seconds.
            backoff_max: Longest wait between reconnection attempts.
            poll_interval: How often the thread checks for :meth:`stop`.
        """
        self._client = client
        self._channel = channel
        self._callback = callback
        self._on_reconnect = on_reconnect
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._poll = poll_interval
        self._stop = threading.Event()
        self._subscriptions = 0
        self._thread = threading.Thread(target=self._run, name=f"events:{channel}", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = self._backoff_initial
        while not self._stop.is_set():
            pubsub = self._client.pubsub()
            try:
                pubsub.subscribe(self._channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=self._poll)
                    if message is not None:
                        self._handle(message)
                        backoff = self._backoff_initial
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                log.warning(
                    "event subscriber lost Redis (%s); reconnecting in %.1f s",
                    type(exc).__name__,
                    backoff,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_max)
            except Exception:  # never let the thread die on an unexpected error
                log.exception("event subscriber failed; restarting in %.1f s", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_max)
            finally:
                try:
                    pubsub.close()
                except Exception:  # closing a broken connection may fail; nothing to do
                    log.debug("closing the pub/sub connection failed", exc_info=True)

    def _handle(self, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            # redis-py re-subscribes by itself after a transparent reconnect; each
            # confirmation after the first means we may have missed events.
            self._subscriptions += 1
            if self._subscriptions > 1 and self._on_reconnect is not None:
                self._call(self._on_reconnect)
            return
        if kind != "message":
            return
        event = decode_event(message.get("data", b""))
        if event is None:
            log.warning(
                "skipping a malformed event on %s: %.200r", self._channel, message.get("data")
            )
            return
        self._call(lambda: self._callback(event))

    def _call(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("event callback raised; the subscriber keeps running")
