"""Noticing a message a failover lost: when the primary id is read, what counts as known."""

from __future__ import annotations

import fakeredis
import pytest

from cluster.errors import MessageLost
from cluster.jobs import job_id_for
from cluster.keys import Keyspace
from cluster.lost_messages import (
    AfterFailover,
    LossCheck,
    PrimaryReads,
    PrimaryWatch,
    judge_probe,
    queue_probe,
)
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


def test_after_a_failover_callers_check_again_for_a_while_then_stop() -> None:
    after = AfterFailover(window=30.0, every=5.0)
    assert not after.failed_over("aaa", 0.0)  # the first id read is no failover
    assert not after.settling(1.0) and not after.recheck_due(1.0)
    assert after.failed_over("bbb", 10.0)  # promoted replica: check now
    assert after.settling(10.0) and not after.recheck_due(12.0)
    assert after.recheck_due(15.0) and not after.recheck_due(16.0)  # once per 5 s
    assert not after.failed_over("bbb", 20.0)  # the same primary: no new failover
    assert after.recheck_due(20.0)
    assert not after.settling(40.0) and not after.recheck_due(40.0)  # settled: callers wait
    assert after.failed_over("aaa", 50.0) and after.settling(79.0) and not after.settling(80.0)


class _Replicated(fakeredis.FakeRedis):
    """fakeredis has no INFO: this one reports the replication id the test sets."""

    replid = "first"

    def info(self, section: str | None = None, *args: object, **kwargs: object) -> dict[str, str]:
        return {"role": "master", "master_replid": self.replid}


def test_within_the_window_a_message_found_once_is_still_checked_and_its_loss_told() -> None:
    """A double failover can lose a message after the check at the first one found it: the
    caller keeps checking for a while, and hears MessageLost instead of waiting it out."""
    now = [0.0]
    client = _Replicated(server=fakeredis.FakeServer())
    keyspace = Keyspace("t")
    check = LossCheck(client, keyspace, PrimaryWatch(client, interval=0.0, clock=lambda: now[0]))
    job_key = RqFormat.job_key(job_id_for("t", "s1", "m1"))
    client.hset(job_key, "status", "queued")
    seen = check.check("first", "s1", "m1")  # accepted on "first"; nothing happened
    client.delete(job_key)
    now[0] = 100.0
    assert check.check(seen, "s1", "m1") == "first"  # no failover seen: not even probed
    client.hset(job_key, "status", "queued")
    client.replid = "promoted"
    now[0] = 101.0
    seen = check.check(seen, "s1", "m1")  # the failover: found, still queued
    assert seen == "promoted"
    client.delete(job_key)  # ... then the second failover drops it
    now[0] = 110.0
    with pytest.raises(MessageLost, match=r"'m1' of session 's1'"):
        check.check(seen, "s1", "m1")
    now[0] = 200.0  # long settled: the primary it saw is the primary, nothing is probed
    assert check.check(seen, "s1", "m1") == "promoted"
