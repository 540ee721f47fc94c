"""A worker killed with -9 or paused past its heartbeat: its turns are answered elsewhere, once."""

from __future__ import annotations

import time

import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from coordinator.ingress import TurnHandle
from tests.support.fleet import Fleet, coordinator, user_texts

pytestmark = pytest.mark.integration


def wait_in_model_calls(sim: ProviderSimulator, *texts: str) -> None:
    """Wait until the simulator holds the model call of each message in ``texts``."""
    deadline = time.monotonic() + 30
    while not all(any(text.encode() in r.body for r in sim.recorded_requests()) for text in texts):
        assert time.monotonic() < deadline, f"the turns of {texts} never called the model"
        time.sleep(0.01)


def test_a_killed_workers_queued_and_running_turns_are_answered_by_a_survivor(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=60.0)  # no turn can finish on the victim
    workers.start("victim", concurrency=2)
    with coordinator(workers.settings()) as coord:
        handles: dict[str, list[TurnHandle]] = {
            f"s{i}": [coord.submit_async(f"s{i}", f"s{i} says {t}") for t in range(3)]
            for i in range(4)
        }
        assert {h.worker_id for hs in handles.values() for h in hs} == {"victim"}
        workers.start("survivor")
        # A turn runs on the victim; the rest wait (queued, or claimed behind their session's turn).
        wait_in_model_calls(slow_model, "says 0")
        slow_model.set_latency(ttft=1.0)  # the survivor's model calls
        workers.kill("victim")
        killed_at = time.monotonic()
        for session, session_handles in handles.items():
            replies = [h.result(timeout=60) for h in session_handles]
            assert [r.raw["turn"] for r in replies] == [1, 2, 3], "order kept across the crash"
            assert {r.worker_id for r in replies} == {"survivor"}
            assert user_texts(redis_client, namespace, session) == [
                f"{session} says {t}" for t in range(3)
            ], "each message once in history, in order"
        recovered = time.monotonic() - killed_at
    print(f"kill -9 -> last of 12 turns answered by the survivor: {recovered:.2f}s")
    assert "handed on" in workers.log("survivor")


def test_resubmitting_a_message_stranded_on_a_dead_worker_is_answered(
    workers: Fleet, slow_model: ProviderSimulator
) -> None:
    slow_model.set_latency(ttft=60.0)  # the first turn cannot finish on the victim
    workers.start("victim", concurrency=1)
    with coordinator(workers.settings()) as coord:
        coord.submit_async("chat", "first", message_id="m-1")
        coord.submit_async("chat", "second", message_id="m-2")
        wait_in_model_calls(slow_model, "first")
        slow_model.set_latency(ttft=1.0)  # the survivor's model calls
        workers.kill("victim")
        workers.start("survivor")
        # The caller of m-2 gave up and resubmits the same id: answered once, in order.
        again = coord.submit_async("chat", "second", message_id="m-2")
        reply = again.result(timeout=60)
        assert reply.worker_id == "survivor" and reply.raw["turn"] == 2
        # A resubmission after the answer is delivered from the stored reply.
        repeat = coord.submit("chat", "second", message_id="m-2", timeout=30)
        assert repeat.raw["turn"] == 2 and repeat.text == reply.text


def test_a_paused_worker_writes_nothing_then_rejoins(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=60.0)  # the turn cannot finish on sleepy
    workers.start("sleepy")
    with coordinator(workers.settings()) as coord:
        handle = coord.submit_async("napping", "hello", message_id="n-1")
        workers.start("awake")
        wait_in_model_calls(slow_model, "hello")
        slow_model.set_latency(ttft=1.0)  # awake's model calls
        workers.pause("sleepy")  # mid-turn, past the 2 s heartbeat TTL
        reply = handle.result(timeout=60)
        assert reply.worker_id == "awake", "the paused worker's turn ran on the survivor"
        workers.resume("sleepy")
        workers.wait_live("sleepy")  # it noticed, dropped its agents, registered again
        deadline = time.monotonic() + 20
        while "declared dead" not in workers.log("sleepy"):
            assert time.monotonic() < deadline, workers.log("sleepy")
            time.sleep(0.1)
        while "lost its lease" not in workers.log("sleepy"):  # its stale turn stopped
            assert time.monotonic() < deadline, workers.log("sleepy")
            time.sleep(0.1)
        assert user_texts(redis_client, namespace, "napping") == ["hello"], "written once"
        after = coord.submit("napping", "still there?", timeout=60)
        assert after.raw["turn"] == 2


def test_a_second_worker_with_a_live_id_is_refused(workers: Fleet) -> None:
    workers.start("w1")
    twin = workers.start("w1", wait=False)  # same id, while the first is alive
    assert twin.wait(timeout=30) == 2
    assert "already in use" in workers.log("w1")
    assert workers.membership().is_alive("w1"), "the first w1 keeps running"


def test_garbage_on_a_queue_goes_to_the_dead_letter_list_and_strands_nothing(
    workers: Fleet, redis_client: redis.Redis, namespace: str
) -> None:
    keyspace = Keyspace(namespace)
    queue_key = "rq:queue:" + keyspace.worker_queue("w1")
    redis_client.rpush(queue_key, b"\xff\xfe not utf-8", "ghost-job-without-a-hash")
    workers.start("w1")
    with coordinator(workers.settings()) as coord:
        replies = [coord.submit("clean", f"m{i}", timeout=30) for i in range(3)]
    assert [r.raw["turn"] for r in replies] == [1, 2, 3]
    letters = [x.decode() for x in redis_client.lrange(keyspace.dead_letter(), 0, -1)]
    assert any("not a job id" in x for x in letters), letters
    assert any("no job hash" in x and "ghost-job-without-a-hash" in x for x in letters), letters
    deadline = time.monotonic() + 10  # the last turn is completed just after its reply
    while redis_client.llen(keyspace.inflight("w1")):
        assert time.monotonic() < deadline, redis_client.lrange(keyspace.inflight("w1"), 0, -1)
        time.sleep(0.05)
