"""``agent-cluster status``, ``session`` and ``health`` against real workers on real Redis."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from rq import Queue

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from tests.integration.status.conftest import MODEL_LATENCY, Cli
from tests.support.fleet import Fleet, coordinator

pytestmark = pytest.mark.integration


def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.2) -> Any:
    """Return ``check()``'s first truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        time.sleep(interval)


def workers_by_id(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["worker_id"]: w for w in status["workers"]}


def test_status_shows_workers_sessions_caches_and_a_drained_worker_gone(
    workers: Fleet, cli: Cli
) -> None:
    for worker_id in ("w1", "w2", "w3"):
        workers.start(worker_id)
    sessions = [f"chat-{i}" for i in range(9)]
    with coordinator(workers.settings()) as coord:
        placed = {s: coord.submit(s, "hello").worker_id for s in sessions}
        for s in sessions[:3]:
            assert coord.submit(s, "again").worker_id == placed[s]
    owned = Counter(placed.values())

    def settled() -> dict[str, Any] | None:
        status = cli.json("status")
        by_id = workers_by_id(status)
        records = {w: by_id[w]["health"] for w in by_id}
        if set(by_id) != {"w1", "w2", "w3"} or any(r is None for r in records.values()):
            return None
        if sum(r["cache_hits"] + r["cache_misses"] for r in records.values()) < 12:
            return None  # a heartbeat since the last turn has not been written yet
        return status

    status = eventually(settled)
    by_id = workers_by_id(status)
    for worker_id, worker in by_id.items():
        assert worker["state"] == "active"
        assert worker["sessions_owned"] == owned[worker_id]
        assert worker["health"]["cache_size"] == owned[worker_id]
        assert worker["heartbeat_age"] < 2.0
        assert worker["queued"] == 0 and worker["in_flight"] == 0
    assert sum(w["health"]["cache_hits"] for w in by_id.values()) == 3
    assert sum(w["health"]["cache_misses"] for w in by_id.values()) == 9
    assert status["dead_letters"] == 0

    text = cli.run("status")
    assert text.returncode == 0, text.stderr
    assert "3 worker(s)" in text.stdout
    for worker_id in ("w1", "w2", "w3"):
        assert f"| {worker_id} " in text.stdout

    drained = max(owned, key=lambda w: owned[w])
    done = cli.run("drain", drained, "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    after = cli.json("status")
    assert set(workers_by_id(after)) == {"w1", "w2", "w3"} - {drained}
    assert sum(w["sessions_owned"] for w in after["workers"]) == 9 - owned[drained], (
        "the drained worker's sessions are released: their next message picks a new owner"
    )
    text = cli.run("status")
    assert f"| {drained} " not in text.stdout and "2 worker(s)" in text.stdout


def test_session_shows_owner_turns_pending_lease_and_cache(
    workers: Fleet, cli: Cli, slow_model: ProviderSimulator
) -> None:
    workers.start("w1")
    workers.start("w2")
    slow_model.set_latency(ttft=0.0)
    with coordinator(workers.settings()) as coord:
        first = coord.submit("talk", "one")
        coord.submit("talk", "two")
        session = eventually(lambda: (s := cli.json("session", "talk"))["cached_on_owner"] and s)
        assert session["owner"] == first.worker_id and session["owner_alive"]
        assert session["epoch"] >= 1
        assert session["turns"] == 2 and session["history_messages"] == 4
        assert session["pending"] == [] and session["lease"] is None

        # Turn 3 runs for MODEL_LATENCY seconds with turn 4 waiting behind it.
        slow_model.set_latency(ttft=MODEL_LATENCY)
        running = coord.submit_async("talk", "three")
        waiting = coord.submit_async("talk", "four")
        busy = eventually(
            lambda: (s := cli.json("session", "talk"))["lease"] and len(s["pending"]) == 2 and s
        )
        assert busy["lease"]["worker_id"] == first.worker_id
        assert busy["lease"]["token"] >= 3 and 0 < busy["lease"]["ttl"] <= 6
        sequences = [p["sequence"] for p in busy["pending"]]
        assert sequences == sorted(sequences) and len(set(sequences)) == 2
        assert {p["queued_on"] for p in busy["pending"]} == {first.worker_id}
        text = eventually(
            lambda: (
                (out := cli.run("session", "talk").stdout) and "lease:          w" in out and out
            )
        )
        assert f"lease:          {first.worker_id} (token" in text
        assert f"on {first.worker_id}" in text, "each pending message names its queue"
        running.result(timeout=60)
        waiting.result(timeout=60)
    assert cli.json("session", "talk")["turns"] == 4
    nothing = cli.run("session", "never-seen")
    assert nothing.returncode == 1 and "nothing stored" in nothing.stdout


def test_dead_letters_are_counted(
    workers: Fleet, cli: Cli, redis_client: redis.Redis, namespace: str
) -> None:
    workers.start("w1")
    queue = Queue(Keyspace(namespace).worker_queue("w1"), connection=redis_client)
    redis_client.rpush(queue.key, b"\xffnot a job id", b"no-such-job")
    status = eventually(lambda: (s := cli.json("status"))["dead_letters"] >= 1 and s)
    assert status["recent_dead_letters"][0]["worker"] == "w1"
    text = cli.run("status").stdout
    assert f"{status['dead_letters']} dead letter(s)" in text
    assert "dead letter:" in text


def test_health_probe_follows_the_worker(workers: Fleet, cli: Cli) -> None:
    workers.start("w1")
    workers.start("w2")
    healthy = eventually(lambda: (d := cli.run("health", "w1")).returncode == 0 and d)
    assert healthy.stdout.startswith("w1: healthy: active")
    assert len(healthy.stdout.strip().splitlines()) == 1

    unknown = cli.run("health", "nobody")
    assert unknown.returncode == 1 and "not registered" in unknown.stdout

    workers.pause("w2")
    paused = eventually(lambda: (d := cli.run("health", "w2")).returncode != 0 and d)
    assert "w2:" in paused.stdout and len(paused.stdout.strip().splitlines()) == 1
    workers.resume("w2")
    eventually(lambda: cli.run("health", "w2").returncode == 0)

    workers.kill("w1")
    dead = eventually(lambda: (d := cli.run("health", "w1")).returncode != 0 and d)
    assert len(dead.stdout.strip().splitlines()) == 1
    assert "dead" in dead.stdout or "not registered" in dead.stdout or "no health" in dead.stdout

    cli.run("drain", "w2")
    draining = eventually(lambda: (d := cli.run("health", "w2")).returncode != 0 and d)
    assert "draining" in draining.stdout or "not registered" in draining.stdout


def test_health_with_redis_unreachable_is_one_line(namespace: str) -> None:
    cli = Cli("redis://127.0.0.1:1/0", namespace)
    done = cli.run("health", "w1")
    assert done.returncode not in (0, 1)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
