"""The cluster's recent events, kept in Redis for operators: pushes, drains, deaths, recoveries.

Pub/sub (:mod:`cluster.events`) tells the workers what to do now and keeps
nothing; this log keeps what happened, bounded, so the status page and an
operator can see the last few hundred events after the fact. It is one Redis
stream (``{ns}:eventlog``, :meth:`cluster.keys.Keyspace.event_log`) trimmed
to about :data:`MAX_EVENTS` entries at each write; each entry's id carries
Redis' clock, so events of every process sort on one clock.

Events are written where they happen: a config publish and a registry bump
(:mod:`cluster.versions`), a drain request (:mod:`coordinator.admin`), a
worker joining, starting and finishing its drain (:mod:`worker.process`), a
dead worker's recovery (:mod:`cluster.recovery`). Writing is best effort: the
action already happened, so a Redis error while logging it is logged and
swallowed, never raised to the caller.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import redis

from cluster.keys import Keyspace
from cluster.redis_text import text

__all__ = ["MAX_EVENTS", "ClusterEvent", "ClusterEventLog"]

log = logging.getLogger(__name__)

MAX_EVENTS = 500
"""About how many events the log keeps (Redis trims whole macro-nodes: a few more at times)."""


@dataclass(frozen=True)
class ClusterEvent:
    """One logged event.

    Attributes:
        at: When it was logged, seconds since the epoch (Redis' clock).
        kind: ``config``, ``registry``, ``drain_requested``, ``drain_started``,
            ``drained``, ``joined``, ``rejoined``, ``worker_dead``.
        worker: The worker it concerns, ``""`` for cluster-wide events.
        detail: A one-line description for people.
        data: The other fields (version, moved turns, ...).
    """

    at: float
    kind: str
    worker: str
    detail: str
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "at": self.at,
            "kind": self.kind,
            "worker": self.worker,
            "detail": self.detail,
            "data": self.data,
        }


class ClusterEventLog:
    """Appends to and reads the bounded event stream of one namespace."""

    def __init__(
        self, client: redis.Redis, keyspace: Keyspace, *, max_events: int = MAX_EVENTS
    ) -> None:
        """Bind to a client (bytes or decoded responses both work)."""
        self._client = client
        self._key = keyspace.event_log()
        self._max = max_events

    def record(self, kind: str, detail: str, *, worker: str = "", **data: Any) -> None:
        """Append one event; a Redis error is logged, not raised (the event already happened).

        Args:
            kind: The event's kind (see :class:`ClusterEvent`).
            detail: One line for people, e.g. ``"config v3 pushed by ops@host"``.
            worker: The worker concerned, if any.
            **data: JSON-safe facts (numbers, strings).
        """
        fields = {
            "kind": kind,
            "worker": worker,
            "detail": detail,
            "data": json.dumps(data, separators=(",", ":"), default=str),
        }
        try:
            self._client.xadd(self._key, fields, maxlen=self._max, approximate=True)  # type: ignore[arg-type]
        except redis.RedisError as exc:
            log.warning("could not log cluster event %s (%s): %s", kind, detail, exc)

    def recent(self, count: int = 50) -> list[ClusterEvent]:
        """The newest ``count`` events, newest first."""
        entries: Any = self._client.xrevrange(self._key, count=count)
        return [_event(entry_id, fields) for entry_id, fields in entries or []]


def _event(entry_id: bytes | str, fields: dict[Any, Any]) -> ClusterEvent:
    decoded = {text(k, "replace"): text(v, "replace") for k, v in fields.items()}
    try:
        data = json.loads(decoded.get("data", "{}"))
    except ValueError:
        data = {}
    millis = text(entry_id, "replace").split("-", 1)[0]
    return ClusterEvent(
        at=int(millis) / 1000.0 if millis.isdigit() else 0.0,
        kind=decoded.get("kind", ""),
        worker=decoded.get("worker", ""),
        detail=decoded.get("detail", ""),
        data=data if isinstance(data, dict) else {},
    )
