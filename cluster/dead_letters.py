"""The dead-letter list: queue entries no worker can run, kept with the reason.

A claim (``cluster.claims``) or a requeue (``cluster.requeue``) that meets a
garbage id, a job whose hash is gone or a job that is not a turn takes it off
the worker's lists and records it here (``Keyspace.dead_letter``), capped at
:data:`DEAD_LETTER_CAP` entries; ``agent-cluster status`` shows the newest.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from cluster.keys import Keyspace
from cluster.redis_text import text

__all__ = ["DEAD_LETTER_CAP", "DeadLetters"]

log = logging.getLogger("cluster.dead_letters")

DEAD_LETTER_CAP = 10_000
"""Dead-letter entries kept (oldest dropped first)."""


class DeadLetters:
    """Writes and reads one namespace's dead-letter list."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace) -> None:
        """Bind to a bytes client and a keyspace."""
        self._client = client
        self._key = keyspace.dead_letter()

    def add(self, pipe: Any, job_id: Any, reason: str, worker_id: str) -> None:
        """Queue on ``pipe`` an entry for ``job_id`` (logged as an error with the reason)."""
        shown = job_id if isinstance(job_id, str) else repr(job_id)
        log.error("dead-lettered %s from worker %s: %s", shown, worker_id, reason)
        entry = json.dumps(
            {"job": shown, "reason": reason, "worker": worker_id, "at": time.time()},
            separators=(",", ":"),
        )
        pipe.rpush(self._key, entry)
        pipe.ltrim(self._key, -DEAD_LETTER_CAP, -1)

    def newest(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest entries (job, reason, worker, at), oldest first."""
        raw: list[Any] = list(self._client.lrange(self._key, -limit, -1))
        return [json.loads(text(entry)) for entry in raw]
