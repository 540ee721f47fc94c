"""Telling a waiting caller that a Redis failover lost its message, instead of letting it wait.

With ``redis_durability: none`` a failover may promote a replica that never
got a message the old primary accepted: no worker will ever answer it, and
its caller would wait until its timeout and then retry blindly. A caller
notices a failover by the primary's replication id (``INFO replication``: a
promoted replica takes a new one), read at most once a second per process
(:class:`PrimaryReads` decides when, :class:`PrimaryWatch` reads), differing
from the one of the server that accepted its message (the Python API gets
that from the enqueue script; the gateway reads it when the wait begins). After one,
each waiting caller checks whether Redis still knows its message (its
job queued or running, its stored reply or its reply list, :func:`queue_probe`); a message
found nowhere ends the wait with :class:`~cluster.errors.MessageLost`
(:func:`judge_probe`): resubmit it with the same message id.

One check is not enough: for a while after a failover a message found once
can still go. Sentinel demotes a resumed old primary only about 10 s after
it comes back, and drops what was written to it meanwhile, and under load it
can fail over a second time to a replica that had not caught up. Callers
therefore check again every :data:`RECHECK_INTERVAL` seconds until
:data:`SETTLE_WINDOW` seconds after the last failover seen
(:class:`AfterFailover`). A failover chaos run at load average 148 had
Sentinel fail over twice within 2 s; 5 callers then heard nothing for 20 s,
and their resubmissions found their messages gone.

Both the Python API (:meth:`coordinator.ingress.TurnHandle.result`, through
:class:`LossCheck`) and the HTTP gateway (its asyncio shell,
:mod:`coordinator.http.failover_watch`) use these pieces.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import redis

from cluster.errors import MessageLost
from cluster.jobs import job_id_for
from cluster.keys import Keyspace
from cluster.rq_format import RqFormat

__all__ = [
    "CHECK_INTERVAL",
    "RECHECK_INTERVAL",
    "SETTLE_WINDOW",
    "AfterFailover",
    "LossCheck",
    "PrimaryReads",
    "PrimaryWatch",
    "judge_probe",
    "queue_probe",
]

CHECK_INTERVAL = 1.0
"""Least seconds between two reads of the primary's replication id (per process)."""


class PrimaryReads:
    """When to read the primary's replication id again, and the last one read (pure policy)."""

    def __init__(self, interval: float = CHECK_INTERVAL) -> None:
        """Args: interval: least seconds between two reads."""
        self._interval = interval
        self._read_at: float | None = None
        self.replid = ""

    def due(self, now: float) -> bool:
        """Whether to read now; a ``True`` answer counts as the read started at ``now``."""
        if self._read_at is not None and now - self._read_at < self._interval:
            return False
        self._read_at = now
        return True

    def record(self, info: Mapping[Any, Any]) -> str:
        """Keep the replication id of an ``INFO replication`` reply; return it."""
        self.replid = str(info.get("master_replid", ""))
        return self.replid


SETTLE_WINDOW = 30.0
"""Seconds after the last failover seen during which waiting callers keep checking."""

RECHECK_INTERVAL = 5.0
"""Seconds between two checks of the gateway's waiting callers within :data:`SETTLE_WINDOW`."""


class AfterFailover:
    """When waiting callers look for a lost message: at each failover and for a while after it.

    Pure policy, fed the primary's replication id as it is read. A new id
    (after one was seen) is a failover: callers check at once. For
    ``window`` seconds after the last one, :meth:`settling` is true and
    :meth:`recheck_due` is true once every ``every`` seconds.
    """

    def __init__(self, *, window: float = SETTLE_WINDOW, every: float = RECHECK_INTERVAL) -> None:
        """Args: window: seconds of checking after a failover; every: seconds between rechecks."""
        self._window = window
        self._every = every
        self._seen: str | None = None
        self._failed_over_at: float | None = None
        self._checked_at = 0.0

    def failed_over(self, primary: str, now: float) -> bool:
        """Note the id read at ``now``; whether it is a failover (a new id after a first one)."""
        changed = self._seen is not None and primary != self._seen
        self._seen = primary
        if changed:
            self._failed_over_at = self._checked_at = now
        return changed

    def settling(self, now: float) -> bool:
        """Whether ``now`` is within the window after the last failover."""
        return self._failed_over_at is not None and now - self._failed_over_at < self._window

    def recheck_due(self, now: float) -> bool:
        """Within the window, true once every ``every`` seconds (counts as the recheck done)."""
        if not self.settling(now) or now - self._checked_at < self._every:
            return False
        self._checked_at = now
        return True


_LIVE_JOB = frozenset({b"queued", b"started", "queued", "started"})
"""rq statuses of a job that a worker will still run (bytes or text, as the client decodes)."""


class _Pipeline(Protocol):
    """The pipeline calls :func:`queue_probe` makes (sync and asyncio pipelines both have them)."""

    def exists(self, *names: str) -> Any: ...

    def hexists(self, name: str, key: str) -> Any: ...

    def hget(self, name: str, key: str) -> Any: ...


def queue_probe(pipe: _Pipeline, keyspace: Keyspace, session_key: str, message_id: str) -> None:
    """Queue on ``pipe`` the reads that say whether Redis still knows a message.

    A message is known while its job is queued or running, its reply is
    stored (kept for the retention), or its reply list holds the reply. An
    ended job without a stored reply does not count: a worker that held the
    message in memory across the failover finds it no longer pending on the
    promoted replica and ends its job there, which writes a job hash of
    status ``finished`` and nothing else. Pass the pipeline's results to
    :func:`judge_probe`.
    """
    pipe.hget(RqFormat.job_key(job_id_for(keyspace.namespace, session_key, message_id)), "status")
    pipe.hexists(keyspace.session(session_key).replies, message_id)
    pipe.exists(keyspace.reply_list(session_key, message_id))


def judge_probe(found: Sequence[Any], session_key: str, message_id: str) -> None:
    """Raise :class:`MessageLost` when none of :func:`queue_probe`'s reads found the message."""
    status, stored, listed = found
    if status in _LIVE_JOB or stored or listed:
        return
    raise MessageLost(
        f"message {message_id!r} of session {session_key!r} was accepted, but a Redis failover "
        "lost it before it was answered (the promoted replica never got it; "
        "redis_durability none): resubmit it with the same message id"
    )


class PrimaryWatch:
    """The replication id of the Redis primary, as this process last read it (thread-safe)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Bind to a client.

        Args:
            client: The Redis client.
            interval: Least seconds between two reads.
            clock: Monotonic seconds.
        """
        self._client = client
        self._clock = clock
        self._reads = PrimaryReads(interval)
        self._after = AfterFailover()
        self._lock = threading.Lock()

    def settling(self) -> bool:
        """Whether this process saw a failover within the last :data:`SETTLE_WINDOW` seconds."""
        with self._lock:
            return self._after.settling(self._clock())

    def current(self) -> str:
        """The primary's replication id (``""`` where Redis cannot say, e.g. embedded).

        One thread reads while the others get the id read last, so a slow or
        unreachable Redis holds up no more than the thread that reads.
        """
        with self._lock:
            if not self._reads.due(self._clock()):
                return self._reads.replid
        try:
            info = self._client.info("replication")
        except (redis.RedisError, OSError):  # refused (embedded) or unreachable: judged later
            with self._lock:
                return self._reads.replid
        with self._lock:
            primary = self._reads.record(info)
            self._after.failed_over(primary, self._clock())
            return primary


class LossCheck:
    """Whether a failover lost a waiting caller's message (the Python API's check)."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace, watch: PrimaryWatch) -> None:
        """Args: client: the Redis client; keyspace: names the keys; watch: the primary's id."""
        self._client = client
        self._keyspace = keyspace
        self._watch = watch

    def check(self, seen: str, session_key: str, message_id: str) -> str:
        """Raise :class:`MessageLost` if a failover since ``seen`` lost the message.

        Args:
            seen: The replication id of the server that last had the message:
                the one the enqueue script ran on (``turn_enqueue.lua`` returns
                it), then the one of the last check that found it.
            session_key: The message's session.
            message_id: The message.

        Within :data:`SETTLE_WINDOW` seconds of a failover this process saw,
        it probes at every call even when the primary is ``seen``: a message
        found once can still be lost then (see the module's docstring).

        Returns:
            The primary's replication id now: pass it as ``seen`` next time.
            An unreachable Redis proves nothing: the message counts as known.
        """
        primary = self._watch.current()
        if primary == seen and not self._watch.settling():
            return seen
        pipe = self._client.pipeline(transaction=False)
        queue_probe(pipe, self._keyspace, session_key, message_id)
        try:
            found = pipe.execute()
        except (redis.RedisError, OSError):
            return seen  # asked again at the next check
        judge_probe(found, session_key, message_id)
        return primary
