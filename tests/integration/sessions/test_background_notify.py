"""Background processes that report back (``notify_on_complete``), worker processes on real Redis.

When the process ends, its session runs a turn whose message is the exit
status and the output's tail, once; when the worker running it dies, the
session is told the process was lost instead of waiting forever.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from tests.sandbox_support import require_bwrap
from tests.support.fleet import Fleet, coordinator, user_texts

pytestmark = pytest.mark.integration

FAST_NOTICES = {"AGENT_CLUSTER_NOTIFY_POLL_INTERVAL": "0.2"}


def start_message(command: str) -> str:
    args = {"action": "start", "command": command, "notify_on_complete": True}
    return f"!tool process {json.dumps(args)}"


def wait_for_notice(client: redis.Redis, namespace: str, session: str, prefix: str) -> list[str]:
    """Wait until the session's history holds a user message starting with ``prefix``."""
    deadline = time.monotonic() + 30
    while True:
        texts = user_texts(client, namespace, session)
        if any(t.startswith(prefix) for t in texts):
            return texts
        assert time.monotonic() < deadline, f"no message {prefix!r} in {texts!r}"
        time.sleep(0.05)


def test_a_finished_process_runs_a_turn_with_its_exit_status_and_output(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    require_bwrap()
    slow_model.set_latency(ttft=0.0)
    workers.start("w0", env=FAST_NOTICES)
    command = "sleep 0.5; echo build-finished-ok; exit 3"
    with coordinator(workers.settings()) as coord:
        started = coord.submit("bg", start_message(command), timeout=30)
        assert "started p1" in started.text and "exit status" in started.text
        texts = wait_for_notice(
            redis_client, namespace, "bg", "[background process p1 ended: exited (code 3)]"
        )
        assert redis_client.hlen(Keyspace(namespace).notifications()) == 0, "announced once"
        after = coord.submit("bg", "thanks", timeout=30)
    notice = texts[1]
    assert "build-finished-ok" in notice and command in notice
    assert after.raw["turn"] == 3, "the notification was one turn, in order"
    assert user_texts(redis_client, namespace, "bg") == [texts[0], notice, "thanks"]


def test_a_process_whose_worker_was_killed_is_reported_lost_by_another_worker(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    require_bwrap()
    slow_model.set_latency(ttft=0.0)
    workers.start("victim", env=FAST_NOTICES)
    with coordinator(workers.settings()) as coord:
        started = coord.submit("lost", start_message("sleep 8"), timeout=30)
        assert started.worker_id == "victim" and "started p1" in started.text
        workers.start("survivor", env=FAST_NOTICES)
        workers.kill("victim")
        texts = wait_for_notice(
            redis_client, namespace, "lost", "[background process p1 lost with its host"
        )
        assert redis_client.hlen(Keyspace(namespace).notifications()) == 0
        after = coord.submit("lost", "ok", timeout=30)
    assert "worker victim" in texts[1]
    assert after.worker_id == "survivor" and after.raw["turn"] == 3
    assert user_texts(redis_client, namespace, "lost") == [texts[0], texts[1], "ok"]
