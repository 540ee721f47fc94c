"""A worker across a Redis failover that loses its newest commit (``redis_durability: none``).

The promoted replica got the turn's claim but not its commit: there the
message is still pending and listed in flight on the worker that answered it
on the old primary. The old primary is paused, not killed, so the worker's
blocked commands just return once it resumes and no connection error tells
the worker anything. It notices the new primary at its next heartbeat and
runs the turn again, so the caller still gets exactly one answer and the
history holds the message once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.connection import connect
from cluster.jobs import job_id_for
from cluster.keys import Keyspace
from cluster.rq_format import RqFormat
from tests.support.fleet import coordinator, fleet, user_texts
from tests.support.lost_messages import reported_lost
from tests.support.sentinel_topology import SentinelTopology, wait_until

pytestmark = pytest.mark.integration

SLOW = "!sh sleep 2; echo slow-done"


def test_a_commit_the_promoted_replica_missed_is_run_again_and_answered_once(
    sentinels: SentinelTopology, tmp_path: Path, namespace: str
) -> None:
    keyspace = Keyspace(namespace)
    job_key = RqFormat.job_key(job_id_for(namespace, "s1", "m1"))
    with fleet(sentinels.url, namespace, tmp_path) as workers:
        workers.start("w1")
        with coordinator(workers.settings()) as coord:
            assert coord.submit("s1", "hello", message_id="m0").text  # the session is warm
            handle = coord.submit_async("s1", SLOW, message_id="m1")
            old = sentinels.primary().client()
            try:
                wait_until(lambda: old.hget(job_key, "status") == b"started", timeout=10)
                sentinels.wait_replicas_in_sync()  # the replicas have the claim ...
                sentinels.lag_replicas()  # ... and not what comes next: the commit
                wait_until(
                    lambda: old.hexists(keyspace.session("s1").replies, "m1"),
                    timeout=15,
                    what="m1 committed on the old primary",
                )
            finally:
                old.close()
            # SIGSTOP, not kill -9: the worker's blocked commands get their answers from
            # the old primary once it resumes, so no connection error tells it anything.
            paused, stopped = sentinels.pause_primary()
            sentinels.wait_for_failover(paused.address, stopped)
            sentinels.resume(paused)
            reply = handle.result(timeout=30)
            assert "slow-done" in reply.text
        client = connect(sentinels.url)
        try:
            assert user_texts(client, namespace, "s1") == ["hello", SLOW]
        finally:
            client.close()


def test_a_message_the_failover_lost_is_reported_though_a_worker_held_it(
    sentinels: SentinelTopology, tmp_path: Path, namespace: str
) -> None:
    """The replicas never got the message; the worker that was running it retries on the
    promoted replica and finds it not pending. Its caller must still hear that it was lost
    (before, the worker ended the job there, and the bare ``finished`` job hash that left
    made the message look known)."""
    job_key = RqFormat.job_key(job_id_for(namespace, "s1", "m1"))
    with fleet(sentinels.url, namespace, tmp_path) as workers:
        workers.start("w1")
        with coordinator(workers.settings()) as coord:
            assert coord.submit("s1", "hello", message_id="m0").text
            sentinels.wait_replicas_in_sync()
            sentinels.lag_replicas()  # nothing of m1 reaches them
            handle = coord.submit_async("s1", SLOW, message_id="m1")
            old = sentinels.primary().client()
            try:
                wait_until(lambda: old.hget(job_key, "status") == b"started", timeout=10)
            finally:
                old.close()
            dead, died = sentinels.kill_primary()  # mid-turn: its commit never lands
            sentinels.wait_for_failover(dead.address, died)
            wait_until(lambda: reported_lost(handle), timeout=30, what="MessageLost for m1")
            promoted = connect(sentinels.url)
            try:  # the worker let go of its claim and left no job behind
                wait_until(lambda: not promoted.lrange(Keyspace(namespace).inflight("w1"), 0, -1))
                assert promoted.hget(job_key, "status") is None
            finally:
                promoted.close()
