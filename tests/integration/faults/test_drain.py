"""Draining a worker under traffic: nothing accepted is lost, nothing answered twice, order kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from cluster.session_store import RedisSessionStore
from tests.integration.faults.fleet import Fleet, coordinator
from tests.integration.faults.traffic import Traffic

pytestmark = pytest.mark.integration


def test_sigterm_under_traffic_hands_every_turn_over(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=0.2)
    for worker in ("w0", "w1", "w2"):
        workers.start(worker, concurrency=4)
    with coordinator(workers.settings()) as coord:
        traffic = Traffic(coord, sessions=24).start()
        time.sleep(2.0)
        started = time.monotonic()
        code = workers.terminate("w0")
        drain_time = time.monotonic() - started
        exited = time.time()
        time.sleep(1.5)
        traffic.stop()
        answered = traffic.check()
    assert code == 0, workers.log("w0")
    store = RedisSessionStore(redis_client, Keyspace(namespace))
    for session, texts in traffic.accepted.items():
        history = [m["content"] for m in store.load(session).history if m["role"] == "user"]
        assert history == texts, f"{session}: history holds each message once, in order"
    after = [r for rs in traffic.replies.values() for r in rs if r.raw["started_at"] > exited]
    assert after and "w0" not in {r.worker_id for r in after}, "no turn ran on w0 after it left"
    print(f"drain under traffic: {answered} answered, 0 lost; w0 exited in {drain_time:.2f}s")


def test_drain_command_waits_for_the_running_turn_then_the_worker_exits(
    workers: Fleet, slow_model: ProviderSimulator
) -> None:
    slow_model.set_latency(ttft=1.5)
    workers.start("w0")
    with coordinator(workers.settings()) as coord:
        running = coord.submit_async("long", "a slow one")
        queued = coord.submit_async("long", "right behind it")
        workers.start("w1")
        time.sleep(0.3)
        drain = subprocess.run(
            [
                sys.executable,
                "-m",
                "coordinator.cli",
                "drain",
                "w0",
                "--wait",
                "--drain-timeout",
                "30",
                "--redis-url",
                workers.redis_url,
                "--namespace",
                workers.namespace,
            ],
            env=os.environ
            | {"AGENT_CLUSTER_HEARTBEAT_TTL": "2", "AGENT_CLUSTER_HEARTBEAT_INTERVAL": "0.5"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert drain.returncode == 0, drain.stderr
        assert "marked draining" in drain.stdout and "gone" in drain.stdout, drain.stdout
        assert workers.procs["w0"].wait(timeout=30) == 0
        first, second = running.result(timeout=30), queued.result(timeout=30)
    assert first.worker_id == "w0", "the running turn finished where it ran"
    assert second.worker_id == "w1" and second.raw["turn"] == 2, "the queued one moved, in order"


def test_a_drain_past_its_timeout_cuts_turns_off_and_hands_them_on(
    workers: Fleet, slow_model: ProviderSimulator
) -> None:
    slow_model.set_latency(ttft=3.0)
    workers.start("w0")
    with coordinator(workers.settings()) as coord:
        handle = coord.submit_async("stuck", "takes too long")
        workers.start("w1")
        time.sleep(0.3)
        coord_settings = workers.settings()
        from coordinator.admin import drain_worker

        drain_worker(coord.client, Keyspace(coord_settings.namespace), "w0", timeout=0.5)
        assert workers.procs["w0"].wait(timeout=30) == 0
        reply = handle.result(timeout=30)
    assert reply.worker_id == "w1" and reply.raw["turn"] == 1
