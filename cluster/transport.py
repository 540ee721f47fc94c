"""Turn jobs between coordinator and workers: rq's queues, job hashes and registries, our executor.

The coordinator routes each accepted message and puts it on its owner's rq
queue as an rq job in one script (:meth:`TurnQueue.submit`: the owner must be
live and active at that instant, and the message gets the next sequence of
its session's pending set); the worker's claim loop moves job ids from that
queue to its in-flight list (:meth:`TurnQueue.claim_many`), runs the turns on
its own thread pool (``worker.executor``), and records each outcome in rq's
registries (:meth:`TurnQueue.complete`). A job whose session moved is handed
on (:meth:`TurnQueue.hand_off`); a dead or draining worker's jobs move to
their sessions' owners (:meth:`TurnQueue.requeue_inflight`); garbage entries
go to a dead-letter list. Replies travel back on a per-message list
(:class:`ReplyChannel`); a committed turn's reply is delivered by its commit.

Why not rq's workers: the default worker forks per job, losing the
process's agent cache, and ``SimpleWorker`` runs one job at a time with ~20
round trips each, while a worker process needs 32+ I/O-bound turns in flight
sharing one cache. So this module speaks rq's data format (the job hash,
``rq:queue:*``, the started/finished/failed registries, result streams, all
through rq's own classes and always with :class:`MsgpackSerializer`, never
pickle), so rq's tooling can inspect the queues, but runs the jobs itself.
The job function reference is the string :data:`TURN_FUNCTION`; nothing
imports or calls it through rq.

Round trips (measured by ``tests/integration/cluster/test_transport.py``):

* enqueue: 1 (``turn_enqueue.lua``: route, duplicate check, job hash, queue
  push, pending sequence). The first on each queue also registers it in
  ``rq:queues``; a stale routing guess costs one more;
* claim: 2 (``LMOVE`` queue -> in-flight, then one pipeline that reads the
  job, marks it STARTED and adds it to the started registry);
  :meth:`TurnQueue.claim_many` claims up to ``limit`` jobs in the same 2;
  an empty queue adds the blocking ``BLMOVE``;
* complete: 1 (one MULTI/EXEC pipeline).

Limits: rq's keys carry no hash tag, so the queue, the in-flight list and the
job hashes live on different Redis Cluster slots; this module targets a
single Redis (or a primary with replicas), like rq itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from redis.exceptions import WatchError
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.utils import current_timestamp, now, utcformat

from cluster.errors import AgentClusterError, ConfigError, InvalidMessage, NoLiveWorkers
from cluster.keys import Keyspace
from cluster.scripts import ScriptSet
from cluster.serialization import MsgpackSerializer, pack, unpack

__all__ = [
    "TURN_FUNCTION",
    "ClaimedTurn",
    "Enqueued",
    "ReplyChannel",
    "TurnJob",
    "TurnQueue",
    "job_id_for",
]

log = logging.getLogger("cluster.transport")

STRATEGIES = ("enqueue", "interrupt", "reject", "rollback", "stop")
"""Double-texting strategies of a message (what happens while its session's turn runs)."""

TURN_FUNCTION = "worker.turns.run_turn"
"""The rq function reference of every turn job (informational: our executor runs it)."""

# rq job ids are [A-Za-z0-9_-]+; other message ids are digested (see job_id_for).
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
# What a job id taken from a queue may look like (job_id_for's output and rq's).
_CLAIMABLE_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
# Pushed onto a worker's own queue to end its blocking claim at once (a drain);
# claims and requeues discard it. Not a job id: rq ids never contain "~".
WAKE_TOKEN = b"~wake"
# Dead-letter entries kept (oldest dropped first).
_DEAD_LETTER_CAP = 10_000
# Seconds added to the job timeout for the started-registry score, so rq's
# registry cleanup never declares a turn abandoned while it may still run.
_STARTED_MARGIN = 60
# Blocking reads: the shortest server-side block we ask for (Redis treats a
# timeout that rounds to 0 ms as "forever"), the pause when a server answers a
# blocking call at once (fakeredis' BLMOVE), and the socket-timeout headroom.
_MIN_BLOCK = 0.01
_POLL_INTERVAL = 0.02
_SOCKET_MARGIN = 1.0
_WATCH_ATTEMPTS = 50

T = TypeVar("T")


def job_id_for(namespace: str, session_key: str, message_id: str) -> str:
    """Return the rq job id of a message.

    rq's job keys (``rq:job:ID``) are shared by every namespace on a Redis,
    and a message id is only unique within its session (like the session
    store's processed set), so the id is scoped to both:
    ``<namespace>-<message id>-<12 hex digits of a digest>`` when the message
    id is short and made of rq's characters (``[A-Za-z0-9_-]``), otherwise
    ``<namespace>-<40 hex digits>``. The digest is SHA-256 over namespace,
    session key and message id, so one message always maps to one job id.
    """
    digest = hashlib.sha256(
        "\0".join((namespace, session_key, message_id)).encode("utf-8", "surrogatepass")
    ).hexdigest()
    prefix = namespace.replace(".", "_")
    if _JOB_ID_RE.match(message_id):
        return f"{prefix}-{message_id}-{digest[:12]}"
    return f"{prefix}-{digest[:40]}"


@dataclass(frozen=True)
class TurnJob:
    """One accepted user message, as carried by the queue (msgpack-safe).

    Attributes:
        message_id: Caller-chosen id; a message is answered once per id.
        session_key: The conversation the message belongs to.
        text: The user's message.
        submitted_at: Wall-clock time (``time.time()``) the coordinator accepted it.
        attrs: Plain-data extras (platform, user_id, ...), msgpack-safe.
    """

    message_id: str
    session_key: str
    text: str
    submitted_at: float
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("message_id", "session_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidMessage(f"turn job {name} must be a non-empty string, got {value!r}")
        if not isinstance(self.text, str):
            raise InvalidMessage(f"turn job text must be a string, got {type(self.text).__name__}")
        stamp = self.submitted_at
        if (
            isinstance(stamp, bool)
            or not isinstance(stamp, int | float)
            or not math.isfinite(stamp)
        ):
            raise InvalidMessage(
                f"turn job submitted_at must be a finite number (time.time()), got {stamp!r}"
            )
        object.__setattr__(self, "submitted_at", float(stamp))
        if not isinstance(self.attrs, Mapping):
            raise InvalidMessage(
                f"turn job attrs must be a mapping, got {type(self.attrs).__name__}"
            )
        bad_keys = [k for k in self.attrs if not isinstance(k, str)]
        if bad_keys:
            raise InvalidMessage(f"turn job attrs keys must be strings, got {bad_keys[0]!r}")
        attrs = dict(self.attrs)
        try:
            pack(attrs)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidMessage(
                f"turn job attrs must be plain data (str, int, float, bool, None, bytes, "
                f"list, dict): {exc}"
            ) from None
        object.__setattr__(self, "attrs", attrs)

    def as_dict(self) -> dict[str, Any]:
        """The job as plain data (the rq job's kwargs)."""
        return {
            "message_id": self.message_id,
            "session_key": self.session_key,
            "text": self.text,
            "submitted_at": self.submitted_at,
            "attrs": dict(self.attrs),
        }

    @classmethod
    def from_dict(cls, data: Any) -> TurnJob:
        """Rebuild a job from :meth:`as_dict` output; unknown keys are ignored.

        Raises:
            InvalidMessage: ``data`` is not a mapping, a key is missing or a
                value has the wrong type (the message names which).
        """
        if not isinstance(data, Mapping):
            raise InvalidMessage(f"turn job must be a mapping, got {type(data).__name__}")
        missing = [
            k for k in ("message_id", "session_key", "text", "submitted_at") if k not in data
        ]
        if missing:
            raise InvalidMessage(f"turn job is missing {', '.join(missing)}")
        attrs = data.get("attrs", {})
        return cls(
            message_id=data["message_id"],
            session_key=data["session_key"],
            text=data["text"],
            submitted_at=data["submitted_at"],
            attrs={} if attrs is None else attrs,
        )


@dataclass(frozen=True)
class ClaimedTurn:
    """A turn a worker claimed: the job plus what :meth:`TurnQueue.complete` needs.

    Attributes:
        job: The turn.
        worker_id: The worker whose in-flight list holds it.
        job_id: The rq job id.
        queue_name: The rq queue it was claimed from.
        execution_id: This claim's id (the started-registry entry is ``job_id:execution_id``).
        claimed_at: Wall-clock time of the claim.
        seq: The message's place in its session (assigned at enqueue; lower runs first).
    """

    job: TurnJob
    worker_id: str
    job_id: str
    queue_name: str
    execution_id: str
    claimed_at: float
    seq: int = 0


@dataclass(frozen=True)
class Enqueued:
    """What :meth:`TurnQueue.submit` did with a message.

    Attributes:
        status: ``queued`` (on ``worker_id``'s queue), ``answered`` (its stored
            reply was pushed again), ``pending`` (its job is still queued or
            running on live ``worker_id``), ``stranded`` (its job sits on dead
            ``worker_id``: recover that worker, then submit again),
            ``reroute`` (submit again with ``worker_id`` as the target; ``""``
            means the proposal was not eligible: refresh the live set),
            ``busy`` (strategy ``reject`` and a turn runs on ``worker_id``) or
            ``stopped`` (strategy ``stop``: the running turn, if any, was told
            to stop; nothing queued).
        worker_id: See ``status``.
        epoch: The session's ownership epoch (``queued`` only).
        seq: The message's place in its session (``queued`` only).
    """

    status: str
    worker_id: str
    epoch: int = 0
    seq: int = 0


@dataclass(frozen=True)
class _QueueKeys:
    name: str
    queue: str
    started: str
    finished: str
    failed: str


@dataclass
class _RequeuePlan:
    groups: dict[str, list[str]] = field(default_factory=dict)  # target worker -> job ids
    broken: list[tuple[str, str]] = field(default_factory=list)  # (job id, reason)
    missing: list[str] = field(default_factory=list)  # job ids without a job hash
    moved: int = 0


class TurnQueue:
    """The worker queues of one namespace, in rq's format, run by our executor.

    Thread-safe: share one per process. Blocking claims are cut into slices
    shorter than the client's socket timeout, so any client works; a client
    from :func:`cluster.connection.blocking_client` just needs fewer slices.
    """

    def __init__(
        self, client: redis.Redis, keyspace: Keyspace, *, job_timeout: float, result_ttl: float
    ) -> None:
        """Bind to a client (``decode_responses=False``) and a keyspace.

        Args:
            client: Redis client.
            keyspace: Names the worker queues and in-flight lists.
            job_timeout: Seconds a turn may run (rq's job timeout; also how long
                a claim stays in rq's started registry before rq would call it abandoned).
            result_ttl: Seconds a finished or failed job (hash, result, registry
                entry) is kept.
        """
        for name, value in (("job_timeout", job_timeout), ("result_ttl", result_ttl)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"TurnQueue {name} must be seconds > 0, got {value!r}")
        self._client = client
        self._keyspace = keyspace
        self._job_timeout = max(1, math.ceil(job_timeout))
        self._result_ttl = max(1, math.ceil(result_ttl))
        self._lock = threading.Lock()
        self._queues: dict[str, Queue] = {}
        self._registered: set[str] = set()
        self._scripts = ScriptSet(client)

    # -- rq objects and keys -------------------------------------------------

    def _queue(self, worker_id: str) -> Queue:
        name = self._keyspace.worker_queue(worker_id)
        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                queue = Queue(
                    name,
                    connection=self._client,
                    serializer=MsgpackSerializer,
                    default_timeout=self._job_timeout,
                )
                self._queues[name] = queue
            return queue

    def _keys(self, queue_name: str) -> _QueueKeys:
        client, serializer = self._client, MsgpackSerializer
        return _QueueKeys(
            name=queue_name,
            queue=Queue.redis_queue_namespace_prefix + queue_name,
            started=StartedJobRegistry(queue_name, client, serializer=serializer).key,
            finished=FinishedJobRegistry(queue_name, client, serializer=serializer).key,
            failed=FailedJobRegistry(queue_name, client, serializer=serializer).key,
        )

    def _worker_keys(self, worker_id: str) -> _QueueKeys:
        return self._keys(self._keyspace.worker_queue(worker_id))

    # -- enqueue -----------------------------------------------------------------

    def job_id(self, job: TurnJob) -> str:
        """The rq job id of a turn in this namespace (see :func:`job_id_for`)."""
        return job_id_for(self._keyspace.namespace, job.session_key, job.message_id)

    def submit(
        self,
        job: TurnJob,
        *,
        target: str,
        proposal: str,
        reply_ttl: float,
        rebalance_idle: float = 0.0,
        strategy: str = "enqueue",
    ) -> Enqueued:
        """Route a message's session and queue its turn, in one atomic script.

        The job lands on ``target``'s queue only if, at that instant, ``target``
        is the session's owner and live and active (not draining): the session
        keeps an eligible owner, a session without one goes to ``proposal``,
        and an eligible owner that is not ``proposal`` gives the session up to
        it only when the session has been idle for ``rebalance_idle`` seconds
        with nothing pending or running. Otherwise nothing is written and the
        result names the worker to retry with. Each queued message gets the
        next sequence number of its session; turns run in that order.

        A message id already answered is answered again from the stored reply
        (nothing queued); one whose job is still pending on a live worker keeps
        its place; one whose job sits on a dead worker is reported ``stranded``.

        Args:
            job: The turn.
            target: The worker whose queue the caller expects (its owner hint
                or ``proposal``).
            proposal: The consistent-hash choice among the active workers.
            reply_ttl: Seconds a re-pushed stored reply waits for its caller.
            rebalance_idle: Seconds a session must be idle before it moves to
                ``proposal`` from an eligible owner; 0 never moves it.
            strategy: What to do when a turn of the session is running
                (double texting): ``enqueue``, ``interrupt``, ``reject``,
                ``rollback`` or ``stop`` (see ``turn_enqueue.lua``).
        """
        if strategy not in STRATEGIES:
            raise InvalidMessage(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
            )
        target = self._keyspace.check_worker_id(target)
        queue = self._queue(target)
        keys = self._worker_keys(target)
        session = self._keyspace.session(job.session_key)
        job_id = self.job_id(job)
        rq_job = queue.create_job(
            TURN_FUNCTION,
            kwargs=job.as_dict(),
            job_id=job_id,
            timeout=self._job_timeout,
            result_ttl=self._result_ttl,
            failure_ttl=self._result_ttl,
            description=f"turn {job.message_id}",
        )
        rq_job.enqueued_at = now()
        fields: list[Any] = []
        for name, value in rq_job.to_dict().items():
            if name == "status" or value is None:
                continue
            fields += [name, value.value if isinstance(value, JobStatus) else value]
        k = self._keyspace
        status, worker, epoch, seq = self._scripts(
            "turn_enqueue",
            [
                session.owner,
                session.pending,
                session.meta,
                session.lease,
                session.replies,
                k.reply_list(job.session_key, job.message_id),
                k.members_live(),
                k.members_state(),
                Job.key_for(job_id),
                keys.queue,
                k.owned_sessions(target),
            ],
            [
                job.session_key,
                target,
                proposal,
                max(0, math.ceil(rebalance_idle * 1000)),
                job.message_id,
                job_id,
                max(1, math.ceil(reply_ttl * 1000)),
                strategy,
                k.events_channel(),
                *fields,
            ],
        )
        result = Enqueued(_text(status), _text(worker), int(epoch), int(seq))
        if result.status == "queued":
            self._register_queue(queue)
        return result

    def enqueue(self, worker_id: str, job: TurnJob) -> bool:
        """Queue a turn on ``worker_id``, which must be (or become) the session's owner.

        A convenience over :meth:`submit` with ``worker_id`` as both target and
        proposal, for callers that already routed the session.

        Returns:
            ``True`` if queued, ``False`` if the message was pending already
            (or answered again from its stored reply).

        Raises:
            NoLiveWorkers: ``worker_id`` is not the session's eligible owner
                (not live, draining, or another worker owns the session), or the
                message's earlier job is stranded on a dead worker.
        """
        result = self.submit(job, target=worker_id, proposal=worker_id, reply_ttl=self._result_ttl)
        if result.status in ("queued", "pending", "answered"):
            return result.status == "queued"
        raise NoLiveWorkers(
            f"turn {job.message_id!r} of session {job.session_key!r} was not queued on "
            f"{worker_id!r}: {result.status} ({result.worker_id or 'no eligible worker'}); "
            "route it with the coordinator, which follows the session's owner"
        )

    def _register_queue(self, queue: Queue) -> None:
        # rq's tooling lists queues from "rq:queues"; once per queue per process.
        with self._lock:
            if queue.name in self._registered:
                return
            self._registered.add(queue.name)
        self._client.sadd(Queue.redis_queues_keys, queue.key)

    # -- claim ---------------------------------------------------------------

    def claim(self, worker_id: str, *, block: float) -> ClaimedTurn | None:
        """Claim the next turn of a worker's queue (see :meth:`claim_many`)."""
        claimed = self.claim_many(worker_id, 1, block=block)
        return claimed[0] if claimed else None

    def claim_many(self, worker_id: str, limit: int, *, block: float) -> list[ClaimedTurn]:
        """Claim up to ``limit`` turns, oldest first, waiting up to ``block`` s for one.

        Each job id moves atomically from the queue to the worker's in-flight
        list (so a crash never loses it: recovery requeues the in-flight list),
        then one pipeline reads the jobs, marks them STARTED and adds them to
        rq's started registry. Garbage ids and jobs whose hash is gone or that
        cannot be decoded go to the dead-letter list; an id twice in one claim
        is claimed once. A job is never dropped because it looks started
        elsewhere: the turn start decides (answered, owner elsewhere, or run).

        Args:
            worker_id: The claiming worker.
            limit: Most turns to claim (the executor's free capacity).
            block: Seconds to wait when the queue is empty; 0 does not wait.

        Returns:
            The claimed turns, possibly fewer than ``limit`` or none.
        """
        if limit < 1:
            return []
        keys = self._worker_keys(worker_id)
        inflight = self._keyspace.inflight(worker_id)
        moved: list[Any]
        if limit == 1:
            moved = [self._client.lmove(keys.queue, inflight, "LEFT", "RIGHT")]
        else:
            with self._client.pipeline(transaction=False) as pipe:
                for _ in range(limit):
                    pipe.lmove(keys.queue, inflight, "LEFT", "RIGHT")
                moved = pipe.execute()
        moved = [job_id for job_id in moved if job_id is not None]
        if not moved and block > 0:
            moved = [_blocking_read(self._client, self._blmove(keys.queue, inflight), block)]
            moved = [job_id for job_id in moved if job_id is not None]
        if not moved:
            return []
        job_ids = self._sort_out_garbage(worker_id, moved)
        return self._start(worker_id, keys, job_ids) if job_ids else []

    def _sort_out_garbage(self, worker_id: str, raw_ids: list[Any]) -> list[str]:
        """Job ids fit to claim; the rest leave the in-flight list for the dead-letter list."""
        good: list[str] = []
        garbage: list[tuple[Any, str]] = []
        wakes = [raw for raw in raw_ids if raw == WAKE_TOKEN]
        if wakes:
            self._client.lrem(self._keyspace.inflight(worker_id), 0, WAKE_TOKEN)  # type: ignore[arg-type]
        for raw in raw_ids:
            if raw == WAKE_TOKEN:
                continue
            job_id = _job_id_or_none(raw)
            if job_id is None:
                garbage.append((raw, "not a job id (not UTF-8 or not rq's [A-Za-z0-9_-])"))
            else:
                good.append(job_id)
        if garbage:
            with self._client.pipeline(transaction=False) as pipe:
                for raw, reason in garbage:
                    pipe.lrem(self._keyspace.inflight(worker_id), 1, raw)
                    self._dead_letter(pipe, raw, reason, worker_id)
                pipe.execute()
        return good

    def _dead_letter(self, pipe: Any, job_id: Any, reason: str, worker_id: str) -> None:
        shown = job_id if isinstance(job_id, str) else repr(job_id)
        log.error("dead-lettered %s from worker %s: %s", shown, worker_id, reason)
        entry = json.dumps(
            {"job": shown, "reason": reason, "worker": worker_id, "at": time.time()},
            separators=(",", ":"),
        )
        pipe.rpush(self._keyspace.dead_letter(), entry)
        pipe.ltrim(self._keyspace.dead_letter(), -_DEAD_LETTER_CAP, -1)

    def wake_claimer(self, worker_id: str) -> None:
        """End a worker's blocking claim at once (its claim discards the token)."""
        self._client.lpush(self._worker_keys(worker_id).queue, WAKE_TOKEN)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead-letter entries (job, reason, worker, at), oldest first."""
        raw: list[Any] = list(self._client.lrange(self._keyspace.dead_letter(), -limit, -1))
        return [json.loads(_text(entry)) for entry in raw]

    def _blmove(self, source: str, destination: str) -> Callable[[float], Any]:
        def move(seconds: float) -> Any:
            # Redis >= 6 takes a decimal timeout; redis-py's hint says int.
            return self._client.blmove(source, destination, seconds, "LEFT", "RIGHT")  # type: ignore[arg-type]

        return move

    def _start(self, worker_id: str, keys: _QueueKeys, job_ids: list[str]) -> list[ClaimedTurn]:
        claimed_at = time.time()
        started = now()
        stamp = utcformat(started)
        score = current_timestamp() + self._job_timeout + _STARTED_MARGIN
        executions = [(job_id, uuid.uuid4().hex) for job_id in job_ids]
        with self._client.pipeline(transaction=False) as pipe:
            for job_id, execution_id in executions:
                job_key = Job.key_for(job_id)
                pipe.hmget(job_key, ["data", "ac_seq", "ac_depth"])
                pipe.hset(
                    job_key,
                    mapping={
                        "status": JobStatus.STARTED.value,
                        "started_at": stamp,
                        "last_heartbeat": stamp,
                        "worker_name": worker_id,
                    },
                )
                pipe.zadd(keys.started, {f"{job_id}:{execution_id}": score})
            results = pipe.execute()
        claimed: list[ClaimedTurn] = []
        undo: list[tuple[str, str, bool]] = []  # (job id, execution id, delete stub hash)
        dead: list[tuple[str, str]] = []
        seen: set[str] = set()
        for index, (job_id, execution_id) in enumerate(executions):
            data, seq, depth = results[3 * index]
            if data is None:
                undo.append((job_id, execution_id, True))
                dead.append((job_id, "no job hash (expired or deleted)"))
                continue
            if job_id in seen:
                # The same id twice in one claim: run it once. A copy claimed by
                # another claim is run too: the turn start finds it answered or
                # hands it to the session's owner, so nothing runs twice and a
                # job is never dropped on a guess that it runs elsewhere.
                undo.append((job_id, execution_id, False))
                continue
            seen.add(job_id)
            try:
                turn = _decode_turn(data)
                if depth is not None and int(depth) > 0:
                    turn = TurnJob.from_dict(
                        {**turn.as_dict(), "attrs": {**turn.attrs, "interrupt_depth": int(depth)}}
                    )
            except (InvalidMessage, ValueError) as exc:
                dead.append((job_id, f"not a turn job: {exc}"))
                self._finish(worker_id, keys, job_id, execution_id, ok=False, error=str(exc))
                continue
            claimed.append(
                ClaimedTurn(
                    turn,
                    worker_id,
                    job_id,
                    keys.name,
                    execution_id,
                    claimed_at,
                    seq=int(seq or 0),
                )
            )
        if undo or dead:
            inflight = self._keyspace.inflight(worker_id)
            with self._client.pipeline(transaction=False) as pipe:
                for job_id, execution_id, delete in undo:
                    pipe.lrem(inflight, 1, job_id)
                    pipe.zrem(keys.started, f"{job_id}:{execution_id}")
                    if delete:
                        pipe.delete(Job.key_for(job_id))
                for job_id, reason in dead:
                    self._dead_letter(pipe, job_id, reason, worker_id)
                pipe.execute()
        return claimed

    # -- complete --------------------------------------------------------------

    def complete(self, claimed: ClaimedTurn, *, ok: bool, error: str | None = None) -> None:
        """Record a claimed turn's outcome: FINISHED or FAILED, off the in-flight list.

        One MULTI/EXEC pipeline: removes the job id from the in-flight list, the
        session's pending set and its claim from the started registry, sets the job status (and, on
        failure, rq's ``exc_info``), adds the job to the finished or failed
        registry, writes an rq result record and lets all of it expire after
        ``result_ttl``.

        Args:
            claimed: What :meth:`claim_many` returned.
            ok: Whether the turn's handler returned normally.
            error: What went wrong (stored for ``ok=False``).
        """
        keys = self._keys(claimed.queue_name)
        self._finish(
            claimed.worker_id,
            keys,
            claimed.job_id,
            claimed.execution_id,
            ok=ok,
            error=error,
            session_key=claimed.job.session_key,
        )

    def _finish(
        self,
        worker_id: str,
        keys: _QueueKeys,
        job_id: str,
        execution_id: str,
        *,
        ok: bool,
        error: str | None,
        session_key: str | None = None,
    ) -> None:
        job_key = Job.key_for(job_id)
        ended = now()
        status = (JobStatus.FINISHED if ok else JobStatus.FAILED).value
        exc_string = None if ok else (error or "turn failed")
        result = Result(
            job_id=job_id,
            type=Result.Type.SUCCESSFUL if ok else Result.Type.FAILED,
            connection=self._client,
            exc_string=exc_string,
            worker_name=worker_id,
            serializer=MsgpackSerializer,
            execution_id=execution_id,
            execution_ended_at=ended,
        )
        with self._client.pipeline(transaction=True) as pipe:
            pipe.lrem(self._keyspace.inflight(worker_id), 1, job_id)
            pipe.zrem(keys.started, f"{job_id}:{execution_id}")
            pipe.hset(job_key, mapping={"status": status, "ended_at": utcformat(ended)})
            if exc_string is not None:
                pipe.hset(job_key, "exc_info", zlib.compress(exc_string.encode("utf-8", "replace")))
            pipe.expire(job_key, self._result_ttl)
            registry = keys.finished if ok else keys.failed
            pipe.zadd(registry, {job_id: current_timestamp() + self._result_ttl})
            result.save(ttl=self._result_ttl, pipeline=pipe)  # type: ignore[no-untyped-call]
            if session_key is not None:
                pipe.zrem(self._keyspace.session(session_key).pending, job_id)
            pipe.execute()

    def hand_off(self, claimed: ClaimedTurn, to_worker: str) -> bool:
        """Move a claimed turn from this worker's in-flight list to ``to_worker``'s queue front.

        For a job whose session another worker owns now. One script; a job no
        longer on the in-flight list (recovery or a drain moved it already) is
        left where it is.

        Returns:
            Whether this call moved the job.
        """
        target = self._worker_keys(to_worker)
        source = self._keys(claimed.queue_name)
        return bool(
            self._scripts(
                "job_handoff",
                [
                    self._keyspace.inflight(claimed.worker_id),
                    target.queue,
                    Job.key_for(claimed.job_id),
                    source.started,
                ],
                [
                    claimed.job_id,
                    to_worker,
                    target.name,
                    f"{claimed.job_id}:{claimed.execution_id}",
                ],
            )
        )

    def clear_stale_pending(self, session_key: str, job_id: str) -> bool:
        """Drop a pending entry of a session whose job can never run (hash gone, or ended).

        Called when a turn waits behind ``job_id``: a job that ended without
        leaving the pending set, or whose hash vanished, would otherwise hold
        the session's later turns back for ever.

        Returns:
            Whether the entry was stale and removed.
        """
        status = self._client.hget(Job.key_for(job_id), "status")
        if status is not None and _text(status) in (JobStatus.QUEUED.value, JobStatus.STARTED.value):
            return False
        log.warning("session %s: pending job %s has ended or vanished; dropped", session_key, job_id)
        self._client.zrem(self._keyspace.session(session_key).pending, job_id)
        return True

    # -- recovery ----------------------------------------------------------------

    def requeue_inflight(
        self,
        worker_id: str,
        *,
        to_queue_of: Callable[[TurnJob], str] | None = None,
        only: Collection[str] | None = None,
    ) -> int:
        """Put a dead or draining worker's claimed (and queued) turns on their owners' queues.

        Only for turns that are not running: a dead worker's, or those a
        draining worker has not started (``only``). A turn that is still
        running would run twice (the session store answers a message once and
        fencing stops the loser, but the work is wasted).

        The moved ids go to the *front* of their target queue, in-flight ones
        first, each group in its original order: they are older than anything
        queued there since. Turn order within a session is enforced at turn
        start anyway (the session's pending sequence), so a move can never
        reorder a conversation. The move is one transaction guarded by
        ``WATCH`` on the worker's lists; each moved job records its new worker.
        Garbage entries (not a job id, no job hash, not a turn job) go to the
        dead-letter list with the reason.

        Args:
            worker_id: The dead or draining worker.
            to_queue_of: Names the worker whose queue should get each job (the
                session's new owner). ``None`` puts the in-flight jobs back on
                the same worker's queue and leaves its queued jobs where they are.
            only: In-flight job ids to move (the rest stay); ``None`` moves all.

        Returns:
            How many jobs moved: every in-flight job put back on a queue plus
            every queued job moved to another worker's queue.
        """
        source = self._worker_keys(worker_id)
        inflight = self._keyspace.inflight(worker_id)
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(_WATCH_ATTEMPTS):
                try:
                    pipe.watch(inflight, source.queue)  # type: ignore[no-untyped-call]
                    raw_running = list(dict.fromkeys(pipe.lrange(inflight, 0, -1)))
                    raw_waiting: list[Any] = []
                    if to_queue_of is not None:
                        raw_waiting = list(dict.fromkeys(pipe.lrange(source.queue, 0, -1)))
                    if only is not None:
                        wanted = set(only)
                        raw_running = [j for j in raw_running if _job_id_or_none(j) in wanted]
                    running_raw_set = set(raw_running)
                    raw_waiting = [j for j in raw_waiting if j not in running_raw_set]
                    if not raw_running and not raw_waiting:
                        return 0
                    garbage = [
                        j
                        for j in raw_running + raw_waiting
                        if _job_id_or_none(j) is None and j != WAKE_TOKEN
                    ]
                    running = [i for i in map(_job_id_or_none, raw_running) if i is not None]
                    queued = [i for i in map(_job_id_or_none, raw_waiting) if i is not None]
                    plan = self._plan_requeue(worker_id, running, queued, to_queue_of)
                    running_set = set(running)
                    members: list[Any] = list(self._client.zrange(source.started, 0, -1))
                    stale = [m for m in members if _started_job(m) in running_set]
                    pipe.multi()
                    for raw in raw_running:
                        pipe.lrem(inflight, 0, raw)  # type: ignore[arg-type]
                    for raw in garbage:
                        pipe.lrem(source.queue, 0, raw)
                        self._dead_letter(pipe, raw, "not a job id", worker_id)
                    pipe.lrem(source.queue, 0, WAKE_TOKEN)  # type: ignore[arg-type]
                    if to_queue_of is not None:
                        for job_id in queued:
                            pipe.lrem(source.queue, 0, job_id)  # re-pushed below in order
                    self._write_requeue(pipe, worker_id, source, plan)
                    if stale:
                        pipe.zrem(source.started, *stale)
                    pipe.execute()
                    return plan.moved
                except WatchError:
                    continue
        raise AgentClusterError(
            f"could not requeue worker {worker_id!r}: its queue and in-flight list kept changing "
            f"during {_WATCH_ATTEMPTS} attempts; is the worker still claiming? stop it first"
        )

    def _write_requeue(
        self, pipe: Any, worker_id: str, source: _QueueKeys, plan: _RequeuePlan
    ) -> None:
        for target_worker, job_ids in plan.groups.items():
            target = self._worker_keys(target_worker)
            pipe.lpush(target.queue, *reversed(job_ids))
            for job_id in job_ids:
                pipe.hset(
                    Job.key_for(job_id),
                    mapping={
                        "origin": target.name,
                        "status": JobStatus.QUEUED.value,
                        "ac_worker": target_worker,
                    },
                )
        for job_id, reason in plan.broken:
            pipe.hset(
                Job.key_for(job_id),
                mapping={
                    "status": JobStatus.FAILED.value,
                    "exc_info": zlib.compress(reason.encode("utf-8", "replace")),
                },
            )
            pipe.zadd(source.failed, {job_id: current_timestamp() + self._result_ttl})
            self._dead_letter(pipe, job_id, reason, worker_id)
        for job_id in plan.missing:
            self._dead_letter(pipe, job_id, "no job hash (expired or deleted)", worker_id)

    def _plan_requeue(
        self,
        worker_id: str,
        running: list[str],
        queued: list[str],
        to_queue_of: Callable[[TurnJob], str] | None,
    ) -> _RequeuePlan:
        plan = _RequeuePlan()
        ids = running + queued
        with self._client.pipeline(transaction=False) as reads:
            for job_id in ids:
                reads.hget(Job.key_for(job_id), "data")
            payloads = reads.execute()
        running_set = set(running)
        for job_id, data in zip(ids, payloads, strict=True):
            if data is None:
                plan.missing.append(job_id)
                continue
            target = worker_id
            if to_queue_of is not None:
                try:
                    turn = _decode_turn(data)
                except InvalidMessage as exc:
                    plan.broken.append((job_id, f"not a turn job: {exc}"))
                    continue
                target = to_queue_of(turn)
            plan.groups.setdefault(target, []).append(job_id)
            if job_id in running_set or target != worker_id:
                plan.moved += 1
        return plan

    # -- counts ------------------------------------------------------------------

    def pending(self, worker_id: str) -> int:
        """Number of job ids waiting on a worker's queue."""
        return int(self._client.llen(self._worker_keys(worker_id).queue))

    def inflight_ids(self, worker_id: str) -> list[str]:
        """The job ids on a worker's in-flight list (garbage entries left out)."""
        raw: list[Any] = list(self._client.lrange(self._keyspace.inflight(worker_id), 0, -1))
        return [job_id for job_id in map(_job_id_or_none, raw) if job_id is not None]

    def inflight_count(self, worker_id: str) -> int:
        """Number of job ids a worker has claimed and not completed."""
        return int(self._client.llen(self._keyspace.inflight(worker_id)))


class ReplyChannel:
    """Per-message reply lists: the worker pushes one reply, the caller pops it.

    :meth:`wait` blocks in slices shorter than the client's socket timeout, so
    it works on any client; a client from
    :func:`cluster.connection.blocking_client` just needs fewer slices. On
    fakeredis it polls every few milliseconds instead of spinning.
    """

    def __init__(self, client: redis.Redis, keyspace: Keyspace, *, reply_ttl: float) -> None:
        """Bind to a client (``decode_responses=False``) and a keyspace.

        Args:
            client: Redis client.
            keyspace: Names the reply lists.
            reply_ttl: Seconds an unread reply stays available.
        """
        if isinstance(reply_ttl, bool) or not isinstance(reply_ttl, int | float) or reply_ttl <= 0:
            raise ConfigError(f"ReplyChannel reply_ttl must be seconds > 0, got {reply_ttl!r}")
        self._client = client
        self._keyspace = keyspace
        self._ttl_ms = max(1, math.ceil(reply_ttl * 1000))

    def push(self, session_key: str, message_id: str, reply: Mapping[str, Any]) -> None:
        """Deliver a message's reply (RPUSH + PEXPIRE in one MULTI/EXEC).

        Raises:
            InvalidMessage: ``reply`` is not plain msgpack-safe data.
        """
        try:
            data = pack(dict(reply))
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidMessage(
                f"reply for message {message_id!r} is not plain data: {exc}"
            ) from None
        key = self._keyspace.reply_list(session_key, message_id)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, data)
            pipe.pexpire(key, self._ttl_ms)
            pipe.execute()

    def wait(self, session_key: str, message_id: str, timeout: float) -> dict[str, Any] | None:
        """Pop a message's reply, waiting up to ``timeout`` seconds.

        Returns:
            The reply dict, or ``None`` if none arrived in time.

        Raises:
            InvalidMessage: the stored reply is not a msgpack map.
        """
        key = self._keyspace.reply_list(session_key, message_id)
        raw: Any
        if timeout <= 0:
            raw = self._client.lpop(key)
        else:
            popped: Any = _blocking_read(
                self._client, lambda seconds: self._client.blpop([key], seconds), timeout
            )
            raw = None if popped is None else popped[1]
        if raw is None:
            return None
        try:
            value = unpack(raw)
        except ValueError as exc:
            raise InvalidMessage(
                f"reply for message {message_id!r} is not msgpack: {exc}"
            ) from None
        if not isinstance(value, dict):
            raise InvalidMessage(
                f"reply for message {message_id!r} must be a map, got {type(value).__name__}"
            )
        return value


# -- helpers ---------------------------------------------------------------------


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _job_id_or_none(raw: Any) -> str | None:
    """The job id in a list entry, or ``None`` for garbage (not UTF-8, not rq's alphabet)."""
    try:
        job_id = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    except UnicodeDecodeError:
        return None
    return job_id if _CLAIMABLE_RE.match(job_id) else None


def _started_job(member: Any) -> str | None:
    """The job id of a started-registry member ``job_id:execution_id``."""
    text = _job_id_or_none(member.split(b":", 1)[0] if isinstance(member, bytes) else member)
    return text


def _decode_turn(compressed: bytes) -> TurnJob:
    """Decode an rq job's ``data`` field into a :class:`TurnJob` (msgpack only)."""
    try:
        data = zlib.decompress(compressed)
    except zlib.error:
        data = compressed
    try:
        func_name, _instance, _args, kwargs = MsgpackSerializer.loads(data)
    except (ValueError, TypeError) as exc:
        raise InvalidMessage(f"job data is not an rq msgpack payload ({exc})") from None
    if func_name != TURN_FUNCTION:
        raise InvalidMessage(f"job function is {func_name!r}, expected {TURN_FUNCTION!r}")
    return TurnJob.from_dict(kwargs)


def _socket_slice(client: redis.Redis) -> float | None:
    """Longest block that returns before the client's socket read times out."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if timeout is None:
        return None
    timeout = float(timeout)
    return max(timeout - _SOCKET_MARGIN, timeout / 2)


def _blocking_read(
    client: redis.Redis, call: Callable[[float], T | None], timeout: float
) -> T | None:
    """Run a blocking command ``call(seconds)`` until it returns a value or ``timeout`` passes."""
    cap = _socket_slice(client)
    deadline = time.monotonic() + timeout
    first = True
    while True:
        remaining = deadline - time.monotonic()
        if remaining < _MIN_BLOCK and not first:
            return None
        first = False
        seconds = max(_MIN_BLOCK, remaining if cap is None else min(remaining, cap))
        started = time.monotonic()
        result = call(seconds)
        if result is not None:
            return result
        if time.monotonic() - started < seconds / 2:
            # The server answered at once instead of blocking (fakeredis'
            # BLMOVE does): wait a little rather than spin.
            time.sleep(max(0.0, min(_POLL_INTERVAL, deadline - time.monotonic())))
