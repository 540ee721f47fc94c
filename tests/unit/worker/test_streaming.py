"""A turn's event sink: nothing when not streaming, batched deltas, order, bounds, Redis errors."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest
import redis

from cluster.jobs import TurnJob
from cluster.keys import Keyspace
from cluster.stream_events import TOOL_RESULT_CHARS, final_event
from tests.fakes import FakeClock
from worker.streaming import (
    FLUSH_CHARS,
    FLUSH_INTERVAL,
    NO_EVENTS,
    RedisTurnEvents,
    open_turn_events,
)

KEYS = Keyspace("t")


def job(**attrs: Any) -> TurnJob:
    return TurnJob(message_id="m1", session_key="s1", text="hi", submitted_at=1.0, attrs=attrs)


def read(client: redis.Redis) -> list[dict[str, Any]]:
    entries = client.xrange(KEYS.turn_stream("s1", "m1"))
    return [json.loads(fields[b"e"]) for _id, fields in entries]


@pytest.fixture
def client() -> redis.Redis:
    return fakeredis.FakeRedis()


def test_a_message_that_does_not_stream_gets_no_callbacks_and_writes_nothing(
    client: redis.Redis,
) -> None:
    events = open_turn_events(client, KEYS, job(), worker_id="w1", fence=3, ttl=60)
    assert events is NO_EVENTS and events.callbacks() == {}
    events.finish({"ok": True, "text": "x"})
    assert client.keys("*") == []


def test_a_streaming_turn_announces_itself_and_expires(client: redis.Redis) -> None:
    open_turn_events(client, KEYS, job(stream=1), worker_id="w1", fence=3, ttl=60)
    assert read(client) == [{"type": "turn_start", "worker_id": "w1", "fence": 3}]
    assert 0 < client.pttl(KEYS.turn_stream("s1", "m1")) <= 60_000


def test_deltas_are_batched_by_time_and_flushed_before_any_other_event(client: redis.Redis) -> None:
    clock = FakeClock()
    events = RedisTurnEvents(client, KEYS.turn_stream("s1", "m1"), ttl=60, clock=clock)
    events.on_delta("a")  # the first delta goes out at once (time to first token)
    events.on_delta("b")
    events.on_delta("c")  # within the interval: waiting
    assert [e.get("text") for e in read(client)] == ["a"]
    clock.advance(FLUSH_INTERVAL)
    events.on_delta("d")
    assert [e.get("text") for e in read(client)] == ["a", "bcd"]
    events.on_delta("e")
    events.on_status("model replied")  # publishes the waiting text first
    assert [(e["type"], e.get("text")) for e in read(client)][-2:] == [
        ("delta", "e"),
        ("status", "model replied"),
    ]


def test_a_large_batch_goes_out_without_waiting(client: redis.Redis) -> None:
    clock = FakeClock()
    events = RedisTurnEvents(client, KEYS.turn_stream("s1", "m1"), ttl=60, clock=clock)
    events.on_delta("x")
    events.on_delta("y" * FLUSH_CHARS)
    assert [e["text"] for e in read(client)] == ["x", "y" * FLUSH_CHARS]


def test_tools_are_start_progress_result_and_results_are_cut(client: redis.Redis) -> None:
    events = RedisTurnEvents(client, KEYS.turn_stream("s1", "m1"), ttl=60, clock=FakeClock())
    callbacks = events.callbacks()
    callbacks["tool_progress_callback"]("terminal", {"command": "ls"})
    callbacks["status_callback"]("running tool terminal")
    callbacks["step_callback"](1, {"role": "assistant", "content": None})  # not an event
    long = "z" * (TOOL_RESULT_CHARS + 5)
    callbacks["step_callback"](
        1, {"role": "tool", "tool_call_id": "c1", "name": "terminal", "content": long}
    )
    callbacks["status_callback"]("calling model (iteration 2)")
    got = read(client)
    assert [e["type"] for e in got] == ["tool_start", "tool_progress", "tool_result", "status"]
    assert got[0]["arguments"] == {"command": "ls"}
    assert got[1] == {"type": "tool_progress", "name": "terminal", "text": "running tool terminal"}
    assert got[2]["truncated"] is True and len(got[2]["content"]) == TOOL_RESULT_CHARS


def test_final_closes_the_stream_to_late_deltas(client: redis.Redis) -> None:
    events = RedisTurnEvents(client, KEYS.turn_stream("s1", "m1"), ttl=60, clock=FakeClock())
    events.on_delta("hello")
    reply = {
        "ok": True,
        "message_id": "m1",
        "text": "hello",
        "worker_id": "w1",
        "turn": 1,
        "usage": {
            "input_tokens": 3,
            "output_tokens": 1,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
        },
        "fence": 9,
    }
    events.finish(reply)
    events.on_delta("late")  # an abandoned model call's last words
    got = read(client)
    assert [e["type"] for e in got] == ["delta", "final"]
    assert got[-1] == final_event(reply) and "fence" not in got[-1]
    assert got[-1]["rolled_back"] is False


def test_the_stream_is_bounded(client: redis.Redis) -> None:
    events = RedisTurnEvents(
        client, KEYS.turn_stream("s1", "m1"), ttl=60, maxlen=50, clock=FakeClock()
    )
    for n in range(500):
        events.on_status(f"step {n}")
    assert client.xlen(KEYS.turn_stream("s1", "m1")) < 200


class BrokenRedis(fakeredis.FakeRedis):
    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        raise redis.ConnectionError("gone")


def test_a_redis_failure_never_fails_the_turn() -> None:
    events = RedisTurnEvents(BrokenRedis(), "k", ttl=60, clock=FakeClock())
    events.on_delta("a")
    events.on_status("still fine")
    events.finish({"ok": True, "text": "a"})
