"""What the cluster is doing, read from Redis alone: workers, queues, a session, a worker's health.

Everything here reads what the workers already write (membership, ownership,
queues, leases, the session's keys, the health record each worker writes at
every heartbeat, :mod:`worker.health`), so an operator or a deploy probe needs
no access to a worker process. ``agent-cluster status``, ``session KEY`` and
``health WORKER`` print these (:mod:`coordinator.status_view`).

Clocks: heartbeat ages and lease TTLs are Redis' (the same clock liveness is
judged by); a health record's freshness is its Redis TTL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from rq.job import Job

from cluster.health_record import HealthRecord
from cluster.keys import Keyspace
from cluster.leases import LeaseHolder, RedisLeaseStore
from cluster.membership import RedisMembership, WorkerInfo
from cluster.ownership import RedisOwnershipStore
from cluster.redis_text import text
from cluster.tenants import TenantStore, TenantUsage, client_name, tenant_of
from cluster.transport import TurnQueue
from cluster.versions import RedisVersionStore

__all__ = [
    "ClusterStatus",
    "HealthVerdict",
    "PendingTurn",
    "SessionStatus",
    "WorkerStatus",
    "check_health",
    "read_session",
    "read_status",
]

# How many of the newest dead-letter entries a status carries (the count is exact).
RECENT_DEAD_LETTERS = 5


@dataclass(frozen=True)
class WorkerStatus:
    """One registered worker (dead ones too, until a survivor prunes them).

    Attributes:
        worker_id: The worker.
        state: ``active``, ``draining``, or ``dead`` (heartbeat expired, not pruned yet).
        heartbeat_age: Seconds since its last heartbeat (Redis clock).
        host: Host it registered from.
        pid: Its process id.
        started: Registration time (Redis clock, seconds since the epoch).
        sessions_owned: Sessions whose owner record names it.
        queued: Turn jobs on its queue, not claimed yet.
        in_flight: Turn jobs it claimed and has not completed.
        health: Its last health record, ``None`` when it wrote none within the TTL.
    """

    worker_id: str
    state: str
    heartbeat_age: float
    host: str
    pid: int
    started: float
    sessions_owned: int
    queued: int
    in_flight: int
    health: HealthRecord | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (``health`` with its cache hit rate)."""
        data = asdict(self)
        if self.health is not None:
            data["health"]["cache_hit_rate"] = self.health.cache_hit_rate
        return data


@dataclass(frozen=True)
class ClusterStatus:
    """The cluster at one instant.

    Attributes:
        namespace: The key namespace read.
        now: Redis' clock, seconds since the epoch.
        config_version: The published cluster config version.
        registry_generation: The cluster-wide tool registry generation.
        workers: Registered workers, sorted by id.
        dead_letters: Entries in the dead-letter list (turns no worker can run).
        recent_dead_letters: The newest few of them, oldest first.
        tenants: Each tenant's usage (turns, tokens by kind, estimated cost)
            and turns in flight, sorted by name.
    """

    namespace: str
    now: float
    config_version: int
    registry_generation: int
    workers: list[WorkerStatus]
    dead_letters: int
    recent_dead_letters: list[dict[str, Any]] = field(default_factory=list)
    tenants: list[TenantUsage] = field(default_factory=list)

    @property
    def queued(self) -> int:
        """Turn jobs waiting on every worker's queue."""
        return sum(w.queued for w in self.workers)

    @property
    def in_flight(self) -> int:
        """Turn jobs claimed and not completed, over every worker."""
        return sum(w.in_flight for w in self.workers)

    @property
    def config_version_lost(self) -> int:
        """The highest config version a worker applied before Redis lost it (0: none)."""
        return max((w.health.config_version_lost for w in self.workers if w.health), default=0)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form, for ``status --json``."""
        return {
            "namespace": self.namespace,
            "now": self.now,
            "config_version": self.config_version,
            "config_version_lost": self.config_version_lost,
            "registry_generation": self.registry_generation,
            "queued": self.queued,
            "in_flight": self.in_flight,
            "dead_letters": self.dead_letters,
            "recent_dead_letters": self.recent_dead_letters,
            "workers": [w.as_dict() for w in self.workers],
            "tenants": [t.as_dict() for t in self.tenants],
        }


def _health_records(
    client: redis.Redis, keyspace: Keyspace, worker_ids: list[str]
) -> dict[str, HealthRecord | None]:
    pipe = client.pipeline(transaction=False)
    for worker_id in worker_ids:
        pipe.hget(keyspace.worker_health(worker_id), "record")
    raw = pipe.execute()
    return {
        worker_id: None if item is None else HealthRecord.from_json(item)
        for worker_id, item in zip(worker_ids, raw, strict=True)
    }


def _worker_status(
    info: WorkerInfo,
    now: float,
    *,
    queue: TurnQueue,
    ownership: RedisOwnershipStore,
    health: HealthRecord | None,
) -> WorkerStatus:
    return WorkerStatus(
        worker_id=info.worker_id,
        state=info.state.value if info.is_alive(now) else "dead",
        heartbeat_age=max(0.0, now - info.last_heartbeat),
        host=info.host,
        pid=info.pid,
        started=info.started,
        sessions_owned=len(ownership.sessions_owned_by(info.worker_id)),
        queued=queue.pending(info.worker_id),
        in_flight=queue.inflight_count(info.worker_id),
        health=health,
    )


def read_status(client: redis.Redis, keyspace: Keyspace) -> ClusterStatus:
    """Read the whole cluster's status (a few round trips per worker).

    Args:
        client: A bytes client (``decode_responses=False``).
        keyspace: The cluster's keyspace.
    """
    membership = RedisMembership(client, keyspace, heartbeat_ttl=3600)
    now, infos = membership.snapshot()
    queue = TurnQueue(client, keyspace, job_timeout=60, result_ttl=60)
    ownership = RedisOwnershipStore(client, keyspace)
    records = _health_records(client, keyspace, [i.worker_id for i in infos])
    version, generation = RedisVersionStore(client, keyspace).versions()
    return ClusterStatus(
        namespace=keyspace.namespace,
        now=now,
        config_version=version,
        registry_generation=generation,
        workers=[
            _worker_status(
                info, now, queue=queue, ownership=ownership, health=records[info.worker_id]
            )
            for info in infos
        ],
        dead_letters=int(client.llen(keyspace.dead_letter())),
        recent_dead_letters=queue.dead_letters(RECENT_DEAD_LETTERS),
        tenants=TenantStore(client, keyspace).usage(),
    )


@dataclass(frozen=True)
class PendingTurn:
    """A turn of the session accepted and not committed yet.

    Attributes:
        job_id: The turn's rq job id.
        sequence: Its place in the session (the lowest runs first).
        queued_on: The worker whose queue (or in-flight list) holds it, if known.
    """

    job_id: str
    sequence: int
    queued_on: str | None


@dataclass(frozen=True)
class SessionStatus:
    """One session, as stored.

    Attributes:
        session_key: The session.
        owner: Its owning worker, ``None`` when it has none.
        epoch: The ownership tenure number (grows on every move).
        owner_alive: Whether the owner's heartbeat is valid.
        turns: Committed turns.
        history_messages: Messages in its stored history.
        last_active: Last committed turn or accepted message (Redis clock), 0 if never.
        pending: Accepted turns not committed yet, in running order.
        lease: Who runs a turn of it right now (worker, fencing token, TTL), if anyone.
        cached_on_owner: Whether the owner had its agent cached at its last
            heartbeat; ``None`` when the owner wrote no health record (dead, or
            an older worker).
    """

    session_key: str
    owner: str | None
    epoch: int
    owner_alive: bool
    turns: int
    history_messages: int
    last_active: float
    pending: list[PendingTurn]
    lease: LeaseHolder | None
    cached_on_owner: bool | None

    @property
    def exists(self) -> bool:
        """Whether anything of the session is stored."""
        return bool(self.owner or self.turns or self.history_messages or self.pending)

    @property
    def tenant(self) -> str:
        """The tenant the session belongs to (from its key, see :mod:`cluster.tenants`)."""
        return tenant_of(self.session_key)

    @property
    def name(self) -> str:
        """The name the session's tenant knows it by."""
        return client_name(self.session_key)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form, for ``session KEY --json``."""
        return {**asdict(self), "tenant": self.tenant, "name": self.name, "exists": self.exists}


def read_session(client: redis.Redis, keyspace: Keyspace, session_key: str) -> SessionStatus:
    """Read one session's owner, turns, pending turns, lease and cache presence.

    Raises:
        InvalidMessage: the session key is empty.
    """
    keys = keyspace.session(session_key)
    pipe = client.pipeline(transaction=True)
    pipe.hmget(keys.meta, ["turns", "last_active"])
    pipe.llen(keys.history)
    pipe.zrange(keys.pending, 0, -1, withscores=True)
    (turns, last_active), history, pending_raw = pipe.execute()
    owner = RedisOwnershipStore(client, keyspace).owner_of(session_key)
    job_ids = [text(member) for member, _ in pending_raw]
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(Job.key_for(job_id), "ac_worker")
    holders = pipe.execute()
    cached: bool | None = None
    alive = False
    if owner is not None:
        alive = RedisMembership(client, keyspace, heartbeat_ttl=3600).is_alive(owner.worker_id)
        pipe = client.pipeline(transaction=True)
        pipe.exists(keyspace.worker_health(owner.worker_id))
        pipe.sismember(keyspace.worker_cached(owner.worker_id), session_key)
        has_record, member = pipe.execute()
        cached = bool(member) if has_record else None
    return SessionStatus(
        session_key=session_key,
        owner=None if owner is None else owner.worker_id,
        epoch=0 if owner is None else owner.epoch,
        owner_alive=alive,
        turns=int(turns or 0),
        history_messages=int(history),
        last_active=float(last_active or 0) / 1000.0,
        pending=[
            PendingTurn(job_id, int(score), None if holder is None else text(holder))
            for (job_id, (_, score), holder) in zip(job_ids, pending_raw, holders, strict=True)
        ],
        lease=RedisLeaseStore(client, keyspace).holder(session_key),
        cached_on_owner=cached,
    )


@dataclass(frozen=True)
class HealthVerdict:
    """Whether a worker is fit to serve, as a deploy probe sees it.

    Attributes:
        worker_id: The worker.
        healthy: Registered, heartbeat valid, fresh health record, active.
        reason: One line: why not, or what it is doing.
        record: Its health record, if one is stored.
    """

    worker_id: str
    healthy: bool
    reason: str
    record: HealthRecord | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "worker_id": self.worker_id,
            "healthy": self.healthy,
            "reason": self.reason,
            "record": None if self.record is None else asdict(self.record),
        }


def check_health(client: redis.Redis, keyspace: Keyspace, worker_id: str) -> HealthVerdict:
    """Judge ``worker_id``'s health from Redis alone (what ``agent-cluster health`` prints).

    Healthy means: registered, heartbeat not expired (Redis clock), a health
    record written within the heartbeat TTL by the registered process
    instance, and active (not draining, not re-registering).

    Raises:
        InvalidMessage: ``worker_id`` is not a valid worker id.
    """
    health_key = keyspace.worker_health(worker_id)
    now, infos = RedisMembership(client, keyspace, heartbeat_ttl=3600).snapshot()
    pipe = client.pipeline(transaction=False)
    pipe.hget(health_key, "record")
    pipe.pttl(health_key)
    pipe.hget(keyspace.members_instance(), worker_id)
    raw, pttl, instance = pipe.execute()
    record = None if raw is None else HealthRecord.from_json(raw)

    def verdict(healthy: bool, reason: str) -> HealthVerdict:
        return HealthVerdict(worker_id, healthy, f"{worker_id}: {reason}", record)

    info = next((i for i in infos if i.worker_id == worker_id), None)
    if info is None:
        return verdict(
            False, "not registered (never started, drained, or declared dead and pruned)"
        )
    if not info.is_alive(now):
        return verdict(False, f"no heartbeat for {now - info.last_heartbeat:.1f}s: dead")
    if raw is None:
        return verdict(False, "no health record within the heartbeat TTL (starting, or stuck)")
    if record is None:
        return verdict(False, "health record unreadable")
    if instance is not None and record.instance != text(instance):
        return verdict(False, "health record from another process than the registered one")
    if info.draining or record.state != "active":
        state = "draining" if info.draining else record.state
        return verdict(False, f"{state} (takes no new sessions)")
    return verdict(
        True,
        f"healthy: active, heartbeat {now - info.last_heartbeat:.1f}s ago, record expires in "
        f"{max(0, int(pttl)) / 1000:.1f}s, {record.turns_running} turn(s) running, "
        f"{record.cache_size}/{record.cache_cap} agents cached, config v{record.config_version}"
        + (
            f" (Redis lost config v{record.config_version_lost}: push the config again)"
            if record.config_version_lost
            else ""
        ),
    )
