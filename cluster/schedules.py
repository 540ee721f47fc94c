"""Scheduled messages in Redis: create, list, cancel, and claim their firings exactly once.

A schedule sends one message into one session at a time (``at``) or on a
cron expression (UTC, :mod:`cluster.cron`). There is no leader: every worker
runs a schedule loop (:mod:`worker.schedule_loop`) that reads the due set
and claims each due firing with ``schedule_claim.lua``, which records the
firing with a deadline and advances the schedule to its next firing in one
atomic step, refusing when another worker (or a cancel) moved it first. The
claimer enqueues the firing's turn through the normal enqueue path under
the message id :func:`firing_message_id`, then marks the firing done; a
claimer that dies in between leaves the firing on the firing set, where
another worker finds its deadline passed and takes it over
(``schedule_reclaim.lua``). Enqueueing twice under one message id runs one
turn, so each firing is delivered exactly once. Everything lives in Redis
(AOF in production), so a Redis restart loses nothing either.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from cluster.errors import InvalidMessage, RequestRefused
from cluster.keys import Keyspace
from cluster.redis_text import text
from cluster.scripts import ScriptSet

__all__ = [
    "DueFiring",
    "Schedule",
    "ScheduleStore",
    "SchedulesFull",
    "firing_message_id",
]


class SchedulesFull(RequestRefused):
    """The session has its limit of schedules (HTTP 400): cancel one first."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=400, kind="invalid_request")


def firing_message_id(schedule_id: str, fire_ms: int) -> str:
    """The message id of one firing: the same whoever delivers it, so it runs once."""
    return f"schedule-{schedule_id}-{fire_ms}"


@dataclass(frozen=True)
class Schedule:
    """One schedule as stored.

    Attributes:
        schedule_id: its id (12 hex digits).
        session_key: the session it sends into (the stored key, ``@TENANT/name``).
        text: the message it sends.
        cron: its cron expression (UTC), ``None`` for a one-shot schedule.
        at_ms: a one-shot schedule's time (epoch ms), ``None`` for a cron one.
        next_ms: its next firing (epoch ms), ``None`` once the last one is claimed.
        created_ms: when it was created (epoch ms).
        fired: how many firings were claimed so far.
        last_fire_ms: the last claimed firing (epoch ms), ``None`` before the first.
    """

    schedule_id: str
    session_key: str
    text: str
    cron: str | None
    at_ms: int | None
    next_ms: int | None
    created_ms: int
    fired: int = 0
    last_fire_ms: int | None = None

    @classmethod
    def from_hash(cls, schedule_id: str, raw: Mapping[Any, Any]) -> Schedule | None:
        """Decode a schedule hash (``None`` for an empty or malformed one)."""
        fields = {text(k): text(v) for k, v in raw.items()}
        if "session" not in fields or "text" not in fields:
            return None

        def number(name: str) -> int | None:
            value = fields.get(name, "")
            return int(value) if value.lstrip("-").isdigit() else None

        return cls(
            schedule_id=schedule_id,
            session_key=fields["session"],
            text=fields["text"],
            cron=fields.get("cron") or None,
            at_ms=number("at"),
            next_ms=number("next"),
            created_ms=number("created") or 0,
            fired=number("fired") or 0,
            last_fire_ms=number("last_fire"),
        )


@dataclass(frozen=True)
class DueFiring:
    """A firing read from the due set, to claim: the schedule as read and its firing time."""

    schedule: Schedule
    fire_ms: int


class ScheduleStore:
    """The schedules of one namespace (thread-safe: share one per process)."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace) -> None:
        """Bind to a client (``decode_responses=False``) and a keyspace."""
        self._client = client
        self._keys = keyspace
        self._scripts = ScriptSet(client)

    # -- the coordinator's side ------------------------------------------------------

    def create(
        self,
        session_key: str,
        message: str,
        *,
        first_ms: int,
        cron: str | None,
        at_ms: int | None,
        now_ms: int,
        limit: int,
    ) -> Schedule:
        """Store a validated schedule whose first firing is ``first_ms``.

        Raises:
            SchedulesFull: the session already has ``limit`` schedules.
        """
        schedule_id = secrets.token_hex(6)
        fields: list[str | int] = ["session", session_key, "text", message, "created", now_ms]
        fields += ["cron", cron or "", "at", "" if at_ms is None else at_ms, "fired", 0]
        status, count = self._scripts(
            "schedule_create",
            [
                self._keys.schedules_due(),
                self._keys.schedule(schedule_id),
                self._keys.session_schedules(session_key),
            ],
            [schedule_id, first_ms, limit, *fields],
        )
        if text(status) == "full":
            raise SchedulesFull(
                f"session {session_key!r} already has {int(count)} schedules, the limit "
                f"(schedules_per_session={limit}): cancel one first"
            )
        return Schedule(
            schedule_id=schedule_id,
            session_key=session_key,
            text=message,
            cron=cron,
            at_ms=at_ms,
            next_ms=first_ms,
            created_ms=now_ms,
        )

    def of_session(self, session_key: str) -> list[Schedule]:
        """The session's schedules, soonest next firing first."""
        ids = sorted(
            text(i) for i in self._client.smembers(self._keys.session_schedules(session_key))
        )
        pipe = self._client.pipeline(transaction=False)
        for schedule_id in ids:
            pipe.hgetall(self._keys.schedule(schedule_id))
        found = [
            schedule
            for schedule_id, raw in zip(ids, pipe.execute(), strict=True)
            if (schedule := Schedule.from_hash(schedule_id, raw)) is not None
            and schedule.session_key == session_key
        ]
        return sorted(found, key=lambda s: (s.next_ms is None, s.next_ms or 0, s.schedule_id))

    def cancel(self, session_key: str, schedule_id: str) -> bool:
        """Cancel one of the session's schedules; false when it has no such schedule."""
        if not isinstance(schedule_id, str) or not schedule_id.isalnum() or len(schedule_id) > 32:
            raise InvalidMessage(
                f"schedule id must be the 12 hex digits a schedule was created with, "
                f"got {schedule_id!r}"
            )
        done = self._scripts(
            "schedule_cancel",
            [
                self._keys.schedules_due(),
                self._keys.schedule(schedule_id),
                self._keys.session_schedules(session_key),
            ],
            [schedule_id, session_key],
        )
        return bool(done)

    # -- the workers' side -------------------------------------------------------------

    def redis_now_ms(self) -> int:
        """Redis' clock in epoch ms (one clock for every host)."""
        seconds, micros = self._client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def look(self) -> tuple[int, bool]:
        """Redis' clock and whether any firing is due or overdue, in one round trip.

        What an idle worker's schedule loop sends per poll; the lists are read
        only when this says there is work.
        """
        pipe = self._client.pipeline(transaction=False)
        pipe.time()
        pipe.zrange(self._keys.schedules_due(), 0, 0, withscores=True)
        pipe.zrange(self._keys.schedules_firing(), 0, 0, withscores=True)
        (seconds, micros), due, firing = pipe.execute()
        now = int(seconds) * 1000 + int(micros) // 1000
        earliest = [int(score) for _member, score in (*due, *firing)]
        return now, any(when <= now for when in earliest)

    def due(self, now_ms: int, limit: int) -> list[DueFiring]:
        """Up to ``limit`` firings due by ``now_ms``, oldest first, with their schedules."""
        entries: list[Any] = self._client.zrangebyscore(
            self._keys.schedules_due(), "-inf", now_ms, start=0, num=limit, withscores=True
        )
        if not entries:
            return []
        pipe = self._client.pipeline(transaction=False)
        for member, _score in entries:
            pipe.hgetall(self._keys.schedule(text(member)))
        firings = []
        for (_member, score), raw in zip(entries, pipe.execute(), strict=True):
            # A schedule and its due entry go together (create, cancel and done are
            # scripts), so a due entry whose schedule cannot be read is skipped.
            schedule = Schedule.from_hash(text(_member), raw)
            if schedule is not None:
                firings.append(DueFiring(schedule, int(score)))
        return firings

    def claim(self, firing: DueFiring, *, next_ms: int | None, worker_id: str, ttl_ms: int) -> str:
        """Claim a due firing; returns ``claimed``, ``moved``, ``early`` or ``gone``."""
        schedule = firing.schedule
        status, _member = self._scripts(
            "schedule_claim",
            [
                self._keys.schedules_due(),
                self._keys.schedules_firing(),
                self._keys.schedule(schedule.schedule_id),
                self._keys.session_schedules(schedule.session_key or schedule.schedule_id),
            ],
            [
                schedule.schedule_id,
                firing.fire_ms,
                "" if next_ms is None else next_ms,
                worker_id,
                ttl_ms,
            ],
        )
        return text(status)

    def overdue_claims(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        """Claimed firings whose deadline passed: ``(schedule id, firing ms)``, oldest first."""
        members = self._client.zrangebyscore(
            self._keys.schedules_firing(), "-inf", now_ms, start=0, num=limit
        )
        overdue = []
        for member in members:
            schedule_id, _, fire = text(member).rpartition(":")
            if schedule_id and fire.isdigit():
                overdue.append((schedule_id, int(fire)))
        return overdue

    def reclaim(self, schedule_id: str, fire_ms: int, *, worker_id: str, ttl_ms: int) -> bool:
        """Take over an overdue claimed firing; false when it was delivered or is not overdue."""
        taken = self._scripts(
            "schedule_reclaim",
            [self._keys.schedules_firing(), self._keys.schedule(schedule_id)],
            [f"{schedule_id}:{fire_ms}", worker_id, ttl_ms],
        )
        return bool(taken)

    def load(self, schedule_id: str) -> Schedule | None:
        """One schedule, ``None`` when it was cancelled (or its last firing is done)."""
        return Schedule.from_hash(
            schedule_id, self._client.hgetall(self._keys.schedule(schedule_id))
        )

    def done(self, schedule_id: str, fire_ms: int, session_key: str) -> bool:
        """Mark a claimed firing delivered; deletes a schedule that has no firing left."""
        removed = self._scripts(
            "schedule_done",
            [
                self._keys.schedules_firing(),
                self._keys.schedules_due(),
                self._keys.schedule(schedule_id),
                self._keys.session_schedules(session_key),
            ],
            [f"{schedule_id}:{fire_ms}", schedule_id],
        )
        return bool(removed)

    def drop_firing(self, schedule_id: str, fire_ms: int) -> None:
        """Forget a claimed firing whose schedule was cancelled before it was delivered."""
        self._client.zrem(self._keys.schedules_firing(), f"{schedule_id}:{fire_ms}")
