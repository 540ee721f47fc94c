"""Background processes that report back: ``notify_on_complete``.

A process started with ``notify_on_complete`` is recorded in the cluster's
notifications hash (``Keyspace.notifications``) with the worker that runs and
watches it. Every worker looks at that hash every ``notify_poll_interval``:

- its own entries: once the process ended (exit status written, killed, or
  gone), it sends the session a message with the exit status and the last
  lines of output;
- entries of a worker whose heartbeat is gone (killed, drained and left):
  the process cannot be watched any more (its pid means something only on
  that worker's host), so the session is told the process was lost with its
  host instead of waiting forever.

A session's reset (``/new``) ends its processes and forgets their entries.
The message is queued through the normal path (routed to whichever worker
owns the session then, in order with the session's other messages) under a
message id derived from the process (``bg-<id>-<start ms>``), so however many
workers announce it, and however often, it runs one turn. The entry is
removed once the message is queued. :func:`notice_due` is the pure decision.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis

from agent.tools.background import ProcessStatus, probe
from agent.tools.process import completion_message, lost_message
from cluster.errors import InvalidMessage, NoLiveWorkers
from cluster.jobs import TurnJob
from cluster.keys import Keyspace
from cluster.membership import Membership
from cluster.placement import Placement
from cluster.serialization import pack, unpack
from cluster.transport import TurnQueue

__all__ = ["BackgroundNotices", "Notice", "notice_due"]

log = logging.getLogger("worker.background_notices")

# Job attributes a notification turn carries over from the turn that started the process
# (the agent signature depends on user_id; platform and chat_id say where the session lives).
_CARRIED_ATTRS = ("platform", "user_id", "chat_id")
_ROUTE_ATTEMPTS = 8

Notice = Literal["wait", "ended", "lost"]


def notice_due(
    *, watcher: str, me: str, watcher_alive: bool, status: ProcessStatus | None
) -> Notice:
    """What to do about one pending notification now.

    Args:
        watcher: The worker that started and watches the process.
        me: This worker.
        watcher_alive: Whether ``watcher`` still beats (only asked for others' entries).
        status: The process' status when ``watcher == me`` (else ``None``).

    Returns:
        ``ended`` (tell the session it ended), ``lost`` (its watcher is gone:
        tell the session it was lost) or ``wait``.
    """
    if watcher == me:
        return "ended" if status is not None and status.state != "running" else "wait"
    return "wait" if watcher_alive else "lost"


@dataclass(frozen=True)
class _TurnWatcher:
    """The :class:`~agent.tools.background.CompletionWatcher` of one turn."""

    notices: BackgroundNotices
    attrs: Mapping[str, Any]

    def watch(self, task_id: str, record: dict[str, Any]) -> None:
        self.notices.watch(task_id, record, self.attrs)


class BackgroundNotices:
    """Records ``notify_on_complete`` processes and announces their end (a thread)."""

    def __init__(
        self,
        *,
        client: redis.Redis,
        keyspace: Keyspace,
        worker_id: str,
        queue: TurnQueue,
        placement: Placement,
        membership: Membership,
        reply_ttl: float,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._key = keyspace.notifications()
        self._worker_id = worker_id
        self._queue = queue
        self._placement = placement
        self._membership = membership
        self._reply_ttl = reply_ttl
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def for_turn(self, job: TurnJob) -> _TurnWatcher:
        """The watcher a turn's tools report ``notify_on_complete`` processes to."""
        return _TurnWatcher(self, {k: job.attrs[k] for k in _CARRIED_ATTRS if k in job.attrs})

    def watch(self, session_key: str, record: dict[str, Any], attrs: Mapping[str, Any]) -> None:
        """Record a process whose end the session must be told about."""
        entry = {
            "session": session_key,
            "worker": self._worker_id,
            "record": record,
            "attrs": dict(attrs),
        }
        self._client.hset(self._key, _field(session_key, str(record["id"])), pack(entry))

    def forget(self, session_key: str) -> int:
        """Drop the session's pending notifications (its reset killed those processes)."""
        prefix = _field(session_key, "").encode("utf-8", "surrogatepass")
        fields = [
            f for f, _ in self._client.hscan_iter(self._key, count=200) if f.startswith(prefix)
        ]
        return int(self._client.hdel(self._key, *fields)) if fields else 0

    def check(self) -> int:
        """One look at every pending notification; returns how many were announced."""
        announced = 0
        alive: dict[str, bool] = {}
        for field, blob in self._client.hscan_iter(self._key, count=200):
            try:
                entry = unpack(blob)
                watcher, record = str(entry["worker"]), dict(entry["record"])
                session = str(entry["session"])
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("dropping an unreadable notification %r: %s", field, exc)
                self._client.hdel(self._key, field)
                continue
            status = probe(record) if watcher == self._worker_id else None
            if watcher != self._worker_id and watcher not in alive:
                alive[watcher] = self._membership.is_alive(watcher)
            due = notice_due(
                watcher=watcher,
                me=self._worker_id,
                watcher_alive=alive.get(watcher, True),
                status=status,
            )
            if due == "wait":
                continue
            message = (
                completion_message(record) if due == "ended" else lost_message(record, watcher)
            )
            if self._announce(session, record, message, entry.get("attrs") or {}):
                self._client.hdel(self._key, field)
                announced += 1
        return announced

    def start(self) -> None:
        """Start looking every ``interval`` seconds."""
        self._thread = threading.Thread(target=self._loop, name="notices", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop looking (joins the thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except redis.RedisError as exc:
                log.warning("background notifications not checked (%s); retrying", exc)
            except Exception:  # a bug must not end the loop: the next look retries
                log.exception("background notifications: check failed")

    def _announce(
        self, session: str, record: Mapping[str, Any], message: str, attrs: Mapping[str, Any]
    ) -> bool:
        """Queue the message on the session's owner (the normal path); True once it is queued."""
        started_ms = int(float(record.get("started_at", 0.0)) * 1000)
        job = TurnJob(
            message_id=f"bg-{record.get('id')}-{started_ms}",
            session_key=session,
            text=message,
            submitted_at=self._clock(),
            attrs=dict(attrs),
        )
        hint: str | None = None
        for _ in range(_ROUTE_ATTEMPTS):
            try:
                proposal = self._placement.proposal(session)
            except NoLiveWorkers:
                return False
            try:
                placed = self._queue.submit(
                    job, target=hint or proposal, proposal=proposal, reply_ttl=self._reply_ttl
                )
            except InvalidMessage as exc:
                log.warning("notification for %s refused (%s): dropped", session, exc)
                return True
            if placed.status in ("queued", "pending", "answered"):
                log.info("session %s told: %s", session, message.splitlines()[0])
                return True
            if placed.status == "stranded":
                return False  # its earlier job waits for the dead worker's recovery
            hint = placed.worker_id or None
            if hint is None:
                self._placement.active_workers(fresh=True)
        return False


def _field(session_key: str, proc_id: str) -> str:
    return f"{session_key}\0{proc_id}"
