"""Health verdicts, session reads and renderings from Redis alone (fakeredis)."""

from __future__ import annotations

import dataclasses

import fakeredis
import pytest

from cluster.keys import Keyspace
from cluster.membership import RedisMembership, WorkerState
from coordinator.status import check_health, read_session, read_status
from coordinator.status_view import render_session, render_status, table
from tests.support.records import RECORD
from worker.health import HealthWriter


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def register(client: fakeredis.FakeRedis, keys: Keyspace) -> RedisMembership:
    membership = RedisMembership(client, keys, heartbeat_ttl=5.0)
    membership.register("w1", host="h", pid=42, queue=keys.worker_queue("w1"), instance="i1")
    return membership


def test_health_verdicts(client: fakeredis.FakeRedis) -> None:
    keys = Keyspace("t")
    verdict = check_health(client, keys, "w1")
    assert not verdict.healthy and verdict.reason.startswith("w1: not registered")
    membership = register(client, keys)
    verdict = check_health(client, keys, "w1")
    assert not verdict.healthy and "no health record" in verdict.reason
    writer = HealthWriter(client, keys, ttl=5.0)
    writer.write(RECORD, [])
    verdict = check_health(client, keys, "w1")
    assert verdict.healthy and verdict.reason.startswith("w1: healthy: active"), verdict.reason
    writer.write(dataclasses.replace(RECORD, instance="other"), [])
    assert "another process" in check_health(client, keys, "w1").reason
    writer.write(RECORD, [])
    membership.set_state("w1", WorkerState.DRAINING)
    verdict = check_health(client, keys, "w1")
    assert not verdict.healthy and "draining" in verdict.reason


def test_status_lists_registered_workers_with_their_records(client: fakeredis.FakeRedis) -> None:
    keys = Keyspace("t")
    assert "no worker registered" in render_status(read_status(client, keys))
    register(client, keys)
    HealthWriter(client, keys, ttl=5.0).write(RECORD, ["s1"])
    status = read_status(client, keys)
    assert [w.worker_id for w in status.workers] == ["w1"]
    assert status.workers[0].health == RECORD and status.dead_letters == 0
    text = render_status(status)
    assert "| w1 " in text and "2/128 (75% hits)" in text and "v4/g1 (behind)" in text


def test_unknown_session_reads_as_nothing_stored(client: fakeredis.FakeRedis) -> None:
    session = read_session(client, Keyspace("t"), "nobody")
    assert not session.exists and session.owner is None and session.lease is None
    assert "nothing stored" in render_session(session)


def test_table_pads_columns() -> None:
    assert table(["a", "bb"], [["xyz", 1]]).splitlines() == [
        "| a   | bb |",
        "|-----|----|",
        "| xyz | 1  |",
    ]
