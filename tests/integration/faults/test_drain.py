"""Draining a worker under traffic: nothing accepted is lost, nothing answered twice, order kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pytest
import redis

from agent.simulator import ProviderSimulator
from agent.tools.state import safe_task_id
from cluster.keys import Keyspace
from cluster.session_store import RedisSessionStore
from cluster.transport import TurnQueue
from coordinator.ingress import Reply
from tests.integration.faults.traffic import Traffic
from tests.sandbox_support import processes_with, require_bwrap
from tests.support.fleet import Fleet, coordinator

pytestmark = pytest.mark.integration


def test_sigterm_under_traffic_hands_every_turn_over(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=0.2)
    for worker in ("w0", "w1", "w2"):
        workers.start(worker, concurrency=4)
    with coordinator(workers.settings()) as coord:
        traffic = Traffic(coord, sessions=24).start()
        _wait_until(lambda: len(_answered(traffic)) >= 24, "traffic flows (24 answers)")
        started = time.monotonic()
        code = workers.terminate("w0")
        drain_time = time.monotonic() - started
        exited = time.time()
        _wait_until(
            lambda: sum(r.raw["started_at"] > exited for r in _answered(traffic)) >= 6,
            "6 turns started after w0 left were answered",
        )
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


def _answered(traffic: Traffic) -> list[Reply]:
    return [r for replies in list(traffic.replies.values()) for r in list(replies)]


def _wait_until(done: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def test_drain_command_waits_for_the_running_turn_then_the_worker_exits(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    """A turn not started when the worker begins draining moves; the running one finishes there.

    The running turn is held by a command that waits for a file the test
    writes, so it finishes only after the drain has handed the queued message
    on, however slow the machine: what the test asserts is what it waited for.
    """
    require_bwrap()
    slow_model.set_latency(ttft=0.0)
    workspace = workers.tmp / "home" / "sandboxes" / safe_task_id("long")
    queue = TurnQueue(redis_client, Keyspace(namespace), job_timeout=60, result_ttl=60)
    workers.start("w0")
    with coordinator(workers.settings()) as coord:
        marker = f"released-{uuid.uuid4().hex[:8]}"
        running = coord.submit_async(
            "long", f"!sh until [ -e go ]; do sleep 0.02; done; echo {marker}"
        )
        queued = coord.submit_async("long", "right behind it")
        _wait_until(lambda: bool(processes_with(marker)), "the first turn's command runs")
        workers.start("w1")
        drain = subprocess.Popen(
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
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_until(
                lambda: queue.pending("w1") + queue.inflight_count("w1") > 0,
                "the draining w0 handed the queued message to w1",
            )
            assert workers.procs["w0"].poll() is None, "w0 waits for its running turn"
            (workspace / "go").touch()
            out, err = drain.communicate(timeout=60)
        finally:
            if drain.poll() is None:
                drain.kill()
                drain.wait()
        assert drain.returncode == 0, err
        assert "marked draining" in out and "gone" in out, out
        assert workers.procs["w0"].wait(timeout=30) == 0
        first, second = running.result(timeout=30), queued.result(timeout=30)
    assert first.worker_id == "w0" and marker in first.text, "the running turn finished there"
    assert second.worker_id == "w1" and second.raw["turn"] == 2, "the queued one moved, in order"


def test_a_drain_past_its_timeout_cuts_turns_off_and_hands_them_on(
    workers: Fleet, slow_model: ProviderSimulator
) -> None:
    slow_model.set_latency(ttft=60.0)  # the first try of the turn cannot finish on w0
    workers.start("w0")
    with coordinator(workers.settings()) as coord:
        handle = coord.submit_async("stuck", "takes too long")
        _wait_until(
            lambda: any(b"takes too long" in r.body for r in slow_model.recorded_requests()),
            "the turn is inside its model call on w0",
        )
        slow_model.set_latency(ttft=0.0)  # for the next requests: the turn handed on to w1
        workers.start("w1")
        coord_settings = workers.settings()
        from coordinator.admin import drain_worker

        drain_worker(coord.client, Keyspace(coord_settings.namespace), "w0", timeout=0.5)
        assert workers.procs["w0"].wait(timeout=30) == 0
        reply = handle.result(timeout=30)
    assert reply.worker_id == "w1" and reply.raw["turn"] == 1
