"""Many callers waiting on one gateway process: all answered on a few Redis connections,
a full gateway says so, and callers of a killed gateway resume on another."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from cluster.keys import Keyspace
from tests.integration.http.conftest import HttpCluster
from tests.support.gateway import API_KEY, Gateway, start_gateway, stop

pytestmark = pytest.mark.integration

HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def gateway_connections(client: redis.Redis, namespace: str, gateway: Gateway) -> int:
    """Redis connections named by the gateway process (``CLIENT LIST``)."""
    name = f"{namespace}-gateway-{gateway.process.pid}"
    return sum(1 for entry in client.client_list() if entry.get("name") == name)


async def _json_caller(http: httpx.AsyncClient, name: str, message_id: str) -> str:
    response = await http.post(
        f"/v1/sessions/{name}/messages", json={"text": "hello", "message_id": message_id}
    )
    assert response.status_code == 200, response.text
    assert response.json()["message_id"] == message_id
    return "json"


async def _sse_caller(http: httpx.AsyncClient, name: str, message_id: str) -> str:
    body = {"text": "hello", "message_id": message_id, "stream": True}
    async with http.stream("POST", f"/v1/sessions/{name}/messages", json=body) as response:
        assert response.status_code == 200
        text = (await response.aread()).decode()
    assert "event: final" in text, text[-500:]
    return "sse"


async def _openai_caller(http: httpx.AsyncClient, name: str, message_id: str) -> str:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    headers = {"X-Session-Key": name, "X-Message-Id": message_id}
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        text = (await response.aread()).decode()
    assert '"finish_reason":"stop"' in text and text.rstrip().endswith("data: [DONE]"), text[-500:]
    return "openai"


async def _callers(url: str, count: int, sample: Callable[[], int]) -> tuple[list[str], int]:
    kinds = (_json_caller, _sse_caller, _openai_caller)
    peak = 0
    done = asyncio.Event()

    async def sampler() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, await asyncio.to_thread(sample))
            await asyncio.sleep(0.1)

    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=120, limits=limits) as http:
        watcher = asyncio.create_task(sampler())
        results = await asyncio.gather(
            *(kinds[i % 3](http, f"wait-{uuid.uuid4().hex[:10]}", f"m{i}") for i in range(count))
        )
        done.set()
        await watcher
    return list(results), peak


def test_a_thousand_waiting_callers_are_all_answered_on_at_most_eight_redis_connections(
    cluster: HttpCluster,
) -> None:
    client = redis.Redis.from_url(cluster.redis_url)
    cluster.sim.set_latency(ttft=0.5, tokens_per_second=None)
    try:
        results, peak = asyncio.run(
            _callers(
                cluster.a.url,
                1000,
                lambda: gateway_connections(client, cluster.namespace, cluster.a),
            )
        )
    finally:
        cluster.sim.set_latency(ttft=0.0, tokens_per_second=None)
    assert sorted(set(results)) == ["json", "openai", "sse"] and len(results) == 1000
    assert 0 < peak <= 8, f"the gateway used {peak} Redis connections for 1000 waiting callers"
    client.close()


def test_a_full_gateway_answers_503_with_retry_after_and_accepts_nothing(
    cluster: HttpCluster, tmp_path: Path
) -> None:
    small = start_gateway(
        cluster.redis_url,
        cluster.namespace,
        tmp_path,
        "small",
        AGENT_CLUSTER_GATEWAY_MAX_WAITING="2",
    )
    cluster.sim.set_latency(ttft=3.0, tokens_per_second=None)
    client = redis.Redis.from_url(cluster.redis_url)
    try:

        async def scenario() -> tuple[httpx.Response, httpx.Response]:
            async with httpx.AsyncClient(base_url=small.url, headers=HEADERS, timeout=60) as http:
                waiting = [
                    asyncio.create_task(
                        _json_caller(http, f"full-{i}-{uuid.uuid4().hex[:6]}", f"f{i}")
                    )
                    for i in range(2)
                ]
                while (await http.get("/readyz")).json().get("waiting") != 2:
                    await asyncio.sleep(0.02)
                refused = await http.post(
                    "/v1/sessions/full-third/messages", json={"text": "hi", "message_id": "third"}
                )
                ready = await http.get("/readyz")
                await asyncio.gather(*waiting)
                return refused, ready

        refused, ready = asyncio.run(scenario())
    finally:
        cluster.sim.set_latency(ttft=0.0, tokens_per_second=None)
        stop(small.process)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    error = refused.json()["error"]
    assert error["type"] == "gateway_full" and "gateway is full" in error["message"]
    assert "Redis" not in error["message"]
    assert ready.status_code == 503 and ready.json()["reason"].startswith("gateway full")
    keys = Keyspace(cluster.namespace)
    assert not any(client.scan_iter(match=f"{keys.namespace}:*full-third*"))  # nothing accepted
    client.close()


def test_callers_of_a_killed_gateway_resume_on_another_and_get_each_reply_once(
    cluster: HttpCluster, tmp_path: Path
) -> None:
    doomed = start_gateway(cluster.redis_url, cluster.namespace, tmp_path, "doomed")
    cluster.sim.set_latency(ttft=1.5, tokens_per_second=None)
    sessions = [f"kill-{i}-{uuid.uuid4().hex[:6]}" for i in range(30)]
    try:

        async def wait_on_doomed() -> list[BaseException | str]:
            async with httpx.AsyncClient(base_url=doomed.url, headers=HEADERS, timeout=60) as http:
                calls = [
                    (_json_caller if i % 2 == 0 else _sse_caller)(http, name, f"k{i}")
                    for i, name in enumerate(sessions)
                ]
                tasks = [asyncio.create_task(c) for c in calls]
                while (await http.get("/readyz")).json().get("waiting") != len(sessions):
                    await asyncio.sleep(0.02)
                os.kill(doomed.process.pid, signal.SIGKILL)
                return await asyncio.gather(*tasks, return_exceptions=True)

        cut = asyncio.run(wait_on_doomed())
        assert all(isinstance(outcome, BaseException) for outcome in cut)  # every caller was cut
    finally:
        cluster.sim.set_latency(ttft=0.0, tokens_per_second=None)
        stop(doomed.process)
    with cluster.b.client() as http:
        for i, name in enumerate(sessions):
            if i % 2 == 0:  # the same message id again: its answer, not a second turn
                reply = http.post(
                    f"/v1/sessions/{name}/messages", json={"text": "hello", "message_id": f"k{i}"}
                )
                assert reply.status_code == 200 and reply.json()["turn"] == 1, reply.text
            else:  # the stream again from the start (Last-Event-ID resume is the same read)
                with http.stream("GET", f"/v1/sessions/{name}/messages/k{i}/events") as response:
                    text = response.read().decode()
                finals = [
                    json.loads(line[len("data: ") :])
                    for block in text.split("\n\n")
                    if "event: final" in block
                    for line in block.splitlines()
                    if line.startswith("data: ")
                ]
                assert len(finals) == 1 and finals[0]["turn"] == 1, text[-500:]
            assert http.get(f"/v1/sessions/{name}").json()["turns"] == 1


def _gateway_clients(client: redis.Redis, namespace: str, gateway: Gateway) -> list[dict[str, str]]:
    name = f"{namespace}-gateway-{gateway.process.pid}"
    return [entry for entry in client.client_list() if entry.get("name") == name]


def test_idle_waiting_callers_cost_no_redis_command_and_share_one_subscriber(
    cluster: HttpCluster, tmp_path: Path
) -> None:
    quiet = start_gateway(
        cluster.redis_url,
        cluster.namespace,
        tmp_path,
        "quiet",
        AGENT_CLUSTER_GATEWAY_SWEEP_INTERVAL="60",
    )
    client = redis.Redis.from_url(cluster.redis_url, decode_responses=True)
    cluster.sim.set_latency(ttft=10.0, tokens_per_second=None)
    streams, replies = 10, 40
    try:

        async def scenario() -> tuple[list[dict[str, str]], list[str]]:
            async with httpx.AsyncClient(base_url=quiet.url, headers=HEADERS, timeout=60) as http:
                started = asyncio.Semaphore(0)

                async def sse(i: int) -> str:
                    body = {"text": "hello", "message_id": f"q{i}", "stream": True}
                    path = f"/v1/sessions/quiet-{i}-{uuid.uuid4().hex[:6]}/messages"
                    async with http.stream("POST", path, json=body) as response:
                        seen = ""
                        async for chunk in response.aiter_text():
                            if "event: turn_start" in chunk:
                                started.release()
                            seen += chunk
                    assert "event: final" in seen, seen[-500:]
                    return "sse"

                tasks = [asyncio.create_task(sse(i)) for i in range(streams)]
                for _ in range(streams):  # every stream's turn runs: it waits on the model now
                    await asyncio.wait_for(started.acquire(), 30)
                tasks += [
                    asyncio.create_task(
                        _json_caller(http, f"quiet-j{i}-{uuid.uuid4().hex[:6]}", f"j{i}")
                    )
                    for i in range(replies)
                ]
                while (await http.get("/readyz")).json().get("waiting") != streams + replies:
                    await asyncio.sleep(0.02)
                await asyncio.sleep(2.3)  # every caller waits on the model: nothing to do
                entries = _gateway_clients(client, cluster.namespace, quiet)
                return entries, await asyncio.gather(*tasks)

        entries, results = asyncio.run(scenario())
    finally:
        cluster.sim.set_latency(ttft=0.0, tokens_per_second=None)
        stop(quiet.process)
        client.close()
    assert sorted(results) == ["json"] * replies + ["sse"] * streams  # all answered
    subscribers = [e for e in entries if int(e["sub"]) > 0]
    # one connection subscribed for every wait: JSON: the reply; SSE: the reply and the stream
    assert len(subscribers) == 1 and int(subscribers[0]["sub"]) == replies + 2 * streams, entries
    # The one command a waiting gateway sends: its failover watch reads INFO replication at
    # most once a second for the whole process, however many callers wait.
    busy = [e for e in entries if int(e["idle"]) < 2 and e["cmd"] != "info"]
    assert not busy, f"the gateway sent commands while its callers only waited: {busy}"


def test_callers_that_leave_before_the_first_byte_give_their_places_back_at_once(
    cluster: HttpCluster,
) -> None:
    host, port = cluster.a.url.removeprefix("http://").split(":")
    tag = uuid.uuid4().hex[:6]
    cluster.sim.set_latency(ttft=5.0, tokens_per_second=None)
    count = 30

    def request(i: int) -> bytes:
        kind = ("json", "sse", "openai")[i % 3]
        if kind == "openai":
            path = "/v1/chat/completions"
            body = json.dumps(
                {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
            )
            extra = f"X-Session-Key: leave-{i}-{tag}\r\n"
        else:
            path = f"/v1/sessions/leave-{i}-{tag}/messages"
            body = json.dumps({"text": "hello", "message_id": f"l{i}", "stream": kind == "sse"})
            extra = ""
        return (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            f"{body}"
        ).encode()

    try:

        async def scenario() -> tuple[int, float]:
            async with httpx.AsyncClient(base_url=cluster.a.url, headers=HEADERS) as http:
                callers = []
                for i in range(count):
                    reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(request(i))
                    await writer.drain()
                    callers.append((reader, writer))
                while (await http.get("/readyz")).json()["waiting"] != count:
                    await asyncio.sleep(0.02)
                for _reader, writer in callers:  # every one waits on the model: all leave
                    writer.close()
                left = time.monotonic()
                waiting = count
                while waiting and time.monotonic() - left < 2.5:  # the turns run 5 s more
                    waiting = int((await http.get("/readyz")).json()["waiting"])
                    await asyncio.sleep(0.02)
                return waiting, time.monotonic() - left

        waiting, after = asyncio.run(scenario())
        assert waiting == 0, f"{waiting} places still held {after:.1f}s after their callers left"
        with cluster.a.client() as http:  # a JSON caller's reply stayed for its retry
            again = http.post(
                f"/v1/sessions/leave-0-{tag}/messages", json={"text": "hello", "message_id": "l0"}
            )
        assert again.status_code == 200 and again.json()["turn"] == 1, again.text
    finally:
        cluster.sim.set_latency(ttft=0.0, tokens_per_second=None)
