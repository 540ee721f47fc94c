"""Prometheus metrics of the workers and the gateway move with traffic (real Redis,
three worker processes, the provider simulator, ``agent-cluster serve``)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import redis

from cluster.event_log import ClusterEventLog
from cluster.keys import Keyspace
from tests.integration.observability.conftest import ObservedCluster, scrape, value

pytestmark = pytest.mark.integration

SESSIONS = 4
TURNS = 3


def _send(url: str, session: str, text: str, *, stream: bool = False) -> httpx.Response:
    headers = {"Accept": "text/event-stream"} if stream else {}
    body = {"text": text, "stream": True} if stream else {"text": text}
    response = httpx.post(
        f"{url}/v1/sessions/{session}/messages", json=body, headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text
    return response


def _wait_for(check: object, timeout: float = 10.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_worker_and_gateway_metrics_move_with_traffic(observed: ObservedCluster) -> None:
    before = observed.worker_samples()
    assert value(before, "agent_cluster_turns_total", outcome="ok") == 0
    assert value(before, "agent_cluster_config_version") == 3 * 1  # every worker applied v1

    for turn in range(TURNS):
        for s in range(SESSIONS):
            _send(observed.gateway_url, f"metrics-{s}", f"message {turn}")
    _send(observed.gateway_url, "metrics-stream", "stream me", stream=True)
    turns = SESSIONS * TURNS + 1

    # A reply reaches its caller with the commit; the worker counts the turn just
    # after, and records the claim when it completes the job: wait for both.
    _wait_for(
        lambda: (
            (s := observed.worker_samples())
            and value(s, "agent_cluster_turns_total", outcome="ok") == turns
            and value(s, "agent_cluster_queue_wait_seconds_count") == turns
        )
    )
    after = observed.worker_samples()
    assert value(after, "agent_cluster_turns_total", outcome="ok") == turns
    assert value(after, "agent_cluster_turn_duration_seconds_count") == turns
    assert value(after, "agent_cluster_queue_wait_seconds_count") == turns
    assert value(after, "agent_cluster_leases_acquired_total") >= turns
    # One agent per session (sticky sessions, cached between turns), reused after.
    assert value(after, "agent_cluster_agents_built_total") == SESSIONS + 1
    assert value(after, "agent_cluster_cache_misses_total") == SESSIONS + 1
    assert value(after, "agent_cluster_cache_hits_total") == SESSIONS * (TURNS - 1)
    assert value(after, "agent_cluster_cache_agents") == SESSIONS + 1
    # Only the streamed turn had text deltas, so only it has a time to first token.
    assert value(after, "agent_cluster_time_to_first_token_seconds_count") == 1
    tokens = {
        kind: value(after, "agent_cluster_provider_tokens_total", kind=kind, model="sim-gpt")
        for kind in ("input", "output")
    }
    assert tokens["input"] > 0 and tokens["output"] > 0
    assert value(after, "agent_cluster_provider_calls_total", provider="openai") == turns
    assert value(after, "agent_cluster_provider_cost_dollars_total", provider="openai") > 0

    gateway = scrape(f"{observed.gateway_url}/metrics")
    # Labelled by the route's template, never by the session key in the path.
    (route,) = {
        dict(labels)["route"]
        for (name, labels) in gateway
        if name == "agent_cluster_http_requests_total"
        and dict(labels)["route"].endswith("/messages")
    }
    assert route == "/v1/sessions/{key}/messages"
    assert value(gateway, "agent_cluster_http_requests_total", route=route, status="200") == turns
    assert value(gateway, "agent_cluster_http_request_duration_seconds_count", route=route) == turns
    assert not any(name.startswith("agent_cluster_worker") for name, _ in gateway)
    gateway = scrape(f"{observed.gateway_url}/metrics/cluster")
    assert value(gateway, "agent_cluster_up") == 1
    assert value(gateway, "agent_cluster_workers", state="active") == 3
    assert value(gateway, "agent_cluster_published_config_version") == 1
    assert (
        sum(
            value(gateway, "agent_cluster_worker_sessions_owned", worker=w)
            for w in ("m1", "m2", "m3")
        )
        == SESSIONS + 1
    )
    # The workers' health records (one heartbeat later) carry their provider figures.
    _wait_for(
        lambda: (
            value(
                scrape(f"{observed.gateway_url}/metrics/cluster"),
                "agent_cluster_worker_provider_tokens_total",
                kind="output",
            )
            == tokens["output"]
        )
    )

    for worker_id in ("m1", "m2", "m3"):
        assert httpx.get(observed.worker_url(worker_id, "/livez"), timeout=5).status_code == 200
        ready = httpx.get(observed.worker_url(worker_id, "/readyz"), timeout=5)
        assert ready.status_code == 200, ready.text


def test_a_dead_worker_is_recovered_and_counted(observed: ObservedCluster) -> None:
    owners = {}
    for s in range(6):
        reply = _send(observed.gateway_url, f"dead-{s}", "hello").json()
        owners[f"dead-{s}"] = reply["worker_id"]
    victim = max(set(owners.values()), key=list(owners.values()).count)
    session = next(key for key, owner in owners.items() if owner == victim)
    # A turn running on the victim when it dies: a survivor must take it over.
    observed.sim.set_latency(ttft=3.0)
    answered: list[dict[str, object]] = []
    sender = threading.Thread(
        target=lambda: answered.append(_send(observed.gateway_url, session, "mid-turn").json()),
        daemon=True,
    )
    sender.start()
    _wait_for(
        lambda: value(scrape(observed.worker_url(victim)), "agent_cluster_turns_running") == 1
    )
    observed.fleet.kill(victim)
    observed.sim.set_latency(ttft=0.0)
    _wait_for(
        lambda: value(observed.worker_samples(), "agent_cluster_recoveries_total") == 1, timeout=15
    )
    samples = observed.worker_samples()
    assert value(samples, "agent_cluster_recovered_turns_total") == 1
    assert value(samples, "agent_cluster_ownership_moves_total", reason="recovery") == 1
    sender.join(timeout=60)
    assert answered and answered[0]["worker_id"] != victim
    client = redis.Redis.from_url(observed.redis_url)
    try:
        events = ClusterEventLog(client, Keyspace(observed.namespace)).recent()
    finally:
        client.close()
    assert any(e.kind == "worker_dead" and e.worker == victim for e in events)
    gateway = scrape(f"{observed.gateway_url}/metrics/cluster")
    assert value(gateway, "agent_cluster_workers", state="active") == 2
    # Pruned by its recovery already, it still shows as dead to the next scrapes.
    assert value(gateway, "agent_cluster_workers", state="dead") == 1
