"""Folding queued messages into a turn: ``steer`` (into the running turn) and ``collect``.

A message sent with strategy ``steer`` or ``collect`` is queued like any
other (``turn_enqueue.lua``) and marked in its session's folds hash. A turn
then takes in the run of marked messages queued right after it
(``turn_fold.lua``, fenced by its lease): ``steer`` ones at the agent's safe
points while it runs, ``collect`` ones when it starts, once no new one has
arrived for the debounce window (:func:`collect_wait_ms`). Taking only notes
how far the turn got; the commit (``session_commit.lua``) answers the taken
messages with the turn's reply in the same step as the turn's own, so a
folded message is answered by that turn or runs as its own turn, never both.

:func:`collect_wait_ms` is the pure debounce policy; :class:`FoldStore` the
Redis side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from cluster.errors import InvalidMessage
from cluster.jobs import TurnJob, decode_turn
from cluster.keys import Keyspace
from cluster.leases import Lease, lease_lost
from cluster.redis_text import text
from cluster.rq_format import RqFormat
from cluster.scripts import ScriptSet

__all__ = [
    "COLLECT_MARK",
    "FOLD_ATTR",
    "STEER_MARK",
    "FoldCandidate",
    "FoldRun",
    "FoldStore",
    "collect_wait_ms",
]

FOLD_ATTR = "fold"
"""Turn-job attribute naming the message's fold strategy (``steer`` or ``collect``)."""
STEER_MARK = "s"
"""Folds-hash mark of a ``steer`` message (taken at the running turn's safe points)."""
COLLECT_MARK = "c"
"""Folds-hash mark of a ``collect`` message (joined into the next turn at its start)."""

# How many queued messages one look walks at most (a longer run is taken over several turns).
FOLD_LIMIT = 50
_TAKE_ALL = 2**53


@dataclass(frozen=True)
class FoldCandidate:
    """A queued message a turn may take in.

    Attributes:
        job_id: Its rq job id.
        seq: Its place in the session.
        arrived_ms: When it was queued (Redis clock, ms); ``None`` for a steer mark.
    """

    job_id: str
    seq: int
    arrived_ms: int | None


@dataclass(frozen=True)
class FoldRun:
    """What one look at the folds found.

    Attributes:
        now_ms: Redis' clock when it looked.
        own_arrived_ms: When the turn's own message was queued, if it is a
            collect message itself (``None`` otherwise).
        candidates: The run of marked messages after what the turn took already, in order.
    """

    now_ms: int
    own_arrived_ms: int | None
    candidates: tuple[FoldCandidate, ...]


def collect_wait_ms(run: FoldRun, window_ms: int) -> int:
    """How long a collecting turn waits before it takes its run in (0: take it now).

    Debounce: the run is joined once ``window_ms`` passed since the newest of
    its messages (the turn's own included) arrived. A run without arrival
    times waits for nothing.

    Args:
        run: What :meth:`FoldStore.look` found.
        window_ms: The debounce window (``ClusterSettings.collect_window``, ms).
    """
    arrivals = [c.arrived_ms for c in run.candidates if c.arrived_ms is not None]
    if run.own_arrived_ms is not None:
        arrivals.append(run.own_arrived_ms)
    if not arrivals or window_ms <= 0:
        return 0
    return max(0, max(arrivals) + window_ms - run.now_ms)


def _arrival(raw: object) -> int | None:
    value = text(raw) if isinstance(raw, bytes) else str(raw)
    return int(value) if value.isdigit() else None


class FoldStore:
    """The Redis side of folding: look at and take a turn's run, read the taken messages."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace) -> None:
        self._client = client
        self._keys = keyspace
        self._scripts = ScriptSet(client)

    def look(self, lease: Lease, job_id: str, mark: str) -> FoldRun | None:
        """The run of ``mark`` messages after the turn's job (nothing taken).

        Returns:
            The run, or ``None`` when the turn's job is not pending (nothing to fold into).

        Raises:
            LeaseLost: the lease was taken over.
        """
        return self._call(lease, job_id, mark, upto=0)

    def take(self, lease: Lease, job_id: str, mark: str, upto: int = _TAKE_ALL) -> FoldRun:
        """Take the run of ``mark`` messages after the turn's job, up to sequence ``upto``.

        Returns:
            The newly taken messages (an empty run when there were none).

        Raises:
            LeaseLost: the lease was taken over.
        """
        run = self._call(lease, job_id, mark, upto=upto)
        return run if run is not None else FoldRun(0, None, ())

    def jobs(self, job_ids: Sequence[str]) -> list[TurnJob]:
        """The queued messages of ``job_ids``, in order (one pipelined read of their job hashes).

        Raises:
            InvalidMessage: a job hash is gone or unreadable (its message cannot be folded).
        """
        pipe = self._client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(RqFormat.job_key(job_id), "data")
        found: list[TurnJob] = []
        for job_id, data in zip(job_ids, pipe.execute(), strict=True):
            if not isinstance(data, bytes):
                raise InvalidMessage(f"queued job {job_id} has no data to fold in")
            found.append(decode_turn(data))
        return found

    def _call(self, lease: Lease, job_id: str, mark: str, *, upto: int) -> FoldRun | None:
        if mark not in (STEER_MARK, COLLECT_MARK):
            raise InvalidMessage(
                f"fold mark must be {STEER_MARK!r} or {COLLECT_MARK!r}, got {mark!r}"
            )
        keys = self._keys.session(lease.session_key)
        raw = self._scripts(
            "turn_fold",
            [keys.lease, keys.pending, self._keys.session_folds(lease.session_key)],
            [lease.token, job_id, mark, upto, FOLD_LIMIT],
        )
        status = int(raw[0])
        if status == 0:
            raise lease_lost(lease, "")
        if status == 2:
            return None
        rest = raw[3:]
        candidates = tuple(
            FoldCandidate(text(rest[i]), int(rest[i + 1]), _arrival(rest[i + 2]))
            for i in range(0, len(rest), 3)
        )
        return FoldRun(now_ms=int(raw[1]), own_arrived_ms=_arrival(raw[2]), candidates=candidates)
