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
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from cluster.keys import Keyspace
from tests.conftest import RedisServer, start_redis_server
from tests.integration.faults.test_redis_and_rebalance import restart
from tests.support.fleet import Fleet, coordinator, fleet, user_texts

pytestmark = pytest.mark.integration

FAST_SCHEDULES = {"AGENT_CLUSTER_SCHEDULE_POLL": "0.1", "AGENT_CLUSTER_SCHEDULE_CLAIM_TTL": "2"}
SESSIONS = 24


def _iso(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds_from_now, tz=UTC).isoformat()


def _wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_firings_claimed_by_a_worker_killed_mid_claim_are_delivered_once(
    redis_server: RedisServer, redis_client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    keys = Keyspace(namespace)
    with fleet(redis_server.url, namespace, tmp_path, **FAST_SCHEDULES) as workers:
        workers.start("claimer")
        with coordinator(workers.settings(schedule_claim_ttl=2.0)) as coord:
            at = _iso(2.0)
            made = [
                coord.schedules.add(f"remind-{i}", f"reminder {i}", at=at) for i in range(SESSIONS)
            ]
            assert len({s.schedule_id for s in made}) == SESSIONS
            # Freeze the claimer the moment its first claim is recorded, then kill it.
            _wait_for(lambda: redis_client.zcard(keys.schedules_firing()) > 0, 10, "a claim")
            workers.pause("claimer")
            stranded = redis_client.zcard(keys.schedules_firing())
            workers.kill("claimer")
            assert stranded > 0, "the claimer had delivered everything before it was stopped"

            workers.start("survivor")
            _wait_for(
                lambda: all(
                    user_texts(redis_client, namespace, f"remind-{i}") for i in range(SESSIONS)
                ),
                30,
                "every session to get its reminder",
            )
            _wait_for(
                lambda: redis_client.zcard(keys.schedules_firing()) == 0, 10, "no firing pending"
            )
            assert redis_client.zcard(keys.schedules_due()) == 0
            for i in range(SESSIONS):
                assert user_texts(redis_client, namespace, f"remind-{i}") == [f"reminder {i}"]
                assert coord.schedules.list(f"remind-{i}") == []  # one-shot: gone once delivered
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
