"""Running-turn leases with fencing tokens: at most one turn per session, anywhere.

A worker takes a session's lease before running a turn
(:meth:`RedisLeaseStore.acquire`), extends it while the turn runs and releases
it afterwards (compare-and-delete on the fence). The token is the next value
of a per-session counter that is never reset, so it only grows. Every write
of the turn (history commit, frozen prompt, tool state) runs in a Lua script
that first compares the caller's fence with the lease's current one: a
worker whose lease expired and was taken over (GC pause, partition, presumed
dead) gets :class:`~cluster.errors.LeaseLost` and writes nothing.

Failover: replication is asynchronous, so a promoted replica may have missed
the newest grants and would hand their token values out again. Each lease is
therefore granted under an epoch, ``N:replid``: the replication id of the
primary the grant ran on (the script reads it with ``INFO``; a caller cannot
get it wrong), numbered up by one whenever a grant finds a new primary. The
fence a writer presents is ``N:replid/token``; the fenced scripts refuse a
fence granted on another primary, so after a failover no lease granted
before it can write, even one the promoted replica never heard of, and the
worker treats every running turn as having lost its lease (it is deferred and
begun again under a new epoch).

Acquisition also reads the config version and registry generation in the same
round trip, so the turn can check its cached agent is not stale.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import redis

from cluster.durability import NO_DURABILITY, Durability
from cluster.errors import ConfigError, LeaseLost, LeaseVoided
from cluster.keys import Keyspace
from cluster.redis_text import text
from cluster.scripts import ScriptSet

__all__ = [
    "Lease",
    "LeaseHolder",
    "TurnStart",
    "TurnStartStatus",
    "FAILOVER",
    "RedisLeaseStore",
    "lease_lost",
]


@dataclass(frozen=True)
class Lease:
    """A held running-turn lease.

    Attributes:
        session_key: The session.
        token: The fencing token (grows with every grant of the session).
        worker_id: The holder.
        config_version: The cluster config version when the lease was taken.
        registry_generation: The tool registry generation when the lease was taken.
        fence: ``N:replid/token``, what every fenced write presents (the
            token under the epoch of the primary that granted it).
    """

    session_key: str
    token: int
    worker_id: str
    config_version: int
    registry_generation: int
    fence: str = ""

    @property
    def epoch(self) -> int:
        """The failover epoch ``N`` the lease was granted in (0 for an unfenced lease)."""
        head = self.fence.split(":", 1)[0]
        return int(head) if head.isdigit() else 0


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a session's lease right now.

    Attributes:
        token: The holder's fencing token.
        worker_id: The holding worker.
        ttl: Seconds until the lease expires without an extension.
    """

    token: int
    worker_id: str
    ttl: float


class TurnStartStatus(enum.IntEnum):
    """What :meth:`RedisLeaseStore.begin_turn` found (the values are the script's codes)."""

    BUSY = 0
    """Another worker holds the session's lease (a turn runs there): retry later."""
    ACQUIRED = 1
    """The lease is ours: run the turn."""
    ANSWERED = 2
    """The message already has a stored reply: nothing to run."""
    NOT_OWNER = 3
    """The session is owned by another worker: hand the job on."""
    NOT_HEAD = 4
    """An earlier message of the session is still pending: retry later."""
    NOT_PENDING = 5
    """The job is not pending any more (answered or dropped): nothing to run."""


@dataclass(frozen=True)
class TurnStart:
    """The outcome of :meth:`RedisLeaseStore.begin_turn`.

    Attributes:
        status: What was found.
        lease: The lease when ``status`` is ``ACQUIRED``.
        other: The lease holder (``BUSY``), the owner (``NOT_OWNER``) or the
            earlier pending job (``NOT_HEAD``); ``""`` otherwise.
        committed_turns: The session's committed turns when the lease was
            taken (``ACQUIRED``): a cached agent with as many is current.
        workspace_digest: The digest of the session's stored workspace
            snapshot (``ACQUIRED``; ``None`` when it has none).
    """

    status: TurnStartStatus
    lease: Lease | None = None
    other: str = ""
    committed_turns: int = 0
    workspace_digest: str | None = None


def lease_lost(lease: Lease, current_token: bytes | str | None) -> LeaseLost:
    """Build the error for a fenced write refused because ``lease`` is stale.

    Args:
        lease: The caller's lease.
        current_token: The token the session's lease has now (empty/None: no lease).
    """
    current = None if current_token is None else text(current_token)
    if current == FAILOVER:
        return LeaseVoided(
            f"session {lease.session_key!r}: lease token {lease.token} of worker "
            f"{lease.worker_id!r} was granted by an earlier Redis primary (fence {lease.fence}); "
            "a failover since voids every lease granted before it, so this turn must stop "
            "without writing and run again under a new lease"
        )
    now = f"now held with token {current}" if current else "now expired and not held"
    return LeaseLost(
        f"session {lease.session_key!r}: lease token {lease.token} of worker "
        f"{lease.worker_id!r} is no longer valid (lease {now}); another worker took over "
        "or may take over this session's turn, so this turn must stop without writing"
    )


FAILOVER = "failover"
"""What a fenced script answers for a fence granted on an earlier primary."""


def _ttl_ms(ttl: float) -> int:
    if not ttl > 0:
        raise ConfigError(f"lease ttl must be > 0 seconds, got {ttl!r}")
    return max(1, int(ttl * 1000))


class RedisLeaseStore:
    """Leases in Redis (``{ns}:s:{S}:lease`` and the ``{ns}:s:{S}:fence`` counter)."""

    def __init__(
        self, client: redis.Redis, keyspace: Keyspace, *, durability: Durability = NO_DURABILITY
    ) -> None:
        """Create the store on a bytes client (``decode_responses=False``).

        Args:
            client: The client.
            keyspace: The cluster's keyspace.
            durability: With ``replica``, a grant counts only once a replica
                has it (:class:`~cluster.errors.NotReplicated` otherwise).
        """
        self._client = client
        self._keys = keyspace
        self._scripts = ScriptSet(client, durability=durability)

    def acquire(self, session_key: str, worker_id: str, ttl: float) -> Lease | None:
        """Take the session's lease for ``ttl`` seconds, if nobody holds it.

        Returns:
            The lease (with a token larger than every earlier one of this session,
            plus the current config version and registry generation), or ``None``
            when another turn holds it (the same worker included).
        """
        self._keys.check_worker_id(worker_id)
        keys = self._keys.session(session_key)
        reply, (version, generation) = self._scripts.call_with_reads(
            "lease_acquire",
            [keys.lease, keys.fence, keys.fence_epoch],
            [worker_id, _ttl_ms(ttl)],
            [self._keys.config_version(), self._keys.registry_generation()],
        )
        if not int(reply[0]):
            return None
        return Lease(
            session_key=session_key,
            token=int(reply[1]),
            worker_id=worker_id,
            config_version=int(version or 0),
            registry_generation=int(generation or 0),
            fence=text(reply[3]),
        )

    def begin_turn(
        self,
        session_key: str,
        worker_id: str,
        ttl: float,
        *,
        job_id: str,
        message_id: str,
        depth: int = 0,
    ) -> TurnStart:
        """Check that a claimed turn may run here and now, and take the lease if so.

        One round trip (``turn_begin.lua`` plus the config counters): the turn
        runs only on the session's owner, only when its job is the session's
        earliest pending one, and only when no other worker holds the lease; a
        lease left by an earlier, cut-off turn of this same worker is taken
        over at once.

        Args:
            session_key: The session.
            worker_id: The claiming worker.
            ttl: Lease time to live, seconds.
            job_id: The turn's rq job id (a member of the session's pending set).
            message_id: The message id (a stored reply means it was answered).
            depth: The turn's interrupt depth (kept on the lease: a message that
                interrupts this turn runs at ``depth + 1``).
        """
        self._keys.check_worker_id(worker_id)
        keys = self._keys.session(session_key)
        reply, (version, generation) = self._scripts.call_with_reads(
            "turn_begin",
            [
                keys.lease,
                keys.fence,
                keys.owner,
                keys.pending,
                keys.replies,
                keys.meta,
                keys.workspace,
                keys.fence_epoch,
            ],
            [worker_id, _ttl_ms(ttl), job_id, message_id, depth],
            [self._keys.config_version(), self._keys.registry_generation()],
        )
        code, value, holder = int(reply[0]), text(reply[1]), text(reply[2])
        status = TurnStartStatus(code)
        if status is not TurnStartStatus.ACQUIRED:
            return TurnStart(status, other=holder if status is TurnStartStatus.BUSY else value)
        lease = Lease(
            session_key=session_key,
            token=int(value),
            worker_id=worker_id,
            config_version=int(version or 0),
            registry_generation=int(generation or 0),
            fence=text(reply[5]),
        )
        return TurnStart(
            status,
            lease=lease,
            committed_turns=int(reply[3]),
            workspace_digest=text(reply[4]) or None,
        )

    def break_held_by(self, session_key: str, worker_id: str) -> bool:
        """Delete the session's lease if ``worker_id`` holds it (that worker is dead or cut off).

        Returns:
            Whether a lease was broken.
        """
        return bool(
            self._scripts("lease_break", [self._keys.session(session_key).lease], [worker_id])
        )

    def extend(self, lease: Lease, ttl: float) -> bool:
        """Push the lease's expiry to now + ``ttl``; ``False`` when it was lost."""
        return bool(
            self._scripts(
                "lease_extend",
                [self._keys.session(lease.session_key).lease],
                [lease.fence, _ttl_ms(ttl)],
            )
        )

    def release(self, lease: Lease) -> bool:
        """Delete the lease if it is still ``lease``; ``False`` when it was lost."""
        return bool(
            self._scripts(
                "lease_release", [self._keys.session(lease.session_key).lease], [lease.fence]
            )
        )

    def holder(self, session_key: str) -> LeaseHolder | None:
        """Who holds the session's lease, or ``None`` when nobody does."""
        key = self._keys.session(session_key).lease
        pipe = self._client.pipeline(transaction=True)
        pipe.hmget(key, ["token", "worker"])
        pipe.pttl(key)
        (token, worker), pttl = pipe.execute()
        if token is None or worker is None:
            return None
        return LeaseHolder(token=int(token), worker_id=text(worker), ttl=max(0, int(pttl)) / 1000.0)
