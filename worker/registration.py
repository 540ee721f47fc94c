"""A worker's entry in the membership set, and taking over an id whose holder died here.

:func:`register_worker` registers a worker (at start, and again when it
finds it was declared dead). A worker id is unique among live workers; an id
still held by a process on this host that no longer exists (a restart right
after a kill -9, before its heartbeat expired) is taken over instead of
refused.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from cluster.errors import WorkerIdInUse
from cluster.keys import Keyspace
from cluster.membership import RedisMembership

log = logging.getLogger("worker.process")


def register_worker(
    membership: RedisMembership,
    keyspace: Keyspace,
    *,
    worker_id: str,
    instance: str,
    force: bool = False,
) -> None:
    """Register this process as ``worker_id`` (its own queue, host and pid).

    Raises:
        WorkerIdInUse: a live process (another host's, or one alive here) holds the id.
    """
    try:
        membership.register(
            worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queue=keyspace.worker_queue(worker_id),
            instance=instance,
            force=force,
        )
    except WorkerIdInUse:
        facts = membership.holder_facts(worker_id)
        if force or not dead_here(facts):
            raise
        log.warning(
            "worker id %s was held by pid %s, which is gone; taking it over",
            worker_id,
            facts.get("pid"),
        )
        register_worker(membership, keyspace, worker_id=worker_id, instance=instance, force=True)


def dead_here(facts: Mapping[str, Any]) -> bool:
    """Whether registered facts name a process on this host that no longer exists."""
    if facts.get("host") != socket.gethostname():
        return False
    try:
        pid = int(facts.get("pid", 0))
    except (TypeError, ValueError):
        return False
    if pid <= 0 or pid == os.getpid():
        return pid == os.getpid()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
