"""Worker metrics: each worker's own registry, turn outcomes, provider cost, the
first-token timer, cache figures read at scrape time, and the probe endpoint."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.providers.pricing import call_cost
from cluster.errors import ConfigError
from cluster.recovery import RecoveryReport
from worker.metrics import WorkerMetrics, estimated_cost
from worker.probe_server import ProbeServer
from worker.turn_outcome import Deferred, HandedOff


def samples(metrics: WorkerMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, frozenset(labels.items())), 0.0)


USAGE = {
    "input_tokens": 1000,
    "cache_read_tokens": 3000,
    "cache_write_tokens": 0,
    "output_tokens": 200,
    "api_calls": 2,
}


def test_two_workers_in_one_process_keep_their_figures_apart() -> None:
    a, b = WorkerMetrics(), WorkerMetrics()
    a.turn_outcome("ok")
    assert sample(a, "agent_cluster_turns_total", outcome="ok") == 1
    assert sample(b, "agent_cluster_turns_total", outcome="ok") == 0


def test_a_committed_turn_counts_outcome_duration_tokens_and_cost() -> None:
    m = WorkerMetrics()
    reply = {"started_at": 100.0, "ended_at": 101.5, "usage": USAGE, "interrupted": False}
    m.turn_committed(reply, provider="openai", model="gpt-4o")
    m.turn_committed({**reply, "interrupted": True}, provider="openai", model="gpt-4o")
    m.turn_committed({**reply, "rolled_back": True}, provider="openai", model="gpt-4o")
    for outcome in ("ok", "interrupted", "rolled_back"):
        assert sample(m, "agent_cluster_turns_total", outcome=outcome) == 1
    assert sample(m, "agent_cluster_turn_duration_seconds_sum") == pytest.approx(4.5)
    labels = {"provider": "openai", "model": "gpt-4o"}
    assert sample(m, "agent_cluster_provider_tokens_total", kind="cache_read", **labels) == 9000
    assert sample(m, "agent_cluster_provider_calls_total", **labels) == 6
    one = call_cost(
        "openai",
        "gpt-4o",
        input_tokens=1000,
        cache_read_tokens=3000,
        cache_write_tokens=0,
        output_tokens=200,
    )
    assert sample(m, "agent_cluster_provider_cost_dollars_total", **labels) == pytest.approx(
        3 * one
    )
    totals = m.provider_totals()
    assert totals.cache_read_tokens == 9000 and totals.cost_usd == pytest.approx(3 * one)
    assert totals.cache_hit_share == pytest.approx(0.75)


def test_the_offline_model_costs_nothing_and_bad_usage_counts_as_zero() -> None:
    assert estimated_cost("offline", "offline-echo", USAGE) == 0.0
    assert estimated_cost("openai", "gpt-4o", {"input_tokens": -5, "output_tokens": True}) == 0.0


def test_turns_set_aside_are_counted_by_what_they_mean() -> None:
    m = WorkerMetrics()
    m.turn_set_aside(Deferred("later", delay=0.1))
    m.turn_set_aside(HandedOff("moved", to_worker="w2"))
    m.turn_set_aside(HandedOff("cut off by a drain"))
    m.lease_lost()
    assert sample(m, "agent_cluster_turns_total", outcome="deferred") == 1
    assert sample(m, "agent_cluster_turns_total", outcome="handed_off") == 2
    assert sample(m, "agent_cluster_ownership_moves_total", reason="handoff") == 1
    assert sample(m, "agent_cluster_leases_lost_total") == 1
    m.recovered(RecoveryReport("w9", moved=5, sessions=3, leases_broken=2))
    assert sample(m, "agent_cluster_recoveries_total") == 1
    assert sample(m, "agent_cluster_recovered_turns_total") == 5
    assert sample(m, "agent_cluster_ownership_moves_total", reason="recovery") == 3


def test_first_token_timer_observes_once_and_never_nests(monkeypatch: pytest.MonkeyPatch) -> None:
    m = WorkerMetrics()
    assert m.first_token_timer(None, 0.0) is None  # a turn that does not stream stays unstreamed
    got: list[str] = []
    monkeypatch.setattr("worker.metrics.time.time", lambda: 12.5)
    timed = m.first_token_timer(got.append, submitted_at=10.0)
    assert timed is not None
    timed("a")
    timed("b")
    assert got == ["a", "b"]
    assert sample(m, "agent_cluster_time_to_first_token_seconds_count") == 1
    assert sample(m, "agent_cluster_time_to_first_token_seconds_sum") == 2.5
    again = m.first_token_timer(timed, submitted_at=12.0)
    assert again is not None and again.__wrapped__ == got.append  # type: ignore[attr-defined]


def test_cache_and_executor_state_is_read_at_scrape_time() -> None:
    m = WorkerMetrics()
    state = {
        "hits": 3,
        "misses": 1,
        "evictions": {"idle": 2, "config_bust": 1},
        "size": 4,
        "cap": 128,
        "running": 1,
        "memory_bytes": 2048,
    }
    m.watch(
        cache_metrics=lambda: state,
        turns_running=lambda: 1,
        turns_in_flight=lambda: 3,
        config_version=lambda: 7,
        config_version_lost=lambda: 9,
        registry_generation=lambda: 2,
    )
    assert sample(m, "agent_cluster_cache_hits_total") == 3
    assert sample(m, "agent_cluster_cache_evictions_total", cause="idle") == 2
    assert sample(m, "agent_cluster_cache_agents") == 4
    assert sample(m, "agent_cluster_turns_waiting") == 2
    assert sample(m, "agent_cluster_config_version") == 7
    assert sample(m, "agent_cluster_config_version_lost") == 9
    state["hits"] = 10
    assert sample(m, "agent_cluster_cache_hits_total") == 10


def test_probe_server_serves_metrics_and_the_checks() -> None:
    m = WorkerMetrics()
    m.turn_outcome("ok")
    ready = [False]
    server = ProbeServer(
        registry=m.registry,
        live=lambda: (True, "w1: alive"),
        ready=lambda: (ready[0], "w1: ready" if ready[0] else "w1: draining"),
    )
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        body = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        assert 'agent_cluster_turns_total{outcome="ok"} 1.0' in body
        assert urllib.request.urlopen(f"{base}/livez", timeout=5).read() == b"w1: alive\n"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/readyz", timeout=5)
        assert refused.value.code == 503 and refused.value.read() == b"w1: draining\n"
        refused.value.close()
        ready[0] = True
        assert urllib.request.urlopen(f"{base}/readyz", timeout=5).status == 200
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/nope", timeout=5)
        assert missing.value.code == 404
        missing.value.close()
    finally:
        server.stop()


def test_a_taken_probe_port_is_a_clear_error() -> None:
    m = WorkerMetrics()
    first = ProbeServer(registry=m.registry, live=lambda: (True, ""), ready=lambda: (True, ""))
    try:
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            ProbeServer(
                registry=m.registry,
                live=lambda: (True, ""),
                ready=lambda: (True, ""),
                port=first.port,
            )
    finally:
        first.stop()
