"""Claiming turn jobs: a worker moves job ids from its rq queue to its in-flight list.

:class:`Claimer` is the claim half of :class:`cluster.transport.TurnQueue`.
A claim is one round trip when the worker waits (a blocking pop and
``turn_claim.lua`` in one pipeline, see :meth:`Claimer.claim_many`), and hands
back :class:`~cluster.jobs.ClaimedTurn` values for the executor. Entries no
worker can run go to the dead-letter list (:mod:`cluster.dead_letters`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Any, Protocol

import redis

from cluster.blocking import blocking_read
from cluster.dead_letters import DeadLetters
from cluster.errors import InvalidMessage
from cluster.jobs import ClaimedTurn, ClaimRef, TurnJob, decode_turn, job_id_or_none
from cluster.keys import Keyspace
from cluster.redis_text import text
from cluster.requeue import WAKE_TOKEN
from cluster.rq_format import QueueKeys, RqFormat
from cluster.scripts import ScriptSet

__all__ = ["Claimer", "EndJob"]


class EndJob(Protocol):
    """Records a claimed job as ended (off the in-flight list, rq's status and registries)."""

    def __call__(
        self,
        worker_id: str,
        keys: QueueKeys,
        job_id: str,
        execution_id: str,
        *,
        ok: bool,
        error: str | None,
    ) -> None: ...


class Claimer:
    """Claims the turn jobs of one namespace's worker queues (thread-safe)."""

    def __init__(
        self,
        client: redis.Redis,
        keyspace: Keyspace,
        *,
        rq_format: RqFormat,
        scripts: ScriptSet,
        dead_letters: DeadLetters,
        end_job: EndJob,
    ) -> None:
        """Bind to the turn queue's client, formats, scripts and dead-letter list.

        Args:
            client: Redis client (``decode_responses=False``).
            keyspace: Names the in-flight lists.
            rq_format: rq's queues, keys and stamps.
            scripts: The registered Lua scripts.
            dead_letters: Where entries no worker can run go.
            end_job: Records a claimed job that is not a turn as failed.
        """
        self._client = client
        self._keyspace = keyspace
        self._rq = rq_format
        self._scripts = scripts
        self._dead_letters = dead_letters
        self._end_job = end_job

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
                A blocking claim is one round trip: the blocking pop and the
                claim script in one pipeline (an idle worker sends one per
                ``block`` seconds and nothing else).

        Returns:
            The claimed turns, possibly fewer than ``limit`` or none.
        """
        if limit < 1:
            return []
        keys = self._rq.worker_keys(worker_id)
        inflight = self._keyspace.inflight(worker_id)
        if block <= 0:
            rows = self._claim(keys, inflight, worker_id, limit, moved=())
        else:
            popped = blocking_read(
                self._client,
                lambda seconds: self._pop_and_claim(keys, inflight, worker_id, limit, seconds),
                block,
            )
            if popped is None:
                return []
            moved, rows = popped
            if moved is not None and moved != WAKE_TOKEN and moved not in rows[::5]:
                # The pop moved an id the script could not take (no job hash, say).
                rows += self._claim(keys, inflight, worker_id, 0, moved=(moved,))
        return self._claimed(worker_id, keys, rows) if rows else []

    def wake(self, worker_id: str) -> None:
        """End a worker's blocking claim at once (its claim discards the token)."""
        self._client.lpush(self._rq.worker_keys(worker_id).queue, WAKE_TOKEN)

    def _pop_and_claim(
        self, keys: QueueKeys, inflight: str, worker_id: str, limit: int, seconds: float
    ) -> tuple[Any, list[Any]] | None:
        """A blocking pop and the claim script behind it, one round trip (None: nothing came)."""
        moved, rows = self._scripts.call_after_move(
            "turn_claim",
            [keys.queue, inflight, keys.started],
            self._claim_args(worker_id, limit - 1, tail=True, moved=()),
            (keys.queue, inflight, seconds),
        )
        if moved is None and not rows:
            return None
        return moved, list(rows)

    def _claim(
        self, keys: QueueKeys, inflight: str, worker_id: str, limit: int, *, moved: tuple[Any, ...]
    ) -> list[Any]:
        """Run ``turn_claim.lua``: five entries per claimed id (id, execution, data, seq, depth)."""
        return list(
            self._scripts(
                "turn_claim",
                [keys.queue, inflight, keys.started],
                self._claim_args(worker_id, limit, tail=False, moved=moved),
            )
        )

    def _claim_args(
        self, worker_id: str, limit: int, *, tail: bool, moved: tuple[Any, ...]
    ) -> list[Any]:
        stamp, score = self._rq.started_stamp()
        return [limit, self._rq.job_key_prefix(), stamp, score, worker_id,
                uuid.uuid4().hex, WAKE_TOKEN, "1" if tail else "0", *moved]  # fmt: skip

    def _claimed(self, worker_id: str, keys: QueueKeys, rows: list[Any]) -> list[ClaimedTurn]:
        """The claimed turns of a claim script's reply; the rest leave the in-flight list."""
        claimed_at = time.time()
        claimed: list[ClaimedTurn] = []
        undo: list[tuple[Any, str | None]] = []  # (raw id, started member or None) to take back
        dead: list[tuple[Any, str]] = []
        seen: set[str] = set()
        for index in range(0, len(rows), 5):
            raw, execution, data, seq, depth = rows[index : index + 5]
            execution_id = text(execution)
            job_id = job_id_or_none(raw)
            if job_id is None:
                undo.append((raw, None))
                dead.append((raw, "not a job id (not UTF-8 or not rq's [A-Za-z0-9_-])"))
                continue
            if data is None:
                undo.append((job_id, None))
                dead.append((job_id, "no job hash (expired or deleted)"))
                continue
            if job_id in seen:
                # The same id twice in one claim: run it once. A copy claimed by
                # another claim is run too: the turn start finds it answered or
                # hands it to the session's owner, so nothing runs twice and a
                # job is never dropped on a guess that it runs elsewhere.
                undo.append((job_id, f"{job_id}:{execution_id}"))
                continue
            seen.add(job_id)
            try:
                turn = decode_turn(data)
                if depth is not None and int(depth) > 0:
                    turn = TurnJob.from_dict(
                        {**turn.as_dict(), "attrs": {**turn.attrs, "interrupt_depth": int(depth)}}
                    )
            except (InvalidMessage, ValueError) as exc:
                dead.append((job_id, f"not a turn job: {exc}"))
                self._end_job(worker_id, keys, job_id, execution_id, ok=False, error=str(exc))
                continue
            claim = ClaimRef(worker_id, job_id, keys.name, execution_id)
            claimed.append(ClaimedTurn(replace(turn, claim=claim), claimed_at, seq=int(seq or 0)))
        if undo or dead:
            inflight = self._keyspace.inflight(worker_id)
            with self._client.pipeline(transaction=False) as pipe:
                for raw, member in undo:
                    pipe.lrem(inflight, 1, raw)
                    if member is not None:
                        pipe.zrem(keys.started, member)
                for raw, reason in dead:
                    self._dead_letters.add(pipe, raw, reason, worker_id)
                pipe.execute()
        return claimed
