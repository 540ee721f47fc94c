"""Session commands and double texting across worker processes on real Redis.

A message that arrives while its session's turn runs (on whichever worker)
is handled by its strategy: enqueue, interrupt, reject, rollback; ``/stop``
stops the running turn; ``/new`` resets the session in order with its messages.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.errors import TurnRejected
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from tests.sandbox_support import require_bwrap
from tests.support.fleet import Fleet, coordinator, user_texts

pytestmark = pytest.mark.integration


def wait_running(sim: ProviderSimulator, text: str) -> None:
    """Wait until the turn of message ``text`` is inside its model call (the simulator has it)."""
    wanted = json.dumps(text)[1:-1].encode()
    deadline = time.monotonic() + 20
    while not any(wanted in r.body for r in sim.recorded_requests()):
        assert time.monotonic() < deadline, f"the turn of {text!r} never called the model"
        time.sleep(0.01)


def test_interrupt_stops_the_running_turn_on_another_worker_and_runs_next(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=30.0)
    workers.start("w0")
    workers.start("w1")
    with coordinator(workers.settings()) as first, coordinator(workers.settings()) as second:
        stuck = first.submit_async("dt", "a long question")
        wait_running(slow_model, "a long question")
        sent = time.monotonic()
        newer = second.submit_async("dt", "never mind, this instead", strategy="interrupt")
        interrupted = stuck.result(timeout=30)
        stopped_after = time.monotonic() - sent
        assert interrupted.raw["interrupted"] is True and interrupted.raw["turn"] == 1
        slow_model.set_latency(ttft=0.0)
        reply = newer.result(timeout=30)
    assert reply.raw["turn"] == 2
    assert stopped_after < 15.0, "stopped long before the 30 s model call would have returned"
    assert user_texts(redis_client, namespace, "dt") == [
        "a long question",
        "never mind, this instead",
    ]
    print(f"interrupt across processes: message in -> running turn stopped in {stopped_after:.3f}s")


def test_reject_refuses_while_a_turn_runs_and_writes_nothing(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=1.5)
    workers.start("w0")
    with coordinator(workers.settings()) as coord:
        running = coord.submit_async("busy", "first")
        wait_running(slow_model, "first")
        with pytest.raises(TurnRejected, match="busy with a turn"):
            coord.submit_async("busy", "second", message_id="rejected-1", strategy="reject")
        assert running.result(timeout=30).raw["turn"] == 1
        assert coord.submit("busy", "third", strategy="reject", timeout=30).raw["turn"] == 2
    assert user_texts(redis_client, namespace, "busy") == ["first", "third"]
    job_ids = [k for k in redis_client.scan_iter(match="rq:job:*rejected-1*")]
    assert job_ids == [], "a refused message leaves no job behind"


def test_rollback_discards_the_running_turn_and_runs_the_new_message(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    workers.start("w0")
    with coordinator(workers.settings()) as coord:
        assert coord.submit("rb", "kept", timeout=30).raw["turn"] == 1
        slow_model.set_latency(ttft=30.0)
        doomed = coord.submit_async("rb", "oops, wrong question")
        wait_running(slow_model, "oops, wrong question")
        fixed = coord.submit_async("rb", "the right question", strategy="rollback")
        rolled = doomed.result(timeout=30)
        slow_model.set_latency(ttft=0.0)
        reply = fixed.result(timeout=30)
        after = coord.submit("rb", "and then", timeout=30)
    assert rolled.raw.get("rolled_back") is True
    assert reply.raw["turn"] == 2 and after.raw["turn"] == 3
    assert user_texts(redis_client, namespace, "rb") == ["kept", "the right question", "and then"]
    assert after.cache_hit, "the agent rebuilt after the rollback serves the later turns"


def test_stop_interrupts_without_a_new_turn(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=30.0)
    workers.start("w0")
    with coordinator(workers.settings()) as coord:
        running = coord.submit_async("halt", "think hard")
        wait_running(slow_model, "think hard")
        stop = coord.submit("halt", "/stop", timeout=5)
        assert stop.raw["stopped"] is True and stop.text == "Stopped the running turn."
        assert running.result(timeout=30).raw["interrupted"] is True
        lease = Keyspace(namespace).session("halt").lease
        deadline = time.monotonic() + 10
        while redis_client.exists(lease):  # released just after the reply was delivered
            assert time.monotonic() < deadline
            time.sleep(0.01)
        nothing = coord.submit("halt", "/stop", timeout=5)
    assert nothing.raw["stopped"] is False
    assert user_texts(redis_client, namespace, "halt") == ["think hard"], "/stop is no turn"


def test_reset_runs_in_order_with_the_messages_and_clears_the_session(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=0.2)
    workers.start("w0")
    workers.start("w1")
    with coordinator(workers.settings()) as coord:
        handles = [coord.submit_async("fresh", text) for text in ("one", "two", "/new", "three")]
        replies = [h.result(timeout=30) for h in handles]
    assert [r.raw["turn"] for r in replies] == [1, 2, 0, 1]
    assert replies[2].raw["reset"] is True
    assert user_texts(redis_client, namespace, "fresh") == ["three"]


def test_per_message_reasoning_reaches_the_provider_without_a_rebuild(
    workers: Fleet, slow_model: ProviderSimulator
) -> None:
    slow_model.set_latency(ttft=0.0)
    workers.start("w0")
    with coordinator(workers.settings()) as coord:
        coord.submit("think", "hello", timeout=30)
        slow_model.clear_recorded_requests()
        deep = coord.submit("think", "a hard one", reasoning="high", timeout=30)
        plain = coord.submit("think", "an easy one", timeout=30)
    bodies = [json.loads(r.body) for r in slow_model.recorded_requests()]
    assert bodies[0].get("reasoning_effort") == "high"
    assert "reasoning_effort" not in bodies[1], "the setting applied to that turn only"
    assert deep.cache_hit and plain.cache_hit, "the cached agent was reused, not rebuilt"


def test_a_global_reasoning_change_clears_cached_agents_on_every_worker(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=0.0)
    workers.start("w0")
    workers.start("w1")
    sessions = [f"g{i}" for i in range(12)]
    with coordinator(workers.settings()) as coord:
        first = {s: coord.submit(s, "hi", timeout=30) for s in sessions}
        assert {r.worker_id for r in first.values()} == {"w0", "w1"}
        assert all(coord.submit(s, "again", timeout=30).cache_hit for s in sessions)
        versions = RedisVersionStore(redis_client, Keyspace(namespace), max_config_bytes=1 << 20)
        _, document = versions.current_config()
        versions.publish_config({**document, "agent": {"reasoning_effort": "low"}})
        slow_model.clear_recorded_requests()
        after = {s: coord.submit(s, "after the change", timeout=30) for s in sessions}
        override = coord.submit(sessions[0], "think harder", reasoning="high", timeout=30)
    assert not any(r.cache_hit for r in after.values()), "every worker rebuilt its agents"
    efforts = [json.loads(r.body).get("reasoning_effort") for r in slow_model.recorded_requests()]
    assert efforts == ["low"] * len(sessions) + ["high"]
    assert override.cache_hit, "a per-message setting needs no rebuild"


def test_a_reset_tears_the_session_down_and_logs_no_error(
    workers: Fleet, slow_model: ProviderSimulator
) -> None:
    require_bwrap()
    slow_model.set_latency(ttft=0.0)
    workers.start("w0")
    with coordinator(workers.settings()) as coord:
        made = coord.submit("gone", "!sh echo notes > kept.txt && cat kept.txt", timeout=30)
        assert "notes" in made.text
        reset = coord.submit("gone", "/new", timeout=30)
        after = coord.submit("gone", "!sh cat kept.txt", timeout=30)
    assert reset.raw["reset"] is True and after.raw["turn"] == 1
    assert "No such file" in after.text, "the reset removed the session's files"
    log = workers.log("w0")
    for sign in ("Traceback", "LeaseLost", "ERROR", "failed"):
        assert sign not in log, f"the reset logged {sign!r}:\n{log[-3000:]}"
