"""The simulator's HTTP surface: stats and control endpoints, errors, latency, lifecycle."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest

from agent.simulator import ProviderSimulator

pytestmark = pytest.mark.integration

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
MESSAGE = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


def call(
    url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One HTTP request on a fresh connection; returns (status, decoded JSON)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        data = (
            body
            if isinstance(body, bytes)
            else (None if body is None else json.dumps(body).encode())
        )
        conn.request(
            method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    with ProviderSimulator() as simulator:
        yield simulator


def test_stats_endpoint_and_reset(sim: ProviderSimulator) -> None:
    assert (
        call(sim.url, "POST", "/v1/chat/completions", CHAT, {"Authorization": "Bearer k"})[0] == 200
    )
    assert call(sim.url, "POST", "/v1/messages", MESSAGE, {"x-api-key": "k"})[0] == 200
    status, stats = call(sim.url, "GET", "/stats")
    assert status == 200
    assert stats["total"]["requests"] == 2
    assert stats["providers"]["openai"]["requests"] == 1
    assert stats["providers"]["anthropic"]["requests"] == 1
    assert stats["total"]["cost_usd"] > 0
    assert stats["total"]["cost_usd"] == pytest.approx(
        stats["providers"]["openai"]["cost_usd"] + stats["providers"]["anthropic"]["cost_usd"]
    )
    assert set(stats["total"]) >= {
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "output_tokens",
        "cache_hit_share",
    }
    assert call(sim.url, "POST", "/stats/reset")[0] == 200
    assert call(sim.url, "GET", "/stats")[1]["total"]["requests"] == 0


def test_anthropic_accepts_x_api_key_and_refuses_a_missing_key(sim: ProviderSimulator) -> None:
    assert call(sim.url, "POST", "/v1/messages", MESSAGE, {"x-api-key": "k"})[0] == 200
    status, body = call(sim.url, "POST", "/v1/messages", MESSAGE)
    assert status == 401 and body["error"]["type"] == "authentication_error"
    status, body = call(sim.url, "POST", "/v1/messages", MESSAGE, {"x-api-key": "bad-1"})
    assert status == 401


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1/chat/completions", b"{not json", "not valid JSON"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, "model"),
        ("/v1/chat/completions", {"model": "gpt-4o"}, "messages"),
        ("/v1/messages", b"[", "not valid JSON"),
        ("/v1/messages", {"model": "m", "max_tokens": 5}, "messages"),
    ],
)
def test_bad_requests_get_400_in_the_providers_format(
    sim: ProviderSimulator, path: str, body: Any, needle: str
) -> None:
    status, answer = call(sim.url, "POST", path, body, {"Authorization": "Bearer k"})
    assert status == 400
    assert needle in answer["error"]["message"]
    if path == "/v1/messages":
        assert answer["type"] == "error" and answer["error"]["type"] == "invalid_request_error"
    else:
        assert answer["error"]["type"] == "invalid_request_error"


def test_unknown_path_is_404_with_a_hint(sim: ProviderSimulator) -> None:
    status, body = call(sim.url, "POST", "/chat/completions", CHAT)
    assert status == 404 and "/v1" in body["error"]["message"]


def test_count_tokens(sim: ProviderSimulator) -> None:
    status, body = call(
        sim.url,
        "POST",
        "/v1/messages/count_tokens",
        {"model": "m", "messages": MESSAGE["messages"]},
        {"x-api-key": "k"},
    )
    assert status == 200 and body["input_tokens"] > 0


def test_control_endpoints(sim: ProviderSimulator) -> None:
    assert call(sim.url, "GET", "/health") == (200, {"ok": True})
    assert call(sim.url, "POST", "/faults", {"faults": ["500"]})[1] == {"queued": 1}
    assert (
        call(sim.url, "POST", "/v1/chat/completions", CHAT, {"Authorization": "Bearer k"})[0] == 500
    )
    replies = {
        "replies": [
            "scripted",
            {"tool_calls": [{"name": "terminal", "arguments": {"command": "ls"}}]},
        ]
    }
    assert call(sim.url, "POST", "/script", replies)[1] == {"queued": 2}
    first = call(sim.url, "POST", "/v1/chat/completions", CHAT, {"Authorization": "Bearer k"})[1]
    assert first["choices"][0]["message"]["content"] == "scripted"
    second = call(sim.url, "POST", "/v1/messages", MESSAGE, {"x-api-key": "k"})[1]
    assert second["stop_reason"] == "tool_use" and second["content"][0]["input"] == {
        "command": "ls"
    }
    status, recorded = call(sim.url, "GET", "/requests")
    assert status == 200 and len(recorded["requests"]) == 3
    assert all(
        "authorization" not in r["headers"] and "x-api-key" not in r["headers"]
        for r in recorded["requests"]
    )
    assert call(sim.url, "POST", "/latency", {"ttft": 0.0, "tokens_per_second": None})[0] == 200
    assert call(sim.url, "POST", "/faults", {"faults": ["nap"]})[0] == 400
    assert call(sim.url, "POST", "/latency", {"ttft": -1})[0] == 400
    assert call(sim.url, "POST", "/cache/clear")[0] == 200


def test_time_to_first_token_and_pacing(sim: ProviderSimulator) -> None:
    sim.set_latency(ttft=0.5, tokens_per_second=100)
    with openai.OpenAI(api_key="k", base_url=sim.openai_base_url, max_retries=0) as client:
        started = time.monotonic()
        stream = client.chat.completions.create(
            model="gpt-4o",
            messages=[
                {"role": "user", "content": "one two three four five six seven eight nine ten"}
            ],
            stream=True,
        )
        with stream:
            arrivals = [
                time.monotonic() - started
                for chunk in stream
                if chunk.choices and chunk.choices[0].delta.content
            ]
        assert arrivals[0] >= 0.5
        assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 1) / 100 * 0.9
        sim.set_latency()
        started = time.monotonic()
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        assert time.monotonic() - started < 0.5  # the 0.5 s ttft is gone


def test_client_leaving_a_stream_early_does_not_break_the_server(sim: ProviderSimulator) -> None:
    sim.set_latency(tokens_per_second=200)
    with openai.OpenAI(api_key="k", base_url=sim.openai_base_url, max_retries=0) as client:
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "word " * 200}], stream=True
        )
        with stream:
            next(iter(stream))  # read one chunk, then hang up
        sim.set_latency()
        again = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "ok"}]
        )
    assert again.choices[0].message.content == "echo: ok"


def test_non_streaming_reply_waits_for_the_whole_generation() -> None:
    with ProviderSimulator(ttft=0.1, tokens_per_second=50) as sim:
        with openai.OpenAI(api_key="k", base_url=sim.openai_base_url, max_retries=0) as client:
            started = time.monotonic()
            completion = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "a b c d"}]
            )
            elapsed = time.monotonic() - started
    assert completion.usage is not None
    assert elapsed >= 0.1 + completion.usage.completion_tokens / 50


def test_stop_cuts_slow_replies_and_idle_connections_and_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    sim = ProviderSimulator().start()
    idle = http.client.HTTPConnection("127.0.0.1", int(sim.url.rsplit(":", 1)[1]), timeout=10)
    idle.request("GET", "/health")
    idle.getresponse().read()  # keep-alive connection left open on purpose
    sim.inject_faults("slow:60")
    errors: list[BaseException] = []

    def slow_call() -> None:
        try:
            call(sim.url, "POST", "/v1/chat/completions", CHAT, {"Authorization": "Bearer k"})
        except (ConnectionError, http.client.HTTPException) as exc:
            errors.append(exc)

    caller = threading.Thread(target=slow_call)
    caller.start()
    deadline = time.monotonic() + 5
    while not sim.recorded_requests() and time.monotonic() < deadline:
        time.sleep(0.01)  # wait until the slow request is inside the server
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 2
    caller.join(5)
    idle.close()
    assert not caller.is_alive() and len(errors) == 1
    assert set(threading.enumerate()) <= before
    sim.stop()  # idempotent


def test_serve_prints_the_url_and_stops_on_ctrl_c() -> None:
    code = "from agent.simulator import serve; serve('127.0.0.1', 0)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line
        url = line.split()[4]
        assert call(url, "GET", "/health") == (200, {"ok": True})
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_a_client_that_resets_its_connection_is_no_error(
    sim: ProviderSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker stopped mid-call resets its connection: the simulator notes it quietly
    (it printed a ConnectionResetError traceback per connection into every bench run)."""
    parts = urlsplit(sim.url)
    caplog.set_level(logging.DEBUG, logger="agent.simulator._http")
    for _ in range(3):
        sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80))
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # half a request
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST, not FIN
    deadline = time.monotonic() + 5
    while len([r for r in caplog.records if "went away" in r.getMessage()]) < 3:
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        time.sleep(0.02)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert call(sim.url, "GET", "/stats")[0] == 200  # and it still serves
