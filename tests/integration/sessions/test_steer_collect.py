"""Steer and collect across worker processes on real Redis.

``steer``: a message sent while its session's turn runs (on whichever
worker) is taken into that turn at its next safe point and answered by its
reply; if the turn ends first it runs as the next turn. ``collect``: messages
sent while a turn runs are joined into one next turn after a quiet window.
Each message is answered exactly once and lands in the history once, in order,
also when the worker running the turn is killed with -9 in the middle.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from tests.support.fleet import Fleet, coordinator, user_texts

pytestmark = pytest.mark.integration

COLLECT_ENV = {"AGENT_CLUSTER_COLLECT_WINDOW": "0.3"}


def wait_in_request(sim: ProviderSimulator, *texts: str) -> None:
    """Wait until one model request carries every text of ``texts`` (a turn is in that call)."""
    wanted = [json.dumps(t)[1:-1].encode() for t in texts]
    deadline = time.monotonic() + 20
    while not any(all(w in r.body for w in wanted) for r in sim.recorded_requests()):
        assert time.monotonic() < deadline, f"no model call carried {texts!r}"
        time.sleep(0.01)


def committed_turns(client: redis.Redis, namespace: str, session: str) -> int:
    return int(client.hget(Keyspace(namespace).session(session).meta, "turns") or 0)


def test_a_steer_message_is_answered_by_the_running_turn_on_another_worker(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=1.5)
    workers.start("w0")
    workers.start("w1")
    with coordinator(workers.settings()) as first, coordinator(workers.settings()) as second:
        running = first.submit_async("st", "plan my trip", message_id="trip")
        wait_in_request(slow_model, "plan my trip")
        steer = second.submit_async("st", "and book a hotel", message_id="hotel", strategy="steer")
        slow_model.set_latency(ttft=0.2)
        answered, steered = running.result(timeout=30), steer.result(timeout=30)
        assert answered.text == steered.text == "echo: and book a hotel", "one reply answers both"
        assert answered.raw["turn"] == steered.raw["turn"] == 1
        assert answered.raw["folded"] == ["hotel"] and steered.raw["folded_into"] == "trip"
        later = first.submit("st", "thanks", timeout=30)
    assert later.raw["turn"] == 2 and later.cache_hit
    assert user_texts(redis_client, namespace, "st") == [
        "plan my trip",
        "and book a hotel",
        "thanks",
    ]
    assert committed_turns(redis_client, namespace, "st") == 2


def test_a_steer_message_without_a_running_turn_runs_as_the_next_turn(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=0.0)
    workers.start("w0")
    with coordinator(workers.settings()) as coord:
        first = coord.submit("idle", "hello", timeout=30)
        steered = coord.submit("idle", "one more thing", strategy="steer", timeout=30)
    assert (first.raw["turn"], steered.raw["turn"]) == (1, 2)
    assert steered.text == "echo: one more thing" and "folded_into" not in steered.raw
    assert user_texts(redis_client, namespace, "idle") == ["hello", "one more thing"]


def test_steer_during_a_kill_9_is_answered_once_in_order(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=0.0)
    workers.start("victim")
    with coordinator(workers.settings()) as coord:
        assert coord.submit("hand", "warm up", timeout=30).worker_id == "victim"
        workers.start("survivor")
        slow_model.set_latency(ttft=1.5)
        running = coord.submit_async("hand", "zebra migration", message_id="long")
        wait_in_request(slow_model, "zebra migration")
        steer = coord.submit_async("hand", "shorter please", message_id="short", strategy="steer")
        # The steer message in the victim's next model call: the turn took it in. Kill -9
        # while that call is in flight (1.5 s), before the turn commits.
        wait_in_request(slow_model, "zebra migration", "shorter please")
        workers.kill("victim")
        slow_model.set_latency(ttft=0.2)
        answered, steered = running.result(timeout=60), steer.result(timeout=60)
    assert {answered.worker_id, steered.worker_id} == {"survivor"}
    assert answered.raw["turn"] == 2 and steered.raw["turn"] in (2, 3)
    assert user_texts(redis_client, namespace, "hand") == [
        "warm up",
        "zebra migration",
        "shorter please",
    ], "each message once in the history, in order, across the crash"
    assert committed_turns(redis_client, namespace, "hand") == steered.raw["turn"]


def test_collect_joins_the_messages_sent_during_a_turn_into_one_next_turn(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=1.5)
    workers.start("w0", env=COLLECT_ENV)
    with coordinator(workers.settings()) as coord:
        running = coord.submit_async("co", "zebra facts")
        wait_in_request(slow_model, "zebra facts")
        parts = [coord.submit_async("co", f"part {i}", strategy="collect") for i in range(3)]
        slow_model.set_latency(ttft=0.0)
        assert running.result(timeout=30).raw["turn"] == 1
        replies = [p.result(timeout=30) for p in parts]
    assert {r.raw["turn"] for r in replies} == {2}, "one joined turn answers all three"
    assert {r.text for r in replies} == {"echo: part 2"}
    assert user_texts(redis_client, namespace, "co") == [
        "zebra facts",
        "part 0",
        "part 1",
        "part 2",
    ]
    assert committed_turns(redis_client, namespace, "co") == 2


def test_a_collected_turn_cut_by_kill_9_is_joined_again_and_answered_once(
    workers: Fleet, slow_model: ProviderSimulator, redis_client: redis.Redis, namespace: str
) -> None:
    slow_model.set_latency(ttft=0.0)
    workers.start("victim", env=COLLECT_ENV)
    with coordinator(workers.settings()) as coord:
        assert coord.submit("cut", "warm up", timeout=30).worker_id == "victim"
        workers.start("survivor", env=COLLECT_ENV)
        slow_model.set_latency(ttft=1.0)
        running = coord.submit_async("cut", "zebra stripes")
        wait_in_request(slow_model, "zebra stripes")
        parts = [coord.submit_async("cut", f"detail {i}", strategy="collect") for i in range(2)]
        assert running.result(timeout=30).raw["turn"] == 2
        slow_model.set_latency(ttft=30.0)
        wait_in_request(slow_model, "detail 0", "detail 1")  # the joined turn's model call
        workers.kill("victim")
        slow_model.set_latency(ttft=0.2)
        replies = [p.result(timeout=60) for p in parts]
    assert {r.worker_id for r in replies} == {"survivor"}
    assert {r.raw["turn"] for r in replies} == {3}, "joined again after the crash, answered once"
    assert user_texts(redis_client, namespace, "cut") == [
        "warm up",
        "zebra stripes",
        "detail 0",
        "detail 1",
    ]
    assert committed_turns(redis_client, namespace, "cut") == 3
