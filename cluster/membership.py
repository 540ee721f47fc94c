"""Worker membership: register, heartbeat, drain state, deregister, death detection.

Each worker registers with its static facts (host, pid, rq queue) and then
heartbeats every ``heartbeat_interval``; a heartbeat pushes the worker's
expiry to Redis-now + ``heartbeat_ttl`` in a sorted set. The coordinator reads
the whole membership in one script call (no ``SCAN``): live workers are those
whose expiry is still ahead of Redis' clock, so every host judges liveness by
the same clock. :meth:`RedisMembership.prune_dead` removes dead workers and
returns their ids for recovery. Deciding liveness from a snapshot is pure
(:func:`parse_snapshot`, :meth:`WorkerInfo.is_alive`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from cluster.errors import ConfigError, UnknownWorker, WorkerIdInUse
from cluster.keys import Keyspace
from cluster.redis_text import text
from cluster.scripts import ScriptSet

__all__ = [
    "Beat",
    "Membership",
    "RedisMembership",
    "WorkerInfo",
    "WorkerState",
    "parse_snapshot",
]


class WorkerState(enum.StrEnum):
    """What a registered worker accepts."""

    ACTIVE = "active"
    """Takes new sessions and turns."""
    DRAINING = "draining"
    """Finishes running turns, takes no new sessions; leaving soon."""


@dataclass(frozen=True)
class Beat:
    """What a heartbeat found.

    Attributes:
        state: The worker's state in Redis; ``None``: not registered any more.
        next_expiry: Seconds until another worker's heartbeat expires (``None``:
            no other worker; <= 0: one is dead already).
        cached_digest: The digest of the cached-sessions set stored with the
            worker's health record (``None``: none stored).
        versions: The cluster's ``(config version, registry generation)``
            (read with a beat that carries a health record; ``None`` otherwise).
        primary: The replication id of the Redis primary the beat ran on (``""``
            where Redis cannot say, e.g. embedded): it changes at a failover.
    """

    state: WorkerState | None
    next_expiry: float | None = None
    cached_digest: str | None = None
    versions: tuple[int, int] | None = None
    primary: str = ""


@dataclass(frozen=True)
class WorkerInfo:
    """One registered worker as seen at a point in time.

    Attributes:
        worker_id: Unique id of the worker process.
        state: Active or draining.
        host: Host name the worker runs on.
        pid: Its process id.
        queue: Name of its rq queue.
        started: Registration time, seconds since the epoch (Redis clock).
        last_heartbeat: Last heartbeat, seconds since the epoch (Redis clock).
        expires_at: When it counts as dead without another heartbeat (Redis clock).
    """

    worker_id: str
    state: WorkerState
    host: str
    pid: int
    queue: str
    started: float
    last_heartbeat: float
    expires_at: float

    def is_alive(self, now: float) -> bool:
        """Whether the worker's heartbeat is still valid at ``now`` (Redis clock, s)."""
        return self.expires_at > now

    @property
    def draining(self) -> bool:
        """Whether the worker takes no new sessions."""
        return self.state is WorkerState.DRAINING


def _holder_facts(raw: Any) -> dict[str, Any]:
    try:
        facts = json.loads(text(raw) or "{}") if raw is not None else {}
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}


def parse_snapshot(reply: Sequence[Any]) -> tuple[float, list[WorkerInfo]]:
    """Decode the reply of ``membership_snapshot.lua``.

    Args:
        reply: ``[now_ms, id, expiry_ms, beat_ms, state, info_json, id, ...]``.

    Returns:
        ``(now in seconds, workers sorted by id)``, including dead ones not
        pruned yet; filter with :meth:`WorkerInfo.is_alive`. An entry whose
        info is unreadable is kept with empty facts rather than hiding the worker.
    """
    now = float(text(reply[0])) / 1000.0
    workers: list[WorkerInfo] = []
    for i in range(1, len(reply) - 4, 5):
        worker_id = text(reply[i])
        expiry = float(text(reply[i + 1])) / 1000.0
        beat_raw = text(reply[i + 2])
        state_raw = text(reply[i + 3])
        try:
            info = json.loads(text(reply[i + 4]) or "{}")
            if not isinstance(info, dict):
                info = {}
        except ValueError:
            info = {}
        try:
            state = WorkerState(state_raw)
        except ValueError:
            state = WorkerState.DRAINING  # unknown state: do not route new work to it
        workers.append(
            WorkerInfo(
                worker_id=worker_id,
                state=state,
                host=str(info.get("host", "")),
                pid=int(info.get("pid", 0) or 0),
                queue=str(info.get("queue", "")),
                started=float(info.get("started", 0.0) or 0.0),
                last_heartbeat=float(beat_raw) / 1000.0 if beat_raw else 0.0,
                expires_at=expiry,
            )
        )
    workers.sort(key=lambda w: w.worker_id)
    return now, workers


class Membership(Protocol):
    """The membership operations workers and the coordinator rely on."""

    def register(
        self, worker_id: str, *, host: str, pid: int, queue: str, state: WorkerState = ...
    ) -> None: ...

    def heartbeat(
        self, worker_id: str, instance: str = "", *, health: str | None = None
    ) -> Beat: ...

    def set_state(self, worker_id: str, state: WorkerState) -> None: ...

    def deregister(self, worker_id: str) -> bool: ...

    def live_workers(self) -> list[WorkerInfo]: ...

    def active_workers(self) -> list[WorkerInfo]: ...

    def is_alive(self, worker_id: str) -> bool: ...

    def prune_dead(self) -> list[str]: ...


class RedisMembership:
    """Membership kept in Redis (see ``cluster/keys.py`` for the keys)."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace, *, heartbeat_ttl: float) -> None:
        """Create the store.

        Args:
            client: A bytes client (``decode_responses=False``).
            keyspace: The cluster's keyspace.
            heartbeat_ttl: Seconds without a heartbeat after which a worker is dead.
        """
        if heartbeat_ttl <= 0:
            raise ConfigError(f"heartbeat_ttl must be > 0 seconds, got {heartbeat_ttl!r}")
        self._client = client
        self._keys = keyspace
        self._scripts = ScriptSet(client)
        self._ttl_ms = max(1, int(heartbeat_ttl * 1000))

    def _all_keys(self) -> list[str]:
        k = self._keys
        return [
            k.members_live(),
            k.members_beats(),
            k.members_state(),
            k.members_info(),
            k.members_instance(),
        ]

    def register(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        queue: str,
        state: WorkerState = WorkerState.ACTIVE,
        instance: str = "",
        force: bool = False,
    ) -> None:
        """Register the worker (again, after a restart or prune) with a fresh heartbeat.

        Args:
            worker_id: The id; unique among live workers.
            host: Host name the worker runs on.
            pid: Its process id.
            queue: Its rq queue name.
            state: Initial state.
            instance: Token of this process (heartbeats must present it).
            force: Take the id over from a live instance the caller proved dead.

        Raises:
            WorkerIdInUse: another process holds ``worker_id`` with a live heartbeat.
        """
        self._keys.check_worker_id(worker_id)
        seconds, micros = self._client.time()
        info = json.dumps(
            {"host": host, "pid": pid, "queue": queue, "started": seconds + micros / 1e6},
            separators=(",", ":"),
        )
        reply = self._scripts(
            "membership_register",
            self._all_keys(),
            [
                worker_id,
                info,
                self._ttl_ms,
                WorkerState(state).value,
                instance,
                "1" if force else "0",
            ],
        )
        if not reply[0]:
            raise WorkerIdInUse.live(worker_id, _holder_facts(reply[2]))

    def holder_facts(self, worker_id: str) -> dict[str, Any]:
        """The registered facts (host, pid, ...) of ``worker_id``, ``{}`` when unknown."""
        return _holder_facts(self._client.hget(self._keys.members_info(), worker_id))

    def heartbeat(self, worker_id: str, instance: str = "", *, health: str | None = None) -> Beat:
        """Renew the worker's heartbeat (and store its health record), one round trip.

        Args:
            worker_id: The worker.
            instance: Its instance token (from :meth:`register`).
            health: The worker's health record (JSON), stored with the beat.

        Returns:
            The worker's state as stored in Redis (an admin may have set it to
            draining; ``None`` when this instance is not registered any more:
            its heartbeat expired and it may have been declared dead and its
            turns handed on, or another instance took the id, so it must
            register again or stop), and when the next other worker's
            heartbeat expires; with ``health``, the cluster's config version and
            registry generation too.
        """
        k = self._keys
        keys = [k.members_live(), k.members_beats(), k.members_state(), k.members_instance()]
        args: list[str | int] = [worker_id, self._ttl_ms, instance]
        if health is not None:
            keys += [k.worker_health(worker_id), k.worker_cached(worker_id)]
            keys += [k.config_version(), k.registry_generation()]
            args.append(health)
        reply = self._scripts("membership_heartbeat", keys, args)
        if not reply[0]:
            return Beat(state=None)
        try:
            state = WorkerState(text(reply[1]))
        except ValueError:
            state = WorkerState.DRAINING
        next_expiry = None if reply[2] is None else int(reply[2]) / 1000
        digest = None if reply[3] is None else text(reply[3])
        versions = None if len(reply) < 6 or reply[4] is None else (int(reply[4]), int(reply[5]))
        primary = text(reply[6]) if len(reply) > 6 and reply[6] else ""
        return Beat(
            state=state,
            next_expiry=next_expiry,
            cached_digest=digest,
            versions=versions,
            primary=primary,
        )

    def set_state(self, worker_id: str, state: WorkerState) -> None:
        """Set a registered worker's state.

        Raises:
            UnknownWorker: the worker is not registered.
        """
        if not self._scripts(
            "membership_set_state",
            [self._keys.members_state()],
            [worker_id, WorkerState(state).value],
        ):
            raise UnknownWorker(
                f"worker {worker_id!r} is not registered (dead, gone or never started); "
                "`agent-cluster status` lists the registered workers"
            )

    def deregister(self, worker_id: str) -> bool:
        """Remove the worker (it is gone). Returns whether it was registered."""
        return bool(self._scripts("membership_deregister", self._all_keys(), [worker_id]))

    def snapshot(self) -> tuple[float, list[WorkerInfo]]:
        """Every registered worker (dead ones too, until pruned) and Redis' now, in seconds."""
        return parse_snapshot(self._scripts("membership_snapshot", self._all_keys()))

    def live_workers(self) -> list[WorkerInfo]:
        """Workers with a valid heartbeat, sorted by id (draining ones included)."""
        now, workers = self.snapshot()
        return [w for w in workers if w.is_alive(now)]

    def active_workers(self) -> list[WorkerInfo]:
        """Live workers that take new sessions (not draining), sorted by id."""
        return [w for w in self.live_workers() if w.state is WorkerState.ACTIVE]

    def is_alive(self, worker_id: str) -> bool:
        """Whether the worker is registered with a heartbeat that has not expired."""
        pipe = self._client.pipeline(transaction=True)
        pipe.time()
        pipe.zscore(self._keys.members_live(), worker_id)
        (seconds, micros), expiry = pipe.execute()
        return expiry is not None and float(expiry) > seconds * 1000 + micros / 1000

    def prune_dead(self) -> list[str]:
        """Remove workers whose heartbeat expired; returns their ids (sorted).

        The ownership index of a removed worker is kept for recovery.
        """
        removed = self._scripts("membership_prune", self._all_keys())
        return sorted(text(x) for x in removed)
