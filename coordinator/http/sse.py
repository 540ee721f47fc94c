"""A turn as server-sent events: read from its Redis stream, resumable from ``Last-Event-ID``.

:func:`turn_events` yields the events the worker publishes for a message
(:mod:`worker.streaming`), each with its stream entry id as the SSE ``id``,
until the ``final`` one. The reply list is watched meanwhile (both through
the gateway's waiters, woken by the worker's signals, batched with every
other caller's), so a turn that failed (an error reply, no final event), or a message that was
answered without streaming, still ends the stream with an ``error`` or a
``final`` built from the reply. A client that lost the connection sends the
same request (same ``message_id``) with ``Last-Event-ID`` to any gateway
instance and receives only what it missed.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cluster.errors import InvalidMessage
from cluster.stream_events import final_event
from coordinator.http.gateway import EVENT_ID_RE, Gateway

__all__ = [
    "KEEPALIVE",
    "SseEvent",
    "encode",
    "event_id_or_none",
    "turn_events",
]

KEEPALIVE = 15.0
"""Seconds of silence after which a comment line keeps proxies from closing the stream."""

# Each part of a Redis stream id is an unsigned 64-bit number.
_ID_PART_MAX = 2**64 - 1
# Wait for the worker's own final event this long after its reply arrived.
FINAL_GRACE = 0.5


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event.

    Attributes:
        type: The ``event:`` name (``delta``, ``tool_start``, ``final``...).
        data: The JSON payload (its ``type`` repeats the event name).
        id: The stream entry id (``None`` for events made by the gateway).
    """

    type: str
    data: dict[str, Any]
    id: str | None = None


def encode(event: SseEvent) -> bytes:
    """The wire form of an event (``id:``, ``event:``, one ``data:`` line)."""
    head = f"id: {event.id}\n" if event.id is not None else ""
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    return f"{head}event: {event.type}\ndata: {data}\n\n".encode()


def event_id_or_none(value: str | None) -> str | None:
    """Check a ``Last-Event-ID`` header.

    Raises:
        InvalidMessage: it is not a stream entry id like ``1700000000000-0``.
    """
    if value is None or value == "":
        return None
    value = value.strip()
    if not EVENT_ID_RE.match(value) or any(int(part) > _ID_PART_MAX for part in value.split("-")):
        raise InvalidMessage(
            f"Last-Event-ID must be the id of an event this API sent (like 1700000000000-0), "
            f"got {value[:80]!r}"
        )
    return value


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"type": "status", "text": "(unreadable event)"}
    return value if isinstance(value, dict) else {"type": "status", "text": str(value)}


def _error(reply: dict[str, Any], message_id: str) -> SseEvent:
    return SseEvent(
        "error",
        {
            "type": "error",
            "error": {"type": "turn_failed", "message": str(reply.get("error", "turn failed"))},
            "message_id": message_id,
            "worker_id": reply.get("worker_id"),
        },
    )


async def turn_events(
    gateway: Gateway,
    session_key: str,
    message_id: str,
    *,
    after: str | None,
    timeout: float,
    tick: float = KEEPALIVE,
    gone: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[SseEvent | None]:
    """Yield a message's events after ``after`` until its final event (or error, or timeout).

    ``None`` is yielded after every wake-up (events came, or ``tick`` seconds
    passed without any): the events since the last ``None`` came in one read,
    so the caller can send them in one write, and send keep-alive comments
    while nothing happens. A waiting stream costs no work until the worker
    signals its next event. When ``gone`` returns (awaited while the stream
    waits: the caller's connection closed) the events end.
    """
    deadline = time.monotonic() + timeout
    # A reply already taken from its list (a resumed caller) is still in the stored replies.
    reply: dict[str, Any] | None = await gateway.pop_reply(session_key, message_id)
    reply_at = time.monotonic()
    watch = gateway.watch_turn(session_key, message_id, after=after or "0-0")
    try:
        while True:
            now = time.monotonic()
            if reply is not None:
                pause = max(0.0, FINAL_GRACE - (now - reply_at))
            else:
                pause = max(0.0, min(tick, deadline - now))
            if await gateway.waiters.wait(watch, pause, until=gone):
                return
            entries = watch.take_entries()
            for entry_id, fields in entries:
                data = _parse(fields.get(b"e") or fields.get("e") or b"{}")
                kind = str(data.get("type", "status"))
                yield SseEvent(kind, data, entry_id.decode())
                if kind == "final":
                    return
            raw = watch.take_reply()
            if reply is None and raw is not None:
                reply = gateway.decode_reply(raw, message_id)
                reply_at = time.monotonic()
            if reply is not None and not reply.get("ok"):
                yield _error(reply, message_id)
                return
            if reply is not None and not entries and time.monotonic() - reply_at >= FINAL_GRACE:
                # the worker published no final event (or it expired)
                yield SseEvent("final", final_event(reply))
                return
            if time.monotonic() >= deadline:
                yield SseEvent(
                    "error",
                    {
                        "type": "error",
                        "error": {
                            "type": "turn_timeout",
                            "message": f"no reply within {timeout:g}s; the turn may still finish: "
                            "send the same request (same message_id) again to resume",
                        },
                        "message_id": message_id,
                    },
                )
                return
            yield None  # a wake-up ended: the caller may send what it has
    finally:
        gateway.waiters.unwatch(watch)
