"""The messages one turn takes in while it runs (``steer``) or when it starts (``collect``).

A ``steer`` message queued while a turn runs is announced to the worker
running it (event ``steer`` with the turn's lease token, kept in
:class:`SteerSignals` until the turn's next safe point asks). Only then does
the agent's ``steer_callback`` (:meth:`TurnFolding.poll`) go to Redis, so a
turn nobody steers makes no extra round trip. A turn whose message was sent
with ``collect`` first waits out the debounce window, then takes in the
collect messages queued after it (:meth:`TurnFolding.collect`).

What was taken is answered by the turn's commit (:meth:`TurnFolding.answers`);
see :mod:`cluster.folds` for why a folded message is answered exactly once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from cluster.errors import InvalidMessage, LeaseLost
from cluster.folds import COLLECT_MARK, FOLD_ATTR, STEER_MARK, FoldRun, FoldStore, collect_wait_ms
from cluster.leases import Lease

__all__ = ["FOLD_ATTR", "FoldedMessage", "SteerSignals", "TurnFolding"]

log = logging.getLogger("worker.folding")

# Steer announcements kept for turns that have not asked yet.
_SIGNALS = 1024


class SteerSignals:
    """Steer announcements by (session, lease token), until the turn's next safe point."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[tuple[str, int], None] = {}

    def arrived(self, session_key: str, token: int) -> None:
        """A steer message was queued while the session's turn under ``token`` ran."""
        with self._lock:
            self._waiting[(session_key, token)] = None
            while len(self._waiting) > _SIGNALS:
                self._waiting.pop(next(iter(self._waiting)))

    def take(self, session_key: str, token: int) -> bool:
        """Whether a steer message was announced for this turn since the last ask."""
        with self._lock:
            return self._waiting.pop((session_key, token), False) is None


@dataclass(frozen=True)
class FoldedMessage:
    """A queued message a turn took in: its ids and text."""

    message_id: str
    job_id: str
    text: str


class TurnFolding:
    """What one turn (under one lease) takes in, and the answers its commit gives them."""

    def __init__(self, store: FoldStore, lease: Lease, job_id: str, signals: SteerSignals) -> None:
        self._store = store
        self._lease = lease
        self._job_id = job_id
        self._signals = signals
        self._ready: list[str] = []
        self.taken: list[FoldedMessage] = []

    def collect(self, window: float) -> float:
        """Take in the collect messages queued after this turn's, once the window passed.

        Returns:
            Seconds to wait before trying again (0: taken, or nothing to take).

        Raises:
            LeaseLost: the lease was taken over.
            redis.RedisError: Redis failed (the turn is retried).
        """
        run = self._store.look(self._lease, self._job_id, COLLECT_MARK)
        if run is None or not run.candidates:
            return 0.0
        wait = collect_wait_ms(run, round(window * 1000))
        if wait > 0:
            return wait / 1000.0
        last = run.candidates[-1].seq
        taken = self._store.take(self._lease, self._job_id, COLLECT_MARK, last)
        try:
            self._ready += self._load(taken)
        except InvalidMessage as exc:
            log.warning(
                "session %s: collect messages not joined (%s); they run as their own turns",
                self._lease.session_key,
                exc,
            )
        return 0.0

    def poll(self) -> list[str]:
        """The agent's ``steer_callback``: texts to take in at this safe point (often none).

        A Redis failure here only leaves the steer messages to run as turns of their own.
        """
        texts, self._ready = self._ready, []
        if self._signals.take(self._lease.session_key, self._lease.token):
            try:
                texts += self._load(self._store.take(self._lease, self._job_id, STEER_MARK))
            except (redis.RedisError, LeaseLost, InvalidMessage) as exc:
                log.warning(
                    "session %s: steer messages not taken in (%s); they run as their own turns",
                    self._lease.session_key,
                    exc,
                )
        return texts

    def answers(self, reply: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """``(message id, job id, reply)`` of each message taken in, for the turn's commit."""
        into = reply["message_id"]
        return [
            (m.message_id, m.job_id, {**reply, "message_id": m.message_id, "folded_into": into})
            for m in self.taken
        ]

    def _load(self, run: FoldRun) -> list[str]:
        """Read the taken messages, remember them for the commit; their texts in order."""
        if not run.candidates:
            return []
        job_ids = [c.job_id for c in run.candidates]
        jobs = self._store.jobs(job_ids)
        folded = [
            FoldedMessage(job.message_id, job_id, job.text)
            for job_id, job in zip(job_ids, jobs, strict=True)
        ]
        self.taken += folded
        return [m.text for m in folded]
