"""Tenants over real HTTP: two gateway processes, real workers, real Redis.

Keys of tenants ``acme`` and ``beta`` (and a bare digest, the ``default``
tenant): every attack of one tenant on another's session (read, replay,
repost, post natively or through /v1/chat/completions, interrupt, delete)
finds no session, and the owner's session is untouched. Limits: a second pair
of gateways with per-tenant limits, which both count in Redis.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from coordinator.http.auth import key_digest
from tests.conftest import RedisServer, sim_config, sim_endpoints_env
from tests.integration.http.sse_client import events
from tests.support.fleet import Fleet, fleet, user_texts
from tests.support.gateway import ADMIN_TOKEN, Gateway, start_gateway, stop

pytestmark = pytest.mark.integration

ACME = "acme-key-" + "1" * 24
BETA = "beta-key-" + "2" * 24
LEGACY = "legacy-key-" + "3" * 22
GAMMA = "gamma-key-" + "4" * 23
DELTA = "delta-key-" + "5" * 23
ZETA = "zeta-key-" + "6" * 24
KEYS = (
    f"acme:{key_digest(ACME)},beta:{key_digest(BETA)},{key_digest(LEGACY)},"
    f"gamma:{key_digest(GAMMA)},delta:{key_digest(DELTA)},zeta:{key_digest(ZETA)}"
)
RPM = 6
HEADER_TIMEOUT = 1.0


@dataclass
class TenantCluster:
    redis_url: str
    namespace: str
    fleet: Fleet
    sim: ProviderSimulator
    a: Gateway  # no limits
    b: Gateway  # no limits
    limited: tuple[Gateway, Gateway]  # RPM requests/min and 1 turn in flight per tenant


@pytest.fixture(scope="module")
def tc(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TenantCluster]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    tmp = tmp_path_factory.mktemp("tenants")
    client = redis.Redis.from_url(redis_server.url)
    env = {
        "AGENT_CLUSTER_API_KEY_SHA256": KEYS,
        "AGENT_CLUSTER_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    }
    limits = {
        **env,
        "AGENT_CLUSTER_TENANT_REQUESTS_PER_MINUTE": str(RPM),
        "AGENT_CLUSTER_TENANT_TURNS_IN_FLIGHT": "1",
        "AGENT_CLUSTER_TENANT_LIMITS": "zeta=2/0",
    }
    started: list[Gateway] = []
    with (
        ProviderSimulator() as sim,
        fleet(redis_server.url, namespace, tmp, **sim_endpoints_env(sim)) as workers,
    ):
        RedisVersionStore(client, Keyspace(namespace)).publish_config(sim_config())
        for worker_id in ("w1", "w2"):
            workers.start(worker_id, wait=False)
        for worker_id in ("w1", "w2"):
            workers.wait_live(worker_id)
        try:
            for name, extra in (("a", env), ("b", env), ("l1", limits), ("l2", limits)):
                started.append(start_gateway(redis_server.url, namespace, tmp, name, **extra))
            yield TenantCluster(
                redis_server.url,
                namespace,
                workers,
                sim,
                started[0],
                started[1],
                (started[2], started[3]),
            )
        finally:
            for gateway in started:
                stop(gateway.process)
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        client.delete(key)
    for key in client.scan_iter(match=f"rq:*{namespace}*", count=1000):
        client.delete(key)
    client.close()


def send(client: httpx.Client, name: str, text: str, **fields: Any) -> httpx.Response:
    return client.post(f"/v1/sessions/{name}/messages", json={"text": text, **fields})


def texts(tc: TenantCluster, session_key: str) -> list[str]:
    client = redis.Redis.from_url(tc.redis_url)
    try:
        return user_texts(client, tc.namespace, session_key)
    finally:
        client.close()


@pytest.fixture
def name() -> str:
    return f"chat-{uuid.uuid4().hex[:10]}"


def test_reading_replaying_deleting_another_tenants_session_is_404_and_the_owner_still_works(
    tc: TenantCluster, name: str
) -> None:
    with tc.a.client(key=BETA) as beta, tc.b.client(key=ACME) as acme:
        with beta.stream(
            "POST",
            f"/v1/sessions/{name}/messages",
            json={"text": "beta's secret plan", "message_id": "m-beta"},
            headers={"Accept": "text/event-stream"},
        ) as streamed:
            assert [e.type for e in events(streamed)][-1] == "final"

        assert acme.get(f"/v1/sessions/{name}").status_code == 404
        replay = acme.get(f"/v1/sessions/{name}/messages/m-beta/events")
        assert replay.status_code == 404, replay.text
        assert acme.post(f"/v1/sessions/{name}/interrupt").status_code == 404
        deleted = acme.delete(f"/v1/sessions/{name}")
        assert deleted.status_code == 404, deleted.text

        mine = beta.get(f"/v1/sessions/{name}")
        assert mine.status_code == 200 and mine.json()["turns"] == 1
        assert mine.json()["session_key"] == name and mine.json()["tenant"] == "beta"
        with beta.stream("GET", f"/v1/sessions/{name}/messages/m-beta/events") as again:
            finals = [e for e in events(again) if e.type == "final"]
        assert finals[0].data["text"] == "echo: beta's secret plan"
        assert texts(tc, f"@beta/{name}") == ["beta's secret plan"]


def test_reposting_another_tenants_message_id_runs_a_turn_of_the_callers_own_session(
    tc: TenantCluster, name: str
) -> None:
    with tc.a.client(key=BETA) as beta, tc.b.client(key=ACME) as acme:
        assert send(beta, name, "beta's answer", message_id="m-1").status_code == 200
        repost = send(acme, name, "what did beta get?", message_id="m-1")
        assert repost.status_code == 200, repost.text
        assert repost.json()["text"] == "echo: what did beta get?"
        assert repost.json()["turn"] == 1  # acme's own new session, not beta's reply
        assert beta.get(f"/v1/sessions/{name}").json()["turns"] == 1
        assert texts(tc, f"@beta/{name}") == ["beta's answer"]


def test_posting_natively_or_through_chat_completions_reaches_only_the_callers_own_session(
    tc: TenantCluster, name: str
) -> None:
    with tc.a.client(key=BETA) as beta, tc.b.client(key=ACME) as acme:
        assert send(beta, name, "!sh echo beta-secret > notes.txt").status_code == 200
        native = send(acme, name, "!sh cat notes.txt")
        assert native.status_code == 200 and "beta-secret" not in native.text
        for how in ({"json": {"user": name}}, {"headers": {"X-Session-Key": name}, "json": {}}):
            body = {**how["json"], "messages": [{"role": "user", "content": "!sh cat notes.txt"}]}
            reply = acme.post("/v1/chat/completions", json=body, headers=how.get("headers", {}))
            assert reply.status_code == 200, reply.text
            assert "beta-secret" not in reply.text
        assert texts(tc, f"@beta/{name}") == ["!sh echo beta-secret > notes.txt"]
        assert texts(tc, f"@acme/{name}") == ["!sh cat notes.txt"] * 3
        assert beta.get(f"/v1/sessions/{name}").json()["turns"] == 1


def test_interrupting_another_tenants_running_turn_is_404_and_the_turn_finishes(
    tc: TenantCluster, name: str
) -> None:
    tc.sim.set_latency(ttft=2.0)
    results: dict[str, httpx.Response] = {}
    try:
        with tc.a.client(key=BETA) as beta, tc.b.client(key=ACME) as acme:
            slow = threading.Thread(
                target=lambda: results.setdefault("slow", send(beta, name, "long thought"))
            )
            slow.start()
            deadline = time.monotonic() + 20
            while beta.get(f"/v1/sessions/{name}").json().get("state") != "running":
                assert time.monotonic() < deadline, "the turn never ran"
                time.sleep(0.05)
            assert acme.post(f"/v1/sessions/{name}/interrupt").status_code == 404
            assert acme.get(f"/v1/sessions/{name}").status_code == 404  # pending ids hidden too
            slow.join(timeout=30)
        assert results["slow"].status_code == 200
        assert results["slow"].json()["interrupted"] is False
    finally:
        tc.sim.set_latency()


def test_a_name_cannot_forge_another_tenants_key_and_default_keys_keep_plain_names(
    tc: TenantCluster, name: str
) -> None:
    with (
        tc.a.client(key=BETA) as beta,
        tc.a.client(key=ACME) as acme,
        tc.a.client(key=LEGACY) as legacy,
    ):
        assert send(beta, name, "beta only").status_code == 200
        for forged in (f"@beta/{name}", "@beta"):
            refused = acme.get(f"/v1/sessions/{forged}")
            assert refused.status_code == 400 and "must not start with '@'" in refused.text
            assert send(acme, forged, "let me in").status_code == 400
        assert send(legacy, name, "from before tenants").status_code == 200
        assert texts(tc, name) == ["from before tenants"]  # the default tenant's key is the name


def test_the_admin_sees_every_tenants_sessions_and_usage(tc: TenantCluster, name: str) -> None:
    with tc.a.client(key=BETA) as beta:
        assert send(beta, name, "count me").status_code == 200
    with tc.b.client(key=ADMIN_TOKEN) as admin:
        found = admin.get(f"/v1/admin/sessions/@beta/{name}")
        assert found.status_code == 200, found.text
        assert found.json()["tenant"] == "beta" and found.json()["name"] == name
        status = admin.get("/v1/admin/status").json()
        assert "beta" in {t["tenant"] for t in status["tenants"]}
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "coordinator.cli",
            "session",
            f"@beta/{name}",
            "--redis-url",
            tc.redis_url,
            "--namespace",
            tc.namespace,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert f"tenant:         beta (its API keys call it '{name}')" in shown


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == want:
            return float(match.group(2))
    return 0.0


def test_each_tenants_usage_is_in_metrics_and_the_status_page(tc: TenantCluster) -> None:
    tenant = "acme"
    with tc.a.client(key=ACME) as acme:
        before = acme.get("/metrics/cluster").text
        for n in range(2):
            assert (
                send(acme, f"usage-{uuid.uuid4().hex[:6]}", f"tokens please {n}").status_code == 200
            )
    scraped = httpx.get(f"{tc.b.url}/metrics/cluster").text  # the other gateway sees the same
    turns = _metric(scraped, "agent_cluster_tenant_turns_total", tenant=tenant)
    assert turns - _metric(before, "agent_cluster_tenant_turns_total", tenant=tenant) == 2
    for kind in ("input", "output"):
        assert _metric(
            scraped, "agent_cluster_tenant_provider_tokens_total", tenant=tenant, kind=kind
        ) > _metric(before, "agent_cluster_tenant_provider_tokens_total", tenant=tenant, kind=kind)
    assert _metric(scraped, "agent_cluster_tenant_provider_cost_dollars_total", tenant=tenant) > 0
    page = httpx.get(f"{tc.b.url}/status.json").json()
    row = next(t for t in page["tenants"] if t["tenant"] == tenant)
    assert row["turns"] == turns and row["cost_usd"] > 0


def test_requests_per_minute_are_counted_over_every_gateway(tc: TenantCluster, name: str) -> None:
    l1, l2 = tc.limited
    with l1.client(key=GAMMA) as one, l2.client(key=GAMMA) as two, l2.client(key=BETA) as other:
        codes = [
            (one if n % 2 else two).get(f"/v1/sessions/{name}").status_code for n in range(RPM)
        ]
        assert codes == [404] * RPM  # admitted (no such session), alternating gateways
        for client in (one, two):
            refused = client.get(f"/v1/sessions/{name}")
            assert refused.status_code == 429, refused.text
            assert 1 <= int(refused.headers["retry-after"]) <= 60 // RPM + 1
            assert "requests per minute" in refused.json()["error"]["message"]
        assert other.get(f"/v1/sessions/{name}").status_code == 404  # another tenant: its own count


def test_a_tenants_own_limit_overrides_the_default(tc: TenantCluster, name: str) -> None:
    l1, l2 = tc.limited
    with l1.client(key=ZETA) as one, l2.client(key=ZETA) as two:
        assert [c.get(f"/v1/sessions/{name}").status_code for c in (one, two)] == [404, 404]
        refused = one.get(f"/v1/sessions/{name}")
        assert refused.status_code == 429 and 29 <= int(refused.headers["retry-after"]) <= 31


def test_turns_in_flight_are_counted_over_every_gateway_and_released_at_the_reply(
    tc: TenantCluster, name: str
) -> None:
    l1, l2 = tc.limited
    tc.sim.set_latency(ttft=2.0)
    results: dict[str, httpx.Response] = {}
    try:
        with l1.client(key=DELTA) as one, l2.client(key=DELTA) as two:
            slow = threading.Thread(
                target=lambda: results.setdefault("slow", send(one, name, "slow turn"))
            )
            slow.start()
            inflight = Keyspace(tc.namespace).tenant_inflight("delta")
            watcher = redis.Redis.from_url(tc.redis_url)
            deadline = time.monotonic() + 20
            while not watcher.zcard(inflight):
                assert time.monotonic() < deadline, "the turn was never accepted"
                time.sleep(0.05)
            busy = send(two, f"{name}-other", "me too")
            assert busy.status_code == 429, busy.text
            assert busy.headers["retry-after"] == "1"
            assert "turns in flight" in busy.json()["error"]["message"]
            slow.join(timeout=30)
            assert results["slow"].status_code == 200
            assert watcher.zcard(inflight) == 0  # released by the worker's commit
            watcher.close()
            tc.sim.set_latency()
            assert send(two, f"{name}-other", "now").status_code == 200
    finally:
        tc.sim.set_latency()


@pytest.mark.parametrize("last_id", ["18446744073709551616-0", "1-99999999999999999999", "garbage"])
def test_an_invalid_last_event_id_is_400_before_the_stream_starts(
    tc: TenantCluster, name: str, last_id: str
) -> None:
    with tc.a.client(key=ACME) as acme:
        assert send(acme, name, "hello", message_id="m-1").status_code == 200
        resumed = acme.get(
            f"/v1/sessions/{name}/messages/m-1/events", headers={"Last-Event-ID": last_id}
        )
        assert resumed.status_code == 400, resumed.text
        assert "Last-Event-ID" in resumed.json()["error"]["message"]
        largest = acme.get(
            f"/v1/sessions/{name}/messages/m-1/events",
            headers={"Last-Event-ID": "18446744073709551615-0"},
        )
        assert largest.status_code == 200  # the largest valid id: nothing after it but the reply


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Trickle header bytes until the server closes; return how long that took."""
    start = time.monotonic()
    sock.settimeout(0.25)
    while time.monotonic() - start < seconds:
        try:
            sock.sendall(b"X")
            if sock.recv(1) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    raise AssertionError(f"the connection was still open after {seconds}s")


def test_a_connection_sending_its_headers_slowly_is_closed_within_the_timeout(
    tc: TenantCluster,
) -> None:
    host, port = tc.a.url.removeprefix("http://").split(":")
    slow = [socket.create_connection((host, int(port))) for _ in range(20)]
    try:
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert httpx.get(f"{tc.a.url}/healthz").status_code == 200  # others are served meanwhile
        for sock in slow:
            assert _closed_within(sock, HEADER_TIMEOUT + 3) <= HEADER_TIMEOUT + 2
    finally:
        for sock in slow:
            sock.close()
    with socket.create_connection((host, int(port))) as kept:
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in kept.recv(4096)
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # then trickle: closed too
        assert _closed_within(kept, HEADER_TIMEOUT + 3) <= HEADER_TIMEOUT + 2
