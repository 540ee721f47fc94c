"""The coordinator's Python API: submit a message for a session, get its reply.

``Coordinator.submit`` validates the message, then routes the session and
enqueues the turn on its owner's rq queue in one atomic script (sticky owner,
else the consistent-hash choice among live, non-draining workers), and waits
for the reply the worker delivers. A message is refused with a clear error
(never accepted and then lost) when no worker can take it or Redis cannot be
reached. Resubmitting a message id always leads to its answer: a stored reply
is delivered again, a job still pending keeps its place, and a job stranded on
a dead worker is handed on (the dead worker is recovered first).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from cluster.connection import blocking_client, connect
from cluster.errors import (
    ClusterUnavailable,
    InvalidMessage,
    NoLiveWorkers,
    TurnFailed,
    TurnRejected,
    TurnTimeout,
)
from cluster.folds import FOLD_ATTR
from cluster.keys import Keyspace
from cluster.lost_messages import LossCheck, PrimaryWatch
from cluster.redis_checks import check_eviction_policy
from cluster.settings import DEFAULT_TURN_TIMEOUT, ClusterSettings
from cluster.stores import build_stores
from cluster.transport import STRATEGIES, Enqueued, ReplyChannel, TurnJob
from coordinator.routing import Router
from coordinator.schedules import Schedules
from coordinator.validation import validate_message

log = logging.getLogger("coordinator.ingress")

RESET_COMMANDS = frozenset({"/new", "/reset", "/clear"})
"""Chat commands that reset the session (hard close, history cleared)."""

# Attempts of one submission (reroutes, a stranded job's recovery) before giving up.
_SUBMIT_ATTEMPTS = 8
_STRANDED_PAUSE = 0.05
# Pause between attempts to read a reply while Redis is unreachable.
_REDIS_RETRY = 0.2
# Longest slice of a reply wait between two checks for a failover that lost the message.
_FAILOVER_SLICE = 2.0


@dataclass(frozen=True)
class Reply:
    """A turn's answer.

    Attributes:
        text: the assistant's final text.
        message_id: the id the message was submitted under.
        worker_id: the worker that ran the turn.
        cache_hit: whether the worker reused a cached agent.
        raw: the whole reply record (usage, turn number, ...).
    """

    text: str
    message_id: str
    worker_id: str
    cache_hit: bool
    raw: Mapping[str, Any]


class TurnHandle:
    """A submitted turn; :meth:`result` waits for its reply.

    Attributes:
        status: What the submission did: ``queued`` (a new turn job, or
            the message's job put back on its worker's queue after a Redis
            failover had left it in no list),
            ``pending`` (the message's job was already waiting), ``answered``
            (its stored reply was delivered again, no turn runs) or
            ``stopped`` (``/stop``: nothing queued).
    """

    def __init__(
        self,
        replies: ReplyChannel,
        session_key: str,
        message_id: str,
        worker_id: str,
        *,
        reply: Reply | None = None,
        status: str = "queued",
        timeout: float = DEFAULT_TURN_TIMEOUT,
        loss_check: LossCheck | None = None,
        primary: str = "",
    ) -> None:
        """A handle on a submitted message.

        Args:
            replies: Where the worker delivers the reply.
            session_key: The message's session.
            message_id: The message.
            worker_id: The worker it was queued on.
            reply: The reply, when the submission already has it.
            status: What the submission did (see the class attributes).
            timeout: Default seconds :meth:`result` waits.
            loss_check: Tells a message a Redis failover lost (``None``: never checked).
            primary: The replication id of the server that accepted the message
                (read by the enqueue script itself, so it names the server that has it).
        """
        self._replies = replies
        self.session_key = session_key
        self.message_id = message_id
        self.worker_id = worker_id
        self.status = status
        self._reply = reply
        self._timeout = timeout
        self._loss_check = loss_check
        self._primary = primary

    def result(self, timeout: float | None = None) -> Reply:
        """Wait for the reply (through Redis outages, up to ``timeout``).

        On a Redis that names its primary (not the embedded one), the wait
        goes in slices; after each one without the reply, a Redis
        failover seen since the message was accepted (the primary's
        replication id changed, :mod:`cluster.lost_messages`) makes it check
        once that Redis still knows the message. A ``timeout`` of 0 polls:
        one look at the reply, then that check.

        Args:
            timeout: Seconds to wait; ``None`` waits as long as a turn may run
                (the coordinator's ``turn_timeout``).

        Raises:
            TurnTimeout: no reply within ``timeout`` (the turn may still finish).
            TurnFailed: the worker ran the turn and it failed.
            MessageLost: a failover lost the message before it was answered
                (``redis_durability: none``): resubmit it with the same id.
        """
        if self._reply is not None:
            return self._reply
        if timeout is None:
            timeout = self._timeout
        deadline = time.monotonic() + timeout
        raw: dict[str, Any] | None = None
        outage = ""
        # Only a Redis that names its primary (INFO replication) can show a failover.
        watched = self._loss_check is not None and bool(self._primary)
        slice_ = _FAILOVER_SLICE if watched else timeout
        while True:
            left = deadline - time.monotonic()
            unreachable = False
            try:
                raw = self._replies.wait(
                    self.session_key, self.message_id, max(0.0, min(left, slice_))
                )
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                outage = f"; Redis was unreachable ({exc})"
                unreachable = True
            if raw is not None:
                break
            if watched and self._loss_check is not None:  # also after READONLY: a failover
                self._primary = self._loss_check.check(
                    self._primary, self.session_key, self.message_id
                )
            if unreachable:
                if left <= 0:
                    break
                time.sleep(min(_REDIS_RETRY, left))
            elif left <= slice_:
                break
        raw = checked_reply(self, raw, timeout=timeout, outage=outage)
        self._reply = Reply(
            text=str(raw["text"]),
            message_id=self.message_id,
            worker_id=str(raw["worker_id"]),
            cache_hit=bool(raw.get("cache_hit")),
            raw=raw,
        )
        return self._reply


def checked_reply(
    handle: TurnHandle, raw: dict[str, Any] | None, *, timeout: float, outage: str = ""
) -> dict[str, Any]:
    """A reply record read for ``handle``, or the error the caller gets instead.

    The Python ingress (:meth:`TurnHandle.result`) and the HTTP gateway both
    answer a missing or failed reply with these errors.

    Args:
        handle: The submitted message.
        raw: The reply record read, ``None`` when none came.
        timeout: Seconds the caller waited.
        outage: Why the wait was cut short, appended to the timeout's message.

    Raises:
        TurnTimeout: no reply came (it may still come: resubmit the same message id).
        TurnFailed: the worker ran the turn and it failed.
    """
    if raw is None:
        raise TurnTimeout(
            f"no reply for message {handle.message_id!r} of session {handle.session_key!r} "
            f"within {timeout:g}s (queued on {handle.worker_id}){outage}; it may still be "
            "answered: send the same message id again to get its answer (it is answered once)"
        )
    if not raw.get("ok"):
        raise TurnFailed(
            f"message {handle.message_id!r} of session {handle.session_key!r} failed on "
            f"worker {raw.get('worker_id')}: {raw.get('error')}"
        )
    return raw


class Coordinator:
    """Routes messages to workers over Redis and returns their replies."""

    def __init__(
        self,
        *,
        settings: ClusterSettings,
        client: redis.Redis | None = None,
        blocking: redis.Redis | None = None,
    ) -> None:
        self.settings = settings
        self.keyspace = Keyspace(settings.namespace)
        self.client = client if client is not None else connect(settings.redis_url)
        self._blocking = (
            blocking
            if blocking is not None
            else blocking_client(settings.redis_url, block_seconds=settings.turn_timeout)
        )
        stores = build_stores(
            settings, client=self.client, queue_client=self.client, reply_client=self._blocking
        )
        self.membership = stores.membership
        self.router = Router(stores.placement)
        self.queue = stores.queue
        self.recovery = stores.recovery
        self.replies = stores.replies
        # Scheduled messages of sessions (create, list, cancel); the workers send them.
        self.schedules = Schedules(settings=settings, client=self.client)
        # Tells a waiting caller its message was lost by a Redis failover.
        self.loss_check = LossCheck(self.client, self.keyspace, PrimaryWatch(self.client))
        try:
            check_eviction_policy(self.client, "coordinator")
        except redis.RedisError as exc:
            log.warning("coordinator: Redis not reachable at start (%s)", exc)

    def _validate(
        self, session_key: Any, text: Any, message_id: Any, attrs: Mapping[str, Any]
    ) -> None:
        """Refuse a malformed or oversized message before anything touches Redis."""
        validate_message(
            session_key,
            text,
            message_id,
            attrs,
            max_text_bytes=self.settings.max_message_bytes,
        )

    def submit_async(
        self,
        session_key: str,
        text: str,
        *,
        message_id: str | None = None,
        strategy: str = "enqueue",
        **attrs: Any,
    ) -> TurnHandle:
        """Validate, route and enqueue; return a handle to wait on.

        Chat commands: ``/new``, ``/reset`` and ``/clear`` reset the session
        (delivered to its owner in order with its messages: the agent is
        hard-closed, history and tool state cleared); ``/stop`` stops the
        running turn and queues nothing.

        Args:
            session_key: The conversation.
            text: The user's message.
            message_id: Caller-chosen id (a message is answered once per id).
            strategy: Double texting, when a turn of the session is running:
                ``enqueue`` (run after it), ``interrupt`` (stop it at its next
                safe point, run this next), ``reject`` (refuse with
                :class:`TurnRejected`), ``rollback`` (stop it and discard its
                messages, run this next), ``steer`` (take this message into
                the running turn at its next safe point, answered by that
                turn's reply; else it runs as the next turn) or ``collect``
                (join it with the other collect messages sent while the turn
                runs into one next turn, after ``collect_window`` of quiet).
            **attrs: ``platform``, ``user_id``, ``chat_id``, ``reasoning``.

        Raises:
            InvalidMessage, PayloadTooLarge: the message is malformed or too big.
            TurnRejected: strategy ``reject`` and a turn of the session is running.
            NoLiveWorkers: no worker can take it (nothing was accepted).
            ClusterUnavailable: Redis cannot be reached (nothing was accepted).
        """
        message_id = message_id or uuid.uuid4().hex
        self._validate(session_key, text, message_id, attrs)
        if strategy not in STRATEGIES or strategy == "stop":
            raise InvalidMessage(
                "strategy must be one of enqueue, interrupt, reject, rollback, steer, collect, "
                f"got {strategy!r} (send /stop as the text to stop a running turn)"
            )
        command = text.strip().lower()
        if command in RESET_COMMANDS:
            attrs = {**attrs, "command": "reset"}
            strategy = "enqueue"
        elif command == "/stop":
            strategy = "stop"
        elif strategy in ("steer", "collect"):
            attrs = {**attrs, FOLD_ATTR: strategy}
        job = TurnJob(
            message_id=message_id,
            session_key=session_key,
            text=text,
            submitted_at=time.time(),
            attrs=dict(attrs),
        )
        try:
            placed = self._place(job, strategy)
        except redis.RedisError as exc:
            raise ClusterUnavailable(
                f"message {message_id!r} of session {session_key!r} was not accepted: Redis "
                f"is unreachable ({exc}); retry with the same message id"
            ) from None
        if placed.status == "busy":
            raise TurnRejected(
                f"message {message_id!r}: session {session_key!r} is busy with a turn on "
                f"{placed.worker_id}; send it again later or with strategy 'enqueue'"
            )
        if placed.status == "stopped":
            stopped = bool(placed.worker_id)
            return TurnHandle(
                self.replies,
                session_key,
                message_id,
                placed.worker_id,
                reply=Reply(
                    text="Stopped the running turn." if stopped else "Nothing was running.",
                    message_id=message_id,
                    worker_id=placed.worker_id,
                    cache_hit=False,
                    raw={"ok": True, "stopped": stopped, "message_id": message_id},
                ),
                status="stopped",
                timeout=self.settings.turn_timeout,
            )
        return TurnHandle(
            self.replies,
            session_key,
            message_id,
            placed.worker_id,
            status=placed.status,
            timeout=self.settings.turn_timeout,
            loss_check=self.loss_check,
            primary=placed.primary,
        )

    def _place(self, job: TurnJob, strategy: str = "enqueue") -> Enqueued:
        """Route and enqueue, following the script's reroutes; recover a stranded job's worker."""
        last = ""
        for _ in range(_SUBMIT_ATTEMPTS):
            target, proposal = self.router.target(job.session_key)
            result = self.queue.submit(
                job,
                target=target,
                proposal=proposal,
                reply_ttl=self.settings.reply_ttl,
                rebalance_idle=self.settings.rebalance_idle,
                strategy=strategy,
            )
            last = f"{result.status} {result.worker_id}".strip()
            if result.status in ("busy", "stopped"):
                return result
            if result.status in ("queued", "pending"):
                self.router.remember(job.session_key, result.worker_id)
                return result
            if result.status == "answered":
                return result
            if result.status == "stranded":
                if self.recovery.recover_worker(result.worker_id) is None:
                    time.sleep(_STRANDED_PAUSE)  # another recoverer is on it
                continue
            if result.worker_id:  # reroute to the session's real owner or the ring's choice
                self.router.remember(job.session_key, result.worker_id)
            else:
                self.router.forget(job.session_key)
                self.router.placement.active_workers(fresh=True)
        raise NoLiveWorkers(
            f"message {job.message_id!r} of session {job.session_key!r} was not accepted: no "
            f"live worker could take it after {_SUBMIT_ATTEMPTS} attempts (last: {last}); "
            "check `agent-cluster` workers are running, then retry with the same message id"
        )

    def submit(
        self,
        session_key: str,
        text: str,
        *,
        message_id: str | None = None,
        timeout: float | None = None,
        strategy: str = "enqueue",
        **attrs: Any,
    ) -> Reply:
        """Submit a message and wait for its reply (see :meth:`submit_async`)."""
        handle = self.submit_async(
            session_key, text, message_id=message_id, strategy=strategy, **attrs
        )
        return handle.result(self.settings.turn_timeout if timeout is None else timeout)

    def close(self) -> None:
        """Close the Redis connections."""
        self.client.close()
        self._blocking.close()
