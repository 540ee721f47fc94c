"""Scheduled messages fire exactly once across worker processes, through kill -9 and a restart.

No leader: every worker's schedule loop claims due firings through Redis.
The claimer is killed (SIGSTOP the moment its first claim lands, then
SIGKILL) while firings it claimed are still undelivered; a worker started
afterwards takes them over when their claim expires and every session gets
its message once. A schedule created before a Redis restart (AOF) fires
after it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from cluster.keys import Keyspace
from coordinator.ingress import Coordinator
from tests.conftest import RedisServer, start_redis_server
from tests.integration.faults.test_redis_and_rebalance import restart
from tests.support.fleet import Fleet, coordinator, fleet, user_texts

pytestmark = pytest.mark.integration

FAST_SCHEDULES = {"AGENT_CLUSTER_SCHEDULE_POLL": "0.1", "AGENT_CLUSTER_SCHEDULE_CLAIM_TTL": "2"}
SESSIONS = 24


def _iso(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds_from_now, tz=UTC).isoformat()


def _wait_for(check: Callable[[], bool], timeout: float, what: str, *, pause: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(pause)


def _freeze_mid_claim(
    workers: Fleet, client: redis.Redis, keys: Keyspace, coord: Coordinator
) -> list[str]:
    """Schedule a batch, freeze the claimer the moment its first claim lands; retry a batch
    it delivered whole before the freeze (a busy machine). Returns the frozen batch's sessions."""
    for attempt in range(3):
        sessions = [f"remind-{attempt}-{i}" for i in range(SESSIONS)]
        at = _iso(1.5)
        made = [coord.schedules.add(s, f"reminder {s}", at=at) for s in sessions]
        assert len({m.schedule_id for m in made}) == SESSIONS
        _wait_for(lambda: client.zcard(keys.schedules_firing()) > 0, 10, "a claim", pause=0)
        workers.pause("claimer")
        if client.zcard(keys.schedules_firing()) > 0:
            return sessions
        workers.resume("claimer")
        _wait_for(
            lambda: client.zcard(keys.schedules_due()) + client.zcard(keys.schedules_firing()) == 0,
            10,
            "the batch delivered",
        )
    raise AssertionError("the claimer delivered every batch before it could be frozen")


def test_firings_claimed_by_a_worker_killed_mid_claim_are_delivered_once(
    redis_server: RedisServer, redis_client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    keys = Keyspace(namespace)
    with fleet(redis_server.url, namespace, tmp_path, **FAST_SCHEDULES) as workers:
        workers.start("claimer")
        with coordinator(workers.settings(schedule_claim_ttl=2.0)) as coord:
            sessions = _freeze_mid_claim(workers, redis_client, keys, coord)
            stranded = redis_client.zcard(keys.schedules_firing())
            workers.kill("claimer")  # kill -9 with claimed firings not delivered
            assert stranded > 0

            workers.start("survivor")
            _wait_for(
                lambda: all(user_texts(redis_client, namespace, s) for s in sessions),
                30,
                "every session to get its reminder",
            )
            _wait_for(
                lambda: redis_client.zcard(keys.schedules_firing()) == 0, 10, "no firing pending"
            )
            assert redis_client.zcard(keys.schedules_due()) == 0
            for session in sessions:
                assert user_texts(redis_client, namespace, session) == [f"reminder {session}"]
                assert coord.schedules.list(session) == []  # one-shot: gone once delivered
            assert "fired into session" in workers.log("survivor")


def test_a_schedule_made_before_a_redis_restart_fires_after_it(tmp_path: Path) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    own = start_redis_server(data, "--appendonly", "yes", "--appendfsync", "always")
    servers = [own]
    try:
        with fleet(own.url, "sched-restart", tmp_path, **FAST_SCHEDULES) as workers:
            _fires_after_restart(workers, servers)
    finally:
        for server in servers:
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(timeout=10)


def _fires_after_restart(workers: Fleet, servers: list[RedisServer]) -> None:
    workers.start("w0")
    with coordinator(workers.settings()) as coord:
        kept = coord.schedules.add("later", "after the restart", at=_iso(2.5))
        cancelled = coord.schedules.add("later", "never sent", at=_iso(2.5))
        assert coord.schedules.cancel("later", cancelled.schedule_id)
        assert not coord.schedules.cancel("later", cancelled.schedule_id)
        assert [s.schedule_id for s in coord.schedules.list("later")] == [kept.schedule_id]
        servers.append(restart(servers[0], down_for=0.5))
    client = servers[-1].client()
    try:
        _wait_for(lambda: user_texts(client, "sched-restart", "later"), 20, "the firing")
        _wait_for(
            lambda: client.zcard(Keyspace("sched-restart").schedules_firing()) == 0,
            10,
            "the firing to be done",
        )
        assert user_texts(client, "sched-restart", "later") == ["after the restart"]
    finally:
        client.close()
