"""Scheduled messages, the coordinator's side: validate, create, list and cancel.

``Coordinator.schedules`` (Python), the HTTP routes
(:mod:`coordinator.http.schedule_routes`) and ``agent-cluster schedules``
all go through :class:`Schedules`; the workers' schedule loops
(:mod:`worker.schedule_loop`) send the messages. Times are UTC.
"""

from __future__ import annotations

import builtins
from datetime import UTC, datetime
from typing import Any

import redis

from cluster.cron import check_cron, next_cron_fire, parse_at
from cluster.errors import InvalidMessage
from cluster.keys import Keyspace
from cluster.schedules import Schedule, ScheduleStore
from cluster.settings import ClusterSettings
from coordinator.validation import validate_message

__all__ = ["Schedules", "schedule_dict"]


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def schedule_dict(schedule: Schedule, *, name: str | None = None) -> dict[str, Any]:
    """A schedule as JSON (times ISO 8601 UTC); ``name`` is the session as the caller knows it."""
    return {
        "id": schedule.schedule_id,
        "session_key": schedule.session_key if name is None else name,
        "text": schedule.text,
        "cron": schedule.cron,
        "at": _iso(schedule.at_ms),
        "next": _iso(schedule.next_ms),
        "created": _iso(schedule.created_ms),
        "fired": schedule.fired,
        "last_fired": _iso(schedule.last_fire_ms),
    }


class Schedules:
    """Create, list and cancel the scheduled messages of sessions."""

    def __init__(self, *, settings: ClusterSettings, client: redis.Redis) -> None:
        """Bind to the cluster's Redis (``decode_responses=False``)."""
        self.settings = settings
        self.store = ScheduleStore(client, Keyspace(settings.namespace))

    def add(self, session_key: str, text: Any, *, at: Any = None, cron: Any = None) -> Schedule:
        """Schedule ``text`` into the session at ``at`` (ISO 8601, UTC) or on ``cron`` (UTC).

        Args:
            session_key: The session (a tenant's is ``@TENANT/name``).
            text: The message.
            at: An ISO 8601 time in the future (UTC unless it has an offset).
            cron: A five-field cron expression, read in UTC.

        Raises:
            InvalidMessage: neither or both of ``at`` and ``cron``, a bad or
                past time, a bad cron expression, or a bad message.
            SchedulesFull: the session has ``schedules_per_session`` schedules.
        """
        validate_message(
            session_key,
            text,
            "schedule",
            {},
            max_text_bytes=self.settings.max_message_bytes,
        )
        if text.strip().startswith("/"):
            raise InvalidMessage(
                f"a scheduled message cannot be a command, got {text.strip().split()[0]!r}: "
                "schedule a message the agent answers"
            )
        if (at is None) == (cron is None):
            raise InvalidMessage(
                "give exactly one of at (an ISO 8601 time, UTC) or cron (five fields, UTC)"
            )
        now = self.store.redis_now_ms()
        if cron is not None:
            expression = check_cron(cron, now_ms=now)
            first = next_cron_fire(expression, now)
            at_ms = None
        else:
            first = at_ms = parse_at(at, now_ms=now)
            expression = None
        return self.store.create(
            session_key,
            text,
            first_ms=first,
            cron=expression,
            at_ms=at_ms,
            now_ms=now,
            limit=self.settings.schedules_per_session,
        )

    def list(self, session_key: str) -> builtins.list[Schedule]:
        """The session's schedules, soonest first."""
        return self.store.of_session(session_key)

    def cancel(self, session_key: str, schedule_id: str) -> bool:
        """Cancel a schedule of the session; false when the session has no such schedule."""
        return self.store.cancel(session_key, schedule_id)
