"""Noticing a message a failover lost: when the primary id is read, what counts as known."""

from __future__ import annotations

import fakeredis
import pytest

from cluster.errors import MessageLost
from cluster.jobs import job_id_for
from cluster.keys import Keyspace
from cluster.lost_messages import PrimaryReads, judge_probe, queue_probe
from cluster.replies import ReplyChannel
from cluster.rq_format import RqFormat


def test_the_primary_is_read_at_most_once_an_interval_and_its_id_kept() -> None:
    reads = PrimaryReads(interval=1.0)
    assert reads.due(100.0)  # never read: read now
    assert reads.record({"role": "master", "master_replid": "aaa"}) == "aaa"
    assert not reads.due(100.5)  # every other caller within the second gets "aaa"
    assert reads.replid == "aaa"
    assert reads.due(101.0)
    assert reads.record({}) == ""  # a server that names no primary (embedded)


def _probe(client: fakeredis.FakeRedis, keyspace: Keyspace, message_id: str) -> None:
    pipe = client.pipeline(transaction=False)
    queue_probe(pipe, keyspace, "s1", message_id)
    judge_probe(pipe.execute(), "s1", message_id)


def test_a_message_with_a_reply_waiting_is_known_and_one_found_nowhere_is_lost() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    keyspace = Keyspace("t")
    ReplyChannel(client, keyspace, reply_ttl=60).push("s1", "m1", {"ok": True, "text": "hi"})
    _probe(client, keyspace, "m1")  # its reply is in its list: not lost
    with pytest.raises(MessageLost, match=r"'m2' of session 's1'.*same message id"):
        _probe(client, keyspace, "m2")


def test_a_job_counts_only_while_a_worker_will_still_run_it() -> None:
    """A worker that held the message across the failover ends its job on the promoted
    replica (which never had it): that writes a bare ``finished`` job hash, and the
    caller must still be told the message was lost."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    keyspace = Keyspace("t")
    job_key = RqFormat.job_key(job_id_for("t", "s1", "m1"))
    client.hset(job_key, mapping={"status": "started", "data": b"..."})
    _probe(client, keyspace, "m1")  # running: not lost
    client.hset(job_key, "status", "queued")
    _probe(client, keyspace, "m1")  # queued: not lost
    client.delete(job_key)
    client.hset(job_key, mapping={"status": "finished", "ended_at": "2026-12-06T07:05:22Z"})
    with pytest.raises(MessageLost, match=r"'m1' of session 's1'"):
        _probe(client, keyspace, "m1")
