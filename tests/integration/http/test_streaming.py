"""Streaming a turn as server-sent events, and resuming it on another gateway with Last-Event-ID."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.http.conftest import WORKERS, HttpCluster
from tests.integration.http.sse_client import Event, events

pytestmark = pytest.mark.integration

LONG_TEXT = " ".join(f"word{i}" for i in range(60))
SSE = {"Accept": "text/event-stream"}


@pytest.fixture
def slow_tokens(cluster: HttpCluster) -> Iterator[None]:
    """The model streams about 40 tokens a second: a turn yields many delta events."""
    cluster.sim.set_latency(ttft=0.2, tokens_per_second=40)
    yield
    cluster.sim.set_latency()


def text_of(received: list[Event]) -> str:
    return "".join(e.data["text"] for e in received if e.type == "delta")


def test_a_turn_streams_deltas_status_and_a_final_reply_with_usage(
    cluster: HttpCluster, session_key: str, slow_tokens: None
) -> None:
    with (
        cluster.a.client() as a,
        a.stream(
            "POST", f"/v1/sessions/{session_key}/messages", json={"text": LONG_TEXT}, headers=SSE
        ) as response,
    ):
        assert response.status_code == 200
        received = list(events(response))
    kinds = [e.type for e in received]
    assert kinds[0] == "accepted" and kinds[1] == "turn_start" and kinds[-1] == "final"
    assert kinds.count("delta") >= 3, kinds
    assert "status" in kinds
    final = received[-1].data
    assert final["text"] == f"echo: {LONG_TEXT}" == text_of(received)
    assert final["worker_id"] in WORKERS and final["turn"] == 1
    assert {"input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"} <= set(
        final["usage"]
    )
    ids = [e.id for e in received if e.id is not None]
    assert len(ids) == len(set(ids)) == len(received) - 1  # every event but 'accepted' resumable


def test_a_client_that_reconnects_to_another_gateway_resumes_where_it_left_off(
    cluster: HttpCluster, session_key: str, slow_tokens: None
) -> None:
    request = {"text": LONG_TEXT, "message_id": "resume-1"}
    first: list[Event] = []
    with (
        cluster.a.client() as a,
        a.stream(
            "POST", f"/v1/sessions/{session_key}/messages", json=request, headers=SSE
        ) as response,
    ):
        for event in events(response):
            first.append(event)
            if [e.type for e in first].count("delta") == 2:
                break  # the connection drops mid-turn
    last_id = first[-1].id
    assert last_id is not None
    with (
        cluster.b.client() as b,
        b.stream(
            "POST",
            f"/v1/sessions/{session_key}/messages",
            json=request,
            headers={**SSE, "Last-Event-ID": last_id},
        ) as response,
    ):
        second = list(events(response))
    assert second[-1].type == "final"
    resumed = [e for e in second if e.id is not None]
    assert resumed and all(e.id > last_id for e in resumed)  # type: ignore[operator]
    assert text_of(first) + text_of(second) == second[-1].data["text"] == f"echo: {LONG_TEXT}"
    with cluster.a.client() as a:
        assert a.get(f"/v1/sessions/{session_key}").json()["turns"] == 1  # ran once


def test_the_events_of_a_message_can_be_read_again(cluster: HttpCluster, session_key: str) -> None:
    with cluster.a.client() as a:
        with a.stream(
            "POST",
            f"/v1/sessions/{session_key}/messages",
            json={"text": "hi", "message_id": "again-1"},
            headers=SSE,
        ) as response:
            live = [e for e in events(response) if e.id is not None]
    with cluster.b.client() as b:
        with b.stream("GET", f"/v1/sessions/{session_key}/messages/again-1/events") as response:
            replay = list(events(response))
        assert [e.id for e in replay] == [e.id for e in live]
        with b.stream(
            "GET",
            f"/v1/sessions/{session_key}/messages/again-1/events",
            headers={"Last-Event-ID": live[-2].id or ""},
        ) as response:
            assert [e.type for e in events(response)] == ["final"]
        missing = b.get(f"/v1/sessions/{session_key}/messages/never/events")
        assert missing.status_code == 404


def test_tool_calls_stream_start_progress_and_result(
    cluster: HttpCluster, session_key: str
) -> None:
    with (
        cluster.a.client() as a,
        a.stream(
            "POST",
            f"/v1/sessions/{session_key}/messages",
            json={"text": "!sh echo streamed-tool-output"},
            headers=SSE,
        ) as response,
    ):
        received = list(events(response))
    kinds = [e.type for e in received]
    start = kinds.index("tool_start")
    assert received[start].data["name"] == "terminal"
    assert received[start].data["arguments"] == {"command": "echo streamed-tool-output"}
    assert "tool_progress" in kinds[start:]
    result = received[kinds.index("tool_result")]
    assert result.data["name"] == "terminal" and result.data["tool_call_id"]
    assert "streamed-tool-output" in result.data["content"]
    assert kinds.index("tool_result") < kinds.index("final")
    assert "streamed-tool-output" in received[-1].data["text"]


def test_a_json_caller_causes_no_stream(cluster: HttpCluster, session_key: str) -> None:
    import redis

    from cluster.keys import Keyspace

    with cluster.a.client() as a:
        reply = a.post(f"/v1/sessions/{session_key}/messages", json={"text": "quiet"}).json()
    client = redis.Redis.from_url(cluster.redis_url)
    try:
        key = Keyspace(cluster.namespace).turn_stream(session_key, reply["message_id"])
        assert client.exists(key) == 0
    finally:
        client.close()


def test_a_stream_that_expired_still_ends_with_the_stored_reply(
    cluster: HttpCluster, session_key: str
) -> None:
    import redis

    from cluster.keys import Keyspace

    with cluster.a.client() as a:
        with a.stream(
            "POST",
            f"/v1/sessions/{session_key}/messages",
            json={"text": "kept", "message_id": "gone-1"},
            headers=SSE,
        ) as response:
            assert list(events(response))[-1].type == "final"
        client = redis.Redis.from_url(cluster.redis_url)
        try:
            client.delete(Keyspace(cluster.namespace).turn_stream(session_key, "gone-1"))
        finally:
            client.close()
        with a.stream("GET", f"/v1/sessions/{session_key}/messages/gone-1/events") as response:
            replay = list(events(response))
    assert [e.type for e in replay] == ["final"]
    assert replay[0].data["text"] == "echo: kept" and replay[0].data["turn"] == 1


def test_a_failing_turn_is_a_502_or_an_error_event(cluster: HttpCluster, session_key: str) -> None:
    import redis

    from cluster.keys import Keyspace
    from cluster.versions import RedisVersionStore

    client = redis.Redis.from_url(cluster.redis_url)
    store = RedisVersionStore(client, Keyspace(cluster.namespace))
    good = store.current_config()[1]
    dead = {"model": {**good["model"], "endpoint": "dead"}}  # nothing listens at its URL
    store.publish_config(dead)
    try:
        with cluster.a.client() as a:
            failed = a.post(f"/v1/sessions/{session_key}/messages", json={"text": "hi"})
            assert failed.status_code == 502, failed.text
            assert "127.0.0.1:9" in failed.json()["error"]["message"]
            with a.stream(
                "POST", f"/v1/sessions/{session_key}/messages", json={"text": "hi"}, headers=SSE
            ) as response:
                received = list(events(response))
        assert received[-1].type == "error"
        assert received[-1].data["error"]["type"] == "turn_failed"
    finally:
        store.publish_config(good)
        client.close()
