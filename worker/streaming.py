"""A turn's live events, published for callers that stream (HTTP server-sent events).

When the coordinator accepts a message from a streaming caller it sets the
job attribute :data:`~cluster.stream_events.STREAM_ATTR`; the worker then hands the agent the
callbacks of a :class:`RedisTurnEvents` for that turn, which appends each
event to the message's bounded Redis stream (``Keyspace.turn_stream``:
``XADD ... MAXLEN ~``, expiring with the reply TTL, and a ``PUBLISH`` on the
stream's wake-up channel, ``Keyspace.wake_channel``). Any coordinator instance
reads the stream from the client's ``Last-Event-ID``, so a client that
reconnects, even to another instance, resumes where it left off.

The events' wire shape (types, fields, :func:`~cluster.stream_events.final_event`)
lives in :mod:`cluster.stream_events`, shared with the gateway that reads them.

A message that did not ask to stream gets :data:`NO_EVENTS`: no callbacks,
nothing written, so the non-streaming path costs nothing. Publishing never
fails a turn: a Redis error stops this turn's events (the caller still gets
the reply, which the coordinator reads from the reply list).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import redis

from cluster.jobs import TurnJob
from cluster.keys import Keyspace
from cluster.stream_events import STREAM_ATTR, TOOL_RESULT_CHARS, final_event

__all__ = [
    "NO_EVENTS",
    "STREAM_MAXLEN",
    "RedisTurnEvents",
    "TurnEvents",
    "open_turn_events",
]

log = logging.getLogger("worker.streaming")

STREAM_MAXLEN: Final = 2000
"""Approximate bound of a message's event stream (``XADD MAXLEN ~``)."""

# Text deltas are merged until this much time passed since the last publish or
# this many characters are waiting; any other event publishes them first.
FLUSH_INTERVAL: Final = 0.02
FLUSH_CHARS: Final = 1024


class TurnEvents:
    """A turn's event sink that publishes nothing (the message did not ask to stream)."""

    def callbacks(self) -> dict[str, Callable[..., Any]]:
        """The agent callbacks of this turn (``turn_state`` keys of the cache checkout)."""
        return {}

    def finish(self, reply: Mapping[str, Any], *, rolled_back: bool = False) -> None:
        """Publish the committed reply as the ``final`` event."""


NO_EVENTS: Final = TurnEvents()


class RedisTurnEvents(TurnEvents):
    """Publishes one turn's events to its message's Redis stream (thread-safe).

    The agent calls the callbacks from the turn's thread and text deltas from
    its model-call thread; a lock keeps the events in order, and a delta that
    arrives after :meth:`finish` (an abandoned model call) is dropped.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        ttl: float,
        maxlen: int = STREAM_MAXLEN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Bind to a stream key.

        Args:
            client: Redis client of the worker.
            key: The message's stream (``Keyspace.turn_stream``).
            ttl: Seconds the stream is kept after its last event.
            maxlen: Approximate bound of the stream's length.
            clock: Monotonic clock (deltas are batched by time).
        """
        self._client = client
        self._key = key
        self._channel = Keyspace.wake_channel(key)
        self._ttl_ms = max(1, math.ceil(ttl * 1000))
        self._maxlen = maxlen
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._pending_chars = 0
        self._last_publish = -math.inf
        self._tool: str | None = None
        self._closed = False
        self._broken = False

    # -- agent callbacks -------------------------------------------------------------

    def callbacks(self) -> dict[str, Callable[..., Any]]:
        return {
            "stream_delta_callback": self.on_delta,
            "tool_progress_callback": self.on_tool_start,
            "step_callback": self.on_step,
            "status_callback": self.on_status,
        }

    def on_delta(self, text: str) -> None:
        """Model text: batched, published at once when the last publish is old enough."""
        if not text:
            return
        with self._lock:
            if self._closed:
                return
            self._pending.append(text)
            self._pending_chars += len(text)
            if (
                self._pending_chars >= FLUSH_CHARS
                or self._clock() - self._last_publish >= FLUSH_INTERVAL
            ):
                self._publish([])

    def on_tool_start(self, name: str, arguments: Mapping[str, Any]) -> None:
        """The model called a tool."""
        with self._lock:
            self._tool = name
            self._publish([{"type": "tool_start", "name": name, "arguments": dict(arguments)}])

    def on_step(self, _iteration: int, message: Mapping[str, Any]) -> None:
        """A message the turn added: tool results become ``tool_result`` events."""
        if message.get("role") != "tool":
            return
        content = str(message.get("content") or "")
        event = {
            "type": "tool_result",
            "name": str(message.get("name", "")),
            "tool_call_id": str(message.get("tool_call_id", "")),
            "content": content[:TOOL_RESULT_CHARS],
            "truncated": len(content) > TOOL_RESULT_CHARS,
        }
        with self._lock:
            self._tool = None
            self._publish([event])

    def on_status(self, text: str) -> None:
        """What the agent is doing (a tool's progress while one runs)."""
        with self._lock:
            if self._tool is not None:
                self._publish([{"type": "tool_progress", "name": self._tool, "text": text}])
            else:
                self._publish([{"type": "status", "text": text}])

    # -- turn boundaries -------------------------------------------------------------

    def started(self, *, worker_id: str, fence: int) -> None:
        """Announce that this worker began the turn (under lease ``fence``)."""
        with self._lock:
            self._publish([{"type": "turn_start", "worker_id": worker_id, "fence": fence}])

    def finish(self, reply: Mapping[str, Any], *, rolled_back: bool = False) -> None:
        """Publish the committed reply as the ``final`` event; later deltas are dropped."""
        with self._lock:
            self._publish([final_event(reply, rolled_back=rolled_back)])
            self._closed = True

    # -- publishing ------------------------------------------------------------------

    def _publish(self, events: list[dict[str, Any]]) -> None:
        """XADD the waiting text (as one delta) and ``events``; caller holds the lock."""
        if self._pending:
            events = [{"type": "delta", "text": "".join(self._pending)}, *events]
            self._pending.clear()
            self._pending_chars = 0
        if not events or self._broken:
            return
        self._last_publish = self._clock()
        try:
            pipe = self._client.pipeline(transaction=False)
            for event in events:
                pipe.xadd(
                    self._key,
                    {"e": json.dumps(event, ensure_ascii=False, default=str)},
                    maxlen=self._maxlen,
                    approximate=True,
                )
            pipe.pexpire(self._key, self._ttl_ms)
            pipe.publish(self._channel, b"")  # wakes the gateway whose caller streams
            pipe.execute()
        except redis.RedisError as exc:
            self._broken = True  # the caller still gets the reply through the reply list
            log.warning("turn events to %s stopped: Redis failed (%s)", self._key, exc)


def open_turn_events(
    client: redis.Redis,
    keyspace: Keyspace,
    job: TurnJob,
    *,
    worker_id: str,
    fence: int,
    ttl: float,
) -> TurnEvents:
    """The event sink of a turn: :data:`NO_EVENTS` unless the message asked to stream.

    A streaming turn announces itself (``turn_start``) right away.
    """
    if not job.attrs.get(STREAM_ATTR):
        return NO_EVENTS
    events = RedisTurnEvents(client, keyspace.turn_stream(job.session_key, job.message_id), ttl=ttl)
    events.started(worker_id=worker_id, fence=fence)
    return events
