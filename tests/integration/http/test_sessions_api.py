"""The native HTTP API on a running cluster: JSON replies, sessions, strategies, auth, errors."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import WORKERS, HttpCluster
from tests.support.gateway import OTHER_KEY

pytestmark = pytest.mark.integration

USAGE_KINDS = {"input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"}


def send(client: httpx.Client, key: str, text: str, **fields: Any) -> httpx.Response:
    return client.post(f"/v1/sessions/{key}/messages", json={"text": text, **fields})


def test_a_message_is_answered_as_json_and_the_session_stays_on_its_worker(
    cluster: HttpCluster, session_key: str
) -> None:
    with cluster.a.client() as a, cluster.b.client() as b:
        first = send(a, session_key, "hello there")
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["text"] == "echo: hello there"
        assert body["worker_id"] in WORKERS
        assert body["turn"] == 1 and body["cache_hit"] is False
        assert USAGE_KINDS <= set(body["usage"]) and body["usage"]["output_tokens"] > 0
        assert first.headers["x-message-id"] == body["message_id"]

        second = send(b, session_key, "and again")  # the other gateway instance
        assert second.status_code == 200, second.text
        assert second.json()["worker_id"] == body["worker_id"]
        assert second.json()["turn"] == 2 and second.json()["cache_hit"] is True
        assert second.json()["usage"]["cache_read_tokens"] > 0  # the prefix stayed warm

        state = a.get(f"/v1/sessions/{session_key}")
        assert state.status_code == 200, state.text
        assert state.json()["owner"] == body["worker_id"]
        assert state.json()["turns"] == 2 and state.json()["state"] == "idle"


def test_a_message_id_is_answered_once(cluster: HttpCluster, session_key: str) -> None:
    with cluster.a.client() as a, cluster.b.client() as b:
        one = send(a, session_key, "once", message_id="m-1").json()
        two = send(b, session_key, "once", message_id="m-1").json()
        assert one == two
        assert a.get(f"/v1/sessions/{session_key}").json()["turns"] == 1


def test_delete_resets_the_session_in_order(cluster: HttpCluster, session_key: str) -> None:
    with cluster.a.client() as a:
        assert send(a, session_key, "remember me").status_code == 200
        reset = a.delete(f"/v1/sessions/{session_key}")
        assert reset.status_code == 200, reset.text
        assert reset.json()["reset"] is True
        assert a.get(f"/v1/sessions/{session_key}").json()["turns"] == 0
        after = send(a, session_key, "who am I").json()
        assert after["turn"] == 1


def test_unknown_session_is_404(cluster: HttpCluster) -> None:
    with cluster.a.client() as a:
        response = a.get(f"/v1/sessions/never-{uuid.uuid4().hex}")
        assert response.status_code == 404
        assert "no session" in response.json()["error"]["message"]


def test_interrupt_and_double_texting_strategies(cluster: HttpCluster, session_key: str) -> None:
    cluster.sim.set_latency(ttft=3.0)
    try:
        with cluster.a.client() as a, cluster.b.client() as b:
            unknown = a.post(f"/v1/sessions/{session_key}/interrupt")
            assert unknown.status_code == 404  # nothing stored: no such session
            results: dict[str, httpx.Response] = {}
            slow = threading.Thread(
                target=lambda: results.setdefault("slow", send(a, session_key, "slow one"))
            )
            slow.start()
            _wait_running(a, session_key)
            busy = send(b, session_key, "me too", strategy="reject")
            assert busy.status_code == 409, busy.text
            assert "busy" in busy.json()["error"]["message"]
            stopped = b.post(f"/v1/sessions/{session_key}/interrupt")
            assert stopped.status_code == 200 and stopped.json()["stopped"] is True
            slow.join(timeout=30)
            assert results["slow"].status_code == 200
            assert results["slow"].json()["interrupted"] is True
            bad = send(a, session_key, "x", strategy="sometimes")
            assert bad.status_code == 400 and "strategy" in bad.json()["error"]["message"]
    finally:
        cluster.sim.set_latency()


def test_strategy_interrupt_stops_the_running_turn_and_runs_next(
    cluster: HttpCluster, session_key: str
) -> None:
    cluster.sim.set_latency(ttft=3.0)
    results: dict[str, httpx.Response] = {}
    try:
        with cluster.a.client() as a, cluster.b.client() as b:
            slow = threading.Thread(
                target=lambda: results.setdefault("slow", send(a, session_key, "first"))
            )
            slow.start()
            _wait_running(a, session_key)
            second = send(b, session_key, "second", strategy="interrupt")
            slow.join(timeout=30)
        assert results["slow"].json()["interrupted"] is True
        assert second.status_code == 200 and second.json()["text"] == "echo: second"
        assert second.json()["turn"] == 2
    finally:
        cluster.sim.set_latency()


def test_strategy_steer_is_answered_by_the_running_turn_native_and_openai(
    cluster: HttpCluster, session_key: str
) -> None:
    cluster.sim.set_latency(ttft=2.0)
    results: dict[str, httpx.Response] = {}
    try:
        with cluster.a.client() as a, cluster.b.client() as b:
            slow = threading.Thread(
                target=lambda: results.setdefault("slow", send(a, session_key, "book a flight"))
            )
            slow.start()
            _wait_running(a, session_key)
            steered = send(b, session_key, "window seat please", strategy="steer")
            slow.join(timeout=30)
            cluster.sim.set_latency(ttft=0.0)
            plain = b.post(
                "/v1/chat/completions",
                headers={"X-Session-Key": session_key, "X-Strategy": "steer"},
                json={"messages": [{"role": "user", "content": "thanks"}]},
            )
        first = results["slow"].json()
        assert steered.status_code == 200, steered.text
        assert steered.json()["text"] == first["text"] == "echo: window seat please"
        assert steered.json()["turn"] == first["turn"] == 1
        assert steered.json()["folded_into"] == first["message_id"]
        assert first["folded"] == [steered.json()["message_id"]]
        assert plain.status_code == 200, plain.text  # no turn ran: the next turn
        assert plain.json()["choices"][0]["message"]["content"] == "echo: thanks"
    finally:
        cluster.sim.set_latency()


def _wait_running(client: httpx.Client, key: str) -> None:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = client.get(f"/v1/sessions/{key}")
        if response.status_code == 200 and response.json()["state"] == "running":
            return
        time.sleep(0.05)
    raise AssertionError("the turn never ran")


def test_chat_endpoints_need_an_accepted_key(cluster: HttpCluster, session_key: str) -> None:
    with cluster.a.client(key=None) as anonymous:
        response = send(anonymous, session_key, "hi")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "API key is required" in response.json()["error"]["message"]
    with cluster.a.client(key="sk-wrong") as wrong:
        assert send(wrong, session_key, "hi").status_code == 401
        assert wrong.get(f"/v1/sessions/{session_key}").status_code == 401
    with cluster.a.client(key=OTHER_KEY) as other:
        assert send(other, session_key, "hi").status_code == 200
    with httpx.Client(base_url=cluster.a.url, headers={"X-API-Key": OTHER_KEY}) as header:
        assert header.get(f"/v1/sessions/{session_key}").status_code == 200


@pytest.mark.parametrize(
    ("request_args", "status", "words"),
    [
        (
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "not valid JSON",
        ),
        (
            {
                "content": b"text=hi",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            415,
            "application/json",
        ),
        ({"json": ["hi"]}, 400, "JSON object"),
        ({"json": {"text": "hi", "colour": "red"}}, 400, "unknown field"),
        ({"json": {"text": 5}}, 400, "text must be"),
        ({"json": {"text": "   "}}, 400, "text must not be empty"),
        ({"json": {"message_id": "m"}}, 400, "text is missing"),
        ({"json": {"text": "hi", "timeout": -1}}, 400, "timeout"),
        ({"json": {"text": "hi", "stream": "yes"}}, 400, "stream"),
        ({"json": {"text": "hi", "message_id": "a\nb"}}, 400, "control characters"),
        ({"json": {"text": "x" * 70000}}, 413, "limit"),
        ({"json": {"text": "hi"}, "headers": {"Last-Event-ID": "yesterday"}}, 400, "Last-Event-ID"),
    ],
)
def test_bad_requests_get_a_clear_4xx(
    cluster: HttpCluster, session_key: str, request_args: dict[str, Any], status: int, words: str
) -> None:
    with cluster.a.client() as a:
        response = a.post(f"/v1/sessions/{session_key}/messages", **request_args)
        assert response.status_code == status, response.text
        assert words in response.json()["error"]["message"]
        assert a.get(f"/v1/sessions/{session_key}").status_code == 404  # nothing was written


def test_oversize_chunked_body_is_refused_before_it_is_read(
    cluster: HttpCluster, session_key: str
) -> None:
    def chunks() -> Any:
        for _ in range(200):
            yield b"x" * 4096

    with cluster.a.client() as a:
        response = a.post(
            f"/v1/sessions/{session_key}/messages",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 413


@pytest.mark.parametrize(
    ("key", "status"),
    [("bad%0Akey", 400), ("k" * 300, 413), ("%E2%80%8B%00", 400)],
)
def test_bad_session_keys(cluster: HttpCluster, key: str, status: int) -> None:
    with cluster.a.client() as a:
        response = a.post(f"/v1/sessions/{key}/messages", json={"text": "hi"})
        assert response.status_code == status, response.text
        assert "session_key" in response.json()["error"]["message"]


def test_session_keys_may_hold_slashes(cluster: HttpCluster) -> None:
    key = f"telegram/{uuid.uuid4().hex[:8]}/42"
    with cluster.a.client() as a:
        assert send(a, key, "hi").status_code == 200
        assert a.get(f"/v1/sessions/{key}").json()["session_key"] == key


def test_health_readiness_and_openapi(cluster: HttpCluster) -> None:
    with cluster.b.client(key=None) as b:
        assert b.get("/healthz").json() == {"ok": True}
        ready = b.get("/readyz")
        assert ready.status_code == 200 and ready.json()["live_workers"] == len(WORKERS)
        document = b.get("/openapi.json").json()
        assert document["openapi"].startswith("3.")
        for path in ("/v1/sessions/{key}/messages", "/v1/chat/completions", "/v1/admin/config"):
            assert path in document["paths"]
        unknown = b.get("/v2/nothing")
        assert unknown.status_code == 404 and "openapi.json" in unknown.json()["error"]["message"]
        wrong_method = b.put("/healthz")
        assert wrong_method.status_code == 405
